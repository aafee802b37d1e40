//! The WebSocket frame filter of one downstream socket. ComfyUI targets most events at the
//! prompt's `client_id` (which comfy-warden forces to one of the owner's sockets), but broadcasts
//! `status`, text progress (binary type 3), legacy previews and `display_component` to everyone.
//! So, per frame:
//! - `status`: the queue count is rewritten to the user's own pending + running;
//! - frames with a `prompt_id` (text, or binary type 4 metadata): only to its owner, with
//!   namespaces stripped from outputs and errors;
//! - frames without one (binary types 1 and 3, `display_component`, `executing`/`progress`
//!   without id): only to the owner of the prompt running now;
//! - unknown types and `logs`: dropped for non-admins.
//!
//! From the client only the first text frame is passed on, and only if it is `feature_flags`.
use super::filter;
use super::tenant::Tenant;
use bytes::Bytes;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

pub struct SocketFilter {
    tenant: Tenant,
    client_frames: usize,
}

const TARGETED: &[&str] = &[
    "execution_start",
    "execution_cached",
    "executing",
    "progress",
    "progress_state",
    "executed",
    "execution_success",
    "execution_error",
    "execution_interrupted",
];

impl SocketFilter {
    pub fn new(tenant: Tenant) -> SocketFilter {
        SocketFilter {
            tenant,
            client_frames: 0,
        }
    }

    /// May this client frame go to ComfyUI?
    pub fn client_frame(&mut self, msg: &Message) -> bool {
        match msg {
            Message::Text(t) => {
                self.client_frames += 1;
                if self.client_frames > 1 {
                    return false;
                }
                serde_json::from_str::<Value>(t)
                    .is_ok_and(|v| v.get("type").and_then(Value::as_str) == Some("feature_flags"))
            }
            Message::Binary(_) => false,
            _ => true,
        }
    }

    fn owns_running(&self) -> bool {
        self.tenant
            .app
            .tenancy
            .live
            .running()
            .is_some_and(|p| self.tenant.owns_prompt(&p))
    }

    fn track(&self, ty: &str, prompt_id: Option<&str>) {
        let live = &self.tenant.app.tenancy.live;
        match (ty, prompt_id) {
            ("execution_start", Some(p)) => live.set_running(Some(p.to_owned())),
            ("execution_success" | "execution_error" | "execution_interrupted", Some(p)) => {
                live.finished(p)
            }
            _ => {}
        }
    }

    /// What to send to the client for a frame from ComfyUI (`None`: nothing).
    pub async fn upstream_frame(&mut self, msg: Message) -> Option<Message> {
        let arrived = std::time::Instant::now();
        match msg {
            Message::Text(t) => {
                let mut v: Value = match serde_json::from_str(&t) {
                    Ok(v) => v,
                    Err(_) => return self.tenant.sees_all.then_some(Message::Text(t)),
                };
                let ty = v
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned();
                let prompt_id = v
                    .get("data")
                    .and_then(|d| d.get("prompt_id"))
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                self.track(&ty, prompt_id.as_deref());
                if self.tenant.sees_all {
                    return Some(Message::Text(t));
                }
                let keep = match ty.as_str() {
                    "status" => {
                        self.rewrite_status(&mut v, arrived).await;
                        true
                    }
                    "feature_flags" => true,
                    t if TARGETED.contains(&t) => match &prompt_id {
                        Some(p) => self.tenant.owns_prompt(p),
                        None => {
                            matches!(t, "executing" | "progress" | "progress_state")
                                && self.owns_running()
                        }
                    },
                    "display_component" => self.owns_running(),
                    _ => false,
                };
                if !keep {
                    return None;
                }
                if let Some(data) = v.get_mut("data") {
                    if let Some(out) = data.get_mut("output") {
                        filter::node_output_to_client(
                            out,
                            &self.tenant.ns,
                            &self.tenant.owner,
                            &self.tenant.app.tenancy.ledger,
                        );
                    }
                    if ty == "execution_error" || ty == "execution_interrupted" {
                        filter::redact_all(data, &self.tenant.ns);
                    }
                }
                Some(Message::Text(v.to_string().into()))
            }
            Message::Binary(b) => {
                let keep = self.tenant.sees_all
                    || match binary_type(&b) {
                        Some(4) => {
                            binary_prompt_id(&b).is_some_and(|p| self.tenant.owns_prompt(&p))
                        }
                        Some(1 | 3) => self.owns_running(),
                        _ => false,
                    };
                keep.then_some(Message::Binary(b))
            }
            other => Some(other),
        }
    }

    async fn rewrite_status(&self, v: &mut Value, arrived: std::time::Instant) {
        let app = &self.tenant.app;
        let snap = app.config.get();
        let count = match app.tenancy.live.queue_since(&snap, arrived).await {
            Ok(q) => self.tenant.own_count(&q),
            Err(_) => 0,
        };
        if let Some(info) = v
            .pointer_mut("/data/status/exec_info")
            .and_then(Value::as_object_mut)
        {
            info.insert("queue_remaining".into(), Value::from(count));
        }
    }
}

fn binary_type(b: &Bytes) -> Option<u32> {
    b.get(..4)
        .map(|h| u32::from_be_bytes([h[0], h[1], h[2], h[3]]))
}

/// The prompt id in a type-4 frame: `[u32 4][u32 meta_len][meta JSON][image]`.
fn binary_prompt_id(b: &Bytes) -> Option<String> {
    let len = b
        .get(4..8)
        .map(|h| u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize)?;
    let meta: Value = serde_json::from_slice(b.get(8..8usize.checked_add(len)?)?).ok()?;
    meta.get("prompt_id")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_headers() {
        let meta = br#"{"prompt_id":"p1","node_id":"3"}"#;
        let mut f = vec![0, 0, 0, 4];
        f.extend_from_slice(&(meta.len() as u32).to_be_bytes());
        f.extend_from_slice(meta);
        f.extend_from_slice(b"\x89PNG");
        let f = Bytes::from(f);
        assert_eq!(binary_type(&f), Some(4));
        assert_eq!(binary_prompt_id(&f).as_deref(), Some("p1"));
        assert_eq!(
            binary_prompt_id(&Bytes::from_static(&[0, 0, 0, 4, 255, 255, 255, 255])),
            None
        );
        assert_eq!(binary_type(&Bytes::from_static(&[0, 0])), None);
    }
}
