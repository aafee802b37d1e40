//! The drain signal: a `watch` channel that becomes `true` when the daemon starts shutting down.
//! Loops at every layer take a receiver of it (never the whole daemon state) and stop when
//! [`shutting_down`] resolves.
use tokio::sync::watch;

/// Resolves once the daemon starts draining (or the signal is gone).
pub async fn shutting_down(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await.map(|_| ());
}
