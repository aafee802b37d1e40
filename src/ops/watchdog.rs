//! The systemd watchdog, tied to a real liveness check: the loops that must keep running (every
//! accept loop, every worker thread, the configuration and certificate watchers) beat a
//! [`Heartbeat`] at least every [`Heartbeats::period`]; `WATCHDOG=1` is sent every half
//! `WATCHDOG_USEC` only while every heartbeat is younger than `WATCHDOG_USEC`. When one goes
//! stale the pings stop (and that is logged once), so systemd restarts a daemon whose accept
//! loop, worker or watcher died or hangs.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One loop's sign of life.
#[derive(Clone)]
pub struct Heartbeat {
    start: Instant,
    last_ms: Arc<AtomicU64>,
}

impl Heartbeat {
    pub fn beat(&self) {
        self.last_ms
            .store(elapsed_ms(self.start), Ordering::Relaxed);
    }
}

fn elapsed_ms(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Every registered heartbeat, and how often they should beat.
pub struct Heartbeats {
    start: Instant,
    period: Duration,
    beats: Mutex<Vec<(String, Arc<AtomicU64>)>>,
}

impl Heartbeats {
    /// `watchdog`: systemd's interval, if any; beats come four times within it (else every 5 s).
    pub fn new(watchdog: Option<Duration>) -> Self {
        let period = watchdog
            .map(|w| (w / 4).clamp(Duration::from_millis(10), Duration::from_secs(5)))
            .unwrap_or(Duration::from_secs(5));
        Heartbeats {
            start: Instant::now(),
            period,
            beats: Mutex::new(Vec::new()),
        }
    }

    /// How often a registered loop must call [`Heartbeat::beat`].
    pub fn period(&self) -> Duration {
        self.period
    }

    /// Registers a loop (alive from now on).
    pub fn register(&self, name: impl Into<String>) -> Heartbeat {
        let last_ms = Arc::new(AtomicU64::new(elapsed_ms(self.start)));
        self.beats
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((name.into(), last_ms.clone()));
        Heartbeat {
            start: self.start,
            last_ms,
        }
    }

    /// The names of loops that have not beaten for longer than `max_age`.
    pub fn stale(&self, max_age: Duration) -> Vec<String> {
        let now = elapsed_ms(self.start);
        let max = u64::try_from(max_age.as_millis()).unwrap_or(u64::MAX);
        self.beats
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(_, last)| now.saturating_sub(last.load(Ordering::Relaxed)) > max)
            .map(|(n, _)| n.clone())
            .collect()
    }
}

/// Pings the systemd watchdog every half `interval` while every heartbeat is fresh, until the
/// daemon starts draining.
pub fn spawn(
    beats: Arc<Heartbeats>,
    interval: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval / 2);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut reported = false;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = crate::shutdown::shutting_down(&mut shutdown) => break,
            }
            let stale = beats.stale(interval);
            if stale.is_empty() {
                super::systemd::watchdog();
                if reported {
                    tracing::info!("every loop is alive again; pinging the systemd watchdog");
                    reported = false;
                }
            } else if !reported {
                tracing::error!(stale = ?stale, "a loop stopped beating: not pinging the systemd watchdog (systemd will restart the daemon)");
                reported = true;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loop_that_stops_beating_goes_stale() {
        let beats = Heartbeats::new(Some(Duration::from_millis(200)));
        assert_eq!(beats.period(), Duration::from_millis(50));
        let a = beats.register("accept 127.0.0.1:1");
        let _b = beats.register("config watcher");
        assert!(beats.stale(Duration::from_secs(60)).is_empty());
        std::thread::sleep(Duration::from_millis(300));
        a.beat();
        let stale = beats.stale(Duration::from_millis(150));
        assert_eq!(stale, vec!["config watcher".to_string()]);
    }

    #[test]
    fn without_a_watchdog_beats_are_rare() {
        assert_eq!(Heartbeats::new(None).period(), Duration::from_secs(5));
    }
}
