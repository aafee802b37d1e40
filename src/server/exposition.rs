//! The Prometheus exposition (`ops::metrics`), served by the metrics listener (`GET /metrics`
//! only, without authentication) and to administrators at `/warden/metrics`.
use crate::app::App;
use crate::body::{self, Body};
use http::{Request, Response, StatusCode, header};
use hyper::body::Incoming;

/// The metrics listener: `GET /metrics` only, without authentication.
pub fn metrics_listener(app: &App, req: &Request<Incoming>) -> Response<Body> {
    if req.uri().path() != "/metrics" {
        return body::text(StatusCode::NOT_FOUND, "only /metrics is served here\n");
    }
    if !super::own_routes::is_get(req.method()) {
        return super::refusal::json(&crate::reject::Reject::MethodNotAllowed {
            allow: "GET, HEAD",
        });
    }
    metrics_response(app)
}

/// The Prometheus exposition, for the metrics listener and `/warden/metrics`.
pub fn metrics_response(app: &App) -> Response<Body> {
    let mut r = Response::new(body::full(crate::ops::metrics::render(app.gauges())));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static(crate::ops::metrics::CONTENT_TYPE),
    );
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    r
}
