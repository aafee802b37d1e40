//! Forwards requests to ComfyUI. Bodies are never buffered here: the client's body goes up as
//! it arrives and ComfyUI's comes down the same way. Tenancy handlers use the same pieces to
//! forward a rewritten request, or to make their own small JSON calls (`call`). Failures are
//! `Reject`s (502/504 saying what happened), rendered by the server.
use super::headers::{self, Forwarding};
use super::upstream::{self, UpstreamError};
use crate::body::{self, Body};
use crate::config::Snapshot;
use crate::reject::Reject;
use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, Version, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use std::net::IpAddr;

/// The largest ComfyUI answer comfy-warden reads whole (to filter it).
pub const MAX_FILTERED_BODY: usize = 256 << 20;

/// The name of the header that tells ComfyUI (started with --multi-user) which user this is.
pub const COMFY_USER: &str = "comfy-user";

fn upstream_uri(snap: &Snapshot, path_and_query: &str) -> Result<Uri, http::Error> {
    Uri::builder()
        .scheme("http")
        .authority(snap.upstream.authority.clone())
        .path_and_query(path_and_query)
        .build()
}

/// Turns the client's request head into ComfyUI's: cleaned headers (see `headers`), forwarding
/// headers, Host, the given path and query, and exactly one `comfy-user` when given.
pub fn upstream_parts(
    snap: &Snapshot,
    parts: &mut Parts,
    path_and_query: &str,
    client_ip: IpAddr,
    tls: bool,
    comfy_user: Option<&HeaderValue>,
) -> Result<(), http::Error> {
    let host = parts.headers.get(header::HOST).cloned().or_else(|| {
        parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    headers::to_upstream(
        &mut parts.headers,
        &Forwarding {
            client_ip,
            tls,
            host: host.as_ref(),
            identity_header: snap.trusted_header.as_ref().map(|t| &t.name),
        },
    );
    parts
        .headers
        .insert(header::HOST, snap.upstream.host.clone());
    if let Some(u) = comfy_user {
        parts.headers.insert(COMFY_USER, u.clone());
    }
    parts.uri = upstream_uri(snap, path_and_query)?;
    parts.version = Version::HTTP_11;
    Ok(())
}

/// Sends a prepared request; ComfyUI's answer streams back with hop-by-hop headers removed.
pub async fn send(
    snap: &Snapshot,
    parts: Parts,
    body: Body,
) -> Result<Response<Incoming>, UpstreamError> {
    let mut resp = upstream::send(Request::from_parts(parts, body), &snap.upstream).await?;
    headers::to_client(resp.headers_mut());
    Ok(resp)
}

pub fn stream_back(resp: Response<Incoming>) -> Response<Body> {
    let (parts, incoming) = resp.into_parts();
    Response::from_parts(parts, body::stream(incoming))
}

/// Forwards the request as it is (path and query untouched), with the given `comfy-user`.
pub async fn forward(
    snap: &Snapshot,
    req: Request<Incoming>,
    client_ip: IpAddr,
    tls: bool,
    comfy_user: Option<&HeaderValue>,
) -> Result<Response<Body>, Reject> {
    let (mut parts, incoming) = req.into_parts();
    let pq = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .to_owned();
    upstream_parts(snap, &mut parts, &pq, client_ip, tls, comfy_user)
        .map_err(|_| Reject::InvalidPath)?;
    Ok(stream_back(
        send(snap, parts, body::stream(incoming)).await?,
    ))
}

/// Reads a whole (bounded) upstream body.
pub async fn read_body(
    resp: Response<Incoming>,
) -> Result<(http::response::Parts, Bytes), UpstreamError> {
    let (parts, incoming) = resp.into_parts();
    let bytes = Limited::new(incoming, MAX_FILTERED_BODY)
        .collect()
        .await
        .map_err(|e| UpstreamError::Unreachable(format!("reading ComfyUI's answer: {e}")))?
        .to_bytes();
    Ok((parts, bytes))
}

/// comfy-warden's own call to ComfyUI (not on behalf of a client request's body).
pub async fn call(
    snap: &Snapshot,
    method: Method,
    path_and_query: &str,
    comfy_user: Option<&HeaderValue>,
    json: Option<&serde_json::Value>,
) -> Result<(StatusCode, HeaderMap, Bytes), UpstreamError> {
    let uri = upstream_uri(snap, path_and_query)
        .map_err(|e| UpstreamError::Unreachable(e.to_string()))?;
    let mut b = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::HOST, snap.upstream.host.clone());
    if let Some(u) = comfy_user {
        b = b.header(COMFY_USER, u.clone());
    }
    let body = match json {
        Some(v) => {
            b = b.header(header::CONTENT_TYPE, "application/json");
            body::full(serde_json::to_vec(v).unwrap_or_default())
        }
        None => body::empty(),
    };
    let req = b
        .body(body)
        .map_err(|e| UpstreamError::Unreachable(e.to_string()))?;
    let resp = upstream::send(req, &snap.upstream).await?;
    let (parts, bytes) = read_body(resp).await?;
    Ok((parts.status, parts.headers, bytes))
}
