//! The pooled hyper client that talks to ComfyUI, with connect and response-header timeouts
//! (the time to the response headers is measured for the metrics).
//!
//! The pool is per thread: each worker (`server::listen`) runs a single-threaded event loop,
//! and a request taking a connection that lives on its own thread is woken without crossing
//! threads (a shared pool hands connections between workers, and every response then costs
//! a cross-thread wake-up).
use crate::body::Body;
use crate::reject::Reject;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::cell::RefCell;
use std::time::Duration;

/// What went wrong talking to ComfyUI. The detail is for the log; the user reads the
/// [`Reject`] it becomes, which says which of these happened and nothing more.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    #[error("ComfyUI is unreachable: {0}")]
    Unreachable(String),
    #[error("ComfyUI did not answer within {0:?}")]
    Timeout(Duration),
    /// A non-2xx answer to a call comfy-warden made itself (`route`: see [`route_class`]).
    #[error("ComfyUI answered {status} to {route}")]
    Status { status: u16, route: &'static str },
    /// An answer comfy-warden must read (to filter it) that it cannot read.
    #[error("ComfyUI's answer to {route} could not be read: {detail}")]
    Malformed { route: &'static str, detail: String },
}

impl UpstreamError {
    /// A non-2xx `status` from `path`.
    pub fn status(status: http::StatusCode, path: &str) -> UpstreamError {
        UpstreamError::Status {
            status: status.as_u16(),
            route: route_class(path),
        }
    }

    /// An unreadable answer from `path`.
    pub fn malformed(path: &str, detail: impl std::fmt::Display) -> UpstreamError {
        UpstreamError::Malformed {
            route: route_class(path),
            detail: detail.to_string(),
        }
    }
}

/// The refusal a client gets; the detail is logged here (warn), once per failed request.
impl From<UpstreamError> for Reject {
    fn from(e: UpstreamError) -> Reject {
        tracing::warn!(error = %e, "upstream call failed");
        // Unreachable and timeout were counted where they happened (`send`).
        let metrics = crate::ops::metrics::global();
        match e {
            UpstreamError::Status { .. } => metrics.upstream_error("status"),
            UpstreamError::Malformed { .. } => metrics.upstream_error("malformed"),
            _ => {}
        }
        match e {
            UpstreamError::Unreachable(_) => Reject::UpstreamUnreachable,
            UpstreamError::Timeout(_) => Reject::UpstreamTimeout,
            UpstreamError::Status { status, route } => Reject::UpstreamStatus {
                status,
                route: route.into(),
            },
            UpstreamError::Malformed { route, .. } => Reject::UpstreamMalformed {
                route: route.into(),
            },
        }
    }
}

/// The ComfyUI route a path belongs to, for messages and logs: its first segment (without
/// `/api`) when it is one of ComfyUI's, so no user's id, file name or query is ever named.
pub fn route_class(path: &str) -> &'static str {
    let path = path.split('?').next().unwrap_or("");
    let path = path.strip_prefix("/api").unwrap_or(path);
    let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
    const ROUTES: &[&str] = &[
        "/prompt",
        "/queue",
        "/history",
        "/interrupt",
        "/free",
        "/object_info",
        "/view",
        "/view_metadata",
        "/upload",
        "/userdata",
        "/users",
        "/settings",
        "/system_stats",
        "/extensions",
        "/embeddings",
        "/models",
        "/experiment",
        "/internal",
        "/features",
    ];
    ROUTES
        .iter()
        .find(|r| r.strip_prefix('/') == Some(first))
        .copied()
        .unwrap_or("a ComfyUI route")
}

type Pool = Client<HttpConnector, Body>;

thread_local! {
    /// This thread's pool, and the connect timeout it was built with.
    static POOL: RefCell<Option<(Duration, Pool)>> = const { RefCell::new(None) };
}

/// The calling thread's pool (built on first use, and again when the connect timeout was
/// changed by a reload).
fn pool(connect_timeout: Duration) -> Pool {
    POOL.with(|cell| {
        let mut slot = cell.borrow_mut();
        match &*slot {
            Some((t, pool)) if *t == connect_timeout => pool.clone(),
            _ => {
                let pool = build(connect_timeout);
                *slot = Some((connect_timeout, pool.clone()));
                pool
            }
        }
    })
}

/// Sends `req` with the timeouts of `upstream` (the snapshot in force): the response timeout
/// covers connecting and waiting for the response headers only, the body then streams for as
/// long as it takes.
pub async fn send(
    req: Request<Body>,
    upstream: &crate::config::Upstream,
) -> Result<Response<Incoming>, UpstreamError> {
    let timeout = upstream.response_timeout;
    let started = std::time::Instant::now();
    let metrics = crate::ops::metrics::global();
    match tokio::time::timeout(timeout, pool(upstream.connect_timeout).request(req)).await {
        Err(_) => {
            metrics.upstream_error("timeout");
            Err(UpstreamError::Timeout(timeout))
        }
        Ok(Err(e)) => {
            metrics.upstream_error("unreachable");
            let mut msg = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                msg = format!("{msg}: {s}");
                src = s.source();
            }
            Err(UpstreamError::Unreachable(msg))
        }
        Ok(Ok(resp)) => {
            metrics.upstream(started.elapsed());
            Ok(resp)
        }
    }
}

fn build(connect_timeout: Duration) -> Pool {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(connect_timeout));
    connector.set_nodelay(true);
    connector.enforce_http(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(64)
        .build(connector)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_classes_name_no_user_data() {
        assert_eq!(route_class("/api/queue"), "/queue");
        assert_eq!(route_class("/history/8d5e-secret-id"), "/history");
        assert_eq!(route_class("/object_info/KSampler"), "/object_info");
        assert_eq!(route_class("/view?filename=alice.png"), "/view");
        assert_eq!(route_class("/alice-private/x"), "a ComfyUI route");
        assert_eq!(route_class(""), "a ComfyUI route");
    }

    #[test]
    fn each_failure_becomes_its_own_refusal() {
        let r = |e| Reject::from(e);
        assert_eq!(
            r(UpstreamError::Unreachable("refused".into())),
            Reject::UpstreamUnreachable
        );
        assert_eq!(
            r(UpstreamError::Timeout(Duration::from_secs(1))),
            Reject::UpstreamTimeout
        );
        assert_eq!(
            r(UpstreamError::status(
                http::StatusCode::INTERNAL_SERVER_ERROR,
                "/history/abc"
            )),
            Reject::UpstreamStatus {
                status: 500,
                route: "/history".into()
            }
        );
        assert_eq!(
            r(UpstreamError::malformed("/queue", "expected value")),
            Reject::UpstreamMalformed {
                route: "/queue".into()
            }
        );
    }
}
