//! A minimum spacing between password checks per address (IPv4 address or IPv6 /64): each
//! check takes the next free slot of its address, [`MIN_SPACING_MS`] after the previous one,
//! and waits for it; a check whose slot is more than [`MAX_WAIT_MS`] away is refused (429)
//! without hashing. One address flooding sign-ins thus gets at most one argon2 check per
//! spacing, however many connections it opens, and cannot keep the hashing threads busy for
//! everyone; a person signing in twice in a row waits a fraction of a second. The lockout
//! counts failures; this bounds how fast anyone can make comfy-warden hash at all.
use super::subject::Subject;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

/// The shortest time between two password checks from one address.
pub const MIN_SPACING_MS: u64 = 100;
/// The longest a check waits for its slot; beyond that it is refused.
pub const MAX_WAIT_MS: u64 = 1_000;
/// Above this many remembered addresses, those with no slot ahead are forgotten.
const PRUNE_ABOVE: usize = 10_000;

#[derive(Default)]
pub struct Spacing {
    /// Address → the time of its last reserved slot (unix ms).
    last: Mutex<HashMap<Subject, u64>>,
}

impl Spacing {
    /// Reserves the next check slot of `ip`: how long to wait for it, or `None` (refuse).
    pub fn reserve(&self, ip: IpAddr) -> Option<Duration> {
        self.reserve_at(ip, crate::clock::now_ms())
            .map(Duration::from_millis)
    }

    fn reserve_at(&self, ip: IpAddr, now_ms: u64) -> Option<u64> {
        let subject = Subject::of(ip);
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let slot = last
            .get(&subject)
            .map_or(now_ms, |&at| now_ms.max(at + MIN_SPACING_MS));
        let wait = slot - now_ms;
        if wait > MAX_WAIT_MS {
            return None;
        }
        if last.len() >= PRUNE_ABOVE {
            last.retain(|_, at| *at + MIN_SPACING_MS > now_ms);
        }
        last.insert(subject, slot);
        Some(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_check_per_spacing_per_address() {
        let s = Spacing::default();
        let a: IpAddr = "203.0.113.7".parse().unwrap();
        let b: IpAddr = "203.0.113.8".parse().unwrap();
        let t = 1_000_000;
        // A burst of 100 attempts at once: the first goes now, the next wait a slot each, and
        // those beyond the longest wait are refused.
        let waits: Vec<Option<u64>> = (0..100).map(|_| s.reserve_at(a, t)).collect();
        let admitted: Vec<u64> = waits.iter().flatten().copied().collect();
        let slots = (MAX_WAIT_MS / MIN_SPACING_MS + 1) as usize;
        assert_eq!(admitted.len(), slots);
        assert_eq!(
            admitted,
            (0..slots as u64)
                .map(|i| i * MIN_SPACING_MS)
                .collect::<Vec<_>>()
        );
        // Another address is not held up.
        assert_eq!(s.reserve_at(b, t), Some(0));
        // 10 s of flooding at one attempt per ms: at most one check per spacing.
        let start = t + 2 * MAX_WAIT_MS;
        let admitted = (0..10_000u64)
            .filter(|i| s.reserve_at(a, start + i).is_some())
            .count() as u64;
        assert!(
            admitted <= 10_000 / MIN_SPACING_MS + slots as u64,
            "{admitted}"
        );
        // A calm address waits for nothing.
        assert_eq!(s.reserve_at(b, t + 60_000), Some(0));
        // One IPv6 /64 is one address.
        let v6a: IpAddr = "2001:db8::1".parse().unwrap();
        let v6b: IpAddr = "2001:db8::2".parse().unwrap();
        assert_eq!(s.reserve_at(v6a, t), Some(0));
        assert_eq!(s.reserve_at(v6b, t), Some(MIN_SPACING_MS));
    }
}
