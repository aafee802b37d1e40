//! The pooled hyper client that talks to ComfyUI, with connect and response-header timeouts
//! (the time to the response headers is measured for the metrics).
use crate::body::Body;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("ComfyUI is unreachable: {0}")]
    Unreachable(String),
    #[error("ComfyUI did not answer within {0:?}")]
    Timeout(Duration),
}

#[derive(Clone)]
pub struct UpstreamClient {
    client: Client<HttpConnector, Body>,
}

impl UpstreamClient {
    pub fn new(connect_timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(connect_timeout));
        connector.set_nodelay(true);
        connector.enforce_http(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(64)
            .build(connector);
        UpstreamClient { client }
    }

    /// Sends `req`; the timeout covers connecting and waiting for the response headers only,
    /// the body then streams for as long as it takes.
    pub async fn send(
        &self,
        req: Request<Body>,
        timeout: Duration,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let started = std::time::Instant::now();
        let metrics = crate::ops::metrics::global();
        match tokio::time::timeout(timeout, self.client.request(req)).await {
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
}
