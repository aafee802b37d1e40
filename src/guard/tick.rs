//! The guard's housekeeping, every [`INTERVAL`] and once more at shutdown (part of the
//! daemon's state round, `App::save_state`): apply unban requests left by `comfy-warden unban`,
//! forget expired bans and failures, and write `lockout.json` when it changed.
use super::lockout::Lockout;
use crate::config::Snapshot;
use std::time::Duration;

/// How often the lockout state is snapshotted and unban requests are looked for.
pub const INTERVAL: Duration = Duration::from_secs(2);

/// The guard's part of one round.
pub fn run_once(lockout: &Lockout, policy: &crate::config::LockoutPolicy) {
    apply_unban_requests(lockout);
    lockout.prune(policy);
    if let Err(e) = lockout.save_if_dirty() {
        tracing::error!(error = %e, "cannot write the lockout snapshot; serving on, retrying every round");
        crate::ops::metrics::global().snapshot_failed();
    }
}

fn apply_unban_requests(lockout: &Lockout) {
    for subject in super::lockout_file::take_unban_requests(lockout.state_dir()) {
        let lifted = lockout.unban(subject);
        tracing::info!(target: "audit", event = "ip_unbanned", user = "cli", client_ip = %subject, reason = "comfy-warden unban", lifted, "unban requested on the command line");
    }
}

/// Lifts bans on the addresses of ip-rules.toml's `unban` list (at start and after a reload).
pub fn lift_unban_list(lockout: &Lockout, snap: &Snapshot) {
    for subject in lockout.lift(&snap.ip_rules.unban) {
        tracing::info!(target: "audit", event = "ip_unbanned", user = "ip-rules", client_ip = %subject, reason = "listed in unban", "ban lifted by the unban list");
    }
}
