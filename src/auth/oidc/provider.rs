//! What comfy-warden knows about the provider: its discovery document
//! (`/.well-known/openid-configuration`, whose `issuer` must be the configured one) and its
//! signing keys (`jwks_uri`). Both are cached for [`FRESH_FOR`]; the keys are fetched again when
//! a token names an unknown `kid`, at most once per [`REFETCH_EVERY`]. The cache belongs to one
//! (issuer, client, CA) configuration: a reload that changes them starts afresh.
use super::http::{self, OutboundError};
use crate::config::oidc::Oidc;
use jsonwebtoken::jwk::JwkSet;
use serde::Deserialize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const FRESH_FOR: Duration = Duration::from_secs(3600);
pub const REFETCH_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Deserialize)]
pub struct Discovery {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    #[serde(default)]
    pub end_session_endpoint: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("{0}")]
    Outbound(#[from] OutboundError),
    #[error("the provider answered {0}")]
    Status(::http::StatusCode),
    #[error("the provider's answer is not what OpenID Connect describes: {0}")]
    Invalid(String),
}

struct Cached {
    key: String,
    discovery: Option<(Arc<Discovery>, Instant)>,
    keys: Option<(Arc<JwkSet>, Instant)>,
    last_key_fetch: Option<Instant>,
}

#[derive(Default)]
pub struct ProviderCache {
    inner: Mutex<Option<Cached>>,
}

fn cache_key(cfg: &Oidc) -> String {
    let mut key = cfg.issuer.clone();
    for c in &cfg.ca_certs {
        key.push(' ');
        key.push_str(&hex::encode(sha2::Digest::finalize(
            <sha2::Sha256 as sha2::Digest>::new_with_prefix(c.as_ref()),
        )));
    }
    key
}

impl ProviderCache {
    fn with<R>(&self, cfg: &Oidc, f: impl FnOnce(&mut Cached) -> R) -> R {
        let key = cache_key(cfg);
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let c = guard.get_or_insert_with(|| Cached::new(key.clone()));
        if c.key != key {
            *c = Cached::new(key);
        }
        f(c)
    }

    /// The cached discovery document, without fetching (sign-out uses it).
    pub fn cached_discovery(&self, cfg: &Oidc) -> Option<Arc<Discovery>> {
        self.with(cfg, |c| c.discovery.as_ref().map(|(d, _)| d.clone()))
    }

    pub async fn discovery(&self, cfg: &Oidc) -> Result<Arc<Discovery>, ProviderError> {
        if let Some(d) = self.with(cfg, |c| {
            c.discovery
                .as_ref()
                .filter(|(_, at)| at.elapsed() < FRESH_FOR)
                .map(|(d, _)| d.clone())
        }) {
            return Ok(d);
        }
        let url = format!("{}/.well-known/openid-configuration", cfg.issuer);
        let d: Discovery = get_json(cfg, &url).await?;
        if d.issuer.trim_end_matches('/') != cfg.issuer {
            return Err(ProviderError::Invalid(format!(
                "its discovery document names the issuer {:?}, not {:?}",
                d.issuer, cfg.issuer
            )));
        }
        for u in [&d.authorization_endpoint, &d.token_endpoint, &d.jwks_uri] {
            if !u.starts_with("https://") {
                return Err(ProviderError::Invalid(format!("{u:?} is not an https URL")));
            }
        }
        let d = Arc::new(d);
        self.with(cfg, |c| c.discovery = Some((d.clone(), Instant::now())));
        Ok(d)
    }

    /// The provider's keys; `refresh` asks for a new copy (an unknown `kid`), which is fetched
    /// only if the last fetch is older than [`REFETCH_EVERY`].
    pub async fn keys(&self, cfg: &Oidc, refresh: bool) -> Result<Arc<JwkSet>, ProviderError> {
        let cached = self.with(cfg, |c| {
            let fresh = c.keys.as_ref().filter(|(_, at)| at.elapsed() < FRESH_FOR);
            let may_refetch = c
                .last_key_fetch
                .is_none_or(|t| t.elapsed() >= REFETCH_EVERY);
            match fresh {
                Some((k, _)) if !(refresh && may_refetch) => Some(k.clone()),
                _ if !may_refetch => c.keys.as_ref().map(|(k, _)| k.clone()),
                _ => None,
            }
        });
        if let Some(k) = cached {
            return Ok(k);
        }
        let d = self.discovery(cfg).await?;
        self.with(cfg, |c| c.last_key_fetch = Some(Instant::now()));
        let set: JwkSet = get_json(cfg, &d.jwks_uri).await?;
        let set = Arc::new(set);
        self.with(cfg, |c| c.keys = Some((set.clone(), Instant::now())));
        Ok(set)
    }
}

impl Cached {
    fn new(key: String) -> Cached {
        Cached {
            key,
            discovery: None,
            keys: None,
            last_key_fetch: None,
        }
    }
}

async fn get_json<T: serde::de::DeserializeOwned>(
    cfg: &Oidc,
    url: &str,
) -> Result<T, ProviderError> {
    let tls = http::tls_config(&cfg.ca_certs)?;
    let (status, body) = http::request(tls, ::http::Method::GET, url, &[], None).await?;
    if !status.is_success() {
        return Err(ProviderError::Status(status));
    }
    serde_json::from_slice(&body).map_err(|e| ProviderError::Invalid(e.to_string()))
}
