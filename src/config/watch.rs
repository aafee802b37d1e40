//! Hot reload: watch the *directories* that hold the configuration files (so atomic renames and
//! symlink swaps, as done by NixOS activation and Kubernetes ConfigMaps, are seen), debounce the
//! burst of events one edit makes, then reload through [`ConfigStore::reload`].
use super::store::ConfigStore;
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

/// Starts watching. `on_reload` runs after every attempt (for sd-notify, metrics and logs).
pub fn spawn(
    store: Arc<ConfigStore>,
    on_reload: impl Fn(&Result<(), String>) + Send + Sync + 'static,
) -> notify::Result<WatchGuard> {
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let files: BTreeSet<PathBuf> = store.get().source_files().into_iter().collect();
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
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            // Debounce: let the burst settle, then drain what queued meanwhile.
            tokio::time::sleep(DEBOUNCE).await;
            while rx.try_recv().is_ok() {}
            let store = store.clone();
            let result = tokio::task::spawn_blocking(move || {
                store.reload().map(|_| ()).map_err(|e| e.to_string())
            })
            .await
            .unwrap_or_else(|e| Err(format!("reload task failed: {e}")));
            on_reload(&result);
        }
    });
    Ok(WatchGuard { _watcher: watcher })
}
