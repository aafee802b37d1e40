//! The shared state of a running daemon: live configuration, keys, password verifier, session
//! table, guard state (lockout, connection counts), counters and the shutdown signal; and what
//! needs several of them at once (what follows a reload, the state round, the gauges). The
//! layers below take the parts they need, never the `App`.
use crate::auth::basic::BasicCache;
use crate::auth::identity::Verifiers;
use crate::auth::password::Passwords;
use crate::auth::session::{Keys, SessionTable};
use crate::config::store::ConfigStore;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
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
    pub tenancy: Arc<crate::tenancy::Tenancy>,
    pub lockout: crate::guard::lockout::Lockout,
    pub connections: Arc<crate::guard::conns::Connections>,
    /// The first-administrator setup token (`accounts::setup`).
    pub setup: crate::accounts::setup::Setup,
    /// Single sign-on: sign-ins under way, the provider's discovery document and keys.
    pub oidc: crate::auth::oidc::Oidc,
    /// Becomes `true` when the daemon starts draining.
    pub shutdown: watch::Receiver<bool>,
}

/// How long a login waits for a free password-hashing slot before it is answered 429.
pub const HASH_QUEUE_WAIT: Duration = Duration::from_secs(2);

impl App {
    /// What checking a credential borrows (`auth::identity`).
    pub fn verifiers(&self) -> Verifiers<'_> {
        Verifiers {
            keys: &self.keys,
            sessions: &self.sessions,
            passwords: &self.passwords,
            basic_cache: &self.basic_cache,
            lockout: &self.lockout,
            oidc: &self.oidc,
        }
    }

    /// The gauges `/metrics` shows.
    pub fn gauges(&self) -> crate::ops::metrics::Gauges {
        crate::ops::metrics::Gauges {
            sessions: self.sessions.active().len(),
            websockets: self.counters.websockets.load(Ordering::Relaxed),
            connections: self.connections.open(),
            history_waiting: self.tenancy.live.history_waiting(),
            bans_active: self.lockout.bans().len(),
            reload_ok: self.config.status().ok,
            tasks: crate::ops::metrics::tasks_alive(),
        }
    }

    /// One state round (every `guard::tick::INTERVAL`, at start and at shutdown): the guard's
    /// housekeeping, then the ledger and the token snapshots when they changed. Rounds never
    /// overlap (the snapshot files are written through one temporary name each).
    pub fn save_state(&self) {
        static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
        crate::guard::tick::run_once(&self.lockout, &self.config.get().lockout);
        if let Err(e) = self.tenancy.ledger.save_if_dirty() {
            tracing::error!(error = %e, "cannot write the ledger snapshot; serving on, retrying every round");
            crate::ops::metrics::global().snapshot_failed();
        }
        self.sessions.prune();
        if let Err(e) = self.sessions.save_if_dirty() {
            tracing::error!(error = %e, "cannot write the token snapshot; serving on, retrying every round");
            crate::ops::metrics::global().snapshot_failed();
        }
    }

    /// Reloads the configuration at once (on the blocking pool) after the daemon changed the
    /// writable users file, so the change is live for the next request; the watcher would see
    /// it a moment later anyway. Returns the reload error, if any (the change is saved
    /// regardless).
    pub async fn reload_now(&self) -> Result<(), String> {
        let s = self.config.clone();
        let result = tokio::task::spawn_blocking(move || s.reload().map(|_| ()))
            .await
            .map_err(|e| format!("reload task failed: {e}"))
            .and_then(|r| r.map_err(|e| e.to_string()));
        self.after_reload(&result);
        result
    }

    /// Everything that follows a reload, whoever asked for it (watcher, SIGHUP, a user change):
    /// setup state, metrics, audit event, the unban list, systemd's status.
    pub fn after_reload(&self, result: &Result<(), String>) {
        self.setup.refresh(&self.config.get());
        match result {
            Ok(()) => {
                crate::ops::metrics::global().config_loaded();
                let snap = self.config.get();
                tracing::info!(target: "audit", event = "config_reloaded", users = snap.users.len(), "configuration reloaded");
                crate::guard::tick::lift_unban_list(&self.lockout, &snap);
            }
            Err(e) => {
                tracing::error!(target: "audit", event = "config_reload_failed", "configuration NOT reloaded, keeping the last good one: {e}")
            }
        }
        crate::ops::systemd::ready(&self.status_line());
    }

    /// systemd's STATUS= line.
    pub fn status_line(&self) -> String {
        let snap = self.config.get();
        let st = self.config.status();
        let reload = if st.ok {
            "ok".to_string()
        } else {
            format!("failed ({})", st.error.unwrap_or_default())
        };
        let setup = if self.setup.required() {
            format!("{}; ", crate::accounts::setup::STATUS)
        } else {
            String::new()
        };
        format!(
            "{setup}{} users, {} sessions, last reload {reload}",
            snap.users.len(),
            self.sessions.active().len()
        )
    }
}
