//! The audit trail: every `tracing` event with `target: "audit"` is one security event. This
//! layer counts each by name in the metrics and, with `log.audit_file`, appends it to that file
//! as one JSON object per line: `time`, `level`, `event`, `user`, `client_ip`, `route`, `reason`,
//! `message`, then the event's other fields. Audit events never carry passwords or tokens (the
//! call sites log names, addresses and reasons only).
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// The `target` every audit event uses.
pub const TARGET: &str = "audit";

/// The keys every line carries (null when the event has none), in this order.
const FIXED: &[&str] = &["event", "user", "client_ip", "route", "reason", "message"];

pub struct AuditLayer {
    file: Option<Mutex<File>>,
}

impl AuditLayer {
    pub fn new(file: Option<File>) -> Self {
        AuditLayer {
            file: file.map(Mutex::new),
        }
    }
}

/// Opens (creating, mode 0600) the audit file for appending; its directory is created (0700).
pub fn open(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
}

#[derive(Default)]
struct Fields(serde_json::Map<String, serde_json::Value>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
}

/// One audit line (without the newline).
fn line(level: &tracing::Level, mut fields: Fields) -> serde_json::Map<String, serde_json::Value> {
    let mut out = serde_json::Map::new();
    out.insert(
        "time".into(),
        humantime::format_rfc3339_millis(std::time::SystemTime::now())
            .to_string()
            .into(),
    );
    out.insert("level".into(), level.as_str().into());
    for k in FIXED {
        out.insert(
            (*k).into(),
            fields.0.remove(*k).unwrap_or(serde_json::Value::Null),
        );
    }
    out.extend(fields.0);
    out
}

impl<S: Subscriber> Layer<S> for AuditLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if event.metadata().target() != TARGET {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let name = fields.0.get("event").and_then(|e| e.as_str()).unwrap_or("");
        // Connections refused on accept name why (ip_denied, ip_banned) as their event; they
        // count as refusals, not as new bans.
        let on_accept =
            fields.0.get("reason").and_then(|r| r.as_str()) == Some("refused on accept");
        let name = if on_accept {
            "connection_refused"
        } else {
            name
        };
        super::metrics::global().audit_event(name);
        let Some(file) = &self.file else { return };
        let Ok(mut bytes) = serde_json::to_vec(&line(event.metadata().level(), fields)) else {
            return;
        };
        bytes.push(b'\n');
        let mut f = file.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = f.write_all(&bytes) {
            // Not through tracing: that could loop back here.
            eprintln!("comfy-warden: cannot write the audit log: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn audit_events_become_json_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/audit.log");
        let layer = AuditLayer::new(Some(open(&path).unwrap()));
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(target: "audit", event = "login_failed", client_ip = %"192.0.2.1", route = "/login", reason = "invalid credentials", "failed sign-in");
            tracing::info!(target: "comfy_warden", "not an audit event");
        });
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{text}");
        let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(v["event"], "login_failed");
        assert_eq!(v["client_ip"], "192.0.2.1");
        assert_eq!(v["user"], serde_json::Value::Null);
        assert_eq!(v["route"], "/login");
        assert_eq!(v["message"], "failed sign-in");
        assert_eq!(v["level"], "WARN");
        assert!(v["time"].as_str().unwrap().ends_with('Z'));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
