//! Which user a request belongs to. Sources: `Authorization: Bearer <jwt>` (comfy-warden's own
//! sessions and API tokens, else an identity provider's token when `[auth.external_jwt]` is
//! set), `Authorization: Basic` (when `auth.basic`), a trusted gateway's header (only from its
//! networks), else the session cookie. A credential that is present but invalid
//! never falls back to another source. Basic passwords go through the lockout like a login
//! (checked before hashing, failures counted per user and address); an invalid Bearer token or
//! cookie is not a password guess and is not counted. A Basic password may also be one of the
//! user's API tokens (`user:token`, for clients that only take a name and a password): a valid,
//! unrevoked API token of that very user is accepted without hashing and without touching the
//! lockout; anything else goes the password way.
//! The token must still match the live configuration: the user exists, is enabled, and its
//! `token_version` equals the token's `ver`; the token id is not revoked.
use super::basic;
use super::basic::BasicCache;
use super::password::Passwords;
use super::session::{COOKIE_PLAIN, COOKIE_TLS, Claims, Keys, SessionTable};
use crate::config::{Snapshot, User};
use crate::guard::lockout::Lockout;
use crate::reject::Reject;
use http::HeaderMap;
use std::net::IpAddr;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Cookie,
    Bearer,
    Basic,
    /// An identity provider's JWT.
    External,
    /// A trusted gateway's header.
    Header,
}

impl Source {
    /// Does a browser attach this identity by itself, to requests other sites make it send?
    /// The session cookie, cached HTTP Basic credentials and a gateway's header identity (the
    /// gateway sets it from its own cookie) are; Bearer tokens and identity-provider JWTs are
    /// only sent by code that holds them.
    pub fn browser_attached(self) -> bool {
        match self {
            Source::Cookie | Source::Basic | Source::Header => true,
            Source::Bearer | Source::External => false,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Source::Cookie => "cookie",
            Source::Bearer => "bearer",
            Source::Basic => "basic",
            Source::External => "external_jwt",
            Source::Header => "trusted_header",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Identity {
    pub user: Arc<User>,
    pub source: Source,
    /// The session or token, for cookie and Bearer identities.
    pub claims: Option<Claims>,
}

/// The session cookie's name for this transport.
pub fn cookie_name(tls: bool) -> &'static str {
    if tls { COOKIE_TLS } else { COOKIE_PLAIN }
}

/// The value of the session cookie, if the request carries one.
pub fn session_cookie(headers: &HeaderMap, tls: bool) -> Option<String> {
    cookie_value(headers, cookie_name(tls))
}

/// The value of the cookie `name`, if the request carries one.
pub fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
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
pub fn check_token(
    keys: &Keys,
    sessions: &SessionTable,
    snap: &Snapshot,
    token: &str,
) -> Option<(Arc<User>, Claims)> {
    let claims = keys.verify(token)?;
    if sessions.is_revoked(&claims.jti) {
        return None;
    }
    let user = match &claims.oidc {
        Some(groups) => super::oidc::session_user(snap, &claims.sub, groups).ok()?,
        None => snap.user(&claims.sub)?.clone(),
    };
    if user.disabled || user.token_version != claims.ver {
        return None;
    }
    // A role requires a second factor the user has not set up yet: nothing until they do.
    if super::second_factor::missing_required(&snap.files.state_dir, &user) {
        return None;
    }
    Some((user, claims))
}

/// Still valid under the (possibly reloaded) snapshot? Used by long-lived connections.
pub fn still_valid(id: &Identity, snap: &Snapshot, sessions: &SessionTable) -> bool {
    let vouched = match id.source {
        Source::External => snap.external_jwt.as_ref().map(|e| e.default.as_ref()),
        Source::Header => snap.trusted_header.as_ref().map(|h| h.default.as_ref()),
        _ => None,
    };
    if matches!(id.source, Source::External | Source::Header) {
        // The source must still be configured and still vouch for this user with the same rights.
        return vouched.is_some_and(|default| {
            super::external::user_for(snap, &id.user.name, default).is_some_and(|u| {
                u.permissions == id.user.permissions && u.token_version == id.user.token_version
            })
        });
    }
    if let Some(c) = &id.claims
        && let Some(groups) = &c.oidc
    {
        // A single sign-on session: the live configuration must still give the same rights.
        return !sessions.is_revoked(&c.jti)
            && super::oidc::session_user(snap, &id.user.name, groups)
                .is_ok_and(|u| u.permissions == id.user.permissions && u.token_version == c.ver);
    }
    let Some(user) = snap.user(&id.user.name) else {
        return false;
    };
    if user.disabled || user.token_version != id.user.token_version {
        return false;
    }
    // A role requires a second factor the user no longer has (reset): nothing until they do.
    if super::second_factor::missing_required(&snap.files.state_dir, user) {
        return false;
    }
    match &id.claims {
        Some(c) => !sessions.is_revoked(&c.jti) && c.ver == user.token_version,
        None => user.password_hash == id.user.password_hash,
    }
}

/// What checking a credential needs of the running daemon (borrowed from it by the caller).
#[derive(Clone, Copy)]
pub struct Verifiers<'a> {
    pub keys: &'a Keys,
    pub sessions: &'a SessionTable,
    pub passwords: &'a Passwords,
    pub basic_cache: &'a BasicCache,
    pub lockout: &'a Lockout,
    /// The single sign-on provider's discovered keys (Bearer tokens may use them).
    pub oidc: &'a super::oidc::Oidc,
}

/// The identity a Bearer token proves: comfy-warden's own token when its key id is one of
/// ours, else an identity provider's token when one is configured.
async fn bearer_identity(app: Verifiers<'_>, snap: &Snapshot, token: &str) -> Option<Identity> {
    if app.keys.is_ours(token) {
        return check_token(app.keys, app.sessions, snap, token).map(|(user, claims)| Identity {
            user,
            source: Source::Bearer,
            claims: Some(claims),
        });
    }
    let ext = snap.external_jwt.as_ref()?;
    let keys = match &ext.jwks {
        Some(k) => k.clone(),
        None => {
            super::oidc::keys_for_token(&app.oidc.provider, snap.oidc.as_deref()?, token).await?
        }
    };
    let (name, _exp) = super::external::verify(ext, &keys, token)?;
    let user = super::external::user_for(snap, &name, ext.default.as_ref())?;
    Some(Identity {
        user,
        source: Source::External,
        claims: None,
    })
}

/// The identity a `?token=` proves (auth/query_token.rs): one of comfy-warden's own sessions
/// or API tokens, checked as a Bearer token is; nothing else.
pub fn query_token_identity(app: Verifiers<'_>, snap: &Snapshot, token: &str) -> Option<Identity> {
    if !app.keys.is_ours(token) {
        return None;
    }
    check_token(app.keys, app.sessions, snap, token).map(|(user, claims)| Identity {
        user,
        source: Source::Bearer,
        claims: Some(claims),
    })
}

/// `peer` is the socket peer (a trusted gateway's own address), `client_ip` the resolved client.
pub async fn authenticate(
    app: Verifiers<'_>,
    snap: &Snapshot,
    headers: &HeaderMap,
    tls: bool,
    peer: IpAddr,
    client_ip: IpAddr,
) -> Result<Option<Identity>, Reject> {
    if headers.contains_key(http::header::AUTHORIZATION) {
        if let Some(token) = bearer(headers) {
            return Ok(bearer_identity(app, snap, token).await);
        }
        if snap.auth.basic
            && let Some((name, password)) = basic::parse(headers)
        {
            return basic_identity(app, snap, &name, &password, client_ip).await;
        }
        return Ok(None);
    }
    if let Some(cfg) = &snap.trusted_header
        && let Some(user) = super::external::from_header(
            snap,
            cfg,
            headers,
            crate::guard::client_ip::normalise(peer),
        )
    {
        return Ok(user.map(|user| Identity {
            user,
            source: Source::Header,
            claims: None,
        }));
    }
    let Some(token) = session_cookie(headers, tls) else {
        return Ok(None);
    };
    Ok(
        check_token(app.keys, app.sessions, snap, &token).map(|(user, claims)| Identity {
            user,
            source: Source::Cookie,
            claims: Some(claims),
        }),
    )
}

/// A Basic password that is a valid API token (not a session) of the user named: signature,
/// expiry, revocation and `token_version` checked by [`check_token`], the name compared in
/// constant time.
fn api_token_as_password(
    app: Verifiers<'_>,
    snap: &Snapshot,
    name: &str,
    token: &str,
) -> Option<Identity> {
    if !app.keys.is_ours(token) {
        return None;
    }
    let (user, claims) = check_token(app.keys, app.sessions, snap, token)?;
    let same_user: bool =
        subtle::ConstantTimeEq::ct_eq(claims.sub.as_bytes(), name.as_bytes()).into();
    (same_user && claims.typ == super::session::TokenKind::Api).then_some(Identity {
        user,
        source: Source::Basic,
        claims: Some(claims),
    })
}

async fn basic_identity(
    app: Verifiers<'_>,
    snap: &Snapshot,
    name: &str,
    password: &str,
    client_ip: IpAddr,
) -> Result<Option<Identity>, Reject> {
    if let Some(id) = api_token_as_password(app, snap, name, password) {
        return Ok(Some(id));
    }
    let user = snap.user(name).cloned();
    let stored: Option<String> = user.as_ref().and_then(|u| u.password_hash.clone());
    if let (Some(u), Some(phc)) = (&user, stored.as_deref())
        && !u.disabled
        && app.basic_cache.hit(name, password, phc)
    {
        if super::second_factor::beyond_password(&snap.files.state_dir, u) {
            return Err(Reject::BasicNeedsToken);
        }
        return Ok(Some(Identity {
            user: u.clone(),
            source: Source::Basic,
            claims: None,
        }));
    }
    if let Some(wait) = app.lockout.check(&snap.lockout, name, client_ip) {
        tracing::debug!(client_ip = %client_ip, wait, "HTTP Basic refused: locked out");
        return Err(Reject::Locked { retry_after: wait });
    }
    if password.len() <= super::password::MAX_LEN {
        let Some(wait) = app.lockout.spacing.reserve(client_ip) else {
            tracing::debug!(client_ip = %client_ip, "HTTP Basic refused: too many password checks from this address");
            return Err(Reject::Busy);
        };
        tokio::time::sleep(wait).await;
    }
    let ok = password.len() <= super::password::MAX_LEN
        && app
            .passwords
            .verify(stored.as_deref(), password)
            .await
            .map_err(|_| Reject::Busy)?;
    match user {
        Some(u) if ok && !u.disabled => {
            if super::second_factor::beyond_password(&snap.files.state_dir, &u) {
                // Neither a success (the counters stay) nor a guess: the password was right.
                tracing::info!(target: "audit", event = "basic_refused", user = %u.name, client_ip = %client_ip, reason = "second factor", "HTTP Basic refused: the user has a second factor");
                return Err(Reject::BasicNeedsToken);
            }
            if let Some(phc) = stored.as_deref() {
                app.basic_cache.remember(name, password, phc);
            }
            app.lockout.success(name, client_ip);
            Ok(Some(Identity {
                user: u,
                source: Source::Basic,
                claims: None,
            }))
        }
        _ => {
            tracing::warn!(target: "audit", event = "basic_failed", client_ip = %client_ip, "failed HTTP Basic sign-in");
            crate::guard::lockout::record_failure(app.lockout, snap, name, client_ip);
            Ok(None)
        }
    }
}
