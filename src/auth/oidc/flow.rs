//! Sign-ins on their way through the provider: for each, a random `state` (the key), a `nonce`
//! (echoed in the ID token), a PKCE S256 verifier, the page to land on and the redirect URI
//! used. Kept in memory, bounded in number ([`MAX_PENDING`]) and time ([`PENDING_FOR`]), and
//! bound to the browser that started it: the browser holds a random value in a cookie, the
//! table only its SHA-256. An entry is taken out when its callback arrives, so a state (and the
//! code that came with it) works once.
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

pub const MAX_PENDING: usize = 10_000;
pub const PENDING_FOR: Duration = Duration::from_secs(600);

#[derive(Debug, Clone)]
pub struct Pending {
    pub nonce: String,
    pub verifier: String,
    pub next: String,
    pub redirect_uri: String,
    binding: [u8; 32],
    started: Instant,
}

/// What a new sign-in gives the browser (cookie) and the provider (URL parameters).
pub struct Started {
    pub state: String,
    pub binding: String,
    pub nonce: String,
    pub challenge: String,
}

#[derive(Default)]
pub struct Flows {
    pending: Mutex<HashMap<String, Pending>>,
}

fn random() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

/// The PKCE S256 challenge of a verifier.
pub fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

#[derive(Debug, PartialEq, Eq)]
pub enum TakeError {
    /// No such state: never issued, changed, expired or used already.
    Unknown,
    /// The state exists but this browser did not start it.
    OtherBrowser,
}

impl Flows {
    /// Starts a sign-in; `None` when too many are under way.
    pub fn start(&self, next: String, redirect_uri: String) -> Option<Started> {
        let state = random();
        let binding = random();
        let nonce = random();
        let verifier = random();
        let challenge = challenge(&verifier);
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if p.len() >= MAX_PENDING {
            p.retain(|_, v| v.started.elapsed() < PENDING_FOR);
            if p.len() >= MAX_PENDING {
                return None;
            }
        }
        p.insert(
            state.clone(),
            Pending {
                nonce: nonce.clone(),
                verifier,
                next,
                redirect_uri,
                binding: Sha256::digest(binding.as_bytes()).into(),
                started: Instant::now(),
            },
        );
        Some(Started {
            state,
            binding,
            nonce,
            challenge,
        })
    }

    /// Takes the sign-in of `state` out of the table (whatever the outcome: it works once).
    pub fn take(&self, state: &str, binding: Option<&str>) -> Result<Pending, TakeError> {
        let entry = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(state)
            .filter(|p| p.started.elapsed() < PENDING_FOR)
            .ok_or(TakeError::Unknown)?;
        let presented: [u8; 32] = Sha256::digest(binding.unwrap_or_default().as_bytes()).into();
        if bool::from(presented.ct_eq(&entry.binding)) && binding.is_some() {
            Ok(entry)
        } else {
            Err(TakeError::OtherBrowser)
        }
    }

    pub fn len(&self) -> usize {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_works_once_and_only_for_its_browser() {
        let f = Flows::default();
        let s = f.start("/x".into(), "https://w/cb".into()).unwrap();
        assert_eq!(
            challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert_eq!(
            f.take(&s.state, Some("wrong")).unwrap_err(),
            TakeError::OtherBrowser
        );
        // Taken out even when refused.
        assert_eq!(
            f.take(&s.state, Some(&s.binding)).unwrap_err(),
            TakeError::Unknown
        );
        let s = f.start("/y".into(), "https://w/cb".into()).unwrap();
        let p = f.take(&s.state, Some(&s.binding)).unwrap();
        assert_eq!(p.next, "/y");
        assert_eq!(challenge(&p.verifier), s.challenge);
        assert_eq!(p.nonce, s.nonce);
        assert_eq!(
            f.take(&s.state, Some(&s.binding)).unwrap_err(),
            TakeError::Unknown
        );
        assert!(f.is_empty());
    }

    #[test]
    fn bounded() {
        let f = Flows::default();
        for _ in 0..MAX_PENDING {
            assert!(f.start("/".into(), "u".into()).is_some());
        }
        assert!(f.start("/".into(), "u".into()).is_none());
    }
}
