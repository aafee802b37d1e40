//! The guard's housekeeping, every [`INTERVAL`] and once more at shutdown: apply unban requests
//! left by `comfy-warden unban`, forget expired bans and failures, and write `lockout.json`
//! (and the tenancy ledger, and revoked/issued tokens) when they changed.
use crate::app::App;
use crate::config::Snapshot;
use std::sync::Arc;
use std::time::Duration;

/// How often the lockout state is snapshotted and unban requests are looked for.
pub const INTERVAL: Duration = Duration::from_secs(2);

pub fn spawn(app: Arc<App>) {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(INTERVAL);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut shutdown = app.shutdown.clone();
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                _ = crate::app::shutting_down(&mut shutdown) => break,
            }
            let a = app.clone();
            let _ = tokio::task::spawn_blocking(move || run_once(&a)).await;
        }
    });
}

/// One round; also called at start and at shutdown. Rounds never overlap (the snapshot files
/// are written through one temporary name each).
pub fn run_once(app: &App) {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    apply_unban_requests(app);
    app.lockout.prune(&app.config.get().lockout);
    if let Err(e) = app.lockout.save_if_dirty() {
        tracing::error!(error = %e, "cannot write the lockout snapshot; serving on, retrying every round");
        crate::ops::metrics::global().snapshot_failed();
    }
    if let Err(e) = app.tenancy.ledger.save_if_dirty() {
        tracing::error!(error = %e, "cannot write the ledger snapshot; serving on, retrying every round");
        crate::ops::metrics::global().snapshot_failed();
    }
    app.sessions.prune();
    if let Err(e) = app.sessions.save_if_dirty() {
        tracing::error!(error = %e, "cannot write the token snapshot; serving on, retrying every round");
        crate::ops::metrics::global().snapshot_failed();
    }
}

fn apply_unban_requests(app: &App) {
    for subject in crate::guard::lockout_file::take_unban_requests(app.lockout.state_dir()) {
        let lifted = app.lockout.unban(subject);
        tracing::info!(target: "audit", event = "ip_unbanned", user = "cli", client_ip = %subject, reason = "comfy-warden unban", lifted, "unban requested on the command line");
    }
}

/// Lifts bans on the addresses of ip-rules.toml's `unban` list (at start and after a reload).
pub fn lift_unban_list(app: &App, snap: &Snapshot) {
    for subject in app.lockout.lift(&snap.ip_rules.unban) {
        tracing::info!(target: "audit", event = "ip_unbanned", user = "ip-rules", client_ip = %subject, reason = "listed in unban", "ban lifted by the unban list");
    }
}
