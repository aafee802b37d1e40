//! Listening sockets and the accept loop: binds the configured addresses (or takes sockets from
//! systemd), refuses connections before any HTTP work (IP rules and bans on the peer address
//! when it is not a trusted proxy, connection limits per address and in total), serves
//! HTTP/1.1 and HTTP/2 with upgrades, bounds header read time and size, and drains gracefully
//! on shutdown (in-flight requests finish until the grace deadline).
use super::dispatch::{self, Conn};
use crate::app::App;
use crate::config::{Listen, Snapshot};
use crate::guard::conns::{ConnHold, Slot};
use crate::guard::subject::Subject;
use crate::guard::{client_ip, ip_rules};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("listen = \"systemd\" but no sockets were passed by systemd (LISTEN_FDS): {0}")]
    Systemd(String),
}

/// Binds every configured listener. Called before the daemon reports READY.
pub async fn bind(snap: &Snapshot) -> Result<Vec<TcpListener>, ListenError> {
    let mut out = Vec::new();
    for l in &snap.server.listen {
        match l {
            Listen::Tcp(addr) => {
                let socket = if addr.is_ipv4() {
                    tokio::net::TcpSocket::new_v4()
                } else {
                    tokio::net::TcpSocket::new_v6()
                }
                .map_err(|source| ListenError::Bind {
                    addr: *addr,
                    source,
                })?;
                socket
                    .set_reuseaddr(true)
                    .map_err(|source| ListenError::Bind {
                        addr: *addr,
                        source,
                    })?;
                socket.bind(*addr).map_err(|source| ListenError::Bind {
                    addr: *addr,
                    source,
                })?;
                out.push(socket.listen(1024).map_err(|source| ListenError::Bind {
                    addr: *addr,
                    source,
                })?);
            }
            Listen::Systemd => {
                out.extend(crate::ops::systemd::listeners().map_err(ListenError::Systemd)?)
            }
        }
    }
    Ok(out)
}

/// Serves until `app.shutdown` turns true, then drains for at most `shutdown_grace`.
pub async fn serve(app: Arc<App>, listeners: Vec<TcpListener>) {
    let graceful = Arc::new(GracefulShutdown::new());
    let mut tasks = tokio::task::JoinSet::new();
    for listener in listeners {
        tasks.spawn(accept_loop(app.clone(), listener, graceful.clone()));
    }
    let mut shutdown = app.shutdown.clone();
    crate::app::shutting_down(&mut shutdown).await;
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    let grace = app.config.get().server.shutdown_grace;
    let Ok(graceful) = Arc::try_unwrap(graceful) else {
        tracing::warn!("connections still being accepted at shutdown");
        return;
    };
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("all connections drained"),
        _ = tokio::time::sleep(grace) => tracing::warn!(?grace, "drain deadline reached; closing remaining connections"),
    }
}

async fn accept_loop(app: Arc<App>, listener: TcpListener, graceful: Arc<GracefulShutdown>) {
    match listener.local_addr() {
        Ok(addr) => tracing::info!("listening on {addr}"),
        Err(e) => tracing::warn!(error = %e, "listening on an unknown address"),
    }
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(slot) = admit(&app, peer) else {
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
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
        let conn_info = Conn { peer, tls: false };
        let app2 = app.clone();
        let hold = ConnHold(Arc::new(slot));
        let hold2 = hold.clone();
        let service = service_fn(move |mut req| {
            req.extensions_mut().insert(hold2.clone());
            dispatch::handle(app2.clone(), conn_info, req)
        });
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
            drop(hold);
        });
    }
}

/// The decisions taken on accept, before any HTTP work. A peer that is not a trusted proxy is
/// the client: IP rules and bans apply to it here. Then a connection slot is taken.
fn admit(app: &App, peer: SocketAddr) -> Option<Slot> {
    let snap = app.config.get();
    let ip = client_ip::normalise(peer.ip());
    let from_proxy = client_ip::in_nets(ip, &snap.server.trusted_proxies);
    if !from_proxy {
        let reason = if !ip_rules::admits(&snap.ip_rules, ip) {
            Some("ip_denied")
        } else if app.lockout.is_banned(ip) {
            Some("ip_banned")
        } else {
            None
        };
        if let Some(event) = reason {
            if let Some(held) = app.counters.refused_log.pass() {
                tracing::info!(target: "audit", event, client_ip = %ip, reason = "refused on accept", held_back = held, "connection refused");
            }
            return None;
        }
    }
    let subject = (!from_proxy).then(|| Subject::of(ip));
    match app.connections.acquire(
        subject,
        snap.server.max_connections_per_ip,
        snap.server.max_connections,
    ) {
        Ok(slot) => Some(slot),
        Err(refused) => {
            if let Some(held) = app.counters.refused_log.pass() {
                tracing::warn!(target: "audit", event = "connection_refused", client_ip = %ip, reason = refused.reason(), held_back = held, open = app.connections.open(), "connection refused: limit reached");
            }
            None
        }
    }
}
