//! The shared state of a running daemon: live configuration, keys, password verifier, session
//! table, guard state (lockout, connection counts), counters and the shutdown
//! signal.
use crate::auth::basic::BasicCache;
use crate::auth::password::Passwords;
use crate::auth::session::{Keys, SessionTable};
use crate::config::store::ConfigStore;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;
use tokio::sync::watch;

#[derive(Default)]
pub struct Counters {
    pub websockets: AtomicUsize,
    /// Keeps refused connections from flooding the log.
    pub refused_log: crate::guard::conns::LogGate,
}

pub struct App {
    pub config: Arc<ConfigStore>,
    pub keys: Keys,
    pub passwords: Passwords,
    pub basic_cache: BasicCache,
    /// Signed "password ok" tickets between the two sign-in steps (`auth::second_factor`).
    pub tickets: crate::auth::second_factor::Tickets,
    pub sessions: SessionTable,
    pub counters: Counters,
    pub tenancy: crate::tenancy::Tenancy,
    pub lockout: crate::guard::lockout::Lockout,
    pub connections: Arc<crate::guard::conns::Connections>,
    /// The first-administrator setup token (`accounts::setup`).
    pub setup: crate::accounts::setup::Setup,
    /// Becomes `true` when the daemon starts draining.
    pub shutdown: watch::Receiver<bool>,
}

/// How long a login waits for a free password-hashing slot before it is answered 429.
pub const HASH_QUEUE_WAIT: Duration = Duration::from_secs(2);

/// Resolves once the daemon starts draining (or the signal is gone).
pub async fn shutting_down(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await.map(|_| ());
}
