//! Outbound HTTPS to the OpenID provider: one HTTP/1.1 request per connection (discovery, keys
//! and the code exchange are rare), rustls trusting the operating system's roots plus the
//! configured `ca_file`, a deadline on the whole exchange and a bound on the answer's size.
//! Only `https://` URLs are fetched.
use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The longest a request to the provider may take, connection to last byte.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// The largest answer read from the provider.
pub const MAX_ANSWER: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    #[error("not an https URL")]
    NotHttps,
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("HTTP: {0}")]
    Http(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("the answer is larger than {MAX_ANSWER} bytes")]
    TooLarge,
}

fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| rustls_native_certs::load_native_certs().certs)
}

/// The TLS client configuration: system roots plus `extra` (the configured `ca_file`).
pub fn tls_config(
    extra: &[CertificateDer<'static>],
) -> Result<Arc<rustls::ClientConfig>, OutboundError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(system_roots().iter().cloned());
    roots.add_parsable_certificates(extra.iter().cloned());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| OutboundError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// One request; the answer's status and body (at most [`MAX_ANSWER`] bytes).
pub async fn request(
    tls: Arc<rustls::ClientConfig>,
    method: Method,
    url: &str,
    headers: &[(header::HeaderName, String)],
    body: Option<Bytes>,
) -> Result<(StatusCode, Bytes), OutboundError> {
    tokio::time::timeout(TIMEOUT, exchange(tls, method, url, headers, body))
        .await
        .map_err(|_| OutboundError::Timeout(TIMEOUT))?
}

async fn exchange(
    tls: Arc<rustls::ClientConfig>,
    method: Method,
    url: &str,
    headers: &[(header::HeaderName, String)],
    body: Option<Bytes>,
) -> Result<(StatusCode, Bytes), OutboundError> {
    let uri: http::Uri = url.parse().map_err(|_| OutboundError::NotHttps)?;
    if uri.scheme_str() != Some("https") {
        return Err(OutboundError::NotHttps);
    }
    let host = uri.host().ok_or(OutboundError::NotHttps)?;
    let bare_host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri.port_u16().unwrap_or(443);
    let tcp = tokio::net::TcpStream::connect((bare_host.as_str(), port))
        .await
        .map_err(|e| OutboundError::Connect(e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    let name = ServerName::try_from(bare_host).map_err(|e| OutboundError::Tls(e.to_string()))?;
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .map_err(|e| OutboundError::Tls(e.to_string()))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| OutboundError::Http(e.to_string()))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let authority = uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .unwrap_or_default();
    let mut builder = Request::builder()
        .method(method)
        .uri(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
        .header(header::HOST, authority)
        .header(header::USER_AGENT, "comfy-warden")
        .header(header::ACCEPT, "application/json");
    for (k, v) in headers {
        builder = builder.header(k, v);
    }
    let req = builder
        .body(Full::new(body.unwrap_or_default()))
        .map_err(|e| OutboundError::Http(e.to_string()))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| OutboundError::Http(e.to_string()))?;
    let status = resp.status();
    let bytes = Limited::new(resp.into_body(), MAX_ANSWER)
        .collect()
        .await
        .map_err(|_| OutboundError::TooLarge)?
        .to_bytes();
    Ok((status, bytes))
}
