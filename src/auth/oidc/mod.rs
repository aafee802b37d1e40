//! OpenID Connect browser sign-in (`[auth.oidc]`): the runtime state (sign-ins under way, the
//! provider's cached discovery document and keys) and the rule that turns a verified ID token
//! into a comfy-warden user.
//!
//! The user name is the `user_claim` value, refused (never rewritten) when it is not a valid
//! user name. Roles: a user listed in users.toml keeps its roles (a disabled one stays out),
//! plus the roles `role_map` gives the provider groups it is in (`roles_claim`), plus
//! `default_roles`. An unlisted name gets a namespace only if no configured user owns it (as
//! for other external identities). No role at all: refused.
//!
//! The session cookie records the mapped groups (`Claims::oidc`), and every request applies the
//! live configuration to them, so a reload that removes a mapping, or `[auth.oidc]` itself,
//! takes effect at once.
pub mod flow;
pub mod http;
pub mod provider;
pub mod token;

use crate::auth::roles::PermSet;
use crate::config::oidc::Oidc as OidcConfig;
use crate::config::{Snapshot, User, UserSource, valid_name};
use serde_json::Value;
use std::sync::Arc;

/// The most groups read from one ID token.
pub const MAX_GROUPS: usize = 256;

#[derive(Default)]
pub struct Oidc {
    pub flows: flow::Flows,
    pub provider: provider::ProviderCache,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `[auth.oidc]` is not configured (any more).
    NotConfigured,
    /// The claim is missing or not a valid user name.
    InvalidName,
    /// users.toml lists the user as disabled.
    Disabled,
    /// An unlisted name whose directory belongs to a configured user.
    NamespaceTaken,
    /// Neither users.toml, nor a mapped group, nor `default_roles` gives a role.
    NoRole,
    /// The account signs in with comfy-warden's second factor (it has one, or a role requires
    /// one), which single sign-on does not ask for: fail closed, use the sign-in form.
    SecondFactor,
}

impl Refusal {
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::NotConfigured => "single sign-on is not configured",
            Refusal::InvalidName => "the user claim is not a valid user name",
            Refusal::Disabled => "the user is disabled",
            Refusal::NamespaceTaken => "the name belongs to a configured user",
            Refusal::NoRole => "no role",
            Refusal::SecondFactor => "the account signs in with comfy-warden's second factor",
        }
    }
}

/// The provider groups of the ID token that `role_map` knows (sorted, without repeats).
pub fn mapped_groups(cfg: &OidcConfig, claims: &serde_json::Map<String, Value>) -> Vec<String> {
    let Some(claim) = cfg.roles_claim.as_deref().and_then(|c| claims.get(c)) else {
        return Vec::new();
    };
    let values: Vec<&str> = match claim {
        Value::String(s) => vec![s.as_str()],
        Value::Array(a) => a
            .iter()
            .take(MAX_GROUPS)
            .filter_map(Value::as_str)
            .collect(),
        _ => Vec::new(),
    };
    let mut groups: Vec<String> = values
        .into_iter()
        .filter(|g| cfg.role_map.contains_key(*g))
        .map(str::to_owned)
        .collect();
    groups.sort();
    groups.dedup();
    groups
}

/// The user name an ID token names, if it is a valid one.
pub fn user_name(
    cfg: &OidcConfig,
    claims: &serde_json::Map<String, Value>,
) -> Result<String, Refusal> {
    claims
        .get(&cfg.user_claim)
        .and_then(Value::as_str)
        .filter(|n| valid_name(n))
        .map(str::to_owned)
        .ok_or(Refusal::InvalidName)
}

/// The user a single sign-on session of `name` with `groups` is, under the live configuration.
pub fn session_user(snap: &Snapshot, name: &str, groups: &[String]) -> Result<Arc<User>, Refusal> {
    let cfg = snap.oidc.as_ref().ok_or(Refusal::NotConfigured)?;
    if !valid_name(name) {
        return Err(Refusal::InvalidName);
    }
    let mut roles: Vec<String> = Vec::new();
    let mut add = |r: &str| {
        if !roles.iter().any(|x| x == r) {
            roles.push(r.to_owned());
        }
    };
    let listed = snap.user(name);
    if let Some(u) = listed {
        if u.disabled {
            return Err(Refusal::Disabled);
        }
        u.roles.iter().for_each(|r| add(r));
    }
    groups
        .iter()
        .filter_map(|g| cfg.role_map.get(g))
        .for_each(|r| add(r));
    cfg.default_roles.iter().for_each(|r| add(r));
    let permissions = roles
        .iter()
        .filter_map(|r| snap.roles.get(r))
        .fold(PermSet::EMPTY, PermSet::union);
    if roles.is_empty() || permissions == PermSet::EMPTY {
        return Err(Refusal::NoRole);
    }
    // comfy-warden's second factor is asked for only by its own sign-in form: an account that
    // has one, or whose roles require one, may not get in around it through the provider.
    let requires = listed.is_some_and(|u| u.require_totp || u.totp_secret.is_some())
        || roles.iter().any(|r| snap.roles.requires_totp(r))
        || !matches!(
            super::second_factor::load(&snap.files.state_dir, name),
            Ok(None) | Ok(Some(super::second_factor::Record { secret: None, .. }))
        );
    if requires {
        return Err(Refusal::SecondFactor);
    }
    let user = match listed {
        Some(u) => User {
            name: u.name.clone(),
            source: u.source,
            password_hash: u.password_hash.clone(),
            roles,
            permissions: permissions.union(u.permissions),
            disabled: false,
            token_version: u.token_version,
            namespace: u.namespace.clone(),
            // The provider vouches for the sign-in, its own second factor included.
            totp_secret: None,
            require_totp: false,
        },
        None => {
            let namespace = crate::tenancy::namespace::derive(name);
            if snap.namespace_taken(&namespace) {
                return Err(Refusal::NamespaceTaken);
            }
            User {
                name: Arc::from(name),
                source: UserSource::External,
                password_hash: None,
                roles,
                permissions,
                disabled: false,
                token_version: 0,
                namespace,
                totp_secret: None,
                require_totp: false,
            }
        }
    };
    Ok(Arc::new(user))
}

/// The provider's keys for a Bearer token of `[auth.external_jwt]` without a `jwks_file`: the
/// cached set, fetched again (rate-limited) when it lacks the token's `kid`.
pub async fn keys_for_token(
    cache: &provider::ProviderCache,
    cfg: &OidcConfig,
    token: &str,
) -> Option<Arc<jsonwebtoken::jwk::JwkSet>> {
    let kid = jsonwebtoken::decode_header(token).ok()?.kid;
    let keys = cache.keys(cfg, false).await.ok()?;
    match &kid {
        Some(k) if keys.find(k).is_none() => cache.keys(cfg, true).await.ok(),
        _ => Some(keys),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn groups_and_names() {
        let text = "[oidc]\nissuer = \"https://id.example\"\nclient_id = \"c\"\nroles_claim = \"groups\"\nrole_map = { admins = \"admin\", users = \"user\" }\n";
        #[derive(serde::Deserialize)]
        struct W {
            oidc: toml::Spanned<crate::config::oidc::RawOidc>,
        }
        let w: W = toml::from_str(text).unwrap();
        let cfg = crate::config::oidc::build(
            &w.oidc,
            std::path::Path::new("/"),
            std::path::Path::new("/warden.toml"),
            text,
            &crate::auth::roles::Roles::default(),
        )
        .unwrap();
        let c = claims(serde_json::json!({
            "preferred_username": "jane",
            "groups": ["users", "other", "admins", "users", 7],
        }));
        assert_eq!(mapped_groups(&cfg, &c), ["admins", "users"]);
        assert_eq!(user_name(&cfg, &c).unwrap(), "jane");
        let one = claims(serde_json::json!({"groups": "users", "preferred_username": "../x"}));
        assert_eq!(mapped_groups(&cfg, &one), ["users"]);
        assert_eq!(user_name(&cfg, &one), Err(Refusal::InvalidName));
        assert_eq!(
            user_name(&cfg, &claims(serde_json::json!({}))),
            Err(Refusal::InvalidName)
        );
    }
}
