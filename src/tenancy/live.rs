//! What is happening now: which WebSocket client ids (sids) belong to whom, each user's sink sid,
//! which prompt is running, and a short-lived shared copy of ComfyUI's queue (one fetch serves
//! a burst of `status` frames on every socket), and one shared fetch of ComfyUI's `/history`
//! for concurrent `GET /history` requests.
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
    running: Mutex<Option<String>>,
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

impl Live {
    /// The upstream client id for a new socket of `owner`: the proposed one when it is already
    /// `owner`'s, else a fresh random one. Another user's id is never taken over.
    pub fn socket_sid(&self, owner: &Arc<str>, proposed: Option<&str>) -> String {
        let mut sids = self.sids.lock().unwrap_or_else(|p| p.into_inner());
        let sid = match proposed {
            Some(p) if sids.get(p).is_some_and(|e| e.owner == *owner) => p.to_owned(),
            _ => new_sid(),
        };
        if sids.len() >= MAX_SIDS {
            sids.retain(|_, e| e.connected);
        }
        sids.insert(
            sid.clone(),
            SidEntry {
                owner: owner.clone(),
                connected: true,
                at: Instant::now(),
            },
        );
        sid
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

    /// The `client_id` for a prompt of `owner`: the proposed sid when it is `owner`'s, else the
    /// most recently connected socket of `owner`, else `owner`'s sink id (a sid with no socket:
    /// ComfyUI then sends the run's events nowhere instead of broadcasting them).
    pub fn prompt_client_id(&self, owner: &Arc<str>, proposed: Option<&str>) -> String {
        {
            let sids = self.sids.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(p) = proposed
                && sids.get(p).is_some_and(|e| e.owner == *owner)
            {
                return p.to_owned();
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

    pub fn set_running(&self, prompt_id: Option<String>) {
        *self.running.lock().unwrap_or_else(|p| p.into_inner()) = prompt_id;
    }

    /// Clears the running prompt if it is `prompt_id`.
    pub fn finished(&self, prompt_id: &str) {
        let mut r = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if r.as_deref() == Some(prompt_id) {
            *r = None;
        }
    }

    pub fn running(&self) -> Option<String> {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// ComfyUI's `/queue`, shared by everyone for [`QUEUE_FRESH`]. Also updates the running prompt.
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
            return Err(UpstreamError::Unreachable(format!(
                "/queue answered {status}"
            )));
        }
        let v: Value = serde_json::from_slice(&body)
            .map_err(|e| UpstreamError::Unreachable(format!("/queue: {e}")))?;
        let running = v
            .get("queue_running")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .and_then(|i| i.get(1))
            .and_then(Value::as_str);
        self.set_running(running.map(str::to_owned));
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
            Ok((status, _, _)) => Err(UpstreamError::Unreachable(format!(
                "/history answered {status}"
            ))),
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
        let a = live.socket_sid(&alice, None);
        assert_eq!(live.socket_sid(&alice, Some(&a)), a, "own id is reused");
        let b = live.socket_sid(&bob, Some(&a));
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
}
