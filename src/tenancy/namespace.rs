//! The per-user namespace: the directory name under ComfyUI's input/output/temp folders that
//! holds one user's files. Stable across restarts, safe as a directory name, never a
//! model-folder or frontend-subfolder name (every namespace starts with `u_`).
use sha2::{Digest, Sha256};

/// `u_<name>` when the name is made of `[a-z0-9_-]`, else `u_` + 16 hex of SHA-256(name).
pub fn derive(user: &str) -> String {
    let simple = !user.is_empty()
        && user.len() <= 60
        && user
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if simple {
        format!("u_{user}")
    } else {
        let digest = Sha256::digest(user.as_bytes());
        format!("u_{}", hex::encode(digest.get(..8).unwrap_or_default()))
    }
}

/// An operator-chosen namespace must have the same shape as a derived one.
pub fn valid_override(ns: &str) -> bool {
    ns.strip_prefix("u_").is_some_and(|rest| {
        !rest.is_empty()
            && rest.len() <= 60
            && rest
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_names_are_readable() {
        assert_eq!(derive("alice"), "u_alice");
        assert_eq!(derive("team-7_x"), "u_team-7_x");
    }

    #[test]
    fn other_names_are_hashed() {
        let ns = derive("Alice@example.org");
        assert!(ns.starts_with("u_") && ns.len() == 18, "{ns}");
        assert_eq!(ns, derive("Alice@example.org"));
        assert_ne!(derive("Alice"), derive("alice"));
        assert!(valid_override(&ns));
    }

    #[test]
    fn overrides_are_checked() {
        assert!(valid_override("u_shared"));
        for bad in ["", "u_", "alice", "u_../x", "u_A", "checkpoints"] {
            assert!(!valid_override(bad), "{bad}");
        }
    }
}
