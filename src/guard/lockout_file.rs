//! The lockout state on disk: `lockout.json` (bans and failure counters, written atomically by
//! the daemon through `ops::snapshot`) and `unban.txt` (unban requests appended by the
//! `comfy-warden unban` command, taken and applied by the running daemon on its next tick).
//! Both live in the state directory.
use super::subject::Subject;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

pub const FILE_NAME: &str = "lockout.json";
pub const UNBAN_FILE: &str = "unban.txt";

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Saved {
    #[serde(default)]
    pub bans: Vec<SavedBan>,
    #[serde(default)]
    pub failures: Vec<SavedCounter>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SavedBan {
    pub ip: String,
    /// Unix seconds.
    pub until: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SavedCounter {
    pub ip: String,
    #[serde(default)]
    pub user: Option<String>,
    /// Failure times, unix milliseconds.
    pub at: Vec<u64>,
}

pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE_NAME)
}

fn unban_path(state_dir: &Path) -> PathBuf {
    state_dir.join(UNBAN_FILE)
}

/// Reads `lockout.json` without touching it (for the offline commands). `Ok(None)` when absent.
pub fn read(state_dir: &Path) -> Result<Option<Saved>, String> {
    let p = path(state_dir);
    match std::fs::read(&p) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| format!("{} is not readable: {e}", p.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", p.display())),
    }
}

/// Bans in force according to `lockout.json`, soonest to end first.
pub fn bans_in_force(state_dir: &Path, now_secs: u64) -> Result<Vec<SavedBan>, String> {
    let mut bans: Vec<SavedBan> = read(state_dir)?
        .map(|s| s.bans)
        .unwrap_or_default()
        .into_iter()
        .filter(|b| b.until > now_secs)
        .collect();
    bans.sort_by(|a, b| (a.until, &a.ip).cmp(&(b.until, &b.ip)));
    Ok(bans)
}

/// Removes the ban and the counters of `subject` from `lockout.json` (no daemon running).
/// Returns whether a ban was removed.
pub fn unban_offline(state_dir: &Path, subject: Subject) -> Result<bool, String> {
    let Some(mut saved) = read(state_dir)? else {
        return Ok(false);
    };
    let is = |ip: &str| Subject::parse(ip) == Some(subject);
    let before = saved.bans.len();
    saved.bans.retain(|b| !is(&b.ip));
    let removed = saved.bans.len() != before;
    saved.failures.retain(|c| !is(&c.ip));
    crate::ops::snapshot::write(&path(state_dir), &saved)
        .map_err(|e| format!("cannot write {}: {e}", path(state_dir).display()))?;
    Ok(removed)
}

/// Appends an unban request for the running daemon.
pub fn request_unban(state_dir: &Path, subject: Subject) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(state_dir)?;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(unban_path(state_dir))?;
    writeln!(f, "{subject}")?;
    f.sync_all()
}

/// Takes the pending unban requests (the file is renamed away first, so a request appended
/// meanwhile lands in a new file and is taken next time). Unreadable lines are logged.
pub fn take_unban_requests(state_dir: &Path) -> Vec<Subject> {
    let p = unban_path(state_dir);
    let taken = state_dir.join(format!("{UNBAN_FILE}.taking"));
    match std::fs::rename(&p, &taken) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            tracing::warn!(path = %p.display(), error = %e, "cannot take the unban requests");
            return Vec::new();
        }
    }
    let text = std::fs::read_to_string(&taken).unwrap_or_default();
    let _ = std::fs::remove_file(&taken);
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .filter_map(|l| {
            let s = Subject::parse(l);
            if s.is_none() {
                tracing::warn!(path = %p.display(), "ignoring an unban request that is not an address");
            }
            s
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_taken_once() {
        let dir = tempfile::tempdir().unwrap();
        let a = Subject::parse("203.0.113.9").unwrap();
        request_unban(dir.path(), a).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join(UNBAN_FILE))
            .unwrap()
            .write_all(b"garbage\n")
            .unwrap();
        assert_eq!(take_unban_requests(dir.path()), vec![a]);
        assert!(take_unban_requests(dir.path()).is_empty());
    }

    #[test]
    fn offline_unban_edits_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let saved = Saved {
            bans: vec![
                SavedBan {
                    ip: "203.0.113.9".into(),
                    until: u64::MAX,
                },
                SavedBan {
                    ip: "203.0.113.10".into(),
                    until: u64::MAX,
                },
            ],
            failures: vec![SavedCounter {
                ip: "203.0.113.9".into(),
                user: None,
                at: vec![1],
            }],
        };
        crate::ops::snapshot::write(&path(dir.path()), &saved).unwrap();
        let a = Subject::parse("203.0.113.9").unwrap();
        assert!(unban_offline(dir.path(), a).unwrap());
        assert!(!unban_offline(dir.path(), a).unwrap());
        let left = bans_in_force(dir.path(), 0).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].ip, "203.0.113.10");
        assert!(read(dir.path()).unwrap().unwrap().failures.is_empty());
    }
}
