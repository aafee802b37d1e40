//! Hot reload: watch the *directories* that hold the watched files (so atomic renames and
//! symlink swaps, as done by NixOS activation, Kubernetes ConfigMaps and certbot, are seen),
//! debounce the burst of events one edit makes, then act: reload the configuration through
//! [`ConfigStore::reload`] ([`spawn`]) or anything else ([`watch_files`], used for the TLS
//! certificate). The loop beats a heartbeat for the systemd watchdog while it waits.
use super::store::ConfigStore;
use crate::ops::watchdog::Heartbeat;
use notify::{RecursiveMode, Watcher};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// How long to wait for more events after the first one of a burst.
pub const DEBOUNCE: Duration = Duration::from_millis(200);

/// Keeps the OS watcher alive; dropping it stops watching.
pub struct WatchGuard {
    _watcher: notify::RecommendedWatcher,
}

/// Calls `on_change` (in a blocking thread) about [`DEBOUNCE`] after the last change to one of
/// `files`. `beat` is beaten every `period` while the loop waits.
pub fn watch_files(
    files: Vec<PathBuf>,
    beat: Heartbeat,
    period: Duration,
    on_change: impl Fn() + Send + Sync + 'static,
) -> notify::Result<WatchGuard> {
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let files: BTreeSet<PathBuf> = files.into_iter().collect();
    let names: BTreeSet<std::ffi::OsString> = files
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_owned()))
        .collect();
    let mut watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        if let Ok(ev) = ev {
            let relevant = ev.paths.iter().any(|p| {
                p.file_name()
                    .is_some_and(|n| names.contains(n) || n.to_string_lossy().starts_with("..data"))
            }) || ev.paths.is_empty();
            if relevant && !matches!(ev.kind, notify::EventKind::Access(_)) {
                let _ = tx.send(());
            }
        }
    })?;
    let dirs: BTreeSet<PathBuf> = files
        .iter()
        .filter_map(|p| p.parent().map(|d| d.to_path_buf()))
        .collect();
    for d in &dirs {
        if !d.is_dir() {
            // Only an optional file can live there (users_writable in a state directory that
            // is not there yet); the required ones were read from existing directories.
            tracing::warn!(dir = %d.display(), "cannot watch a directory that does not exist; reload with SIGHUP after creating it");
            continue;
        }
        watcher.watch(d, RecursiveMode::NonRecursive)?;
    }
    let on_change = Arc::new(on_change);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                ev = rx.recv() => if ev.is_none() { break },
                _ = tick.tick() => {
                    beat.beat();
                    continue;
                }
            }
            // Debounce: let the burst settle, then drain what queued meanwhile.
            tokio::time::sleep(DEBOUNCE).await;
            while rx.try_recv().is_ok() {}
            beat.beat();
            let f = on_change.clone();
            if let Err(e) = tokio::task::spawn_blocking(move || f()).await {
                tracing::error!(error = %e, "reload task failed");
            }
            beat.beat();
        }
    });
    Ok(WatchGuard { _watcher: watcher })
}

/// Watches the configuration files. `before` runs before each reload attempt, `after` with
/// its result (for sd-notify, metrics and logs).
pub fn spawn(
    store: Arc<ConfigStore>,
    beat: Heartbeat,
    period: Duration,
    before: impl Fn() + Send + Sync + 'static,
    after: impl Fn(&Result<(), String>) + Send + Sync + 'static,
) -> notify::Result<WatchGuard> {
    let files = store.get().source_files();
    watch_files(files, beat, period, move || {
        before();
        let result = store.reload().map(|_| ()).map_err(|e| e.to_string());
        after(&result);
    })
}
