//! An in-process test double of ComfyUI 0.3.64 started with `--multi-user --cpu`: the HTTP
//! routes (at `/X` and `/api/X`), the WebSocket protocol, the queue/worker/history, and
//! in-memory input/output/temp/user files, answering with the recorded shapes and headers
//! (`tests/fixtures/comfyui-0.3.64/`). See `/work/shared/reference/comfyui-0.3.64-api.md`.

mod blob;
mod exec;
mod faults;
mod files;
mod fixtures;
mod frontend;
mod http;
mod paths;
mod prompt;
mod pyjson;
mod routes;
mod server;
mod state;
mod upload;
mod userdata;
mod ws;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use serde_json::Value;
use tokio::net::TcpListener;

use blob::Blob;
pub use faults::Fault;
use state::{Shared, lock};

/// One HTTP request as the double received it.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: String,
    /// Raw path as sent (percent-encoding kept), without the query.
    pub path: String,
    pub query: Option<String>,
    /// Header names lowercased; values of one name keep their order.
    pub headers: Vec<(String, String)>,
    /// The first 1 MiB of the body.
    pub body: Bytes,
    pub body_len: u64,
    pub body_sha256: String,
}

impl Received {
    /// First value of a header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a header, in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .filter(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The body parsed as JSON (panics with the body text if it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body of {} {} is not JSON ({e}): {:?}",
                self.method,
                self.path,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// A stored input/output/temp file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredFile {
    pub len: u64,
    pub sha256: String,
    /// The contents when at most 8 MiB.
    pub bytes: Option<Vec<u8>>,
}

/// A connected WebSocket.
#[derive(Clone, Debug)]
pub struct WsClient {
    pub sid: String,
    /// Raw query string of the upgrade request (without `?`).
    pub query: String,
}

pub struct Double {
    shared: Arc<Shared>,
    addr: SocketAddr,
}

fn kind_dir(kind: &str) -> &'static str {
    paths::dir_for_kind(kind)
        .unwrap_or_else(|| panic!("unknown file kind {kind:?} (input|output|temp)"))
}

fn file_path(kind: &str, subfolder: &str, name: &str) -> String {
    paths::abspath(&paths::join(&paths::join(kind_dir(kind), subfolder), name))
}

impl Double {
    /// Bind `127.0.0.1:0` and serve in background tasks.
    pub async fn start() -> Double {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the ComfyUI double");
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(Shared::new(listener));
        let accept = tokio::spawn(server::accept_loop(shared.clone()));
        shared.track(accept.abort_handle());
        let worker = tokio::spawn(exec::worker(shared.clone()));
        shared.track(worker.abort_handle());
        Double { shared, addr }
    }

    /// Like [`Double::start`], serving the real frontend in `static_dir` (the `static` folder of
    /// `comfyui_frontend_package`) at `/` and its static paths.
    pub async fn start_with_frontend(static_dir: std::path::PathBuf) -> Double {
        let d = Double::start().await;
        let _ = d.shared.frontend.set(static_dir);
        d
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every HTTP request so far (including WebSocket upgrades), in arrival order.
    pub fn received(&self) -> Vec<Received> {
        lock(&self.shared.received)
            .iter()
            .map(|r| lock(r).clone())
            .collect()
    }

    /// The requests whose raw path (without query) equals `path`.
    pub fn received_path(&self, path: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    pub fn clear_received(&self) {
        lock(&self.shared.received).clear();
    }

    /// Simulate ComfyUI going down: close the listener (new connections are refused), drop
    /// every open connection and WebSocket, and stop the worker.
    pub fn stop(&self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        drop(lock(&self.shared.listener).take());
        for t in lock(&self.shared.tasks).drain(..) {
            t.abort();
        }
        self.shared.lock().sockets.clear();
    }

    /// From now on, answer `method path` (decoded, without `/api`) with `fault`; its body names
    /// `leak` (see `faults.rs`).
    pub fn set_fault(&self, method: &str, path: &str, fault: Fault, leak: &str) {
        self.shared.faults.set(method, path, fault, leak);
    }

    /// Back to normal answers; requests held by [`Fault::Slow`] are answered now.
    pub fn clear_faults(&self) {
        self.shared.faults.clear();
    }

    /// ComfyUI coming back after [`Double::stop`]: listens on the same address again with its
    /// state (users, files, history) kept, as a restarted ComfyUI keeps its disk.
    pub async fn restart(&self) {
        let listener = TcpListener::bind(self.addr)
            .await
            .expect("bind the ComfyUI double again");
        *lock(&self.shared.listener) = Some(listener);
        self.shared.stopped.store(false, Ordering::SeqCst);
        let accept = tokio::spawn(server::accept_loop(self.shared.clone()));
        self.shared.track(accept.abort_handle());
        let worker = tokio::spawn(exec::worker(self.shared.clone()));
        self.shared.track(worker.abort_handle());
    }

    /// Like `POST /users {"username": name}`; returns the new id (or the existing id when
    /// the name is already taken).
    pub fn add_user(&self, name: &str) -> String {
        let mut g = self.shared.lock();
        if let Some((id, _)) = g.users.iter().find(|(_, n)| n == name.trim()) {
            return id.clone();
        }
        g.add_user(name)
            .unwrap_or_else(|e| panic!("add_user({name:?}): {e}"))
    }

    /// The `users.json` map, in insertion order.
    pub fn users(&self) -> Vec<(String, String)> {
        self.shared.lock().users.clone()
    }

    /// Store a file (parent directories are created).
    pub fn put_file(&self, kind: &str, subfolder: &str, name: &str, bytes: Vec<u8>) {
        let p = file_path(kind, subfolder, name);
        self.shared.lock().vfs.put(&p, Blob::from_bytes(bytes));
    }

    /// Store a generated file of `size` bytes (byte i = i % 251), streamed by `/view` in
    /// 64 KiB chunks and never held in memory.
    pub fn put_large_file(&self, kind: &str, subfolder: &str, name: &str, size: u64) {
        let p = file_path(kind, subfolder, name);
        self.shared.lock().vfs.put(&p, Blob::pattern(size));
    }

    /// Delete a stored file; true if it existed.
    pub fn remove_file(&self, kind: &str, subfolder: &str, name: &str) -> bool {
        let p = file_path(kind, subfolder, name);
        self.shared.lock().vfs.remove_file(&p)
    }

    pub fn stored_file(&self, kind: &str, subfolder: &str, name: &str) -> Option<StoredFile> {
        let p = file_path(kind, subfolder, name);
        let blob = self.shared.lock().vfs.get(&p).map(|e| e.blob.clone())?;
        Some(StoredFile {
            len: blob.len(),
            sha256: blob.sha256(),
            bytes: blob.small_bytes().map(|b| b.to_vec()),
        })
    }

    /// Files below input/output/temp as `subfolder/name` paths relative to that directory.
    pub fn list_files(&self, kind: &str) -> Vec<String> {
        let dir = kind_dir(kind);
        self.shared
            .lock()
            .vfs
            .files_under(dir)
            .iter()
            .map(|f| paths::relpath(f, dir))
            .collect()
    }

    /// A file in a user's directory (`path` relative to `user/<id>/`).
    pub fn userdata_file(&self, user_id: &str, path: &str) -> Option<StoredFile> {
        let p = paths::abspath(&paths::join(&paths::join(paths::USER, user_id), path));
        let blob = self.shared.lock().vfs.get(&p).map(|e| e.blob.clone())?;
        Some(StoredFile {
            len: blob.len(),
            sha256: blob.sha256(),
            bytes: blob.small_bytes().map(|b| b.to_vec()),
        })
    }

    /// When true, the next prompt to run stops after its first `executing` and stays running
    /// until [`Double::release`] (or an interrupt). Setting it to false lets a held run go on.
    pub fn set_hold(&self, hold: bool) {
        self.shared.lock().hold = hold;
        self.shared.release_wake.notify_waiters();
    }

    /// Closes gate `key`: requests reaching it wait until [`Double::open_gate`]. Gates:
    /// `"GET /history"`, `"POST /users <username>"`.
    pub fn close_gate(&self, key: &str) {
        lock(&self.shared.gates).insert(key.to_owned());
    }

    pub fn open_gate(&self, key: &str) {
        lock(&self.shared.gates).remove(key);
        self.shared.gate_wake.notify_waiters();
    }

    /// How many requests reached gate `key` so far (waiting or passed).
    pub fn gate_arrivals(&self, key: &str) -> usize {
        lock(&self.shared.gate_arrivals)
            .get(key)
            .copied()
            .unwrap_or(0)
    }

    /// Let the running (held) prompt finish.
    pub fn release(&self) {
        {
            let mut g = self.shared.lock();
            g.released = g.running.as_ref().map(|r| r.prompt_id.clone());
        }
        self.shared.release_wake.notify_waiters();
    }

    /// Currently connected WebSockets (in the server's map).
    pub fn ws_clients(&self) -> Vec<WsClient> {
        self.shared
            .lock()
            .sockets
            .iter()
            .map(|s| WsClient {
                sid: s.sid.clone(),
                query: s.query.clone(),
            })
            .collect()
    }

    /// Send a text frame with this JSON to every socket.
    pub async fn broadcast_ws_text(&self, json: Value) {
        let text = pyjson::dumps(&json);
        self.shared
            .lock()
            .send_message(tokio_tungstenite::tungstenite::Message::text(text), None);
    }

    /// The JSON of `GET /queue`.
    pub fn queue_snapshot(&self) -> Value {
        self.shared.lock().queue_json()
    }

    /// History prompt ids in insertion order.
    pub fn history_ids(&self) -> Vec<String> {
        self.shared
            .lock()
            .history
            .iter()
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Offer the test node `ZZProgress` in `/object_info`: it reports progress like a sampler
    /// (preview frames, `send_progress_text`), which ComfyUI's core file nodes never do.
    pub fn enable_progress_node(&self) {
        self.shared.lock().progress_node = true;
    }

    /// Make `GET /queue` wait `delay` before it reads the queue (as a busy ComfyUI does: its
    /// answer then shows the queue of a later moment than the request).
    pub fn set_queue_delay(&self, delay: std::time::Duration) {
        self.shared.lock().queue_delay = delay;
    }

    /// A recording from `tests/fixtures/comfyui-0.3.64/` (`{"request","status","headers","body"}`).
    pub fn recording(name: &str) -> Value {
        fixtures::load(name)
    }
}

impl Drop for Double {
    fn drop(&mut self) {
        self.stop();
    }
}
