//! HTTP Basic for scripts. Verification is argon2id like a login; successful verifications are
//! remembered for a short time under a keyed hash of (user, password, stored hash), so a script
//! making 100 requests pays for one hash, a changed password misses the cache at once, and the
//! cache never holds a password or anything that can be checked offline without the key.
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a successful Basic verification is reused.
pub const CACHE_TTL: Duration = Duration::from_secs(60);
const CACHE_MAX: usize = 10_000;

/// `Authorization: Basic base64(user:password)` → (user, password).
pub fn parse(headers: &http::HeaderMap) -> Option<(String, String)> {
    let v = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_owned(), p.to_owned()))
}

pub struct BasicCache {
    key: Vec<u8>,
    entries: Mutex<HashMap<[u8; 32], Instant>>,
}

impl BasicCache {
    pub fn new(secret: &[u8]) -> Self {
        let mut key = b"comfy-warden basic cache\0".to_vec();
        key.extend_from_slice(secret);
        BasicCache {
            key,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn fingerprint(&self, user: &str, password: &str, phc: &str) -> [u8; 32] {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.key) else {
            return [0; 32];
        };
        for part in [
            user.as_bytes(),
            b"\0",
            password.as_bytes(),
            b"\0",
            phc.as_bytes(),
        ] {
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }

    pub fn hit(&self, user: &str, password: &str, phc: &str) -> bool {
        let fp = self.fingerprint(user, password, phc);
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.get(&fp).is_some_and(|exp| *exp > Instant::now())
    }

    pub fn remember(&self, user: &str, password: &str, phc: &str) {
        let fp = self.fingerprint(user, password, phc);
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= CACHE_MAX {
            let now = Instant::now();
            entries.retain(|_, exp| *exp > now);
            if entries.len() >= CACHE_MAX {
                entries.clear();
            }
        }
        entries.insert(fp, Instant::now() + CACHE_TTL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_basic() {
        let mut h = http::HeaderMap::new();
        h.insert(
            "authorization",
            "Basic YWxpY2U6cHc6d2l0aDpjb2xvbnM=".parse().unwrap(),
        );
        assert_eq!(parse(&h), Some(("alice".into(), "pw:with:colons".into())));
        h.insert("authorization", "Bearer x".parse().unwrap());
        assert_eq!(parse(&h), None);
    }

    #[test]
    fn cache_is_keyed_on_everything() {
        let c = BasicCache::new(b"k");
        c.remember("alice", "pw", "$phc1");
        assert!(c.hit("alice", "pw", "$phc1"));
        assert!(!c.hit("alice", "pw2", "$phc1"));
        assert!(!c.hit("alice", "pw", "$phc2"), "a changed hash misses");
        assert!(!BasicCache::new(b"other").hit("alice", "pw", "$phc1"));
    }
}
