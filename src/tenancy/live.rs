//! What is happening now: which WebSocket client ids (sids) belong to whom, each user's sink sid,
//! and a short-lived shared copy of ComfyUI's queue (one fetch serves a burst of `status` frames
//! on every socket), and one shared fetch of ComfyUI's `/history` for concurrent `GET /history`
//! requests. Which prompt runs is not kept here: each socket's filter follows it in its own
//! ordered event stream (`events.rs`), because one process-wide value, set from many streams
//! and from `/queue` snapshots, can be overwritten by an older view.
use crate::config::Snapshot;
use crate::proxy::{forward, upstream::UpstreamError};
use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const MAX_SIDS: usize = 50_000;
/// Sids one user may hold; past it their own oldest unconnected ones are forgotten (never
/// another user's, so nobody can free someone else's id to claim it).
const MAX_SIDS_PER_USER: usize = 256;
/// A queue copy younger than this is reused.
pub const QUEUE_FRESH: Duration = Duration::from_millis(150);

struct SidEntry {
    owner: Arc<str>,
    connected: bool,
    at: Instant,
}

#[derive(Default)]
pub struct Live {
    sids: Mutex<HashMap<String, SidEntry>>,
    sinks: Mutex<HashMap<Arc<str>, String>>,
    queue: tokio::sync::Mutex<Option<(Instant, Arc<Value>)>>,
    /// The last `/history` fetch: when it ended and its body or error, kept only while
    /// requests that arrived during it still wait for it (so one copy of up to 256 MiB serves
    /// them all and none outlives them).
    history: tokio::sync::Mutex<Option<(Instant, HistoryFetch)>>,
    history_waiting: AtomicUsize,
}

/// One `/history` fetch: the body shared by its readers, or its error.
type HistoryFetch = Result<Arc<Bytes>, UpstreamError>;

fn new_sid() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A client-chosen id comfy-warden passes on: what ComfyUI's clients make (UUIDs, hex, short
/// names), nothing that needs escaping in a query or a log line.
pub fn valid_client_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Bounds the table before `owner` adds a sid: first `owner`'s own oldest unconnected sid,
/// then, at the global bound, every unconnected one.
fn make_room(sids: &mut HashMap<String, SidEntry>, owner: &Arc<str>) {
    let mut mine = 0;
    let mut oldest: Option<(&String, Instant)> = None;
    for (k, e) in sids.iter().filter(|(_, e)| e.owner == *owner) {
        mine += 1;
        if !e.connected && oldest.is_none_or(|(_, at)| e.at < at) {
            oldest = Some((k, e.at));
        }
    }
    if mine >= MAX_SIDS_PER_USER
        && let Some(k) = oldest.map(|(k, _)| k.clone())
    {
        sids.remove(&k);
    }
    if sids.len() >= MAX_SIDS {
        sids.retain(|_, e| e.connected);
    }
}

/// The running item of a `/queue` answer as (prompt id, client id).
pub fn running_prompt(queue: &Value) -> Option<(String, Option<String>)> {
    let item = queue.get("queue_running")?.as_array()?.first()?;
    let prompt_id = item.get(1)?.as_str()?.to_owned();
    let client_id = item
        .get(3)
        .and_then(|e| e.get("client_id"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    Some((prompt_id, client_id))
}

impl Live {
    /// The upstream client id for a new socket of `owner`, and whether `owner` held it before:
    /// the proposed one when it is `owner`'s or nobody's (then `owner` claims it), else a fresh
    /// random one. Another user's id is never taken over.
    pub fn socket_sid(&self, owner: &Arc<str>, proposed: Option<&str>) -> (String, bool) {
        let mut sids = self.sids.lock().unwrap_or_else(|p| p.into_inner());
        let (sid, known) = match proposed.filter(|p| valid_client_id(p)) {
            Some(p) => match sids.get(p) {
                Some(e) if e.owner == *owner => (p.to_owned(), true),
                Some(_) => (new_sid(), false),
                None => (p.to_owned(), false),
            },
            None => (new_sid(), false),
        };
        if !known {
            make_room(&mut sids, owner);
        }
        sids.insert(
            sid.clone(),
            SidEntry {
                owner: owner.clone(),
                connected: true,
                at: Instant::now(),
            },
        );
        (sid, known)
    }

    pub fn socket_closed(&self, sid: &str) {
        if let Some(e) = self
            .sids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(sid)
        {
            e.connected = false;
        }
    }

    pub fn sid_owner(&self, sid: &str) -> Option<Arc<str>> {
        self.sids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(sid)
            .map(|e| e.owner.clone())
    }

    /// The `client_id` for a prompt of `owner`: the proposed id when it is `owner`'s or nobody's
    /// (then `owner` claims it, so a socket opened later with that id gets the run's events),
    /// else the most recently connected socket of `owner`, else `owner`'s sink id (a sid with no
    /// socket: ComfyUI then sends the run's events nowhere instead of broadcasting them).
    pub fn prompt_client_id(&self, owner: &Arc<str>, proposed: Option<&str>) -> String {
        {
            let mut sids = self.sids.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(p) = proposed.filter(|p| valid_client_id(p)) {
                match sids.get(p) {
                    Some(e) if e.owner == *owner => return p.to_owned(),
                    Some(_) => {}
                    None => {
                        make_room(&mut sids, owner);
                        sids.insert(
                            p.to_owned(),
                            SidEntry {
                                owner: owner.clone(),
                                connected: false,
                                at: Instant::now(),
                            },
                        );
                        return p.to_owned();
                    }
                }
            }
            if let Some((sid, _)) = sids
                .iter()
                .filter(|(_, e)| e.owner == *owner && e.connected)
                .max_by_key(|(_, e)| e.at)
            {
                return sid.clone();
            }
        }
        let mut sinks = self.sinks.lock().unwrap_or_else(|p| p.into_inner());
        let sink = sinks.entry(owner.clone()).or_insert_with(new_sid).clone();
        drop(sinks);
        let mut sids = self.sids.lock().unwrap_or_else(|p| p.into_inner());
        sids.entry(sink.clone()).or_insert(SidEntry {
            owner: owner.clone(),
            connected: false,
            at: Instant::now(),
        });
        sink
    }

    /// ComfyUI's `/queue`, shared by everyone for [`QUEUE_FRESH`].
    pub async fn queue(
        &self,
        snap: &Snapshot,
        fresh: Duration,
    ) -> Result<Arc<Value>, UpstreamError> {
        let since = Instant::now()
            .checked_sub(fresh)
            .unwrap_or_else(Instant::now);
        self.queue_since(snap, since).await
    }

    /// ComfyUI's `/queue` as fetched no earlier than `since`: a `status` frame that arrived at
    /// `since` must be counted from a copy taken after it (one fetch serves every socket that
    /// got the same frame, the others wait for it).
    pub async fn queue_since(
        &self,
        snap: &Snapshot,
        since: Instant,
    ) -> Result<Arc<Value>, UpstreamError> {
        let mut cached = self.queue.lock().await;
        if let Some((started, q)) = cached.as_ref()
            && *started >= since
        {
            return Ok(q.clone());
        }
        let started = Instant::now();
        let (status, _, body) = forward::call(snap, Method::GET, "/queue", None, None).await?;
        if status != StatusCode::OK {
            return Err(UpstreamError::status(status, "/queue"));
        }
        let v: Value =
            serde_json::from_slice(&body).map_err(|e| UpstreamError::malformed("/queue", e))?;
        let v = Arc::new(v);
        *cached = Some((started, v.clone()));
        Ok(v)
    }

    /// Forgets the shared queue copy (after this process changed the queue or history).
    pub async fn queue_changed(&self) {
        *self.queue.lock().await = None;
        *self.history.lock().await = None;
    }

    /// ComfyUI's whole `/history` body. Concurrent requests share one fetch: those arriving
    /// while it runs wait for it and get the same bytes (or the same error).
    pub async fn history(&self, snap: &Snapshot) -> Result<Arc<Bytes>, UpstreamError> {
        let arrived = Instant::now();
        self.history_waiting.fetch_add(1, Ordering::Relaxed);
        let mut last = self.history.lock().await;
        self.history_waiting.fetch_sub(1, Ordering::Relaxed);
        // A fetch that ended after this request arrived ran while it waited: its answer (or
        // error) is as fresh as one this request would have fetched itself.
        let shared = match last.as_ref() {
            Some((ended, result)) if *ended >= arrived => Some(result.clone()),
            _ => None,
        };
        if let Some(result) = shared {
            if self.history_waiting.load(Ordering::Relaxed) == 0 {
                *last = None;
            }
            return result;
        }
        let fetched = match forward::call(snap, Method::GET, "/history", None, None).await {
            Ok((StatusCode::OK, _, body)) => Ok(Arc::new(body)),
            Ok((status, _, _)) => Err(UpstreamError::status(status, "/history")),
            Err(e) => Err(e),
        };
        *last = (self.history_waiting.load(Ordering::Relaxed) > 0)
            .then(|| (Instant::now(), fetched.clone()));
        fetched
    }

    /// How many `GET /history` requests wait for the shared fetch right now (a gauge).
    pub fn history_waiting(&self) -> usize {
        self.history_waiting.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sids_cannot_be_taken_over() {
        let live = Live::default();
        let alice: Arc<str> = Arc::from("alice");
        let bob: Arc<str> = Arc::from("bob");
        let (a, known) = live.socket_sid(&alice, None);
        assert!(!known);
        assert_eq!(
            live.socket_sid(&alice, Some(&a)),
            (a.clone(), true),
            "own id is reused"
        );
        let (b, _) = live.socket_sid(&bob, Some(&a));
        assert_ne!(b, a, "another user's id is never handed over");
        assert_eq!(live.sid_owner(&a).as_deref(), Some("alice"));
        assert_eq!(
            live.prompt_client_id(&bob, Some(&a)),
            b,
            "bob's prompt goes to bob's socket"
        );
        live.socket_closed(&b);
        let sink = live.prompt_client_id(&bob, Some(&a));
        assert_ne!(sink, a);
        assert_ne!(sink, b);
        assert_eq!(
            live.prompt_client_id(&bob, None),
            sink,
            "the sink is stable"
        );
        assert_eq!(live.sid_owner(&sink).as_deref(), Some("bob"));
    }

    #[test]
    fn unowned_ids_are_claimed_on_connect_and_on_prompt() {
        let live = Live::default();
        let alice: Arc<str> = Arc::from("alice");
        let bob: Arc<str> = Arc::from("bob");
        let id = "5c0e1d9e-8d1c-4c55-9a53-0c1f6c2a9b10";
        assert_eq!(live.socket_sid(&alice, Some(id)), (id.to_owned(), false));
        assert_eq!(live.prompt_client_id(&alice, Some(id)), id);
        assert_ne!(live.socket_sid(&bob, Some(id)).0, id);
        // Claimed by a prompt before any socket has it: the socket then gets it.
        assert_eq!(live.prompt_client_id(&alice, Some("worker-2")), "worker-2");
        assert_eq!(live.sid_owner("worker-2").as_deref(), Some("alice"));
        assert_eq!(
            live.socket_sid(&alice, Some("worker-2")),
            ("worker-2".to_owned(), true)
        );
        assert_ne!(live.prompt_client_id(&bob, Some("worker-2")), "worker-2");
        // Ids that would need escaping are never passed on.
        for bad in ["", "a b", "x&clientId=y", &"z".repeat(65)] {
            assert_ne!(live.socket_sid(&alice, Some(bad)).0, bad);
            assert_ne!(live.prompt_client_id(&alice, Some(bad)), bad);
        }
    }

    #[test]
    fn a_user_bounds_only_their_own_ids() {
        let live = Live::default();
        let alice: Arc<str> = Arc::from("alice");
        let bob: Arc<str> = Arc::from("bob");
        let (bobs, _) = live.socket_sid(&bob, Some("bobs-old-id"));
        live.socket_closed(&bobs);
        for i in 0..(MAX_SIDS_PER_USER * 2) {
            live.prompt_client_id(&alice, Some(&format!("a{i}")));
        }
        assert_eq!(live.sid_owner("bobs-old-id").as_deref(), Some("bob"));
        let n = live
            .sids
            .lock()
            .unwrap()
            .values()
            .filter(|e| *e.owner == *"alice")
            .count();
        assert!(n <= MAX_SIDS_PER_USER, "{n}");
    }
}
