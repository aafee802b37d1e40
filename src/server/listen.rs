//! Listening sockets and the accept loops: binds the configured addresses (or takes sockets from
//! systemd), refuses connections before any HTTP or TLS work (IP rules and bans on the peer
//! address when it is not a trusted proxy, connection limits per address and in total), hands
//! each admitted connection to a worker (`workers`, which serves and drains it), and beats a
//! heartbeat for the systemd watchdog.
//!
//! Three kinds of listener: the main one (`server.listen`, TLS when `[server.tls]` is set), the
//! redirect-only plain listener (`server.http_redirect`) and the metrics listener
//! (`server.metrics_listen`). Under socket activation the systemd sockets named `redirect` and
//! `metrics` (`FileDescriptorName=`) are those two; every other passed socket is a main one.
use super::conn::Role;
use super::workers::{Dispatch, Handoff};
use crate::app::App;
use crate::config::{Listen, Snapshot};
use crate::guard::conns::Slot;
use crate::guard::subject::Subject;
use crate::guard::{client_ip, ip_rules};
use crate::ops::tls::TlsStore;
use crate::ops::watchdog::{Heartbeat, Heartbeats};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("a \"systemd\" listener is configured but systemd passed no usable sockets: {0}")]
    Systemd(String),
}

pub struct Bound {
    pub listener: TcpListener,
    pub role: Role,
}

fn bind_tcp(addr: SocketAddr) -> Result<TcpListener, ListenError> {
    let err = |source| ListenError::Bind { addr, source };
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .map_err(err)?;
    socket.set_reuseaddr(true).map_err(err)?;
    socket.bind(addr).map_err(err)?;
    socket.listen(1024).map_err(err)
}

/// Binds every configured listener. Called before the daemon reports READY.
pub async fn bind(snap: &Snapshot) -> Result<Vec<Bound>, ListenError> {
    let s = &snap.server;
    let wanted: Vec<(Role, &Listen)> = s
        .listen
        .iter()
        .map(|l| (Role::Main, l))
        .chain(s.http_redirect.iter().map(|l| (Role::Redirect, l)))
        .chain(s.metrics_listen.iter().map(|l| (Role::Metrics, l)))
        .collect();
    let mut passed: Option<Vec<(String, std::net::TcpListener)>> = None;
    let mut out = Vec::new();
    for (role, l) in wanted {
        match l {
            Listen::Tcp(addr) => out.push(Bound {
                listener: bind_tcp(*addr)?,
                role,
            }),
            Listen::Systemd => {
                if passed.is_none() {
                    passed = Some(crate::ops::systemd::listeners().map_err(ListenError::Systemd)?);
                }
                let pool = passed.get_or_insert_with(Vec::new);
                let mine = |name: &str| match role.fd_name() {
                    Some(n) => name == n,
                    None => !matches!(name, "redirect" | "metrics"),
                };
                let (take, keep): (Vec<_>, Vec<_>) = pool.drain(..).partition(|(n, _)| mine(n));
                *pool = keep;
                if take.is_empty() {
                    return Err(ListenError::Systemd(match role.fd_name() {
                        Some(n) => format!("no socket named {n:?} (FileDescriptorName={n})"),
                        None => {
                            "no socket for the main listener (one not named redirect or metrics)"
                                .into()
                        }
                    }));
                }
                for (_, std_listener) in take {
                    let listener = TcpListener::from_std(std_listener)
                        .map_err(|e| ListenError::Systemd(e.to_string()))?;
                    out.push(Bound { listener, role });
                }
            }
        }
    }
    Ok(out)
}

/// What the accept loops share besides the app.
pub struct Serving {
    pub tls: Option<Arc<TlsStore>>,
    pub beats: Arc<Heartbeats>,
    /// The workers that serve admitted connections.
    pub workers: Arc<Dispatch>,
}

/// Accepts until `app.shutdown` turns true (the workers then drain what they serve).
pub async fn serve(app: Arc<App>, listeners: Vec<Bound>, serving: Arc<Serving>) {
    let mut tasks = tokio::task::JoinSet::new();
    for b in listeners {
        let name = match b.listener.local_addr() {
            Ok(a) => format!("accept loop {a}"),
            Err(_) => "accept loop".into(),
        };
        let beat = serving.beats.register(name);
        tasks.spawn(accept_loop(app.clone(), b, serving.clone(), beat));
    }
    let mut shutdown = app.shutdown.clone();
    crate::shutdown::shutting_down(&mut shutdown).await;
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
}

fn announce(role: Role, tls: bool, addr: Option<SocketAddr>) {
    let Some(addr) = addr else {
        tracing::warn!(?role, "listening on an unknown address");
        return;
    };
    // "listening on ADDR" is the main listener's line, exactly (scripts and tests read it).
    match role {
        Role::Main => {
            tracing::info!("listening on {addr}");
            if tls {
                tracing::info!("TLS is on for {addr}");
            }
        }
        Role::Redirect => tracing::info!("redirecting to https on {addr}"),
        Role::Metrics => tracing::info!("serving metrics on {addr}"),
    }
}

async fn accept_loop(app: Arc<App>, bound: Bound, serving: Arc<Serving>, beat: Heartbeat) {
    let Bound { listener, role } = bound;
    let tls = if role == Role::Main {
        serving.tls.clone()
    } else {
        None
    };
    announce(role, tls.is_some(), listener.local_addr().ok());
    let mut tick = tokio::time::interval(serving.beats.period());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = tick.tick() => {
                beat.beat();
                continue;
            }
        };
        let (stream, peer) = match accepted {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(slot) = admit(&app, peer) else {
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot hand over a connection");
                continue;
            }
        };
        serving.workers.send(Handoff {
            stream,
            peer,
            role,
            slot,
            tls: tls.as_ref().map(|t| t.current()),
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
