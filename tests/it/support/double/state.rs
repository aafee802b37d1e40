//! Shared server state: users, files, the prompt queue (a Python `heapq` replica), history,
//! the node output cache, connected WebSockets and the send helpers (`PromptServer.send*`).

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc};
use tokio::task::AbortHandle;
use tokio_tungstenite::tungstenite::Message;

use super::Received;
use super::files::Vfs;
use super::pyjson;

pub const MAX_UPLOAD: u64 = 104_857_600;
pub const SENSITIVE_EXTRA_DATA_KEYS: &[&str] = &["auth_token_comfy_org", "api_key_comfy_org"];
const MAXIMUM_HISTORY_SIZE: usize = 10000;

pub struct Shared {
    pub inner: Mutex<Inner>,
    pub worker_wake: Notify,
    pub release_wake: Notify,
    pub received: Mutex<Vec<Arc<Mutex<Received>>>>,
    pub listener: Mutex<Option<TcpListener>>,
    pub tasks: Mutex<Vec<AbortHandle>>,
    pub stopped: AtomicBool,
    /// A real frontend's `static` directory (`comfyui_frontend_package/static`), served at `/`
    /// instead of the synthesised bundle when set (see `frontend.rs`).
    pub frontend: std::sync::OnceLock<std::path::PathBuf>,
    /// Faults switched on by a test (`Double::set_fault`).
    pub faults: super::faults::Faults,
    /// Closed gates (see [`Shared::pass_gate`]) and how many requests reached each gate.
    pub gates: Mutex<std::collections::HashSet<String>>,
    pub gate_arrivals: Mutex<HashMap<String, usize>>,
    pub gate_wake: Notify,
}

pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    pub fn new(listener: TcpListener) -> Shared {
        Shared {
            inner: Mutex::new(Inner::new()),
            worker_wake: Notify::new(),
            release_wake: Notify::new(),
            received: Mutex::new(Vec::new()),
            listener: Mutex::new(Some(listener)),
            tasks: Mutex::new(Vec::new()),
            stopped: AtomicBool::new(false),
            frontend: std::sync::OnceLock::new(),
            faults: Default::default(),
            gates: Mutex::new(Default::default()),
            gate_arrivals: Mutex::new(HashMap::new()),
            gate_wake: Notify::new(),
        }
    }

    /// Counts an arrival at gate `key` and waits while that gate is closed (tests use it to
    /// make one answer slow without sleeping: `Double::close_gate` / `open_gate`).
    pub async fn pass_gate(&self, key: &str) {
        *lock(&self.gate_arrivals).entry(key.to_owned()).or_default() += 1;
        loop {
            let woken = self.gate_wake.notified();
            if !lock(&self.gates).contains(key) {
                return;
            }
            woken.await;
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        lock(&self.inner)
    }

    /// Remember a task so that `stop()` can end it.
    pub fn track(&self, h: AbortHandle) {
        let mut tasks = lock(&self.tasks);
        tasks.retain(|t| !t.is_finished());
        tasks.push(h);
    }
}

/// One connected WebSocket (`self.sockets[sid]` + `self.sockets_metadata[sid]`).
pub struct Socket {
    pub sid: String,
    pub tx: mpsc::UnboundedSender<Message>,
    pub query: String,
    pub feature_flags: Value,
}

/// `(number, prompt_id, prompt, extra_data, outputs_to_execute)`.
#[derive(Clone, Debug)]
pub struct QueueItem {
    pub number: Value,
    pub key: f64,
    pub prompt_id: String,
    pub prompt: Value,
    /// Node ids in the order the client sent them (Python dict order).
    pub node_order: Vec<String>,
    pub extra_data: Value,
    pub outputs: Vec<String>,
}

impl QueueItem {
    pub fn to_json(&self) -> Value {
        json!([
            self.number,
            self.prompt_id,
            self.prompt,
            self.extra_data,
            self.outputs
        ])
    }

    /// `extra_data.get("client_id")`: `None` when absent or null; non-strings never match a sid.
    pub fn client_id(&self) -> Option<String> {
        match self.extra_data.get("client_id") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => Some(format!("\u{0}non-string:{other}")),
        }
    }

    fn lt(&self, other: &QueueItem) -> bool {
        self.key < other.key || (self.key == other.key && self.prompt_id < other.prompt_id)
    }
}

/// A cached node result: the UI part (`{"meta","output"}`) if the node had one.
#[derive(Clone, Debug)]
pub struct CacheEntry {
    pub ui: Option<Value>,
}

pub struct Inner {
    pub users: Vec<(String, String)>,
    pub vfs: Vfs,
    pub number: i64,
    pub queue: Vec<QueueItem>,
    pub running: Option<QueueItem>,
    pub history: Vec<(String, Value)>,
    pub sockets: Vec<Socket>,
    pub client_id: Option<String>,
    pub last_node_id: Option<String>,
    pub last_prompt_id: Option<String>,
    pub cache: HashMap<String, CacheEntry>,
    pub interrupt: bool,
    pub hold: bool,
    /// Whether `/object_info` offers the test node `ZZProgress` (see fixtures.rs).
    pub progress_node: bool,
    pub released: Option<String>,
    pub pending_free: bool,
    /// How long `GET /queue` waits before it reads the queue (a busy event loop).
    pub queue_delay: std::time::Duration,
}

impl Default for Inner {
    fn default() -> Self {
        Self::new()
    }
}

impl Inner {
    pub fn new() -> Inner {
        Inner {
            users: Vec::new(),
            vfs: Vfs::new(),
            number: 0,
            queue: Vec::new(),
            running: None,
            history: Vec::new(),
            sockets: Vec::new(),
            client_id: None,
            last_node_id: None,
            last_prompt_id: None,
            cache: HashMap::new(),
            interrupt: false,
            hold: false,
            progress_node: false,
            released: None,
            pending_free: false,
            queue_delay: std::time::Duration::ZERO,
        }
    }

    // ----- queue -------------------------------------------------------------------------

    pub fn queue_remaining(&self) -> usize {
        self.queue.len() + usize::from(self.running.is_some())
    }

    pub fn queue_info(&self) -> Value {
        json!({"exec_info": {"queue_remaining": self.queue_remaining()}})
    }

    /// `PromptServer.queue_updated`: broadcast `status`.
    pub fn queue_updated(&self) {
        self.send_json("status", json!({"status": self.queue_info()}), None);
    }

    pub fn queue_json(&self) -> Value {
        let running: Vec<Value> = self.running.iter().map(QueueItem::to_json).collect();
        let pending: Vec<Value> = self.queue.iter().map(QueueItem::to_json).collect();
        json!({"queue_running": running, "queue_pending": pending})
    }

    fn sift_down(&mut self, start: usize, mut pos: usize) {
        while pos > start {
            let parent = (pos - 1) >> 1;
            if self.queue[pos].lt(&self.queue[parent]) {
                self.queue.swap(pos, parent);
                pos = parent;
            } else {
                break;
            }
        }
    }

    fn sift_up(&mut self, mut pos: usize) {
        let end = self.queue.len();
        let start = pos;
        let mut child = 2 * pos + 1;
        while child < end {
            let right = child + 1;
            if right < end && !self.queue[child].lt(&self.queue[right]) {
                child = right;
            }
            self.queue.swap(pos, child);
            pos = child;
            child = 2 * pos + 1;
        }
        self.sift_down(start, pos);
    }

    pub fn heap_push(&mut self, item: QueueItem) {
        self.queue.push(item);
        let last = self.queue.len() - 1;
        self.sift_down(0, last);
    }

    pub fn heap_pop(&mut self) -> Option<QueueItem> {
        let last = self.queue.pop()?;
        if self.queue.is_empty() {
            return Some(last);
        }
        let top = std::mem::replace(&mut self.queue[0], last);
        self.sift_up(0);
        Some(top)
    }

    pub fn heapify(&mut self) {
        for i in (0..self.queue.len() / 2).rev() {
            self.sift_up(i);
        }
    }

    /// `PromptQueue.delete_queue_item` for one prompt id.
    pub fn delete_pending(&mut self, prompt_id: &str) {
        if let Some(i) = self.queue.iter().position(|q| q.prompt_id == prompt_id) {
            if self.queue.len() == 1 {
                self.queue.clear();
                self.queue_updated();
            } else {
                self.queue.remove(i);
                self.heapify();
            }
            self.queue_updated();
        }
    }

    // ----- history -----------------------------------------------------------------------

    /// `self.history[id] = entry` (an existing key keeps its position).
    pub fn history_put(&mut self, id: String, entry: Value) {
        if let Some(slot) = self.history.iter_mut().find(|(k, _)| *k == id) {
            slot.1 = entry;
            return;
        }
        if self.history.len() > MAXIMUM_HISTORY_SIZE {
            self.history.remove(0);
        }
        self.history.push((id, entry));
    }

    pub fn history_json(&self, items: &[(String, Value)]) -> String {
        pyjson::dumps_ordered(items.iter().map(|(k, v)| (k.as_str(), pyjson::dumps(v))))
    }

    // ----- users ---------------------------------------------------------------------------

    pub fn user_known(&self, id: &str) -> bool {
        self.users.iter().any(|(k, _)| k == id)
    }

    pub fn users_json(&self) -> String {
        let users = pyjson::dumps_ordered(
            self.users
                .iter()
                .map(|(k, v)| (k.as_str(), pyjson::dumps_str(v))),
        );
        format!("{{\"storage\": \"server\", \"users\": {users}}}")
    }

    /// `UserManager.add_user` (the name is already known to be new).
    pub fn add_user(&mut self, name: &str) -> Result<String, String> {
        let name = name.trim();
        if name.is_empty() {
            return Err("username not provided".into());
        }
        let mut id = String::new();
        let mut in_run = false;
        for c in name.chars() {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                id.push(c);
                in_run = false;
            } else if !in_run {
                id.push('-');
                in_run = true;
            }
        }
        let id = format!("{id}_{}", uuid::Uuid::new_v4());
        self.users.push((id.clone(), name.to_string()));
        Ok(id)
    }

    // ----- websocket sends ---------------------------------------------------------------

    fn socket(&self, sid: &str) -> Option<&Socket> {
        self.sockets.iter().find(|s| s.sid == sid)
    }

    /// `send_json(event, data, sid)`: `None` broadcasts, an unknown sid drops the message.
    pub fn send_json(&self, event: &str, data: Value, sid: Option<&str>) {
        let text = format!(
            "{{\"type\": {}, \"data\": {}}}",
            pyjson::dumps_str(event),
            pyjson::dumps(&data)
        );
        self.send_message(Message::text(text), sid);
    }

    pub fn send_binary(&self, bytes: Vec<u8>, sid: Option<&str>) {
        self.send_message(Message::binary(bytes), sid);
    }

    pub fn send_message(&self, msg: Message, sid: Option<&str>) {
        match sid {
            None => {
                for s in &self.sockets {
                    let _ = s.tx.send(msg.clone());
                }
            }
            Some(sid) => {
                if let Some(s) = self.socket(sid) {
                    let _ = s.tx.send(msg);
                }
            }
        }
    }

    /// `feature_flags.supports_feature(sockets_metadata, sid, "supports_preview_metadata")`.
    pub fn supports_preview_metadata(&self, sid: Option<&str>) -> bool {
        sid.and_then(|sid| self.socket(sid))
            .and_then(|s| s.feature_flags.get("supports_preview_metadata"))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }
}
