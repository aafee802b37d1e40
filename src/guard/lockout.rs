//! Brute-force protection of password sign-ins (`POST /login` and HTTP Basic).
//!
//! Failures are counted in a sliding window per client address ([`Subject`]) and per (user,
//! address). Once a counter reaches its threshold, every further attempt must wait a delay that
//! doubles with each failure (`first_delay`, twice that, … up to `max_delay`) after the last
//! failure, and is answered 429 before any password is hashed. A user is never locked out as a
//! whole: failures from another address never count against them. With `ban_after > 0`, an
//! address with that many failures in the window is banned (a bare 403 on everything) for
//! `ban_for`.
//! The state lives here, in memory; `lockout_file` snapshots and restores it.
use super::lockout_file::{Saved, SavedBan, SavedCounter};
use super::subject::Subject;
use crate::clock::now_ms;
use crate::config::LockoutPolicy;
use ipnet::IpNet;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, RwLock};

/// An address may fail this many times as often as one (user, address) pair before it is delayed
/// as a whole, so several people mistyping behind one NAT do not lock each other out.
pub const ADDRESS_FACTOR: u32 = 4;
/// The most counters (or bans) kept; beyond it the oldest are forgotten first.
const MAX_KEYS: usize = 100_000;
/// User names longer than any valid one are cut, so keys stay small.
const USER_KEY_MAX: usize = 64;

#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Key {
    pub subject: Subject,
    /// `None`: the address as a whole.
    pub user: Option<Box<str>>,
}

fn user_key(user: &str) -> Box<str> {
    let mut end = user.len().min(USER_KEY_MAX);
    while !user.is_char_boundary(end) {
        end -= 1;
    }
    Box::from(&user[..end])
}

/// What a recorded failure led to.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Failure {
    /// This failure made a counter reach its threshold: attempts are delayed from now on.
    pub locked: bool,
    /// This failure banned the address until this time (unix seconds).
    pub banned_until: Option<u64>,
}

/// A counter at or over its threshold (for the admin endpoint).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Locked {
    pub ip: String,
    pub user: Option<String>,
    pub failures: usize,
    /// When the next attempt is let through (unix seconds).
    pub retry_at: u64,
}

/// Records a failed password of `user` from `client_ip` and logs what it led to (once: when a
/// counter reaches its threshold, when the address is banned).
pub fn record_failure(
    lockout: &Lockout,
    snap: &crate::config::Snapshot,
    user: &str,
    client_ip: IpAddr,
) {
    let f = lockout.failure(&snap.lockout, &snap.ip_rules.unban, user, client_ip);
    if f.locked {
        // Only configured names are logged: a password typed into the name field must not be.
        let user = if snap.user(user).is_some() {
            user
        } else {
            "(unknown)"
        };
        tracing::warn!(target: "audit", event = "lockout", user = %user, client_ip = %client_ip, reason = "too many failed sign-ins", "sign-ins delayed");
    }
    if let Some(until) = f.banned_until {
        tracing::warn!(target: "audit", event = "ip_banned", client_ip = %Subject::of(client_ip), reason = "too many failed sign-ins", until, "address banned");
    }
}

fn threshold(key: &Key, cfg: &LockoutPolicy) -> usize {
    let t = if key.user.is_some() {
        cfg.max_failures
    } else {
        cfg.max_failures.saturating_mul(ADDRESS_FACTOR)
    };
    usize::try_from(t).unwrap_or(usize::MAX).max(1)
}

fn window_ms(cfg: &LockoutPolicy) -> u64 {
    u64::try_from(cfg.window.as_millis()).unwrap_or(u64::MAX)
}

fn forget_old(stamps: &mut VecDeque<u64>, now: u64, window: u64) {
    let cutoff = now.saturating_sub(window);
    while stamps.front().is_some_and(|t| *t <= cutoff) {
        stamps.pop_front();
    }
}

/// When the next attempt is allowed (unix ms), if the counter is at or over its threshold.
fn retry_at(stamps: &VecDeque<u64>, threshold: usize, cfg: &LockoutPolicy) -> Option<u64> {
    let n = stamps.len();
    if n < threshold {
        return None;
    }
    let shift = u32::try_from(n - threshold).unwrap_or(u32::MAX).min(40);
    let max = u64::try_from(cfg.max_delay.as_millis()).unwrap_or(u64::MAX);
    let first = u64::try_from(cfg.first_delay.as_millis()).unwrap_or(u64::MAX);
    let delay = first.saturating_mul(1u64 << shift).min(max);
    stamps.back().map(|last| last.saturating_add(delay))
}

#[derive(Default)]
struct Counters {
    map: HashMap<Key, VecDeque<u64>>,
}

impl Counters {
    /// Keeps the map bounded: forgets expired counters, then the oldest tenth.
    fn make_room(&mut self, now: u64, window: u64) {
        if self.map.len() < MAX_KEYS {
            return;
        }
        self.map.retain(|_, s| {
            forget_old(s, now, window);
            !s.is_empty()
        });
        if self.map.len() < MAX_KEYS {
            return;
        }
        let mut lasts: Vec<u64> = self
            .map
            .values()
            .filter_map(|s| s.back().copied())
            .collect();
        lasts.sort_unstable();
        let cutoff = lasts.get(lasts.len() / 10).copied().unwrap_or(u64::MAX);
        self.map
            .retain(|_, s| s.back().is_some_and(|last| *last > cutoff));
    }

    fn remove_subject(&mut self, subject: Subject) -> bool {
        let before = self.map.len();
        self.map.retain(|k, _| k.subject != subject);
        before != self.map.len()
    }
}

pub struct Lockout {
    counters: Mutex<Counters>,
    /// Banned subjects → until (unix seconds).
    bans: RwLock<HashMap<Subject, u64>>,
    dirty: AtomicBool,
    state_dir: PathBuf,
    /// The minimum spacing between password checks per address.
    pub spacing: super::spacing::Spacing,
}

impl Lockout {
    /// Restores the state from `state_dir/lockout.json` (or starts empty).
    pub fn open(state_dir: &Path) -> Lockout {
        let saved: Saved =
            crate::ops::snapshot::read(&super::lockout_file::path(state_dir)).unwrap_or_default();
        let now_secs = now_ms() / 1000;
        let bans = saved
            .bans
            .iter()
            .filter(|b| b.until > now_secs)
            .filter_map(|b| Some((Subject::parse(&b.ip)?, b.until)))
            .collect();
        let mut counters = Counters::default();
        for c in saved.failures {
            let Some(subject) = Subject::parse(&c.ip) else {
                continue;
            };
            let mut at = c.at;
            at.sort_unstable();
            let key = Key {
                subject,
                user: c.user.as_deref().map(user_key),
            };
            counters.map.insert(key, at.into());
        }
        Lockout {
            counters: Mutex::new(counters),
            bans: RwLock::new(bans),
            dirty: AtomicBool::new(false),
            state_dir: state_dir.to_path_buf(),
            spacing: Default::default(),
        }
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    fn counters(&self) -> std::sync::MutexGuard<'_, Counters> {
        self.counters.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn bans_read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Subject, u64>> {
        self.bans.read().unwrap_or_else(|p| p.into_inner())
    }

    fn bans_write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Subject, u64>> {
        self.bans.write().unwrap_or_else(|p| p.into_inner())
    }

    fn touch(&self) {
        self.dirty.store(true, Ordering::Relaxed);
    }

    /// Seconds `user` at `ip` must still wait before a password may be checked; `None` when
    /// the attempt may go ahead.
    pub fn check(&self, cfg: &LockoutPolicy, user: &str, ip: IpAddr) -> Option<u64> {
        self.check_at(cfg, user, ip, now_ms())
    }

    fn check_at(&self, cfg: &LockoutPolicy, user: &str, ip: IpAddr, now: u64) -> Option<u64> {
        let subject = Subject::of(ip);
        let window = window_ms(cfg);
        let mut c = self.counters();
        let mut wait = 0u64;
        for key in [
            Key {
                subject,
                user: Some(user_key(user)),
            },
            Key {
                subject,
                user: None,
            },
        ] {
            let t = threshold(&key, cfg);
            if let Some(stamps) = c.map.get_mut(&key) {
                forget_old(stamps, now, window);
                if let Some(at) = retry_at(stamps, t, cfg) {
                    wait = wait.max(at.saturating_sub(now));
                }
            }
        }
        (wait > 0).then(|| wait.div_ceil(1000).max(1))
    }

    /// Records a failed sign-in of `user` from `ip`. Addresses in `never_ban` are counted and
    /// delayed like any other, but never banned.
    pub fn failure(
        &self,
        cfg: &LockoutPolicy,
        never_ban: &[IpNet],
        user: &str,
        ip: IpAddr,
    ) -> Failure {
        self.failure_at(cfg, never_ban, user, ip, now_ms())
    }

    fn failure_at(
        &self,
        cfg: &LockoutPolicy,
        never_ban: &[IpNet],
        user: &str,
        ip: IpAddr,
        now: u64,
    ) -> Failure {
        let subject = Subject::of(ip);
        let window = window_ms(cfg);
        let ban_after = usize::try_from(cfg.ban_after).unwrap_or(usize::MAX);
        let mut out = Failure::default();
        let mut address_failures = 0;
        let mut c = self.counters();
        for key in [
            Key {
                subject,
                user: Some(user_key(user)),
            },
            Key {
                subject,
                user: None,
            },
        ] {
            let t = threshold(&key, cfg);
            let cap = t.max(ban_after).saturating_add(64);
            let whole = key.user.is_none();
            if !c.map.contains_key(&key) {
                c.make_room(now, window);
            }
            let stamps = c.map.entry(key).or_default();
            forget_old(stamps, now, window);
            stamps.push_back(now);
            while stamps.len() > cap {
                stamps.pop_front();
            }
            if stamps.len() == t {
                out.locked = true;
            }
            if whole {
                address_failures = stamps.len();
            }
        }
        self.touch();
        if ban_after > 0 && address_failures >= ban_after && !subject.touches(never_ban) {
            let until = (now / 1000).saturating_add(cfg.ban_for.as_secs());
            let mut bans = self.bans_write();
            if bans.len() >= MAX_KEYS {
                let now_secs = now / 1000;
                bans.retain(|_, u| *u > now_secs);
            }
            if bans.len() < MAX_KEYS {
                bans.insert(subject, until);
                c.remove_subject(subject);
                out.banned_until = Some(until);
            }
        }
        out
    }

    /// A successful sign-in clears that user's counter at that address (not the address's).
    pub fn success(&self, user: &str, ip: IpAddr) {
        let key = Key {
            subject: Subject::of(ip),
            user: Some(user_key(user)),
        };
        if self.counters().map.remove(&key).is_some() {
            self.touch();
        }
    }

    pub fn is_banned(&self, ip: IpAddr) -> bool {
        let bans = self.bans_read();
        if bans.is_empty() {
            return false;
        }
        let now = now_ms() / 1000;
        bans.get(&Subject::of(ip)).is_some_and(|until| *until > now)
    }

    /// Lifts the ban on `subject` and forgets its counters; true if it was banned.
    pub fn unban(&self, subject: Subject) -> bool {
        let was = self.bans_write().remove(&subject).is_some();
        let counted = self.counters().remove_subject(subject);
        if was || counted {
            self.touch();
        }
        was
    }

    /// Lifts every ban on a subject that `nets` touch; returns the subjects freed.
    pub fn lift(&self, nets: &[IpNet]) -> Vec<Subject> {
        if nets.is_empty() {
            return Vec::new();
        }
        let mut bans = self.bans_write();
        let freed: Vec<Subject> = bans.keys().filter(|s| s.touches(nets)).copied().collect();
        for s in &freed {
            bans.remove(s);
        }
        if !freed.is_empty() {
            self.touch();
        }
        freed
    }

    /// Bans in force, soonest to end first.
    pub fn bans(&self) -> Vec<(Subject, u64)> {
        let now = now_ms() / 1000;
        let mut v: Vec<_> = self
            .bans_read()
            .iter()
            .filter(|(_, u)| **u > now)
            .map(|(s, u)| (*s, *u))
            .collect();
        v.sort_by_key(|(s, u)| (*u, *s));
        v
    }

    /// Counters at or over their threshold.
    pub fn locked(&self, cfg: &LockoutPolicy) -> Vec<Locked> {
        let now = now_ms();
        let window = window_ms(cfg);
        let mut c = self.counters();
        let mut v: Vec<Locked> = c
            .map
            .iter_mut()
            .filter_map(|(k, stamps)| {
                forget_old(stamps, now, window);
                let at = retry_at(stamps, threshold(k, cfg), cfg)?;
                Some(Locked {
                    ip: k.subject.to_string(),
                    user: k.user.as_deref().map(str::to_owned),
                    failures: stamps.len(),
                    retry_at: at.div_ceil(1000),
                })
            })
            .collect();
        v.sort_by(|a, b| (&a.ip, &a.user).cmp(&(&b.ip, &b.user)));
        v
    }

    /// Forgets expired bans and failures that left the window.
    pub fn prune(&self, cfg: &LockoutPolicy) {
        let now = now_ms();
        let window = window_ms(cfg);
        {
            let mut bans = self.bans_write();
            let before = bans.len();
            bans.retain(|_, u| *u > now / 1000);
            if bans.len() != before {
                self.touch();
            }
        }
        let mut c = self.counters();
        let before: usize = c.map.values().map(VecDeque::len).sum();
        c.map.retain(|_, s| {
            forget_old(s, now, window);
            !s.is_empty()
        });
        let after: usize = c.map.values().map(VecDeque::len).sum();
        if before != after {
            self.touch();
        }
    }

    fn saved(&self) -> Saved {
        let bans = self
            .bans()
            .into_iter()
            .map(|(s, until)| SavedBan {
                ip: s.to_string(),
                until,
            })
            .collect();
        let failures = self
            .counters()
            .map
            .iter()
            .map(|(k, at)| SavedCounter {
                ip: k.subject.to_string(),
                user: k.user.as_deref().map(str::to_owned),
                at: at.iter().copied().collect(),
            })
            .collect();
        Saved { bans, failures }
    }

    /// Writes `lockout.json` if anything changed since the last write.
    pub fn save_if_dirty(&self) -> std::io::Result<()> {
        if !self.dirty.swap(false, Ordering::Relaxed) {
            return Ok(());
        }
        let saved = self.saved();
        crate::ops::snapshot::write(&super::lockout_file::path(&self.state_dir), &saved)
            .inspect_err(|_| self.touch())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn cfg(max_failures: u32, ban_after: u32) -> LockoutPolicy {
        LockoutPolicy {
            max_failures,
            window: Duration::from_secs(60),
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(8),
            ban_after,
            ban_for: Duration::from_secs(3600),
        }
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn delays_double_up_to_the_maximum() {
        let dir = tempfile::tempdir().unwrap();
        let l = Lockout::open(dir.path());
        let c = cfg(3, 0);
        let a = ip("198.51.100.1");
        let t0 = 1_000_000_000;
        for i in 0..2 {
            assert_eq!(
                l.failure_at(&c, &[], "alice", a, t0 + i),
                Failure::default()
            );
        }
        assert!(l.check_at(&c, "alice", a, t0 + 10).is_none());
        assert!(l.failure_at(&c, &[], "alice", a, t0 + 10).locked);
        assert_eq!(l.check_at(&c, "alice", a, t0 + 10), Some(1));
        assert_eq!(l.check_at(&c, "alice", a, t0 + 1010), None, "1 s later");
        l.failure_at(&c, &[], "alice", a, t0 + 1010);
        assert_eq!(l.check_at(&c, "alice", a, t0 + 1010), Some(2));
        for k in 0..6 {
            l.failure_at(&c, &[], "alice", a, t0 + 2000 + k);
        }
        assert_eq!(l.check_at(&c, "alice", a, t0 + 2010), Some(8), "capped");
        // Another user at the same address and the same user elsewhere are not locked.
        assert!(l.check_at(&c, "bob", a, t0 + 2010).is_none());
        assert!(
            l.check_at(&c, "alice", ip("198.51.100.2"), t0 + 2010)
                .is_none()
        );
        // The window forgets.
        assert!(l.check_at(&c, "alice", a, t0 + 70_000).is_none());
    }

    #[test]
    fn address_threshold_and_success() {
        let dir = tempfile::tempdir().unwrap();
        let l = Lockout::open(dir.path());
        let c = cfg(2, 0);
        let a = ip("198.51.100.1");
        let t0 = 1_000_000_000;
        for i in 0..8u64 {
            l.failure_at(&c, &[], &format!("user{i}"), a, t0 + i);
        }
        assert!(l.check_at(&c, "someone", a, t0 + 10).is_some(), "8 = 2 × 4");
        let b = ip("198.51.100.2");
        l.failure_at(&c, &[], "alice", b, t0);
        l.success("alice", b);
        l.failure_at(&c, &[], "alice", b, t0 + 1);
        assert!(l.check_at(&c, "alice", b, t0 + 2).is_none(), "cleared");
    }

    #[test]
    fn bans_spare_the_unban_list_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let l = Lockout::open(dir.path());
        let c = cfg(5, 3);
        let now = now_ms();
        let a = ip("203.0.113.9");
        let spared: Vec<IpNet> = vec!["203.0.113.10/32".parse().unwrap()];
        for i in 0..3 {
            let f = l.failure_at(&c, &spared, &format!("u{i}"), a, now);
            assert_eq!(f.banned_until.is_some(), i == 2);
            l.failure_at(&c, &spared, &format!("u{i}"), ip("203.0.113.10"), now);
        }
        assert!(l.is_banned(a));
        assert!(l.is_banned(ip("::ffff:203.0.113.9")));
        assert!(!l.is_banned(ip("203.0.113.10")));
        l.failure_at(&c, &[], "x", ip("2001:db8::1"), now);
        l.save_if_dirty().unwrap();
        let l2 = Lockout::open(dir.path());
        assert!(l2.is_banned(a));
        assert_eq!(l2.bans(), l.bans());
        assert_eq!(l2.counters().map.len(), l.counters().map.len());
        assert_eq!(l2.lift(&["203.0.113.0/24".parse().unwrap()]).len(), 1);
        assert!(!l2.is_banned(a));
        assert!(!l.unban(Subject::of(ip("198.51.100.77"))));
        assert!(l.unban(Subject::of(a)));
        assert!(!l.is_banned(a));
    }
}
