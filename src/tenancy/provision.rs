//! ComfyUI user ids. ComfyUI (with `--multi-user`) keeps per-user settings and user data under
//! the id named by the `comfy-user` header. comfy-warden provisions one id per namespace itself:
//! it looks the namespace up among ComfyUI's users (by name), else creates it with `POST /users`,
//! and remembers the id. Ids that could reach other users' data (`default`, `.`, anything with a
//! slash, `__` system users) are never used. Real user names never reach ComfyUI's users.json.
use super::super::proxy::forward;
use crate::config::{Snapshot, User};
use crate::proxy::upstream::UpstreamError;
use http::{HeaderValue, Method, StatusCode};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error(transparent)]
    Upstream(#[from] crate::proxy::upstream::UpstreamError),
    #[error("ComfyUI is not running with --multi-user; per-user settings cannot be kept apart")]
    NotMultiUser,
    /// ComfyUI gave an id comfy-warden will not use.
    #[error("ComfyUI answered {0} while provisioning a user")]
    Refused(String),
}

#[derive(Default)]
pub struct ComfyUsers {
    ids: Mutex<HashMap<String, HeaderValue>>,
    /// One lock per namespace being provisioned, so two first requests of one user create
    /// one id while a slow answer for one user never stalls another's. An entry goes once its
    /// id is known (so the map holds at most the namespaces not provisioned yet).
    creating: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// An id is safe when it is a plain name: no path characters, not `default`, not a system user.
pub fn safe_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id != "default"
        && !id.starts_with("__")
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl ComfyUsers {
    fn cached(&self, ns: &str) -> Option<HeaderValue> {
        self.ids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(ns)
            .cloned()
    }

    /// The `comfy-user` value for `user`, provisioning it on first use.
    pub async fn id_for(
        &self,
        snap: &Snapshot,
        user: &User,
    ) -> Result<HeaderValue, ProvisionError> {
        let ns = &user.namespace;
        if let Some(id) = self.cached(ns) {
            return Ok(id);
        }
        let lock = self
            .creating
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(ns.clone())
            .or_default()
            .clone();
        let _guard = lock.lock().await;
        if let Some(id) = self.cached(ns) {
            return Ok(id);
        }
        let id = match find(snap, ns).await? {
            Some(id) => id,
            None => {
                let (status, _, body) = forward::call(
                    snap,
                    Method::POST,
                    "/users",
                    None,
                    Some(&serde_json::json!({ "username": ns })),
                )
                .await?;
                match status {
                    StatusCode::OK => serde_json::from_slice::<String>(&body)
                        .map_err(|e| UpstreamError::malformed("/users", e))?,
                    // Created meanwhile by someone else: look again.
                    StatusCode::BAD_REQUEST => find(snap, ns)
                        .await?
                        .ok_or_else(|| ProvisionError::Refused("400".into()))?,
                    s => return Err(UpstreamError::status(s, "/users").into()),
                }
            }
        };
        if !safe_id(&id) {
            return Err(ProvisionError::Refused(format!("an unsafe id {id:?}")));
        }
        let value = HeaderValue::from_str(&id)
            .map_err(|_| ProvisionError::Refused("an id that is not a header value".into()))?;
        tracing::info!(namespace = %ns, comfy_user = %id, "provisioned a ComfyUI user");
        self.ids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(ns.clone(), value.clone());
        self.creating
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(ns);
        Ok(value)
    }
}

/// Looks `ns` up among ComfyUI's users (`{"storage":…, "users": {id: name}}`).
async fn find(snap: &Snapshot, ns: &str) -> Result<Option<String>, ProvisionError> {
    let (status, _, body) = forward::call(snap, Method::GET, "/users", None, None).await?;
    if status != StatusCode::OK {
        return Err(UpstreamError::status(status, "/users").into());
    }
    let v: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| UpstreamError::malformed("/users", e))?;
    let Some(users) = v.get("users").and_then(|u| u.as_object()) else {
        return Err(ProvisionError::NotMultiUser);
    };
    let mut found: Vec<&String> = users
        .iter()
        .filter(|(id, name)| name.as_str() == Some(ns) && safe_id(id))
        .map(|(id, _)| id)
        .collect();
    found.sort();
    Ok(found.first().map(|s| (*s).clone()))
}

#[cfg(test)]
mod tests {
    use super::safe_id;

    #[test]
    fn unsafe_ids_are_refused() {
        assert!(safe_id("u_alice_07e437c4-53ee-47e4-b352-ac690ffdaa0c"));
        for bad in ["", "default", ".", "..", "a/b", "a\\b", "__manager", "x y"] {
            assert!(!safe_id(bad), "{bad:?}");
        }
    }
}
