//! The body type used on both sides of the proxy (streamed upstream bodies and small local
//! answers), a byte-counting limit for streamed client bodies, and helpers for comfy-warden's
//! own short JSON, HTML and text answers (refusals are rendered by `server::refusal`).
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, combinators::BoxBody};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Body = BoxBody<Bytes, BoxError>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

pub fn empty() -> Body {
    full(Bytes::new())
}

/// Wraps a streaming hyper body.
pub fn stream(incoming: hyper::body::Incoming) -> Body {
    incoming.map_err(|e| Box::new(e) as BoxError).boxed()
}

/// Set when a [`bounded_stream`] went over its limit.
pub type Overflow = std::sync::Arc<std::sync::atomic::AtomicBool>;

/// The client body as a stream of data chunks that fails (and sets `over`) once more than
/// `limit` bytes have arrived, so whatever consumes it stops and aborts what it was feeding.
pub fn bounded_stream(
    incoming: hyper::body::Incoming,
    limit: u64,
    over: Overflow,
) -> impl futures_util::Stream<Item = Result<Bytes, BoxError>> + Send + 'static {
    use futures_util::StreamExt;
    let mut seen = 0u64;
    incoming.into_data_stream().map(move |chunk| {
        let chunk = chunk.map_err(|e| Box::new(e) as BoxError)?;
        seen = seen.saturating_add(chunk.len() as u64);
        if seen > limit {
            over.store(true, std::sync::atomic::Ordering::Relaxed);
            return Err(BoxError::from("the request body is larger than allowed"));
        }
        Ok(chunk)
    })
}

/// The declared `Content-Length`, if any and readable.
pub fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn with_type(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    r
}

pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    json_bytes(status, serde_json::to_vec(value).unwrap_or_default())
}

/// JSON already serialised.
pub fn json_bytes(status: StatusCode, json: impl Into<Bytes>) -> Response<Body> {
    with_type(status, "application/json", json)
}

pub fn html(status: StatusCode, page: impl Into<Bytes>) -> Response<Body> {
    with_type(status, "text/html; charset=utf-8", page)
}

pub fn text(status: StatusCode, message: &'static str) -> Response<Body> {
    with_type(status, "text/plain; charset=utf-8", message)
}

pub fn redirect(status: StatusCode, location: &str) -> Response<Body> {
    let mut r = text(status, "");
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// The request's media type, lowercased (`""` when absent or unreadable).
pub fn content_type(headers: &http::HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// True when the client asked for a page rather than data (a browser navigation).
pub fn wants_html(headers: &http::HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.split(',').any(|t| t.trim().starts_with("text/html")))
}

/// Reads a small body whole (comfy-warden's own endpoints, JSON bodies tenancy rewrites), at
/// most `limit` bytes; more is a 413.
pub async fn read_small_body(
    req: http::Request<hyper::body::Incoming>,
    limit: u64,
) -> Result<(http::request::Parts, bytes::Bytes), crate::reject::Reject> {
    let (parts, incoming) = req.into_parts();
    if let Some(len) = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > limit
    {
        return Err(crate::reject::Reject::BodyTooLarge);
    }
    match http_body_util::Limited::new(incoming, limit as usize)
        .collect()
        .await
    {
        Ok(c) => Ok((parts, c.to_bytes())),
        Err(_) => Err(crate::reject::Reject::BodyTooLarge),
    }
}
