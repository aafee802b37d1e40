//! Forwards one HTTP request to ComfyUI and streams the answer back. Bodies are never buffered
//! here: the client's body goes up as it arrives and ComfyUI's comes down the same way.
use super::headers::{self, Forwarding};
use crate::app::App;
use crate::body::{self, Body};
use crate::config::Snapshot;
use http::{HeaderValue, Request, Response, StatusCode, Uri, Version, header};
use hyper::body::Incoming;
use std::net::IpAddr;

pub async fn forward(app: &App, snap: &Snapshot, req: Request<Incoming>, client_ip: IpAddr, tls: bool) -> Response<Body> {
    let wants_html = body::wants_html(req.headers());
    let (mut parts, incoming) = req.into_parts();
    let path_and_query = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/").to_owned();
    let uri = match Uri::builder()
        .scheme("http")
        .authority(snap.upstream.authority.clone())
        .path_and_query(path_and_query)
        .build()
    {
        Ok(u) => u,
        Err(_) => return body::error_json(StatusCode::BAD_REQUEST, "the request path is not valid"),
    };
    let host = parts.headers.get(header::HOST).cloned().or_else(|| {
        parts.uri.authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    headers::to_upstream(&mut parts.headers, &Forwarding { client_ip, tls, host: host.as_ref() });
    if let Ok(h) = HeaderValue::from_str(snap.upstream.authority.as_str()) {
        parts.headers.insert(header::HOST, h);
    }
    parts.uri = uri;
    parts.version = Version::HTTP_11;
    let upstream_req = Request::from_parts(parts, body::stream(incoming));

    match app.upstream.send(upstream_req, snap.upstream.response_timeout).await {
        Ok(resp) => {
            let (mut parts, incoming) = resp.into_parts();
            headers::to_client(&mut parts.headers);
            Response::from_parts(parts, body::stream(incoming))
        }
        Err(e) => {
            tracing::warn!(error = %e, "upstream request failed");
            unreachable_answer(wants_html, &e)
        }
    }
}

/// 502 (or 504 on timeout) with a short page or JSON saying ComfyUI cannot be reached.
pub fn unreachable_answer(wants_html: bool, e: &super::upstream::UpstreamError) -> Response<Body> {
    let status = match e {
        super::upstream::UpstreamError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
        super::upstream::UpstreamError::Unreachable(_) => StatusCode::BAD_GATEWAY,
    };
    let message = match status {
        StatusCode::GATEWAY_TIMEOUT => "ComfyUI did not answer in time. Please try again.",
        _ => "ComfyUI is unreachable right now. It may be starting or restarting; please try again shortly.",
    };
    if wants_html {
        body::html(status, crate::server::pages::message_page("ComfyUI is unavailable", message))
    } else {
        body::error_json(status, message)
    }
}
