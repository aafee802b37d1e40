//! Waiting for something that happens in the daemon's own time (a reload, a background task, a
//! lock that expires): poll with a generous deadline instead of sleeping a fixed amount, so the
//! tests hold on a loaded machine.
use std::future::Future;
use std::time::{Duration, Instant};

/// How long [`eventually`] waits before failing.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Polls `check` (every 100 ms, at most [`DEADLINE`]) until it returns true; panics naming
/// `what` otherwise.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + DEADLINE;
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting until {what}");
}
