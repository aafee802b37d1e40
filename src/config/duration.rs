//! Human durations in configuration files: "30s", "5m", "12h", "365d".
use serde::{Deserialize, Deserializer};
use std::time::Duration;

/// A duration written as a number and a unit (`ms`, `s`, `m`, `h`, `d`, combinable: "1h30m").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dur(pub Duration);

impl Dur {
    pub const fn secs(s: u64) -> Self {
        Dur(Duration::from_secs(s))
    }
}

pub fn parse(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t.is_empty() || !t.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(format!(
            "invalid duration {text:?}: write a number and a unit, such as 30s, 5m, 12h or 7d"
        ));
    }
    humantime::parse_duration(t).map_err(|e| {
        format!(
            "invalid duration {text:?} ({e}): write a number and a unit, such as 30s, 5m, 12h or 7d"
        )
    })
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse(&s).map(Dur).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse("12h").unwrap(), Duration::from_secs(12 * 3600));
        assert_eq!(parse("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse("365d").unwrap(), Duration::from_secs(365 * 86400));
        assert_eq!(parse("250ms").unwrap(), Duration::from_millis(250));
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "h", "12", "12x", "-5m", "five minutes"] {
            assert!(parse(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
