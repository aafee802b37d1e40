//! The configuration loader on arbitrary file contents: warden.toml, users.toml, roles.toml and
//! ip-rules.toml written into a directory of this process and loaded with the real loader (the
//! one a start, a reload and a users-file edit use).
//! Input: the four files as bytes, separated by a line `%%%%` (the seeds are the examples); a
//! missing part leaves that file as in examples/.
//! Asserts: no panic; an error message never repeats a password hash (errors name file, line
//! and key only; the seeds carry a canary hash).
#![no_main]
use comfy_warden::fuzz_api;
use comfy_warden_fuzz::{repo, scratch};
use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;

const FILES: [&str; 4] = ["warden.toml", "users.toml", "roles.toml", "ip-rules.toml"];
/// The marker the seeds carry in place of a value that must never appear in an error.
const CANARY: &str = "CANARYsecret";

fn dir() -> &'static PathBuf {
    static D: OnceLock<PathBuf> = OnceLock::new();
    D.get_or_init(|| scratch("load"))
}

fn defaults() -> &'static [Vec<u8>; 4] {
    static D: OnceLock<[Vec<u8>; 4]> = OnceLock::new();
    D.get_or_init(|| {
        FILES.map(|f| std::fs::read(repo().join("examples").join(f)).expect("example"))
    })
}

fuzz_target!(|data: &[u8]| {
    let dir = dir();
    let mut parts: Vec<&[u8]> = Vec::new();
    let mut rest = data;
    while let Some(i) = rest.windows(5).position(|w| w == b"\n%%%%") {
        parts.push(&rest[..i]);
        rest = rest[i + 5..].strip_prefix(b"\n").unwrap_or(&rest[i + 5..]);
    }
    parts.push(rest);
    for (i, f) in FILES.iter().enumerate() {
        let content = parts.get(i).copied().unwrap_or(&defaults()[i]);
        std::fs::write(dir.join(f), content).expect("write a configuration file");
    }
    if let Err(e) = fuzz_api::load_config(dir) {
        // Only when every canary in the input is a password hash's value (a user or role may
        // be called so, and errors name those).
        let all = count(data, CANARY.as_bytes());
        let as_hash = count(data, format!("password_hash = \"{CANARY}").as_bytes());
        if all > 0 && all == as_hash {
            let msg = e.to_string();
            assert!(
                !msg.contains(CANARY),
                "an error echoes a password hash: {msg}"
            );
        }
    }
});

fn count(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}
