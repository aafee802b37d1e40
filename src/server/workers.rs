//! The worker threads that serve connections. Each worker is a single-threaded tokio runtime:
//! a connection handed to it stays on it with its requests, its WebSocket relay and its
//! upstream connections (the upstream pool is per thread, `proxy::upstream`), so the hot path
//! never crosses threads, as in nginx's worker model. The accept loops (`listen`, on the
//! control runtime) hand each admitted connection to the worker with the fewest open
//! connections, so keep-alive connections and long-lived WebSockets spread evenly. Each worker
//! beats a heartbeat for the watchdog, and on shutdown drains its own connections for at most
//! `server.shutdown_grace`.
use super::conn;
use super::conn::Role;
use crate::app::App;
use crate::guard::conns::Slot;
use crate::ops::watchdog::{Heartbeat, Heartbeats};
use hyper_util::server::graceful::GracefulShutdown;
use prometheus_client::metrics::gauge::Gauge;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::{mpsc, oneshot};

/// An admitted connection on its way to a worker.
pub struct Handoff {
    pub stream: std::net::TcpStream,
    pub peer: SocketAddr,
    pub role: Role,
    pub slot: Slot,
    /// The TLS configuration for this handshake (the newest good certificate).
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// A place in a worker's count of open connections, given back when the connection (or the
/// WebSocket relay it became) ends.
pub struct Load(Gauge);

impl Drop for Load {
    fn drop(&mut self) {
        self.0.dec();
    }
}

struct Worker {
    tx: mpsc::UnboundedSender<(Handoff, Load)>,
    /// Its open connections: the `worker_connections_open` metric.
    open: Gauge,
}

/// Where the accept loops send connections.
pub struct Dispatch {
    workers: Vec<Worker>,
    /// Where the search for the least busy worker starts (rotates, so ties are shared).
    next: AtomicUsize,
}

impl Dispatch {
    /// Hands `h` to the worker with the fewest open connections. A worker that is gone is
    /// skipped; with none left the connection is closed.
    pub fn send(&self, mut h: Handoff) {
        let n = self.workers.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let rotated = (0..n).map(|i| (start + i) % n);
        let least_busy = rotated
            .clone()
            .min_by_key(|&i| self.workers.get(i).map_or(i64::MAX, |w| w.open.get()));
        // A worker that is gone (only at shutdown) refuses; then the others are tried in turn.
        for i in least_busy.into_iter().chain(rotated) {
            let Some(w) = self.workers.get(i) else {
                continue;
            };
            w.open.inc();
            match w.tx.send((h, Load(w.open.clone()))) {
                Ok(()) => return,
                Err(mpsc::error::SendError((back, _load))) => h = back,
            }
        }
        // Expected only while shutting down (the workers stop taking connections first).
        tracing::warn!(peer = %h.peer, "no worker is running; connection closed");
    }
}

/// The running workers; [`Workers::join`] waits until every one has drained.
pub struct Workers {
    done: Vec<oneshot::Receiver<bool>>,
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

/// Starts `count` worker threads (`worker-0`, …). Called before the daemon reports READY.
pub fn start(
    app: &Arc<App>,
    beats: &Heartbeats,
    count: usize,
) -> std::io::Result<(Arc<Dispatch>, Workers)> {
    let mut workers = Vec::new();
    let mut done = Vec::new();
    for index in 0..count.max(1) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        crate::ops::metrics::register_runtime(runtime.handle().clone());
        let (tx, rx) = mpsc::unbounded_channel();
        let (done_tx, done_rx) = oneshot::channel();
        let app = app.clone();
        let beat = beats.register(format!("worker {index}"));
        let period = beats.period();
        std::thread::Builder::new()
            .name(format!("worker-{index}"))
            .spawn(move || {
                let drained = runtime.block_on(run(index, app.clone(), rx, beat, period));
                if !*app.shutdown.borrow() {
                    tracing::error!(worker = index, "a worker stopped outside shutdown");
                }
                // Blocking tasks still running (a stuck file operation) must not hold up the
                // exit and the final state snapshot.
                runtime.shutdown_timeout(std::time::Duration::from_secs(1));
                let _ = done_tx.send(drained);
            })?;
        workers.push(Worker {
            tx,
            open: crate::ops::metrics::global().worker_connections(index),
        });
        done.push(done_rx);
    }
    let dispatch = Dispatch {
        workers,
        next: AtomicUsize::new(0),
    };
    Ok((Arc::new(dispatch), Workers { done }))
}

/// One worker: serves what it is handed until shutdown, then drains; `true` when every
/// connection ended before the deadline.
async fn run(
    index: usize,
    app: Arc<App>,
    mut rx: mpsc::UnboundedReceiver<(Handoff, Load)>,
    beat: Heartbeat,
    period: std::time::Duration,
) -> bool {
    let graceful = GracefulShutdown::new();
    let mut shutdown = app.shutdown.clone();
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            got = rx.recv() => {
                let Some((h, load)) = got else { break };
                // Non-blocking already (tokio's `into_std` keeps it so).
                let stream = match tokio::net::TcpStream::from_std(h.stream) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, worker = index, "cannot take over a connection");
                        continue;
                    }
                };
                conn::spawn(conn::Accepted {
                    app: app.clone(),
                    stream,
                    peer: h.peer,
                    role: h.role,
                    hold: crate::guard::conns::ConnHold(Arc::new((h.slot, load))),
                    tls: h.tls,
                    watcher: graceful.watcher(),
                });
            }
            _ = tick.tick() => beat.beat(),
            _ = crate::shutdown::shutting_down(&mut shutdown) => break,
        }
    }
    drop(rx);
    let grace = app.config.get().server.shutdown_grace;
    tokio::select! {
        _ = graceful.shutdown() => true,
        _ = tokio::time::sleep(grace) => {
            tracing::warn!(?grace, worker = index, "drain deadline reached; closing remaining connections");
            false
        }
    }
}
