//! ComfyUI's node catalog (`/object_info`): which classes exist, their Python module (core,
//! custom node or API node) and whether they are output nodes. Fetched on demand, shared, and
//! refreshed when older than [`MAX_AGE`] or whenever a client's `/object_info` passes through;
//! and the per-user filtered answers made from it ([`FilteredCache`]).
use crate::config::Snapshot;
use crate::proxy::{forward, upstream::UpstreamError};
use http::{Method, StatusCode};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What `/object_info` says about one node class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassInfo {
    pub python_module: String,
    pub output_node: bool,
    pub api_node: bool,
}

/// Where a node class comes from, as far as the gateway cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// ComfyUI itself: `nodes`, `comfy_extras.*`.
    Core,
    /// `custom_nodes.*`.
    Custom,
    /// `comfy_api_nodes.*` or `api_node: true`.
    Api,
    /// Any other module: treated like a custom node (fail closed).
    Other,
}

impl ClassInfo {
    pub fn origin(&self) -> Origin {
        let m = self.python_module.as_str();
        let family = |f: &str| m == f || m.strip_prefix(f).is_some_and(|r| r.starts_with('.'));
        if self.api_node || family("comfy_api_nodes") {
            Origin::Api
        } else if family("custom_nodes") {
            Origin::Custom
        } else if m == "nodes" || family("comfy_extras") {
            Origin::Core
        } else {
            Origin::Other
        }
    }
}

/// The node classes ComfyUI knows, from its `/object_info` answer.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    classes: BTreeMap<String, ClassInfo>,
}

impl Catalog {
    /// Reads the body of `GET /object_info` (`{class: {python_module, output_node, api_node, …}}`).
    /// A missing `python_module` makes the class [`Origin::Other`]; a missing or non-boolean
    /// `output_node` counts as true (an owner input on a non-output node is harmless, a missing
    /// one on an output node shares cached results between users).
    pub fn from_object_info(v: &Value) -> Catalog {
        let mut classes = BTreeMap::new();
        if let Some(obj) = v.as_object() {
            for (class, info) in obj {
                let Some(info) = info.as_object() else {
                    continue;
                };
                let python_module = info
                    .get("python_module")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                let output_node = info
                    .get("output_node")
                    .and_then(Value::as_bool)
                    .unwrap_or(true);
                let api_node = info
                    .get("api_node")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                classes.insert(
                    class.clone(),
                    ClassInfo {
                        python_module,
                        output_node,
                        api_node,
                    },
                );
            }
        }
        Catalog { classes }
    }

    pub fn get(&self, class: &str) -> Option<&ClassInfo> {
        self.classes.get(class)
    }

    pub fn is_empty(&self) -> bool {
        self.classes.is_empty()
    }
}

pub const MAX_AGE: Duration = Duration::from_secs(300);

#[derive(Default)]
pub struct CatalogCache {
    cached: tokio::sync::Mutex<Option<(Instant, Arc<Catalog>)>>,
}

impl CatalogCache {
    pub async fn get(&self, snap: &Snapshot) -> Result<Arc<Catalog>, UpstreamError> {
        let mut c = self.cached.lock().await;
        if let Some((at, cat)) = c.as_ref()
            && at.elapsed() < MAX_AGE
        {
            return Ok(cat.clone());
        }
        let (status, _, body) =
            forward::call(snap, Method::GET, "/object_info", None, None).await?;
        if status != StatusCode::OK {
            return Err(UpstreamError::status(status, "/object_info"));
        }
        let v: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| UpstreamError::malformed("/object_info", e))?;
        let cat = Arc::new(Catalog::from_object_info(&v));
        *c = Some((Instant::now(), cat.clone()));
        Ok(cat)
    }

    /// Refreshes the cache from a full `/object_info` answer fetched for a client.
    pub async fn update(&self, full: &serde_json::Value) {
        let cat = Catalog::from_object_info(full);
        if !cat.is_empty() {
            *self.cached.lock().await = Some((Instant::now(), Arc::new(cat)));
        }
    }
}

/// Filtered answers per (namespace, path), reused while ComfyUI's answer, the user's own files
/// and the configuration are unchanged: the frontend asks on every page load, and parsing,
/// filtering and serialising ~0.5 MB of JSON is the expensive part.
#[derive(Default)]
pub struct FilteredCache {
    entries: std::sync::Mutex<Entries>,
}

/// (namespace, path) → (fingerprint of what it was made from, the filtered answer).
type Entries = std::collections::HashMap<(String, String), (u64, bytes::Bytes)>;

/// What the cache may hold in all (answers are ~0.5 MB for a whole `/object_info`).
const CACHE_MAX_BYTES: usize = 64 << 20;

impl FilteredCache {
    fn entries(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The filtered answer kept under `key`, if it was made from the same fingerprint.
    pub fn get(&self, key: &(String, String), fp: u64) -> Option<bytes::Bytes> {
        match self.entries().get(key) {
            Some((k, b)) if *k == fp => Some(b.clone()),
            _ => None,
        }
    }

    /// Keeps `answer` under `key` (emptied when it would hold more than `CACHE_MAX_BYTES`).
    pub fn put(&self, key: (String, String), fp: u64, answer: bytes::Bytes) {
        let mut cache = self.entries();
        let held: usize = cache.values().map(|(_, b)| b.len()).sum();
        if held + answer.len() > CACHE_MAX_BYTES {
            cache.clear();
        }
        cache.insert(key, (fp, answer));
    }
}
