//! `comfy-warden.pid` in the state directory: written when the daemon starts serving, removed
//! when it stops, so offline commands (`unban`) can tell whether a daemon is running there.
use std::path::{Path, PathBuf};

pub const FILE_NAME: &str = "comfy-warden.pid";

fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE_NAME)
}

pub fn write(state_dir: &Path) -> std::io::Result<()> {
    crate::ops::snapshot::write(&path(state_dir), &std::process::id())
}

/// Removes the pid file if it is still ours.
pub fn remove(state_dir: &Path) {
    let p = path(state_dir);
    let ours = std::fs::read_to_string(&p)
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        == Some(std::process::id());
    if ours {
        let _ = std::fs::remove_file(p);
    }
}

/// The pid of a comfy-warden daemon running on this state directory, if any (a stale file
/// left by a killed daemon, or a pid reused by another program, does not count).
pub fn running(state_dir: &Path) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(path(state_dir))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    comm.trim().starts_with("comfy-warden").then_some(pid)
}
