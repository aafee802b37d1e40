//! The external identity sources of warden.toml, validated: `[auth.trusted_header]` (a gateway
//! in front names the user) and `[auth.external_jwt]` (an identity provider's tokens, verified
//! against a JWKS file that is part of the hot-reloaded file set).
use super::error::ConfigError;
use super::raw::{RawAuth, RawExternalJwt, RawTrustedHeader};
use super::read::parse_net;
use crate::auth::roles::{PermSet, Roles};
use ipnet::IpNet;
use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::JwkSet;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// Roles given to names a source vouches for that users.toml does not list.
#[derive(Debug, Clone)]
pub struct DefaultRoles {
    pub roles: Vec<String>,
    pub permissions: PermSet,
}

#[derive(Debug, Clone)]
pub struct TrustedHeader {
    pub name: http::HeaderName,
    pub from: Vec<IpNet>,
    pub default: Option<DefaultRoles>,
}

#[derive(Debug, Clone)]
pub struct ExternalJwt {
    pub jwks_file: Option<PathBuf>,
    /// `None`: the keys of the `[auth.oidc]` provider (same issuer), fetched and cached.
    pub jwks: Option<std::sync::Arc<JwkSet>>,
    pub issuer: String,
    pub audience: String,
    pub user_claim: String,
    pub algorithms: Vec<Algorithm>,
    pub default: Option<DefaultRoles>,
}

pub struct Sources {
    pub trusted_header: Option<TrustedHeader>,
    pub external_jwt: Option<ExternalJwt>,
}

struct Ctx<'a> {
    main: &'a Path,
    text: &'a str,
    roles: &'a Roles,
}

impl Ctx<'_> {
    fn err(&self, offset: usize, m: impl Into<String>) -> ConfigError {
        ConfigError::at_offset(self.main, self.text, offset, m)
    }

    fn default_roles(&self, list: &[Spanned<String>]) -> Result<Option<DefaultRoles>, ConfigError> {
        if list.is_empty() {
            return Ok(None);
        }
        let mut permissions = PermSet::EMPTY;
        for r in list {
            let set = self.roles.get(r.get_ref()).ok_or_else(|| {
                self.err(r.span().start, format!("unknown role {:?}", r.get_ref()))
            })?;
            permissions = permissions.union(set);
        }
        Ok(Some(DefaultRoles {
            roles: list.iter().map(|r| r.get_ref().clone()).collect(),
            permissions,
        }))
    }
}

pub fn build(
    raw: &RawAuth,
    dir: &Path,
    main: &Path,
    text: &str,
    roles: &Roles,
) -> Result<Sources, ConfigError> {
    let ctx = Ctx { main, text, roles };
    let trusted_header = raw
        .trusted_header
        .as_ref()
        .map(|t| trusted(&ctx, t.get_ref(), t.span().start))
        .transpose()?;
    let external_jwt = raw
        .external_jwt
        .as_ref()
        .map(|e| external(&ctx, e.get_ref(), e.span().start, dir))
        .transpose()?;
    Ok(Sources {
        trusted_header,
        external_jwt,
    })
}

fn trusted(ctx: &Ctx<'_>, t: &RawTrustedHeader, at: usize) -> Result<TrustedHeader, ConfigError> {
    let name = http::HeaderName::from_bytes(t.name.trim().as_bytes())
        .map_err(|_| ctx.err(at, format!("{:?} is not a header name", t.name)))?;
    if matches!(
        name.as_str(),
        "authorization" | "cookie" | "host" | "comfy-user"
    ) {
        return Err(ctx.err(at, format!("{name} cannot carry an identity")));
    }
    if t.from.is_empty() {
        return Err(ctx.err(
            at,
            "from: list the networks of the gateway that sets the header",
        ));
    }
    let from = t
        .from
        .iter()
        .map(|n| parse_net(n.get_ref()).map_err(|m| ctx.err(n.span().start, m)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(TrustedHeader {
        name,
        from,
        default: ctx.default_roles(&t.default_roles)?,
    })
}

fn external(
    ctx: &Ctx<'_>,
    e: &RawExternalJwt,
    at: usize,
    dir: &Path,
) -> Result<ExternalJwt, ConfigError> {
    let (jwks_file, jwks) = match &e.jwks_file {
        Some(f) => {
            let file = if f.is_absolute() {
                f.clone()
            } else {
                dir.join(f)
            };
            let jwks = read_jwks(&file)?;
            (Some(file), Some(std::sync::Arc::new(jwks)))
        }
        None => (None, None),
    };
    let mut algorithms = Vec::new();
    for a in &e.algorithms {
        let alg = match a.get_ref().as_str() {
            "RS256" => Algorithm::RS256,
            "RS384" => Algorithm::RS384,
            "RS512" => Algorithm::RS512,
            "PS256" => Algorithm::PS256,
            "ES256" => Algorithm::ES256,
            "ES384" => Algorithm::ES384,
            "EdDSA" => Algorithm::EdDSA,
            other => return Err(ctx.err(
                a.span().start.max(at),
                format!(
                    "algorithm {other:?} is not allowed (asymmetric only: RS256, ES256, EdDSA, …)"
                ),
            )),
        };
        algorithms.push(alg);
    }
    if e.issuer.is_empty() || e.audience.is_empty() || e.user_claim.is_empty() {
        return Err(ctx.err(at, "issuer, audience and user_claim must not be empty"));
    }
    Ok(ExternalJwt {
        jwks_file,
        jwks,
        issuer: e.issuer.clone(),
        audience: e.audience.clone(),
        user_claim: e.user_claim.clone(),
        algorithms,
        default: ctx.default_roles(&e.default_roles)?,
    })
}

fn read_jwks(jwks_file: &Path) -> Result<JwkSet, ConfigError> {
    let text = std::fs::read_to_string(jwks_file).map_err(|source| ConfigError::Io {
        path: jwks_file.to_path_buf(),
        source,
    })?;
    let jwks: JwkSet = serde_json::from_str(&text).map_err(|err| {
        ConfigError::at(
            jwks_file,
            Some(err.line()),
            None,
            format!("not a JWKS document: {err}"),
        )
    })?;
    if jwks.keys.is_empty() {
        return Err(ConfigError::at(
            jwks_file,
            None,
            None,
            "the key set is empty",
        ));
    }
    Ok(jwks)
}

/// `[auth.external_jwt]` without a `jwks_file` takes the keys of the `[auth.oidc]` provider, so
/// that must be configured, with the same issuer.
pub fn check_external_jwt(
    ext: Option<&ExternalJwt>,
    oidc: Option<&super::oidc::Oidc>,
    main: &std::path::Path,
) -> Result<(), ConfigError> {
    match (ext, oidc) {
        (Some(e), _) if e.jwks.is_some() => Ok(()),
        (Some(e), Some(o)) if e.issuer.trim_end_matches('/') == o.issuer => Ok(()),
        (Some(_), _) => Err(ConfigError::at(
            main,
            None,
            Some("auth.external_jwt.jwks_file".into()),
            "set jwks_file, or configure [auth.oidc] with the same issuer to use its keys",
        )),
        (None, _) => Ok(()),
    }
}
