//! Password hashing and verification with argon2id. Verification runs on tokio's blocking pool
//! behind a semaphore, so a flood of logins can use at most `hash_concurrency` threads and never
//! starves the proxy; unknown users are verified against a dummy hash so timing says nothing.
use argon2::password_hash::{
    PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng,
};
use argon2::{Algorithm, Argon2, Params, Version};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Semaphore;

/// OWASP's recommended argon2id parameters (m=19456 KiB, t=2, p=1).
pub fn owasp_params() -> Params {
    Params::new(19_456, 2, 1, None).unwrap_or_default()
}

/// Hashes `password` into a PHC string with the OWASP parameters.
pub fn hash(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    let a = Argon2::new(Algorithm::Argon2id, Version::V0x13, owasp_params());
    Ok(a.hash_password(password.as_bytes(), &salt)?.to_string())
}

fn verify_blocking(phc: &str, password: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

#[derive(Debug, thiserror::Error)]
#[error("too many password checks are running; try again in a moment")]
pub struct Busy;

pub struct Passwords {
    permits: Arc<Semaphore>,
    dummy: Arc<str>,
    queue_wait: Duration,
    computed: AtomicU64,
}

impl Passwords {
    pub fn new(concurrency: usize, queue_wait: Duration) -> Self {
        let dummy = hash(&uuid::Uuid::new_v4().to_string()).unwrap_or_default();
        Passwords {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            dummy: Arc::from(dummy),
            queue_wait,
            computed: AtomicU64::new(0),
        }
    }

    /// How many hashes were computed since start (for metrics and tests of the lockout).
    pub fn computed(&self) -> u64 {
        self.computed.load(Ordering::Relaxed)
    }

    /// Verifies `password` against `stored`, or against the dummy hash when there is no stored
    /// hash (unknown or password-less user) so that both cases take the same time.
    pub async fn verify(&self, stored: Option<&str>, password: &str) -> Result<bool, Busy> {
        let permit = tokio::time::timeout(self.queue_wait, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| Busy)?
            .map_err(|_| Busy)?;
        let (phc, real): (Arc<str>, bool) = match stored {
            Some(h) => (Arc::from(h), true),
            None => (self.dummy.clone(), false),
        };
        let password = password.to_owned();
        self.computed.fetch_add(1, Ordering::Relaxed);
        let ok = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            verify_blocking(&phc, &password)
        })
        .await
        .unwrap_or(false);
        Ok(ok && real)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_and_verify() {
        let h = hash("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        let p = Passwords::new(2, Duration::from_secs(5));
        assert!(p.verify(Some(&h), "correct horse").await.unwrap());
        assert!(!p.verify(Some(&h), "wrong").await.unwrap());
        assert!(!p.verify(None, "correct horse").await.unwrap());
        assert_eq!(p.computed(), 3);
    }
}
