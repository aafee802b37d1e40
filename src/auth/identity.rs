//! Which user a request belongs to. Sources, in order: `Authorization: Bearer <jwt>`, then the
//! session cookie. A credential that is present but invalid never falls back to another source.
//! The token must still match the live configuration: the user exists, is enabled, and its
//! `token_version` equals the token's `ver`; the token id is not revoked.
use super::session::{COOKIE_PLAIN, COOKIE_TLS, Claims, Keys, SessionTable};
use crate::config::{Snapshot, User};
use http::HeaderMap;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Cookie,
    Bearer,
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Source::Cookie => "cookie",
            Source::Bearer => "bearer",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Identity {
    pub user: Arc<User>,
    pub source: Source,
    pub claims: Claims,
}

/// The session cookie's name for this transport.
pub fn cookie_name(tls: bool) -> &'static str {
    if tls { COOKIE_TLS } else { COOKIE_PLAIN }
}

/// The value of the session cookie, if the request carries one.
pub fn session_cookie(headers: &HeaderMap, tls: bool) -> Option<String> {
    let name = cookie_name(tls);
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| cookie::Cookie::split_parse(v.to_owned()))
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_owned())
}

pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

/// Checks a token against the keys, the revocation list and the live user table.
pub fn check_token(keys: &Keys, sessions: &SessionTable, snap: &Snapshot, token: &str) -> Option<(Arc<User>, Claims)> {
    let claims = keys.verify(token)?;
    if sessions.is_revoked(&claims.jti) {
        return None;
    }
    let user = snap.user(&claims.sub)?;
    if user.disabled || user.token_version != claims.ver {
        return None;
    }
    Some((user.clone(), claims))
}

/// Still valid under the (possibly reloaded) snapshot? Used by long-lived connections.
pub fn still_valid(id: &Identity, snap: &Snapshot, sessions: &SessionTable) -> bool {
    !sessions.is_revoked(&id.claims.jti)
        && snap.user(&id.user.name).is_some_and(|u| !u.disabled && u.token_version == id.claims.ver)
}

pub fn authenticate(keys: &Keys, sessions: &SessionTable, snap: &Snapshot, headers: &HeaderMap, tls: bool) -> Option<Identity> {
    if headers.contains_key(http::header::AUTHORIZATION) {
        let token = bearer(headers)?;
        let (user, claims) = check_token(keys, sessions, snap, token)?;
        return Some(Identity { user, source: Source::Bearer, claims });
    }
    let token = session_cookie(headers, tls)?;
    let (user, claims) = check_token(keys, sessions, snap, &token)?;
    Some(Identity { user, source: Source::Cookie, claims })
}
