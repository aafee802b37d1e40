//! Atomic snapshot files in the state directory: write a temp file, fsync it, rename it over
//! the old one, fsync the directory. A snapshot that cannot be read at start is moved aside
//! (`<name>.corrupt-<unix time>`) with a warning, and the daemon starts without it.
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::io::Write;
use std::path::Path;

pub fn write<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let bytes = serde_json::to_vec(value).map_err(std::io::Error::other)?;
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        // A full disk must not stay full with our half-written copy; the last good file stays.
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Reads a snapshot; `None` when absent or unreadable (then moved aside).
pub fn read<T: DeserializeOwned>(path: &Path) -> Option<T> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read snapshot; starting without it");
            return None;
        }
    };
    match serde_json::from_slice(&bytes) {
        Ok(v) => Some(v),
        Err(e) => {
            let aside = path.with_extension(format!("corrupt-{}", crate::clock::now_secs()));
            let moved = std::fs::rename(path, &aside).is_ok();
            tracing::warn!(path = %path.display(), error = %e, moved_to = %aside.display(), moved, "snapshot is corrupted; moved aside, starting without it");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.json");
        assert_eq!(read::<Vec<u32>>(&p), None);
        write(&p, &vec![1u32, 2, 3]).unwrap();
        assert_eq!(read::<Vec<u32>>(&p), Some(vec![1, 2, 3]));
        std::fs::write(&p, b"{not json").unwrap();
        assert_eq!(read::<Vec<u32>>(&p), None);
        assert!(!p.exists(), "moved aside");
        let aside: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .collect();
        assert!(
            aside
                .iter()
                .any(|e| e.file_name().to_string_lossy().contains("corrupt-"))
        );
    }
}
