//! Configuration errors that name the file, the line and the key, and never echo secret values.
use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(Located),
}

/// A message tied to a place in a file: `users.toml line 4, key users.alice.password_hash: ...`.
#[derive(Debug, Clone)]
pub struct Located {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for Located {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, " line {line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ", key `{key}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl ConfigError {
    pub fn at(
        file: &Path,
        line: Option<usize>,
        key: Option<String>,
        message: impl Into<String>,
    ) -> Self {
        ConfigError::Invalid(Located {
            file: file.to_path_buf(),
            line,
            key,
            message: message.into(),
        })
    }

    /// Turns a TOML/serde error into a located one. Only toml's bare message is kept, never its
    /// source snippet: the snippet would print the offending value, which may be a password.
    pub fn from_toml(file: &Path, source: &str, err: &toml::de::Error) -> Self {
        let (line, key) = match err.span() {
            Some(span) => locate(source, span.start),
            None => (None, None),
        };
        Self::at(file, line, key, err.message().trim().to_string())
    }

    /// An error about something whose byte offset in `source` is known (from `toml::Spanned`).
    pub fn at_offset(file: &Path, source: &str, offset: usize, message: impl Into<String>) -> Self {
        let (line, key) = locate(source, offset);
        Self::at(file, line, key, message)
    }
}

/// Finds the 1-based line of `offset` and the dotted key written there (`table.key`), reading
/// the key from the text before `=` on that line and the table from the nearest `[header]` above.
pub fn locate(source: &str, offset: usize) -> (Option<usize>, Option<String>) {
    let offset = offset.min(source.len());
    let before = source.get(..offset).unwrap_or("");
    let line_no = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let line_end = source[line_start..]
        .find('\n')
        .map(|i| line_start + i)
        .unwrap_or(source.len());
    let line = &source[line_start..line_end];
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"').to_string());
    let table = before[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('[') && l.ends_with(']'))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
    let header_here = {
        let t = line.trim();
        (t.starts_with('[') && t.ends_with(']'))
            .then(|| t.trim_matches(|c| c == '[' || c == ']').trim().to_string())
    };
    let full = match (table, key.filter(|k| !k.is_empty() && !k.starts_with('['))) {
        _ if header_here.is_some() => header_here,
        (Some(t), Some(k)) => Some(format!("{t}.{k}")),
        (None, Some(k)) => Some(k),
        (Some(t), None) => Some(t),
        (None, None) => None,
    };
    (Some(line_no), full)
}

#[cfg(test)]
mod tests {
    use super::locate;

    #[test]
    fn finds_line_and_dotted_key() {
        let src = "# c\n[auth]\nsession_ttl = \"12x\"\n";
        let off = src.find("12x").unwrap();
        assert_eq!(locate(src, off), (Some(3), Some("auth.session_ttl".into())));
    }

    #[test]
    fn key_without_table() {
        let src = "allow = [\"x\"]\n";
        assert_eq!(locate(src, 9), (Some(1), Some("allow".into())));
    }
}
