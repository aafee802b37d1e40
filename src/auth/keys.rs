//! The HMAC key that signs sessions and tokens: read from `auth.secret_file`, or generated once
//! into the state directory (mode 0600) so sessions survive restarts. The key id (`kid`) is
//! derived from the key, so tokens name the key that signed them.
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

pub const GENERATED_NAME: &str = "secret.key";
const MIN_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: cannot read the secret: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: the secret must hold at least {MIN_LEN} bytes")]
    TooShort { path: PathBuf },
    #[error("{path}: cannot create the secret: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub struct Secret {
    pub bytes: Vec<u8>,
    pub kid: String,
}

impl Secret {
    pub fn from_bytes(bytes: Vec<u8>) -> Secret {
        let kid = hex::encode(
            Sha256::digest([b"comfy-warden kid\0".as_slice(), &bytes].concat())
                .get(..6)
                .unwrap_or_default(),
        );
        Secret { bytes, kid }
    }
}

/// Reads `file` if given, else reads or creates `state_dir/secret.key`.
pub fn load_or_create(file: Option<&Path>, state_dir: &Path) -> Result<Secret, KeyError> {
    match file {
        Some(path) => read(path),
        None => {
            let path = state_dir.join(GENERATED_NAME);
            match read(&path) {
                Err(KeyError::Read { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    create(&path)
                }
                other => other,
            }
        }
    }
}

/// Reads a secret file (at least 32 bytes; trailing whitespace ignored).
pub fn read(path: &Path) -> Result<Secret, KeyError> {
    let mut bytes = std::fs::read(path).map_err(|source| KeyError::Read {
        path: path.into(),
        source,
    })?;
    while bytes.last().is_some_and(|b| b.is_ascii_whitespace()) {
        bytes.pop();
    }
    if bytes.len() < MIN_LEN {
        return Err(KeyError::TooShort { path: path.into() });
    }
    Ok(Secret::from_bytes(bytes))
}

fn create(path: &Path) -> Result<Secret, KeyError> {
    use std::os::unix::fs::OpenOptionsExt;
    let err = |source| KeyError::Write {
        path: path.into(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let mut raw = [0u8; 32];
    rand::fill(&mut raw);
    let text = hex::encode(raw);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(err)?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(err)?;
    tracing::info!(path = %path.display(), "generated a new signing secret");
    Ok(Secret::from_bytes(text.into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create(None, dir.path()).unwrap();
        let b = load_or_create(None, dir.path()).unwrap();
        assert_eq!(a.bytes, b.bytes);
        assert_eq!(a.kid, b.kid);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(GENERATED_NAME))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn short_secret_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s");
        std::fs::write(&p, "short\n").unwrap();
        assert!(matches!(
            load_or_create(Some(&p), dir.path()),
            Err(KeyError::TooShort { .. })
        ));
    }
}
