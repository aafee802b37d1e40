//! Password hashing and verification with argon2id. Verification runs on `hash_concurrency`
//! dedicated threads at a lower CPU priority (nice 10), behind a semaphore: a flood of logins
//! uses at most those threads, and when the CPU is contended the proxied traffic (and ComfyUI)
//! comes first. Unknown users are verified against a dummy hash so timing says nothing.
use argon2::password_hash::{
    PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng,
};
use argon2::{Algorithm, Argon2, Params, Version};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Semaphore;

/// The longest password accepted anywhere (sign-in, HTTP Basic, new passwords); longer ones
/// are refused without hashing.
pub const MAX_LEN: usize = 1024;

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

type Job = Box<dyn FnOnce() + Send>;

/// Starts `n` hashing threads (`password-0`, …) at nice 10; they end when the sender is dropped.
fn start_hashers(n: usize) -> std::sync::mpsc::Sender<Job> {
    let (tx, rx) = std::sync::mpsc::channel::<Job>();
    let rx = Arc::new(std::sync::Mutex::new(rx));
    for i in 0..n {
        let rx = rx.clone();
        let started = std::thread::Builder::new()
            .name(format!("password-{i}"))
            .spawn(move || {
                lower_priority();
                loop {
                    let job = match rx.lock() {
                        Ok(r) => r.recv(),
                        Err(_) => return,
                    };
                    let Ok(job) = job else { return };
                    // A panicking check must not take the thread with it (its caller sees the
                    // dropped answer and refuses as busy).
                    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
                        tracing::error!("a password check panicked");
                    }
                }
            });
        if let Err(e) = started {
            tracing::error!(error = %e, "cannot start a password-hashing thread");
        }
    }
    tx
}

/// Lowers the calling thread's CPU priority by 10 nice levels (on Linux, `PRIO_PROCESS` with
/// id 0 is the calling thread only). Failing is harmless: hashing then competes normally.
fn lower_priority() {
    // SAFETY: plain system calls about the calling thread; no memory is shared.
    #[allow(unsafe_code)]
    let rc = unsafe {
        // -1 is also a valid nice value; read from an error it still gives the target 10.
        let now = libc::getpriority(libc::PRIO_PROCESS, 0);
        libc::setpriority(libc::PRIO_PROCESS, 0, (now + 10).clamp(10, 19))
    };
    if rc != 0 {
        tracing::debug!(
            error = %std::io::Error::last_os_error(),
            "cannot lower the priority of a password-hashing thread"
        );
    }
}

pub struct Passwords {
    hashers: std::sync::mpsc::Sender<Job>,
    permits: Arc<Semaphore>,
    dummy: Arc<str>,
    queue_wait: Duration,
    computed: AtomicU64,
}

/// The dummy hash for unknown users could not be computed: comfy-warden does not start, since
/// without it an unknown user would be refused faster than a known one.
#[derive(Debug, thiserror::Error)]
#[error("cannot compute the dummy password hash: {0}")]
pub struct NoDummyHash(argon2::password_hash::Error);

impl Passwords {
    pub fn new(concurrency: usize, queue_wait: Duration) -> Result<Self, NoDummyHash> {
        Self::with_dummy(
            hash(&uuid::Uuid::new_v4().to_string()),
            concurrency,
            queue_wait,
        )
    }

    fn with_dummy(
        dummy: Result<String, argon2::password_hash::Error>,
        concurrency: usize,
        queue_wait: Duration,
    ) -> Result<Self, NoDummyHash> {
        let dummy = dummy.map_err(NoDummyHash)?;
        Ok(Passwords {
            hashers: start_hashers(concurrency.max(1)),
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            dummy: Arc::from(dummy),
            queue_wait,
            computed: AtomicU64::new(0),
        })
    }

    /// How many hashes were computed since start (for metrics and tests of the lockout).
    pub fn computed(&self) -> u64 {
        self.computed.load(Ordering::Relaxed)
    }

    /// Runs `f` on a hashing thread once a slot is free (waiting at most `queue_wait`). No
    /// hashing thread, a full queue, or a job that panicked: `Busy`.
    async fn on_pool<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Busy> {
        let permit = tokio::time::timeout(self.queue_wait, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| Busy)?
            .map_err(|_| Busy)?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _permit = permit;
            let _ = tx.send(f());
        });
        if self.hashers.send(job).is_err() {
            tracing::error!("no password-hashing thread is running");
            return Err(Busy);
        }
        rx.await.map_err(|_| Busy)
    }

    /// Verifies `password` against `stored`, or against the dummy hash when there is no stored
    /// hash (unknown or password-less user) so that both cases take the same time. A check
    /// that cannot run is `Busy` (429), never a wrong password, which would count towards the
    /// lockout of someone who typed it right.
    pub async fn verify(&self, stored: Option<&str>, password: &str) -> Result<bool, Busy> {
        let (phc, real): (Arc<str>, bool) = match stored {
            Some(h) => (Arc::from(h), true),
            None => (self.dummy.clone(), false),
        };
        let password = password.to_owned();
        self.computed.fetch_add(1, Ordering::Relaxed);
        let ok = self
            .on_pool(move || verify_blocking(&phc, &password))
            .await?;
        Ok(ok && real)
    }

    /// Hashes a new password (admin API, setup page) on the same threads as the checks.
    pub async fn hash(&self, password: &str) -> Result<String, String> {
        let password = password.to_owned();
        self.on_pool(move || hash(&password))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("cannot hash the password: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_and_verify() {
        let h = hash("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        let p = Passwords::new(2, Duration::from_secs(5)).unwrap();
        assert!(p.verify(Some(&h), "correct horse").await.unwrap());
        assert!(!p.verify(Some(&h), "wrong").await.unwrap());
        assert!(!p.verify(None, "correct horse").await.unwrap());
        assert_eq!(p.computed(), 3);
        let h2 = p.hash("battery staple").await.unwrap();
        assert!(p.verify(Some(&h2), "battery staple").await.unwrap());
    }

    #[test]
    fn no_dummy_hash_means_no_start() {
        let failed = Err(argon2::password_hash::Error::Crypto);
        assert!(Passwords::with_dummy(failed, 1, Duration::from_secs(5)).is_err());
    }

    #[tokio::test]
    async fn no_hashing_thread_means_busy_not_a_wrong_password() {
        let h = hash("pw").unwrap();
        let mut p = Passwords::new(1, Duration::from_secs(5)).unwrap();
        // A pool whose threads are all gone.
        p.hashers = std::sync::mpsc::channel().0;
        assert!(p.verify(Some(&h), "pw").await.is_err());
        assert!(p.verify(Some(&h), "wrong").await.is_err());
        assert!(p.hash("pw").await.is_err());
    }

    #[tokio::test]
    async fn hashing_threads_run_at_a_lower_priority() {
        let p = Passwords::new(2, Duration::from_secs(5)).unwrap();
        assert!(!p.verify(None, "x").await.unwrap());
        let read_nices = || {
            let mut nices = Vec::new();
            for t in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
                let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
                if comm.trim().starts_with("password-") {
                    let stat = std::fs::read_to_string(t.path().join("stat")).unwrap();
                    // After the command name: state is the 1st field, nice the 17th.
                    let rest = stat.rsplit_once(')').unwrap().1;
                    nices.push(
                        rest.split_whitespace()
                            .nth(16)
                            .unwrap()
                            .parse::<i32>()
                            .unwrap(),
                    );
                }
            }
            nices
        };
        // Each thread lowers its own priority as it starts.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let mut nices = read_nices();
        while !(nices.len() >= 2 && nices.iter().all(|&n| n >= 10))
            && std::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
            nices = read_nices();
        }
        assert!(nices.len() >= 2, "{nices:?}");
        assert!(nices.iter().all(|&n| n >= 10), "{nices:?}");
    }
}
