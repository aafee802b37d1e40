//! The entry points of the fuzz targets (`fuzz/`, see `docs/fuzzing.md`): every parser and
//! rewriter they drive, reached through this one module so that moving or renaming the modules
//! behind it only changes the paths here. Not an API: hidden from the docs, used by nothing else.
use crate::app::Counters;
use crate::auth::keys::Secret;
use crate::auth::password::Passwords;
use crate::auth::session::SessionTable;
use crate::config::store::ConfigStore;
use crate::config::{ConfigError, Snapshot};
use bytes::Bytes;
use http::{HeaderMap, Method};
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub use crate::app::App;
pub use crate::auth::session::{Claims, Keys, TokenKind};
pub use crate::config::User;
pub use crate::tenancy::catalog::Catalog;
pub use crate::tenancy::events::{SocketFilter, Upstream};
pub use crate::tenancy::nodes::OWNER_INPUT;
pub use crate::tenancy::nodes::{NodeRule, NodeRules};
pub use crate::tenancy::paths::{Kind, MAX_PATH, path_from_upstream};
pub use crate::tenancy::prompt::{Caller as PromptCaller, Refusal, rewrite, strip};
pub use crate::tenancy::route_table::{Action, Route};
pub use crate::tenancy::tenant::Tenant;
pub use tokio_tungstenite::tungstenite::Message;

/// The configuration loader: reads and validates the directory holding `warden.toml`.
pub fn load_config(dir: &Path) -> Result<Snapshot, ConfigError> {
    crate::config::load(dir)
}

/// How a request path is routed, as `server/dispatch.rs` and `tenancy/http/handle.rs` decide it:
/// `None` when it is refused as ambiguous, else the route-table entry.
pub fn route(method: &Method, path: &str) -> Option<Route> {
    if crate::tenancy::paths::is_ambiguous_request_path(path) {
        return None;
    }
    Some(crate::tenancy::route_table::classify(method, path))
}

/// The path normalisers: a client path fragment, one taken from a URL, a single file name.
pub fn clean_path(p: &str) -> Option<String> {
    crate::tenancy::paths::clean(p).ok()
}
pub fn clean_url_path(p: &str) -> Option<String> {
    crate::tenancy::paths::clean_decoded(p).ok()
}
pub fn clean_file_name(p: &str) -> Option<String> {
    crate::tenancy::paths::clean_name(p).ok()
}

/// The client IP of a request from `peer` (X-Forwarded-For / Forwarded via trusted proxies).
pub fn client_ip(peer: SocketAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    crate::guard::client_ip::resolve(peer, headers, trusted)
}

/// The session cookie, the Bearer token and the Basic credentials of a request.
pub fn session_cookie(headers: &HeaderMap, tls: bool) -> Option<String> {
    crate::auth::identity::session_cookie(headers, tls)
}
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    crate::auth::identity::bearer(headers)
}
pub fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    crate::auth::basic::parse(headers)
}

/// comfy-warden's own HS256 tokens: keys from a fixed secret, issue and verify.
pub fn keys(secret: &[u8]) -> Keys {
    Keys::new(&Secret::from_bytes(secret.to_vec()), &[])
}
pub fn verify_own_token(keys: &Keys, token: &str) -> Option<Claims> {
    keys.verify(token)
}
pub fn issue_own_token(keys: &Keys, user: &str, kind: TokenKind) -> Option<String> {
    keys.issue(user, 0, Duration::from_secs(3600), kind)
        .ok()
        .map(|(t, _)| t)
}

/// An identity provider's token, checked against `[auth.external_jwt]` of `snap`.
pub fn verify_external_token(snap: &Snapshot, token: &str) -> Option<(String, u64)> {
    let ext = snap.external_jwt.as_ref()?;
    crate::auth::external::verify(ext, ext.jwks.as_deref()?, token)
}

/// The daemon's shared state for a loaded configuration, without listeners, signals or tasks
/// (built as `daemon.rs` builds it).
#[allow(clippy::expect_used)] // a harness, not a request path
pub fn app(snap: Snapshot) -> Arc<App> {
    let state_dir = snap.files.state_dir.clone();
    let (_tx, shutdown) = tokio::sync::watch::channel(false);
    let secret = Secret::from_bytes(vec![7; 32]);
    Arc::new(App {
        keys: Keys::new(&secret, &[]),
        passwords: Passwords::new(1, crate::app::HASH_QUEUE_WAIT)
            .expect("the password hasher starts"),
        basic_cache: crate::auth::basic::BasicCache::new(&secret.bytes),
        tickets: crate::auth::second_factor::Tickets::new(&secret.bytes),
        sessions: SessionTable::open(&state_dir),
        counters: Counters::default(),
        tenancy: Arc::new(crate::tenancy::Tenancy::new(&state_dir)),
        lockout: crate::guard::lockout::Lockout::open(&state_dir),
        connections: Default::default(),
        setup: Default::default(),
        oidc: Default::default(),
        shutdown,
        config: Arc::new(ConfigStore::new(snap)),
    })
}

/// Records that `owner` submitted `prompt_id` (what `POST /prompt` does before forwarding).
pub fn record_prompt(app: &App, prompt_id: &str, owner: &str) {
    app.tenancy.ledger.record_prompt(prompt_id, owner);
}

/// The multipart upload rewriter: the client's body (in `chunks`, with its `Content-Type`) as
/// the rebuilt body sent to ComfyUI (delimited by `out_boundary`), or the reason it is refused.
pub async fn rebuild_upload(
    out_boundary: &str,
    content_type: &str,
    chunks: Vec<Bytes>,
    tenant: &Tenant,
    mask: bool,
) -> Result<Vec<u8>, String> {
    let boundary = multer::parse_boundary(content_type).map_err(|e| e.to_string())?;
    let stream = futures_util::stream::iter(chunks.into_iter().map(Ok::<Bytes, std::io::Error>));
    let mp = multer::Multipart::with_constraints(
        stream,
        boundary,
        crate::tenancy::http::files::upload_constraints(),
    );
    let (tx, mut rx): (crate::tenancy::http::files::Tx, _) = tokio::sync::mpsc::channel(8);
    let drain = tokio::spawn(async move {
        let mut out = Vec::new();
        while let Some(frame) = rx.recv().await {
            match frame {
                Ok(f) => {
                    if let Ok(data) = f.into_data() {
                        out.extend_from_slice(&data);
                    }
                }
                Err(e) => return Err(format!("aborted: {e}")),
            }
        }
        Ok(out)
    });
    let pumped = crate::tenancy::http::files::pump(mp, &tx, out_boundary, tenant, mask).await;
    drop(tx);
    let out = drain.await.map_err(|e| e.to_string())??;
    pumped.map(|_| out).map_err(|e| e.to_string())
}

/// The query parameters of `/view` (first occurrence wins), as its handler reads them.
pub fn view_params(query: Option<&str>) -> std::collections::HashMap<String, String> {
    crate::tenancy::http::files::first_params(query)
}
