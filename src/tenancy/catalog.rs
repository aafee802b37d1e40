//! ComfyUI's node catalog (`/object_info`): which classes exist, their Python module (core,
//! custom node or API node) and whether they are output nodes. Fetched on demand, shared, and
//! refreshed when older than [`MAX_AGE`] or whenever a client's `/object_info` passes through.
use super::prompt::Catalog;
use crate::config::Snapshot;
use crate::proxy::{forward, upstream::UpstreamError};
use http::{Method, StatusCode};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
