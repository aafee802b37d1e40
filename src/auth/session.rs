//! Sessions and tokens: HS256 JWTs (algorithm pinned) with `iss`, `aud`, `exp`, `iat`, `sub`,
//! `jti`, the user's `ver` (token_version) and a `kid` header naming the signing key. The same
//! format serves the browser session cookie and `Authorization: Bearer`. Logout revokes a `jti`
//! in the in-memory [`SessionTable`], which also answers "who is logged in".
use super::keys::Secret;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
}

pub struct Keys {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Keys {
    pub fn new(secret: &Secret) -> Keys {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iat", "sub", "iss", "aud"]);
        validation.leeway = 5;
        Keys {
            kid: secret.kid.clone(),
            encoding: EncodingKey::from_secret(&secret.bytes),
            decoding: DecodingKey::from_secret(&secret.bytes),
            validation,
        }
    }

    pub fn issue(
        &self,
        user: &str,
        version: u64,
        ttl: Duration,
        typ: TokenKind,
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
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.kid.clone());
        Ok((
            jsonwebtoken::encode(&header, &claims, &self.encoding)?,
            claims,
        ))
    }

    /// Checks signature, algorithm, issuer, audience and expiry. Any failure is `None`.
    pub fn verify(&self, token: &str) -> Option<Claims> {
        if token.len() > 4096 {
            return None;
        }
        let header = jsonwebtoken::decode_header(token).ok()?;
        if header.alg != Algorithm::HS256 || header.kid.as_deref() != Some(self.kid.as_str()) {
            return None;
        }
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .ok()
            .map(|d| d.claims)
    }
}

#[derive(Debug, Clone)]
pub struct ActiveSession {
    pub user: String,
    pub created: u64,
    pub expires: u64,
}

/// Sessions issued by this process (for "who is logged in") and revoked token ids.
#[derive(Default)]
pub struct SessionTable {
    active: Mutex<HashMap<String, ActiveSession>>,
    revoked: Mutex<HashMap<String, u64>>,
}

impl SessionTable {
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

    /// Revokes one token until its expiry; returns the number of the user's sessions left.
    pub fn revoke(&self, claims: &Claims) -> usize {
        self.revoked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(claims.jti.clone(), claims.exp);
        let mut a = self.active.lock().unwrap_or_else(|p| p.into_inner());
        a.remove(&claims.jti);
        a.values()
            .filter(|s| s.user == claims.sub && s.expires > now_secs())
            .count()
    }

    pub fn is_revoked(&self, jti: &str) -> bool {
        let r = self.revoked.lock().unwrap_or_else(|p| p.into_inner());
        r.contains_key(jti)
    }

    /// Forgets revocations whose tokens have expired anyway.
    pub fn prune(&self) {
        let now = now_secs();
        self.revoked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, exp| *exp + 60 > now);
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(b: u8) -> Keys {
        Keys::new(&Secret::from_bytes(vec![b; 32]))
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
