//! The first administrator, safely: while no enabled user has the `admin` permission, the
//! daemon holds a random one-time setup token (32 bytes, hex) and logs the setup URL at WARN.
//! Only a request carrying that token (compared in constant time) can create the first
//! administrator, and only once: the token is claimed before anything is written, so of two
//! racing requests one wins and the other finds setup closed. Once an administrator exists
//! (after any reload) the token is gone and setup is closed; a new token is made only when no
//! administrator is left. The HTTP side is `server::setup`.
use crate::config::Snapshot;
use std::net::SocketAddr;
use std::sync::Mutex;
use subtle::ConstantTimeEq;

/// The systemd STATUS while setup is open.
pub const STATUS: &str = "setup required: see the log for the setup URL";

#[derive(Default)]
struct State {
    token: Option<String>,
    /// A request holding the token is creating the administrator right now.
    claimed: bool,
}

#[derive(Default)]
pub struct Setup {
    state: Mutex<State>,
    base: Mutex<Option<String>>,
}

/// The outcome of presenting a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    Valid,
    Wrong,
    /// An administrator exists (or is being created).
    Closed,
}

/// Proof that this request holds the token; give it back with [`Setup::release`] if creating
/// the administrator failed.
pub struct Claim(String);

impl Setup {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// At start: remembers the first listening address (for the URL; https when the listeners
    /// speak TLS) and opens setup when no administrator exists.
    pub fn start(&self, first_listen: Option<SocketAddr>, snap: &Snapshot) {
        let scheme = if snap.server.tls.is_some() {
            "https"
        } else {
            "http"
        };
        *self.base.lock().unwrap_or_else(|p| p.into_inner()) =
            first_listen.map(|a| format!("{scheme}://{a}"));
        self.refresh(snap);
    }

    /// After every (re)load: closes setup when an administrator exists, opens it (new token,
    /// logged) when none is left.
    pub fn refresh(&self, snap: &Snapshot) {
        let mut s = self.state();
        if super::has_admin(&snap.users) {
            if s.token.take().is_some() || s.claimed {
                tracing::info!(target: "audit", event = "setup_closed", reason = "an administrator exists", "setup closed: an administrator exists");
            }
            s.claimed = false;
            return;
        }
        if s.token.is_some() || s.claimed {
            return;
        }
        let token = hex::encode(rand::random::<[u8; 32]>());
        s.token = Some(token.clone());
        drop(s);
        let base = self
            .base
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_else(|| "http://<listen address>".into());
        let how = if snap.files.users_writable.is_some() {
            "open it to create the first administrator (it works once)"
        } else {
            "files.users_writable is not set: the page explains how to add an administrator"
        };
        tracing::warn!(
            event = "setup_required",
            "no administrator is configured; setup URL: {base}/warden/setup?token={token} ({how})"
        );
        crate::ops::systemd::status(STATUS);
    }

    /// Setup is open (no administrator yet).
    pub fn required(&self) -> bool {
        let s = self.state();
        s.token.is_some() || s.claimed
    }

    pub fn check(&self, candidate: &str) -> Check {
        let s = self.state();
        match &s.token {
            None => Check::Closed,
            Some(t) if bool::from(t.as_bytes().ct_eq(candidate.as_bytes())) => Check::Valid,
            Some(_) => Check::Wrong,
        }
    }

    /// Takes the token if `candidate` is it: from now on no other request can use it.
    pub fn claim(&self, candidate: &str) -> Result<Claim, Check> {
        let mut s = self.state();
        match &s.token {
            None => Err(Check::Closed),
            Some(t) if bool::from(t.as_bytes().ct_eq(candidate.as_bytes())) => {
                s.claimed = true;
                s.token.take().map(Claim).ok_or(Check::Closed)
            }
            Some(_) => Err(Check::Wrong),
        }
    }

    /// Gives a claimed token back (creating the administrator failed; the link works again).
    pub fn release(&self, claim: Claim) {
        let mut s = self.state();
        s.claimed = false;
        if s.token.is_none() {
            s.token = Some(claim.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(token: &str) -> Setup {
        let s = Setup::default();
        s.state().token = Some(token.into());
        s
    }

    #[test]
    fn one_claim_only() {
        let s = open("abc");
        assert_eq!(s.check("abd"), Check::Wrong);
        assert_eq!(s.check("abc"), Check::Valid);
        assert!(matches!(s.claim("abd"), Err(Check::Wrong)));
        let c = s.claim("abc").ok().unwrap();
        assert!(matches!(s.claim("abc"), Err(Check::Closed)));
        assert!(
            s.required(),
            "still required until an administrator is loaded"
        );
        s.release(c);
        assert_eq!(s.check("abc"), Check::Valid);
    }
}
