//! Paths to secrets as written in the configuration: `${CREDENTIALS_DIRECTORY}` (the directory
//! systemd's `LoadCredential=` fills, different for every service) is expanded, and relative
//! paths are resolved against the configuration directory. Nothing else is expanded.
use std::ffi::OsString;
use std::path::{Path, PathBuf};

pub const CREDENTIALS_VAR: &str = "CREDENTIALS_DIRECTORY";
const TOKEN: &str = "${CREDENTIALS_DIRECTORY}";

/// Expands `${CREDENTIALS_DIRECTORY}` from the process environment and resolves the result
/// against `base` when relative.
pub fn secret_path(raw: &str, base: &Path) -> Result<PathBuf, String> {
    let p = expand_with(raw, |name| std::env::var_os(name))?;
    Ok(if p.is_absolute() { p } else { base.join(p) })
}

/// [`secret_path`]'s expansion with an explicit environment (for tests).
pub fn expand_with(raw: &str, env: impl Fn(&str) -> Option<OsString>) -> Result<PathBuf, String> {
    let mut out = String::new();
    let mut rest = raw;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let Some(tail) = rest[i..].strip_prefix(TOKEN) else {
            return Err(format!(
                "only {TOKEN} is expanded in paths (write other paths literally)"
            ));
        };
        let dir = env(CREDENTIALS_VAR).filter(|v| !v.is_empty()).ok_or_else(|| {
            format!(
                "the path uses {TOKEN}, but that variable is not set (systemd sets it for services with LoadCredential=)"
            )
        })?;
        let dir = dir
            .into_string()
            .map_err(|_| format!("{CREDENTIALS_VAR} is not valid UTF-8"))?;
        out.push_str(dir.trim_end_matches('/'));
        rest = tail;
    }
    out.push_str(rest);
    if out.trim().is_empty() {
        return Err("the path is empty".into());
    }
    Ok(PathBuf::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<OsString> {
        (name == CREDENTIALS_VAR).then(|| OsString::from("/run/credentials/comfy-warden.service/"))
    }

    #[test]
    fn credentials_directory_is_expanded() {
        assert_eq!(
            expand_with("${CREDENTIALS_DIRECTORY}/secret", env).unwrap(),
            PathBuf::from("/run/credentials/comfy-warden.service/secret")
        );
        assert_eq!(
            expand_with("/etc/x/key.pem", env).unwrap(),
            PathBuf::from("/etc/x/key.pem")
        );
    }

    #[test]
    fn unset_or_unknown_variables_are_errors() {
        let e = expand_with("${CREDENTIALS_DIRECTORY}/secret", |_| None).unwrap_err();
        assert!(e.contains("not set"), "{e}");
        let e = expand_with("${HOME}/secret", env).unwrap_err();
        assert!(e.contains("only"), "{e}");
        assert!(expand_with("", env).is_err());
    }

    #[test]
    fn relative_paths_resolve_against_the_base() {
        assert_eq!(
            secret_path("tls/key.pem", Path::new("/etc/comfy-warden")).unwrap(),
            PathBuf::from("/etc/comfy-warden/tls/key.pem")
        );
    }
}
