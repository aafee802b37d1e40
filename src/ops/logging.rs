//! Logging set-up: the human log on stderr (text or JSON lines, filtered by `log.level` or
//! `RUST_LOG`) and, beside it, the audit layer (`ops::audit`), which sees every audit event
//! whatever the level filter says.
use super::audit::{self, AuditLayer};
use crate::config::{self, raw::LogFormat};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Installs the global subscriber. Fails only when the audit file cannot be opened.
pub fn init(log: &config::Log) -> Result<(), String> {
    let file = match &log.audit_file {
        Some(p) => Some(
            audit::open(p)
                .map_err(|e| format!("cannot open the audit log {}: {e}", p.display()))?,
        ),
        None => None,
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&log.level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let human = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let human = match log.format {
        LogFormat::Json => human.json().flatten_event(true).boxed(),
        LogFormat::Text => human.with_ansi(false).boxed(),
    };
    let audit = AuditLayer::new(file)
        .with_filter(Targets::new().with_target(audit::TARGET, LevelFilter::TRACE));
    let _ = tracing_subscriber::registry()
        .with(human.with_filter(filter))
        .with(audit)
        .try_init();
    Ok(())
}
