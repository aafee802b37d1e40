//! A small HTTP client for tests over real sockets, with full control of headers (duplicates,
//! case) and streamed bodies.
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::Frame;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use sha2::{Digest, Sha256};

pub type TestBody = BoxBody<Bytes, std::io::Error>;

pub struct Resp {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    }
}

pub fn client() -> Client<HttpConnector, TestBody> {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

pub fn full(b: impl Into<Bytes>) -> TestBody {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

/// A body of `size` bytes produced in 64 KiB chunks (byte i = i % 251), never held whole.
pub fn generated(size: u64) -> TestBody {
    let chunks = futures_util::stream::unfold(0u64, move |off| async move {
        if off >= size {
            return None;
        }
        let n = (size - off).min(64 * 1024);
        let chunk: Vec<u8> = (off..off + n).map(|i| (i % 251) as u8).collect();
        Some((
            Ok::<_, std::io::Error>(Frame::data(Bytes::from(chunk))),
            off + n,
        ))
    });
    StreamBody::new(chunks).boxed()
}

/// SHA-256 (hex) of what [`generated`] produces.
pub fn generated_sha256(size: u64) -> String {
    let mut h = Sha256::new();
    let mut off = 0u64;
    while off < size {
        let n = (size - off).min(64 * 1024);
        let chunk: Vec<u8> = (off..off + n).map(|i| (i % 251) as u8).collect();
        h.update(&chunk);
        off += n;
    }
    hex::encode(h.finalize())
}

pub async fn send(method: Method, url: &str, headers: &[(&str, &str)], body: TestBody) -> Resp {
    try_send(method, url, headers, body)
        .await
        .expect("request failed")
}

/// Like [`send`], but a connection closed by the server is an `Err` instead of a panic.
pub async fn try_send(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: TestBody,
) -> Result<Resp, String> {
    let mut b = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let resp = client()
        .request(b.body(body).unwrap())
        .await
        .map_err(|e| format!("{e:?}"))?;
    let (parts, body) = resp.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| format!("{e:?}"))?
        .to_bytes();
    Ok(Resp {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// `GET` that tolerates a connection closed by the server (refused addresses, limits).
pub async fn try_get(url: &str, headers: &[(&str, &str)]) -> Result<Resp, String> {
    try_send(Method::GET, url, headers, full(Bytes::new())).await
}

pub async fn get(url: &str, headers: &[(&str, &str)]) -> Resp {
    send(Method::GET, url, headers, full(Bytes::new())).await
}

pub async fn post(url: &str, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Resp {
    send(Method::POST, url, headers, full(body)).await
}

pub async fn post_json(url: &str, headers: &[(&str, &str)], v: &serde_json::Value) -> Resp {
    let mut h = headers.to_vec();
    h.push(("content-type", "application/json"));
    post(url, &h, serde_json::to_vec(v).unwrap()).await
}

/// Streams the response body, returning (status, length, sha256 hex) without keeping it.
pub async fn get_streamed(url: &str, headers: &[(&str, &str)]) -> (StatusCode, u64, String) {
    let mut b = Request::builder().uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let resp = client()
        .request(b.body(full(Bytes::new())).unwrap())
        .await
        .expect("request failed");
    let status = resp.status();
    let mut body = resp.into_body();
    let mut h = Sha256::new();
    let mut len = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.expect("body frame").into_data() {
            len += data.len() as u64;
            h.update(&data);
        }
    }
    (status, len, hex::encode(h.finalize()))
}

/// Signs in with JSON (`POST /login`, extra `headers` like `x-forwarded-for`) and returns the
/// answer, whatever it is.
pub async fn login_answer(
    base: &str,
    user: &str,
    password: &str,
    headers: &[(&str, &str)],
) -> Resp {
    post_json(
        &format!("{base}/login"),
        headers,
        &serde_json::json!({"username": user, "password": password}),
    )
    .await
}

/// Signs in with JSON and returns the session JWT (the sign-in must succeed).
pub async fn login(base: &str, user: &str, password: &str) -> String {
    let r = login_answer(base, user, password, &[]).await;
    assert_eq!(r.status, 200, "login of {user} failed: {}", r.text());
    r.json()["jwt_token"].as_str().unwrap().to_string()
}

/// Signs in and returns the `cookie` header value of the session.
pub async fn login_cookie(base: &str, user: &str, password: &str) -> String {
    cookie_header(&login(base, user, password).await)
}

/// The `cookie` header value that carries session `token`.
pub fn cookie_header(token: &str) -> String {
    format!("comfy_warden_session={token}")
}

/// The `authorization` header value for a JWT or API token.
pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// The `authorization` header value of HTTP Basic for `user` and `password`.
pub fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    let raw = format!("{user}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// The current time in unix seconds.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}
