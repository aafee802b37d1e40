//! Listener, connections and request intake: every request is recorded as a `Received`
//! (headers at arrival, body hashed and counted as it streams in, first 1 MiB kept), its
//! body is collected into a `Blob` (spilled to disk when large), then routed.

use std::convert::Infallible;
use std::future::poll_fn;
use std::sync::{Arc, Mutex};
use std::task::Poll;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::HeaderMap;
use hyper::service::service_fn;
use hyper::upgrade::OnUpgrade;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::Received;
use super::blob::{Blob, BlobWriter};
use super::http::{Body, Resp, apply_cache_control, percent_decode, query_first, query_has};
use super::routes;
use super::state::{MAX_UPLOAD, Shared, lock};

const RECEIVED_PREFIX: usize = 1024 * 1024;

/// A request as the handlers see it.
pub struct Req {
    pub method: Method,
    /// Path segments, each percent-decoded once (so `%2F` inside a segment becomes `/`).
    pub segs: Vec<String>,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Blob,
    pub on_upgrade: Option<OnUpgrade>,
}

impl Req {
    pub fn q(&self, key: &str) -> Option<String> {
        query_first(self.query.as_deref(), key)
    }

    pub fn has_q(&self, key: &str) -> bool {
        query_has(self.query.as_deref(), key)
    }

    /// First value of a header (aiohttp `CIMultiDict` semantics).
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    }

    pub fn too_large(&self) -> Option<Resp> {
        (self.body.len() > MAX_UPLOAD).then(|| Resp::too_large(self.body.len()))
    }

    /// `await request.json()`; `Err` is whatever aiohttp would turn into a 500.
    pub async fn json(&self) -> Result<Value, Resp> {
        if let Some(r) = self.too_large() {
            return Err(r);
        }
        let bytes = self
            .body
            .read_all()
            .await
            .map_err(|_| Resp::server_error())?;
        serde_json::from_slice(&bytes).map_err(|_| Resp::server_error())
    }

    /// `await request.json()` plus the key order of the top-level `"prompt"` object.
    pub async fn json_with_prompt_order(&self) -> Result<(Value, Option<Vec<String>>), Resp> {
        let v = self.json().await?;
        let bytes = self
            .body
            .read_all()
            .await
            .map_err(|_| Resp::server_error())?;
        let order = serde_json::from_slice::<super::prompt::PromptOrder>(&bytes)
            .ok()
            .and_then(|p| p.0);
        Ok((v, order))
    }
}

pub async fn accept_loop(shared: Arc<Shared>) {
    loop {
        let accepted = poll_fn(|cx| {
            let guard = lock(&shared.listener);
            match guard.as_ref() {
                Some(l) => l.poll_accept(cx).map(Some),
                None => Poll::Ready(None),
            }
        })
        .await;
        match accepted {
            None => return,
            Some(Ok((stream, _))) => {
                let s = shared.clone();
                let h = tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let s = s.clone();
                        async move { Ok::<_, Infallible>(handle(s, req).await) }
                    });
                    let mut builder = hyper::server::conn::http1::Builder::new();
                    builder.title_case_headers(true);
                    let _ = builder
                        .serve_connection(TokioIo::new(stream), svc)
                        .with_upgrades()
                        .await;
                });
                shared.track(h.abort_handle());
            }
            Some(Err(_)) => tokio::task::yield_now().await,
        }
    }
}

async fn handle(shared: Arc<Shared>, mut req: Request<Incoming>) -> Response<Body> {
    let method = req.method().clone();
    let raw_path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let entry = Arc::new(Mutex::new(Received {
        method: method.as_str().to_string(),
        path: raw_path.clone(),
        query: query.clone(),
        headers,
        body: Bytes::new(),
        body_len: 0,
        body_sha256: hex::encode(Sha256::digest(b"")),
    }));
    lock(&shared.received).push(entry.clone());

    let on_upgrade = req
        .headers()
        .contains_key("upgrade")
        .then(|| hyper::upgrade::on(&mut req));
    let (parts, mut body) = req.into_parts();

    let mut writer = BlobWriter::new();
    let mut prefix: Vec<u8> = Vec::new();
    let mut failed = false;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Some(data) = frame.data_ref() {
                    if prefix.len() < RECEIVED_PREFIX {
                        let take = (RECEIVED_PREFIX - prefix.len()).min(data.len());
                        prefix.extend_from_slice(&data[..take]);
                    }
                    if writer.write(data).await.is_err() {
                        failed = true;
                        break;
                    }
                }
            }
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    let blob = match writer.finish().await {
        Ok(b) => b,
        Err(_) => {
            failed = true;
            Blob::from_bytes(Bytes::new())
        }
    };
    {
        let mut e = lock(&entry);
        e.body = Bytes::from(prefix);
        e.body_len = blob.len();
        e.body_sha256 = blob.sha256();
    }
    if failed {
        return Resp::text(400, "400: Bad Request").into_hyper();
    }

    let segs: Vec<String> = raw_path
        .strip_prefix('/')
        .unwrap_or(&raw_path)
        .split('/')
        .map(percent_decode)
        .collect();
    let decoded_path = percent_decode(&raw_path);
    if let Some(faulty) = shared.faults.answer(method.as_str(), &decoded_path).await {
        return faulty.into_hyper();
    }
    let r = Req {
        method,
        segs,
        query,
        headers: parts.headers,
        body: blob,
        on_upgrade,
    };
    let mut resp = routes::dispatch(&shared, r).await;
    apply_cache_control(&decoded_path, &mut resp);
    resp.into_hyper()
}
