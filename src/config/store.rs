//! The live configuration: an atomically swapped `Arc<Snapshot>`, the reload procedure that keeps
//! the last good snapshot when the files are broken, and a generation counter that long-lived
//! tasks (WebSocket relays) watch to re-check their user after a reload.
use super::error::ConfigError;
use super::model::Snapshot;
use arc_swap::ArcSwap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use tokio::sync::watch;

#[derive(Debug, Clone)]
pub struct ReloadStatus {
    pub at: SystemTime,
    pub ok: bool,
    /// The error of the last failed attempt (the snapshot in use is the previous good one).
    pub error: Option<String>,
}

pub struct ConfigStore {
    dir: PathBuf,
    current: ArcSwap<Snapshot>,
    generation: watch::Sender<u64>,
    status: Mutex<ReloadStatus>,
    /// Serialises reloads (watcher and SIGHUP may race).
    reload_lock: Mutex<()>,
}

impl ConfigStore {
    pub fn new(snapshot: Snapshot) -> Self {
        let (generation, _) = watch::channel(0);
        ConfigStore {
            dir: snapshot.dir.clone(),
            current: ArcSwap::from_pointee(snapshot),
            generation,
            status: Mutex::new(ReloadStatus {
                at: SystemTime::now(),
                ok: true,
                error: None,
            }),
            reload_lock: Mutex::new(()),
        }
    }

    /// The snapshot in force now. Cheap: one atomic load.
    pub fn get(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    pub fn status(&self) -> ReloadStatus {
        match self.status.lock() {
            Ok(s) => s.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Re-reads every file. On success the new snapshot replaces the old one at once; on error
    /// the old one stays and the error is returned (and kept for status reports).
    pub fn reload(&self) -> Result<Arc<Snapshot>, ConfigError> {
        let _guard = self.reload_lock.lock().unwrap_or_else(|p| p.into_inner());
        let result = super::load::load(&self.dir);
        let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        status.at = SystemTime::now();
        match result {
            Ok(mut snap) => {
                let old = self.get();
                warn_restart_needed(&old, &snap);
                snap.generation = old.generation + 1;
                let snap = Arc::new(snap);
                self.current.store(snap.clone());
                status.ok = true;
                status.error = None;
                self.generation.send_replace(snap.generation);
                Ok(snap)
            }
            Err(e) => {
                status.ok = false;
                status.error = Some(e.to_string());
                Err(e)
            }
        }
    }
}

fn warn_restart_needed(old: &Snapshot, new: &Snapshot) {
    if old.server.listen != new.server.listen {
        tracing::warn!("server.listen changed: the new addresses take effect after a restart");
    }
    if old.source_files() != new.source_files() {
        tracing::warn!(
            "the configuration names other files now: they are read at once, but watched for changes only after a restart (until then reload with SIGHUP)"
        );
    }
    if old.files.state_dir != new.files.state_dir || old.auth.secret_file != new.auth.secret_file {
        tracing::warn!(
            "files.state_dir or auth.secret_file changed: this takes effect after a restart"
        );
    }
    let (o, n) = (&old.server, &new.server);
    if o.tls.as_ref().map(|t| (&t.cert, &t.key)) != n.tls.as_ref().map(|t| (&t.cert, &t.key))
        || o.http_redirect != n.http_redirect
        || o.metrics_listen != n.metrics_listen
    {
        tracing::warn!(
            "server.tls files, server.http_redirect or server.metrics_listen changed: this takes effect after a restart (the certificate files themselves are reloaded when they change)"
        );
    }
    if old.log.audit_file != new.log.audit_file {
        tracing::warn!("log.audit_file changed: this takes effect after a restart");
    }
    if o.workers != n.workers {
        tracing::warn!("server.workers changed: this takes effect after a restart");
    }
}
