//! The writable users file on disk: an exclusive lock (a `.NAME.lock` file beside it, so the
//! CLI and the daemon never interleave read-modify-write cycles), and atomic replacement (temp
//! file with mode 0600, fsync, rename, fsync of the directory). The replacement keeps the
//! owner of the file it replaces (or of its directory), and so does the lock file, so
//! `sudo comfy-warden user …` does not leave files the daemon's user cannot use.
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Held while a change is read, validated and written. Released when dropped.
pub struct Lock {
    _file: File,
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "users".into());
    path.with_file_name(format!(".{name}{suffix}"))
}

/// Takes the exclusive lock of `path` (waiting for another writer to finish). Creates the
/// directory (0700) when it does not exist yet.
pub fn lock(path: &Path) -> std::io::Result<Lock> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(sibling(path, ".lock"))?;
    keep_owner(&file, path, path.parent().unwrap_or(Path::new(".")));
    // `File::lock` is std since 1.89; the crate's let-chains already need 1.88, and the
    // declared rust-version stays where the other modules' lints expect it.
    #[allow(clippy::incompatible_msrv)]
    file.lock()?;
    Ok(Lock { _file: file })
}

/// Replaces `path` with `bytes` atomically (readers see the old or the new file, never a mix).
pub fn write_atomic(path: &Path, bytes: &[u8], _lock: &Lock) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let tmp = sibling(
        path,
        &format!(
            ".tmp-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ),
    );
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        keep_owner(&f, path, dir);
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Gives the new file the owner of the file it replaces, or of the directory for a new file.
/// Only root can change owners; for everyone else the owner already is the writer, and a
/// failure leaves the file as it is.
fn keep_owner(new: &File, path: &Path, dir: &Path) {
    let Some(want) = std::fs::metadata(path)
        .or_else(|_| std::fs::metadata(dir))
        .ok()
    else {
        return;
    };
    let Ok(have) = new.metadata() else { return };
    if (have.uid(), have.gid()) != (want.uid(), want.gid()) {
        let _ = std::os::unix::fs::fchown(new, Some(want.uid()), Some(want.gid()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn atomic_write_is_private_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub").join("users.local.toml");
        let l = lock(&p).unwrap();
        write_atomic(&p, b"one", &l).unwrap();
        write_atomic(&p, b"two", &l).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "two");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let names: Vec<_> = std::fs::read_dir(p.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(!names.iter().any(|n| n.contains(".tmp-")), "{names:?}");
    }
}
