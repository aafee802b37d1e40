//! The pooled hyper client that talks to ComfyUI, with connect and response-header timeouts
//! (the time to the response headers is measured for the metrics).
//!
//! The pool is per thread: each worker (`server::listen`) runs a single-threaded event loop,
//! and a request taking a connection that lives on its own thread is woken without crossing
//! threads (a shared pool hands connections between workers, and every response then costs
//! a cross-thread wake-up).
use crate::body::Body;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::cell::RefCell;
use std::time::Duration;

#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    #[error("ComfyUI is unreachable: {0}")]
    Unreachable(String),
    #[error("ComfyUI did not answer within {0:?}")]
    Timeout(Duration),
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
