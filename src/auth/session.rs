//! Sessions and tokens: HS256 JWTs (algorithm pinned) with `iss`, `aud`, `exp`, `iat`, `sub`,
//! `jti`, the user's `ver` (token_version) and a `kid` header naming the signing key. The same
//! format serves the browser session cookie, API tokens and `Authorization: Bearer`. Logout
//! and token deletion revoke a `jti` in the [`SessionTable`] (snapshotted to the state
//! directory), which also answers "who is logged in". Previous keys verify only (rotation).
use super::keys::Secret;
use crate::clock::now_secs;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

pub const ISSUER: &str = "comfy-warden";
pub const AUDIENCE: &str = "comfy-warden";
pub const COOKIE_PLAIN: &str = "comfy_warden_session";
/// On TLS the `__Host-` prefix binds the cookie to this exact origin (Secure, Path=/, no Domain).
pub const COOKIE_TLS: &str = "__Host-comfy_warden_session";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    Session,
    Api,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub iat: u64,
    pub exp: u64,
    pub jti: String,
    pub ver: u64,
    pub typ: TokenKind,
    /// A single sign-on session: the provider groups `role_map` knew at sign-in
    /// (`auth::oidc::session_user` turns them into roles on every request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc: Option<Vec<String>>,
}

pub struct Keys {
    /// Tells this key set's entries in the per-thread verified-token cache from another's.
    id: u64,
    kid: String,
    encoding: EncodingKey,
    /// The current key and the verify-only previous ones, by key id.
    decoding: Vec<(String, DecodingKey)>,
    validation: Validation,
}

impl Keys {
    /// `current` signs; `previous` keys (rotation) are accepted for verification only.
    pub fn new(current: &Secret, previous: &[Secret]) -> Keys {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iat", "sub", "iss", "aud"]);
        validation.leeway = 5;
        let decoding = std::iter::once(current)
            .chain(previous)
            .map(|s| (s.kid.clone(), DecodingKey::from_secret(&s.bytes)))
            .collect();
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Keys {
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            kid: current.kid.clone(),
            encoding: EncodingKey::from_secret(&current.bytes),
            decoding,
            validation,
        }
    }

    fn key_for(&self, token: &str) -> Option<&DecodingKey> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        if header.alg != Algorithm::HS256 {
            return None;
        }
        let kid = header.kid?;
        self.decoding
            .iter()
            .find(|(k, _)| *k == kid)
            .map(|(_, d)| d)
    }

    pub fn issue(
        &self,
        user: &str,
        version: u64,
        ttl: Duration,
        typ: TokenKind,
    ) -> Result<(String, Claims), jsonwebtoken::errors::Error> {
        self.issue_with(user, version, ttl, typ, None)
    }

    /// [`Keys::issue`] for a single sign-on session (`oidc`: its mapped provider groups).
    pub fn issue_with(
        &self,
        user: &str,
        version: u64,
        ttl: Duration,
        typ: TokenKind,
        oidc: Option<Vec<String>>,
    ) -> Result<(String, Claims), jsonwebtoken::errors::Error> {
        let iat = now_secs();
        let claims = Claims {
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            sub: user.into(),
            iat,
            exp: iat + ttl.as_secs().max(1),
            jti: uuid::Uuid::new_v4().simple().to_string(),
            ver: version,
            typ,
            oidc,
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.kid.clone());
        Ok((
            jsonwebtoken::encode(&header, &claims, &self.encoding)?,
            claims,
        ))
    }

    /// Does this token name (in its header) one of comfy-warden's keys?
    pub fn is_ours(&self, token: &str) -> bool {
        self.key_for(token).is_some()
    }

    /// Checks signature, algorithm, key id, issuer, audience and expiry. Any failure is `None`.
    /// A token that passed is remembered by this thread (`verified`), so the next request
    /// with the same cookie costs a keyed hash, a constant-time comparison and the expiry
    /// check instead of base64, JSON and HMAC (revocation and the user's state are checked by
    /// the caller on every request, cached or not).
    pub fn verify(&self, token: &str) -> Option<Claims> {
        if token.len() > 4096 {
            return None;
        }
        let now = now_secs();
        if let Some(claims) = verified::get(self.id, token, now, self.validation.leeway) {
            return Some(claims);
        }
        let key = self.key_for(token)?;
        let claims = jsonwebtoken::decode::<Claims>(token, key, &self.validation)
            .ok()?
            .claims;
        verified::put(self.id, token, &claims);
        Some(claims)
    }
}

/// Per-thread memory of tokens whose signature and claims were verified. Keyed by a keyed
/// hash (random keys per thread) of the token; a hit also compares the whole token in
/// constant time and re-checks the expiry. Only verified tokens enter, so it cannot be
/// filled with junk; when full it is emptied.
mod verified {
    use super::Claims;
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::hash::BuildHasher;
    use subtle::ConstantTimeEq;

    const CAPACITY: usize = 4096;

    struct Entry {
        keys: u64,
        token: Box<str>,
        claims: Claims,
    }

    #[derive(Default)]
    struct Cache {
        hasher: std::collections::hash_map::RandomState,
        entries: HashMap<u64, Entry>,
    }

    thread_local! {
        static CACHE: RefCell<Cache> = RefCell::new(Cache::default());
    }

    pub(super) fn get(keys: u64, token: &str, now: u64, leeway: u64) -> Option<Claims> {
        CACHE.with(|c| {
            let mut c = c.borrow_mut();
            let h = c.hasher.hash_one(token);
            let e = c.entries.get(&h)?;
            if e.keys != keys || !bool::from(e.token.as_bytes().ct_eq(token.as_bytes())) {
                return None;
            }
            if e.claims.exp.saturating_add(leeway) < now {
                c.entries.remove(&h);
                return None;
            }
            Some(e.claims.clone())
        })
    }

    pub(super) fn put(keys: u64, token: &str, claims: &Claims) {
        CACHE.with(|c| {
            let mut c = c.borrow_mut();
            if c.entries.len() >= CAPACITY {
                c.entries.clear();
            }
            let h = c.hasher.hash_one(token);
            c.entries.insert(
                h,
                Entry {
                    keys,
                    token: token.into(),
                    claims: claims.clone(),
                },
            );
        })
    }
}

#[derive(Debug, Clone)]
pub struct ActiveSession {
    pub user: String,
    pub created: u64,
    pub expires: u64,
}

/// An API token as its owner sees it in the list (the token itself is shown once, at issue).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ApiToken {
    pub jti: String,
    pub user: String,
    pub label: String,
    pub created: u64,
    pub expires: u64,
}

#[derive(Default, Serialize, Deserialize)]
struct Saved {
    revoked: HashMap<String, u64>,
    api_tokens: HashMap<String, ApiToken>,
}

pub const TOKENS_FILE: &str = "tokens.json";

/// Sessions issued by this process (for "who is logged in"), the API tokens issued (for their
/// owners' lists) and revoked token ids. Revocations and API tokens are snapshotted to
/// `tokens.json` in the state directory (pruned when they expire), so a logout or a deleted
/// token stays revoked across restarts.
#[derive(Default)]
pub struct SessionTable {
    path: Option<std::path::PathBuf>,
    active: Mutex<HashMap<String, ActiveSession>>,
    saved: Mutex<Saved>,
    dirty: std::sync::atomic::AtomicBool,
}

impl SessionTable {
    /// Restores revocations and API tokens from `state_dir`.
    pub fn open(state_dir: &std::path::Path) -> SessionTable {
        let path = state_dir.join(TOKENS_FILE);
        let saved = crate::ops::snapshot::read(&path).unwrap_or_default();
        SessionTable {
            path: Some(path),
            saved: Mutex::new(saved),
            ..SessionTable::default()
        }
    }

    fn saved(&self) -> std::sync::MutexGuard<'_, Saved> {
        self.saved.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn touch(&self) {
        self.dirty.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn started(&self, claims: &Claims) {
        let mut a = self.active.lock().unwrap_or_else(|p| p.into_inner());
        a.retain(|_, s| s.expires > now_secs());
        a.insert(
            claims.jti.clone(),
            ActiveSession {
                user: claims.sub.clone(),
                created: claims.iat,
                expires: claims.exp,
            },
        );
    }

    /// Remembers an issued API token for its owner's list.
    pub fn issued(&self, token: ApiToken) {
        self.saved().api_tokens.insert(token.jti.clone(), token);
        self.touch();
    }

    /// The live API tokens of `user`, newest first.
    pub fn api_tokens(&self, user: &str) -> Vec<ApiToken> {
        let now = now_secs();
        let s = self.saved();
        let mut v: Vec<ApiToken> = s
            .api_tokens
            .values()
            .filter(|t| t.user == user && t.expires > now && !s.revoked.contains_key(&t.jti))
            .cloned()
            .collect();
        v.sort_by_key(|t| std::cmp::Reverse(t.created));
        v
    }

    pub fn api_token(&self, jti: &str) -> Option<ApiToken> {
        self.saved().api_tokens.get(jti).cloned()
    }

    /// Revokes a token id until `expires`.
    pub fn revoke_id(&self, jti: &str, expires: u64) {
        self.saved().revoked.insert(jti.to_owned(), expires);
        self.active
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(jti);
        self.touch();
    }

    /// Revokes one token until its expiry; returns the number of the user's sessions left.
    pub fn revoke(&self, claims: &Claims) -> usize {
        self.revoke_id(&claims.jti, claims.exp);
        let a = self.active.lock().unwrap_or_else(|p| p.into_inner());
        a.values()
            .filter(|s| s.user == claims.sub && s.expires > now_secs())
            .count()
    }

    pub fn is_revoked(&self, jti: &str) -> bool {
        self.saved().revoked.contains_key(jti)
    }

    /// Forgets revocations and tokens that have expired anyway.
    pub fn prune(&self) {
        let now = now_secs();
        {
            let mut s = self.saved();
            let before = s.revoked.len() + s.api_tokens.len();
            s.revoked.retain(|_, exp| *exp + 60 > now);
            s.api_tokens.retain(|_, t| t.expires + 60 > now);
            if s.revoked.len() + s.api_tokens.len() != before {
                self.touch();
            }
        }
        self.active
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, s| s.expires > now);
    }

    pub fn active(&self) -> Vec<ActiveSession> {
        let now = now_secs();
        let a = self.active.lock().unwrap_or_else(|p| p.into_inner());
        a.values().filter(|s| s.expires > now).cloned().collect()
    }

    /// Writes `tokens.json` if anything changed since the last time.
    pub fn save_if_dirty(&self) -> std::io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        if !self.dirty.swap(false, std::sync::atomic::Ordering::Relaxed) {
            return Ok(());
        }
        let copy = {
            let s = self.saved();
            Saved {
                revoked: s.revoked.clone(),
                api_tokens: s.api_tokens.clone(),
            }
        };
        crate::ops::snapshot::write(path, &copy).inspect_err(|_| self.touch())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(b: u8) -> Keys {
        Keys::new(&Secret::from_bytes(vec![b; 32]), &[])
    }

    #[test]
    fn previous_keys_verify_but_do_not_sign() {
        let old = Secret::from_bytes(vec![1; 32]);
        let new = Secret::from_bytes(vec![2; 32]);
        let (t_old, _) = Keys::new(&old, &[])
            .issue("a", 1, Duration::from_secs(60), TokenKind::Api)
            .unwrap();
        let rotated = Keys::new(&new, std::slice::from_ref(&old));
        assert!(
            rotated.verify(&t_old).is_some(),
            "old tokens stay valid while the old key is listed"
        );
        let (t_new, _) = rotated
            .issue("a", 1, Duration::from_secs(60), TokenKind::Api)
            .unwrap();
        assert!(
            Keys::new(&old, &[]).verify(&t_new).is_none(),
            "new tokens are signed with the new key"
        );
        assert!(
            Keys::new(&new, &[]).verify(&t_old).is_none(),
            "dropping the old key revokes its tokens"
        );
    }

    #[test]
    fn revocations_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let k = keys(1);
        let (_, c) = k
            .issue("a", 1, Duration::from_secs(600), TokenKind::Session)
            .unwrap();
        let t = SessionTable::open(dir.path());
        t.revoke(&c);
        t.save_if_dirty().unwrap();
        assert!(SessionTable::open(dir.path()).is_revoked(&c.jti));
    }

    #[test]
    fn round_trip() {
        let k = keys(1);
        let (t, c) = k
            .issue("alice", 3, Duration::from_secs(60), TokenKind::Session)
            .unwrap();
        let v = k.verify(&t).unwrap();
        assert_eq!((v.sub.as_str(), v.ver, v.jti), ("alice", 3, c.jti));
    }

    #[test]
    fn foreign_key_and_tampering_refused() {
        let (t, _) = keys(1)
            .issue("alice", 1, Duration::from_secs(60), TokenKind::Session)
            .unwrap();
        assert!(keys(2).verify(&t).is_none());
        let (head, sig) = t.rsplit_once('.').unwrap();
        let flipped = if sig.starts_with('A') {
            sig.replacen('A', "B", 1)
        } else {
            format!("A{}", &sig[1..])
        };
        assert!(keys(1).verify(&format!("{head}.{flipped}")).is_none());
    }

    #[test]
    fn remembered_tokens_are_matched_whole_and_expire() {
        let k = keys(1);
        let (t, c) = k
            .issue("alice", 1, Duration::from_secs(60), TokenKind::Session)
            .unwrap();
        assert_eq!(k.verify(&t).unwrap().jti, c.jti);
        // Now remembered by this thread: the same token again, then tampered copies.
        assert_eq!(k.verify(&t).unwrap().jti, c.jti);
        let (head, sig) = t.rsplit_once('.').unwrap();
        let last = if sig.ends_with('A') { "B" } else { "A" };
        let tampered = format!("{head}.{}{last}", &sig[..sig.len() - 1]);
        assert!(k.verify(&tampered).is_none());
        assert!(k.verify(&format!("{t}x")).is_none());
        assert!(k.verify(&t[..t.len() - 1]).is_none());
        // Another key set does not see this one's memory.
        assert!(keys(2).verify(&t).is_none());

        // Expiry is checked on every hit (with the validation's leeway).
        let mut old = c.clone();
        old.exp = 1000;
        verified::put(k.id, "tok", &old);
        assert!(verified::get(k.id, "tok", 1004, 5).is_some());
        assert!(verified::get(k.id + 1, "tok", 1004, 5).is_none());
        assert!(verified::get(k.id, "tok", 1006, 5).is_none());
        assert!(
            verified::get(k.id, "tok", 1000, 5).is_none(),
            "an expired entry is dropped"
        );
    }

    #[test]
    fn alg_none_refused() {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let k = keys(1);
        let header = b64.encode(format!(r#"{{"alg":"none","typ":"JWT","kid":"{}"}}"#, k.kid));
        let body = b64.encode(format!(r#"{{"iss":"comfy-warden","aud":"comfy-warden","sub":"admin","iat":1,"exp":{},"jti":"x","ver":1,"typ":"session"}}"#, now_secs() + 600));
        assert!(k.verify(&format!("{header}.{body}.")).is_none());
    }

    #[test]
    fn expired_refused() {
        let k = keys(1);
        let mut c = k
            .issue("a", 1, Duration::from_secs(60), TokenKind::Session)
            .unwrap()
            .1;
        c.exp = now_secs() - 120;
        c.iat = c.exp - 60;
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some(k.kid.clone());
        let t = jsonwebtoken::encode(&h, &c, &k.encoding).unwrap();
        assert!(k.verify(&t).is_none());
    }

    #[test]
    fn revocation() {
        let k = keys(1);
        let (_, c) = k
            .issue("a", 1, Duration::from_secs(60), TokenKind::Session)
            .unwrap();
        let t = SessionTable::default();
        t.started(&c);
        assert_eq!(t.active().len(), 1);
        assert_eq!(t.revoke(&c), 0);
        assert!(t.is_revoked(&c.jti));
        assert!(t.active().is_empty());
    }
}
