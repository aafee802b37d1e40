//! Connection limits: how many connections are open in total and per client address
//! ([`Subject`]). The accept loop takes a [`Slot`] for each connection before any HTTP work and
//! closes the socket when none is left; the slot is given back when its last holder drops it
//! (the connection task, or the WebSocket relay after an upgrade).
//! Also [`LogGate`], which keeps a flood of refusals from flooding the log.
use super::subject::Subject;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Default)]
pub struct Connections {
    total: AtomicUsize,
    per: Mutex<HashMap<Subject, usize>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Total,
    PerAddress,
}

impl Refused {
    pub fn reason(self) -> &'static str {
        match self {
            Refused::Total => "server.max_connections reached",
            Refused::PerAddress => "server.max_connections_per_ip reached",
        }
    }
}

/// One open connection. Dropping it gives the place back.
#[derive(Debug)]
pub struct Slot {
    owner: Arc<Connections>,
    subject: Option<Subject>,
}

impl std::fmt::Debug for Connections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Connections({})", self.open())
    }
}

/// Kept in each request's extensions, so an upgraded connection keeps its slot (and whatever
/// else is released when the connection ends, such as its place in its worker's count).
#[derive(Clone)]
pub struct ConnHold(pub Arc<dyn std::any::Any + Send + Sync>);

impl Connections {
    /// Takes a place for a connection from `subject` (`None`: a trusted proxy, only counted in
    /// the total).
    pub fn acquire(
        self: &Arc<Self>,
        subject: Option<Subject>,
        per_address: usize,
        total: usize,
    ) -> Result<Slot, Refused> {
        if self.total.fetch_add(1, Ordering::AcqRel) >= total {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(Refused::Total);
        }
        if let Some(s) = subject {
            let mut per = self.per.lock().unwrap_or_else(|p| p.into_inner());
            let n = per.entry(s).or_insert(0);
            if *n >= per_address {
                if *n == 0 {
                    per.remove(&s);
                }
                drop(per);
                self.total.fetch_sub(1, Ordering::AcqRel);
                return Err(Refused::PerAddress);
            }
            *n += 1;
        }
        Ok(Slot {
            owner: self.clone(),
            subject,
        })
    }

    pub fn open(&self) -> usize {
        self.total.load(Ordering::Acquire)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(s) = self.subject {
            let mut per = self.owner.per.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(n) = per.get_mut(&s) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    per.remove(&s);
                }
            }
        }
        self.owner.total.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Lets one log line through per second and counts the ones held back.
#[derive(Default)]
pub struct LogGate {
    last: AtomicU64,
    held: AtomicU64,
}

impl LogGate {
    /// `Some(n)`: log now, mentioning the `n` events held back since the last line.
    pub fn pass(&self) -> Option<u64> {
        let now = crate::clock::now_secs();
        let last = self.last.load(Ordering::Relaxed);
        if last != now
            && self
                .last
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.held.swap(0, Ordering::AcqRel));
        }
        self.held.fetch_add(1, Ordering::Relaxed);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_release() {
        let c = Arc::new(Connections::default());
        let a = Subject::parse("198.51.100.1");
        let b = Subject::parse("198.51.100.2");
        let s1 = c.acquire(a, 2, 3).unwrap();
        let s2 = c.acquire(a, 2, 3).unwrap();
        assert_eq!(c.acquire(a, 2, 3).unwrap_err(), Refused::PerAddress);
        let s3 = c.acquire(b, 2, 3).unwrap();
        assert_eq!(c.acquire(None, 2, 3).unwrap_err(), Refused::Total);
        assert_eq!(c.open(), 3);
        drop(s1);
        let hold = Arc::new(c.acquire(a, 2, 3).unwrap());
        let again = ConnHold(hold.clone());
        drop(hold);
        assert_eq!(c.open(), 3, "still held by the upgrade");
        drop(again);
        drop((s2, s3));
        assert_eq!(c.open(), 0);
        assert!(c.per.lock().unwrap().is_empty());
    }

    #[test]
    fn gate_holds_back_within_a_second() {
        let g = LogGate::default();
        assert_eq!(g.pass(), Some(0));
        // Within the same second (almost surely) the next ones are held back; a new second
        // lets one through with the count.
        let mut seen = 0;
        for _ in 0..1000 {
            if let Some(n) = g.pass() {
                seen += 1;
                assert!(n <= 1000);
            }
        }
        assert!(seen <= 2);
    }
}
