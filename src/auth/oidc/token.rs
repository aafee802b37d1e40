//! The back-channel half of a sign-in: the authorization code exchanged at the token endpoint
//! (with the PKCE verifier and the client's secret, `client_secret_basic` or `_post`), and the
//! ID token checked: signature by one of the provider's keys (asymmetric algorithms only;
//! an unknown `kid` fetches the keys again), `iss`, `aud` (and `azp` when several audiences),
//! `exp`, `iat`, `nonce`, with [`SKEW`] of clock difference allowed. Nothing the provider
//! returns besides the ID token's claims is kept.
use super::flow::Pending;
use super::http;
use super::provider::{Discovery, ProviderCache, ProviderError};
use crate::config::oidc::{ClientAuth, Oidc};
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use subtle::ConstantTimeEq;

pub const SKEW: u64 = 60;

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{0}")]
    Provider(#[from] ProviderError),
    /// The token endpoint refused the code (`invalid_grant`: used already, expired, …).
    #[error("the provider refused the code: {0}")]
    Refused(String),
    #[error("the ID token is not valid: {0}")]
    Invalid(&'static str),
}

fn form_encode(pairs: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

/// Exchanges `code` for the provider's tokens; returns the raw ID token.
pub async fn exchange(
    cfg: &Oidc,
    d: &Discovery,
    code: &str,
    pending: &Pending,
) -> Result<String, TokenError> {
    let mut pairs = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", pending.redirect_uri.as_str()),
        ("code_verifier", pending.verifier.as_str()),
    ];
    let mut headers = vec![(
        ::http::header::CONTENT_TYPE,
        "application/x-www-form-urlencoded".to_owned(),
    )];
    match (cfg.client_auth, cfg.client_secret.is_empty()) {
        (_, true) => pairs.push(("client_id", &cfg.client_id)),
        (ClientAuth::Post, false) => {
            pairs.push(("client_id", &cfg.client_id));
            pairs.push(("client_secret", &cfg.client_secret));
        }
        (ClientAuth::Basic, false) => {
            // RFC 6749 §2.3.1: both parts form-encoded before base64.
            let user: String = form_urlencoded::byte_serialize(cfg.client_id.as_bytes()).collect();
            let pass: String =
                form_urlencoded::byte_serialize(cfg.client_secret.as_bytes()).collect();
            let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
            headers.push((::http::header::AUTHORIZATION, format!("Basic {b64}")));
        }
    }
    let tls = http::tls_config(&cfg.ca_certs).map_err(ProviderError::from)?;
    let (status, body) = http::request(
        tls,
        ::http::Method::POST,
        &d.token_endpoint,
        &headers,
        Some(form_encode(&pairs).into()),
    )
    .await
    .map_err(ProviderError::from)?;
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if !status.is_success() {
        let err = v
            .get("error")
            .and_then(Value::as_str)
            .filter(|e| e.len() <= 64 && e.bytes().all(|b| b.is_ascii_graphic()))
            .map(str::to_owned)
            .unwrap_or_else(|| format!("status {status}"));
        return Err(TokenError::Refused(err));
    }
    v.get("id_token")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or(TokenError::Invalid("the token answer has no id_token"))
}

fn asymmetric(alg: Algorithm) -> bool {
    matches!(
        alg,
        Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512
            | Algorithm::ES256
            | Algorithm::ES384
            | Algorithm::EdDSA
    )
}

/// Checks an ID token (see the module comment) and returns its claims.
pub async fn verify_id_token(
    cfg: &Oidc,
    cache: &ProviderCache,
    token: &str,
    nonce: &str,
) -> Result<serde_json::Map<String, Value>, TokenError> {
    if token.len() > 64 * 1024 {
        return Err(TokenError::Invalid("too large"));
    }
    let header =
        jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid("malformed"))?;
    if !asymmetric(header.alg) {
        return Err(TokenError::Invalid(
            "not signed with an asymmetric algorithm",
        ));
    }
    let mut keys = cache.keys(cfg, false).await?;
    let find = |set: &jsonwebtoken::jwk::JwkSet| match &header.kid {
        Some(kid) => set.find(kid).cloned(),
        None if set.keys.len() == 1 => set.keys.first().cloned(),
        None => None,
    };
    let jwk = match find(&keys) {
        Some(k) => k,
        None => {
            keys = cache.keys(cfg, true).await?;
            find(&keys).ok_or(TokenError::Invalid("signed by an unknown key"))?
        }
    };
    let key = DecodingKey::from_jwk(&jwk).map_err(|_| TokenError::Invalid("unusable key"))?;
    let mut v = Validation::new(header.alg);
    v.algorithms = vec![header.alg];
    v.set_issuer(&[&cfg.issuer]);
    v.set_audience(&[&cfg.client_id]);
    v.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    v.leeway = SKEW;
    let data =
        jsonwebtoken::decode::<serde_json::Map<String, Value>>(token, &key, &v).map_err(|e| {
            TokenError::Invalid(match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => "expired",
                jsonwebtoken::errors::ErrorKind::InvalidIssuer => "wrong issuer",
                jsonwebtoken::errors::ErrorKind::InvalidAudience => "wrong audience",
                jsonwebtoken::errors::ErrorKind::InvalidSignature => "bad signature",
                _ => "rejected",
            })
        })?;
    let claims = data.claims;
    let now = crate::clock::now_secs();
    let iat = claims
        .get("iat")
        .and_then(Value::as_u64)
        .unwrap_or(u64::MAX);
    if iat > now + SKEW {
        return Err(TokenError::Invalid("issued in the future"));
    }
    let several_audiences = claims
        .get("aud")
        .and_then(Value::as_array)
        .is_some_and(|a| a.len() > 1);
    match claims.get("azp").map(Value::as_str) {
        Some(Some(azp)) if azp == cfg.client_id => {}
        None if !several_audiences => {}
        _ => return Err(TokenError::Invalid("issued to another party (azp)")),
    }
    let got = claims.get("nonce").and_then(Value::as_str).unwrap_or("");
    if !bool::from(got.as_bytes().ct_eq(nonce.as_bytes())) {
        return Err(TokenError::Invalid("wrong nonce"));
    }
    Ok(claims)
}
