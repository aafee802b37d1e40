//! One admitted connection: the TLS handshake (bounded by `server.header_read_timeout`) when the
//! listener has TLS, then HTTP/1.1 or HTTP/2 with upgrades, header read time and size limits,
//! and the service of the listener's role. The connection slot is held until the connection
//! ends (and, for WebSockets, by the relay until the socket closes).
use super::dispatch::{self, Conn};
use crate::app::App;

use crate::guard::conns::ConnHold;
use http::Request;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::Watcher;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpStream;

/// What a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// comfy-warden itself (TLS when configured).
    Main,
    /// Plain HTTP answering every request with a redirect to https.
    Redirect,
    /// Plain HTTP serving only `/metrics`.
    Metrics,
}

impl Role {
    /// The `FileDescriptorName=` of its socket under socket activation.
    pub(super) fn fd_name(self) -> Option<&'static str> {
        match self {
            Role::Main => None,
            Role::Redirect => Some("redirect"),
            Role::Metrics => Some("metrics"),
        }
    }
}

pub struct Accepted {
    pub app: Arc<App>,
    pub stream: TcpStream,
    pub peer: SocketAddr,
    pub role: Role,
    /// Held until the connection (or the WebSocket relay it became) ends.
    pub hold: ConnHold,
    /// The TLS configuration for this handshake (the newest good certificate).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub watcher: Watcher,
}

/// Serves the connection in its own task.
pub fn spawn(a: Accepted) {
    tokio::spawn(async move {
        let Accepted {
            app,
            stream,
            peer,
            role,
            hold,
            tls,
            watcher,
        } = a;
        // Every client socket closes lingering (see `linger`), so refused uploads are answered.
        let stream = super::linger::Lingering::new(stream);
        match tls {
            None => serve(app, TokioIo::new(stream), peer, role, false, hold, watcher).await,
            Some(config) => {
                let limit = app.config.get().server.header_read_timeout;
                let acceptor = tokio_rustls::TlsAcceptor::from(config);
                match tokio::time::timeout(limit, acceptor.accept(stream)).await {
                    Ok(Ok(s)) => serve(app, TokioIo::new(s), peer, role, true, hold, watcher).await,
                    Ok(Err(e)) => tracing::debug!(error = %e, %peer, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
            }
        }
    });
}

async fn serve<I>(
    app: Arc<App>,
    io: I,
    peer: SocketAddr,
    role: Role,
    tls: bool,
    hold: ConnHold,
    watcher: Watcher,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let snap = app.config.get();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(snap.server.header_read_timeout)
        .max_buf_size(snap.server.max_header_bytes);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(snap.server.max_header_bytes).unwrap_or(u32::MAX));
    let conn_info = Conn { peer, tls };
    let hold2 = hold.clone();
    let service = service_fn(move |mut req: Request<Incoming>| {
        let app = app.clone();
        req.extensions_mut().insert(hold2.clone());
        async move {
            match role {
                Role::Main => dispatch::handle(app, conn_info, req).await,
                Role::Redirect => Ok(super::redirect::answer(&app, &req)),
                Role::Metrics => Ok(super::exposition::metrics_listener(&app, &req)),
            }
        }
    });
    let conn = builder
        .serve_connection_with_upgrades(io, service)
        .into_owned();
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(error = %e, %peer, "connection ended with an error");
    }
    drop(hold);
}
