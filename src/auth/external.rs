//! Identities vouched for by something in front of comfy-warden: an identity provider's JWT
//! (verified against the configured JWKS, or the `[auth.oidc]` provider's discovered keys: asymmetric algorithms only, `iss`, `aud`, `exp`) or a
//! gateway's header (believed only from the configured networks). The user name taken from the
//! claim or header is validated like any user name; a name users.toml lists gets that user's
//! roles (and a disabled user stays out); an unlisted one gets the source's `default_roles`, or
//! is refused when none are configured.
use crate::config::identity::{DefaultRoles, ExternalJwt, TrustedHeader};
use crate::config::{Snapshot, User, valid_name};
use crate::guard::client_ip::in_nets;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use std::net::IpAddr;
use std::sync::Arc;

/// The user for a name a source vouches for (see the module comment).
pub fn user_for(snap: &Snapshot, name: &str, default: Option<&DefaultRoles>) -> Option<Arc<User>> {
    if !valid_name(name) {
        return None;
    }
    if let Some(u) = snap.user(name) {
        return (!u.disabled).then(|| u.clone());
    }
    let default = default?;
    let namespace = crate::tenancy::namespace::derive(name);
    if snap.namespace_taken(&namespace) {
        // A configured user already owns this directory: never share it.
        return None;
    }
    Some(Arc::new(User {
        name: Arc::from(name),
        source: crate::config::UserSource::External,
        password_hash: None,
        roles: default.roles.clone(),
        permissions: default.permissions,
        disabled: false,
        token_version: 0,
        namespace,
        // An identity provider or gateway does its own second factor.
        totp_secret: None,
        require_totp: false,
    }))
}

/// Verifies an identity provider's token; returns the user name and the expiry.
pub fn verify(cfg: &ExternalJwt, jwks: &JwkSet, token: &str) -> Option<(String, u64)> {
    if token.len() > 16 * 1024 {
        return None;
    }
    let header = jsonwebtoken::decode_header(token).ok()?;
    if !cfg.algorithms.contains(&header.alg) {
        return None;
    }
    let jwk = match &header.kid {
        Some(kid) => jwks.find(kid)?,
        None if jwks.keys.len() == 1 => jwks.keys.first()?,
        None => return None,
    };
    let key = DecodingKey::from_jwk(jwk).ok()?;
    let mut v = Validation::new(header.alg);
    v.algorithms = vec![header.alg];
    v.set_issuer(&[&cfg.issuer]);
    v.set_audience(&[&cfg.audience]);
    v.set_required_spec_claims(&["exp", "iss", "aud"]);
    v.leeway = 30;
    let data = jsonwebtoken::decode::<serde_json::Value>(token, &key, &v).ok()?;
    let name = data.claims.get(&cfg.user_claim)?.as_str()?.to_owned();
    let exp = data.claims.get("exp")?.as_u64()?;
    Some((name, exp))
}

/// The user named by the trusted header, if the connection comes from a trusted gateway.
pub fn from_header(
    snap: &Snapshot,
    cfg: &TrustedHeader,
    headers: &http::HeaderMap,
    peer: IpAddr,
) -> Option<Option<Arc<User>>> {
    let value = headers.get(&cfg.name)?;
    if !in_nets(peer, &cfg.from) {
        return None;
    }
    Some(
        value
            .to_str()
            .ok()
            .and_then(|v| user_for(snap, v.trim(), cfg.default.as_ref())),
    )
}
