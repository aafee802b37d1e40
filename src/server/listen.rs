//! Listening sockets and the accept loops: binds the configured addresses (or takes sockets from
//! systemd), refuses connections before any HTTP or TLS work (IP rules and bans on the peer
//! address when it is not a trusted proxy, connection limits per address and in total), hands
//! each admitted connection to `conn`, beats a heartbeat for the systemd watchdog, and drains
//! gracefully on shutdown (in-flight requests finish until the grace deadline).
//!
//! Three kinds of listener: the main one (`server.listen`, TLS when `[server.tls]` is set), the
//! redirect-only plain listener (`server.http_redirect`) and the metrics listener
//! (`server.metrics_listen`). Under socket activation the systemd sockets named `redirect` and
//! `metrics` (`FileDescriptorName=`) are those two; every other passed socket is a main one.
use super::conn;
use crate::app::App;
use crate::config::{Listen, Snapshot};
use crate::guard::conns::Slot;
use crate::guard::subject::Subject;
use crate::guard::{client_ip, ip_rules};
use crate::ops::tls::TlsStore;
use crate::ops::watchdog::{Heartbeat, Heartbeats};
use hyper_util::server::graceful::GracefulShutdown;
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
    #[error("cannot start a worker: {0}")]
    Worker(std::io::Error),
    #[error("a \"systemd\" listener is configured but systemd passed no usable sockets: {0}")]
    Systemd(String),
}

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
    fn fd_name(self) -> Option<&'static str> {
        match self {
            Role::Main => None,
            Role::Redirect => Some("redirect"),
            Role::Metrics => Some("metrics"),
        }
    }
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
}

/// The running workers; [`Workers::join`] waits until every one has drained.
pub struct Workers {
    done: Vec<tokio::sync::oneshot::Receiver<bool>>,
}

impl Workers {
    pub async fn join(self) {
        let mut drained = true;
        for d in self.done {
            // An error means the worker thread ended without saying so (it panicked): nothing
            // is left to wait for.
            drained &= d.await.unwrap_or(false);
        }
        if drained {
            tracing::info!("all connections drained");
        }
    }
}

/// Starts `server.workers` worker threads, each running its own single-threaded event loop
/// with an accept loop on every listener (the listening sockets are shared; the kernel wakes
/// the workers and one of them takes each connection). A connection lives on the worker that
/// accepted it, together with its upstream requests (the upstream pool is per thread,
/// `proxy::upstream`): no hand-offs between threads on the hot path, as in nginx's worker
/// model. Each worker serves until `app.shutdown` turns true, then drains its connections for
/// at most `shutdown_grace`. Called before the daemon reports READY.
pub fn start(
    app: Arc<App>,
    listeners: Vec<Bound>,
    serving: Arc<Serving>,
) -> Result<Workers, ListenError> {
    let workers = app.config.get().server.workers.max(1);
    let mut shared = Vec::new();
    for b in listeners {
        let addr = b.listener.local_addr().ok();
        let tls = b.role == Role::Main && serving.tls.is_some();
        let std_listener = b.listener.into_std().map_err(ListenError::Worker)?;
        announce(b.role, tls, addr);
        shared.push((std_listener, b.role));
    }
    let mut done = Vec::new();
    for i in 0..workers {
        let mut own = Vec::new();
        for (l, role) in &shared {
            own.push((l.try_clone().map_err(ListenError::Worker)?, *role));
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(ListenError::Worker)?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (app, serving) = (app.clone(), serving.clone());
        std::thread::Builder::new()
            .name(format!("worker-{i}"))
            .spawn(move || {
                let drained = runtime.block_on(worker(i, app, own, serving));
                drop(runtime);
                let _ = tx.send(drained);
            })
            .map_err(ListenError::Worker)?;
        done.push(rx);
    }
    Ok(Workers { done })
}

/// One worker: its accept loops until shutdown, then the drain; `true` when every connection
/// ended before the deadline.
async fn worker(
    index: usize,
    app: Arc<App>,
    listeners: Vec<(std::net::TcpListener, Role)>,
    serving: Arc<Serving>,
) -> bool {
    let graceful = Arc::new(GracefulShutdown::new());
    let mut tasks = tokio::task::JoinSet::new();
    for (std_listener, role) in listeners {
        let listener = match TcpListener::from_std(std_listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, worker = index, "cannot register a listener");
                continue;
            }
        };
        let name = match listener.local_addr() {
            Ok(a) => format!("worker {index} accept loop {a}"),
            Err(_) => format!("worker {index} accept loop"),
        };
        let beat = serving.beats.register(name);
        tasks.spawn(accept_loop(
            app.clone(),
            Bound { listener, role },
            serving.clone(),
            graceful.clone(),
            beat,
        ));
    }
    let mut shutdown = app.shutdown.clone();
    crate::app::shutting_down(&mut shutdown).await;
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    let grace = app.config.get().server.shutdown_grace;
    let Ok(graceful) = Arc::try_unwrap(graceful) else {
        tracing::warn!(
            worker = index,
            "connections still being accepted at shutdown"
        );
        return false;
    };
    tokio::select! {
        _ = graceful.shutdown() => true,
        _ = tokio::time::sleep(grace) => {
            tracing::warn!(?grace, worker = index, "drain deadline reached; closing remaining connections");
            false
        }
    }
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

async fn accept_loop(
    app: Arc<App>,
    bound: Bound,
    serving: Arc<Serving>,
    graceful: Arc<GracefulShutdown>,
    beat: Heartbeat,
) {
    let Bound { listener, role } = bound;
    let tls = if role == Role::Main {
        serving.tls.clone()
    } else {
        None
    };
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
        conn::spawn(conn::Accepted {
            app: app.clone(),
            stream,
            peer,
            role,
            slot,
            tls: tls.as_ref().map(|t| t.current()),
            watcher: graceful.watcher(),
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
