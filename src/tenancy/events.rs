//! The WebSocket frame filter of one downstream socket. ComfyUI targets most events at the
//! prompt's `client_id` (which comfy-warden forces to one of the owner's sockets), but broadcasts
//! `status`, text progress (binary type 3), legacy previews and `display_component` to everyone.
//! So, per frame:
//! - `status`: the queue count is rewritten to the user's own pending + running;
//! - frames with a `prompt_id` (text, or binary type 4 metadata): only to its owner, with
//!   namespaces stripped from outputs and errors;
//! - frames without one (binary types 1 and 3, `display_component`, `executing`/`progress`
//!   without id): only while a prompt of the socket's user runs, as this socket's own stream
//!   tells it (its `execution_start` … `execution_success`/`_error`/`_interrupted`). ComfyUI
//!   sends every socket its frames in one order, so the stream itself says whose run a frame
//!   belongs to; no process-wide "running prompt" or `/queue` snapshot decides it;
//! - unknown types and `logs`: dropped for non-admins.
//!
//! From the client only the first text frame is passed on, and only if it is `feature_flags`.
use super::filter;
use super::tenant::Tenant;
use crate::config::store::ConfigStore;
use bytes::Bytes;
use serde_json::Value;
use std::sync::Arc;
use tokio_tungstenite::tungstenite::Message;

pub struct SocketFilter {
    tenant: Tenant,
    /// The live configuration (the upstream to ask for the queue).
    config: Arc<ConfigStore>,
    client_frames: usize,
    /// The user's prompt running now as this socket's stream says (set by its
    /// `execution_start`, cleared by its end or by another prompt's start).
    running: Option<String>,
    /// Whether a frame of the stream has been seen (a snapshot may seed `running` only before).
    seen_events: bool,
}

/// Why a frame from ComfyUI was not passed on (for the debug log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// Not JSON, and the user does not see everything.
    Unreadable,
    /// It names a prompt of someone else.
    OthersPrompt,
    /// It names no prompt and no prompt of this user runs on this socket.
    NotRunningHere,
    /// A type this user does not get (`logs`, unknown types, unknown binary types).
    Withheld,
}

impl Dropped {
    pub fn reason(self) -> &'static str {
        match self {
            Dropped::Unreadable => "not JSON",
            Dropped::OthersPrompt => "another user's prompt",
            Dropped::NotRunningHere => "names no prompt and none of the user's runs on this socket",
            Dropped::Withheld => "a type this user does not get",
        }
    }
}

/// What the filter made of a frame from ComfyUI.
pub enum Upstream {
    Forward(Message),
    /// Dropped, with the reason and the frame's type (`binary:N` for binary frames).
    Drop(Dropped, String),
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
    pub fn new(tenant: Tenant, config: Arc<ConfigStore>) -> SocketFilter {
        SocketFilter {
            tenant,
            config,
            client_frames: 0,
            running: None,
            seen_events: false,
        }
    }

    /// On a socket that reuses an id the user held (a reconnect), ComfyUI may be running a
    /// prompt sent with that id: it then sends this socket the rest of the run without its
    /// `execution_start`. `queue` must have been fetched after the upstream socket connected,
    /// so anything later is in the stream, which is read after this (and wins).
    pub fn seed_from_queue(&mut self, queue: &Value, sid: &str) {
        if self.seen_events {
            return;
        }
        if let Some((prompt_id, Some(client_id))) = super::live::running_prompt(queue)
            && client_id == sid
            && self.tenant.owns_prompt(&prompt_id)
        {
            self.running = Some(prompt_id);
        }
    }

    /// The prompt of this user running now, as this socket's stream says.
    pub fn running(&self) -> Option<&str> {
        self.running.as_deref()
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
        self.running.is_some()
    }

    /// Follows the run in stream order. ComfyUI runs one prompt at a time, so another prompt's
    /// start (seen when it is broadcast) also ends ours.
    fn track(&mut self, ty: &str, prompt_id: Option<&str>) {
        match (ty, prompt_id) {
            ("execution_start", Some(p)) => {
                self.running = self.tenant.owns_prompt(p).then(|| p.to_owned());
            }
            ("execution_success" | "execution_error" | "execution_interrupted", Some(p))
                if self.running.as_deref() == Some(p) =>
            {
                self.running = None;
            }
            _ => {}
        }
    }

    /// What to send to the client for a frame from ComfyUI.
    pub async fn upstream_frame(&mut self, msg: Message) -> Upstream {
        let arrived = std::time::Instant::now();
        self.seen_events = true;
        match msg {
            Message::Text(t) => {
                let mut v: Value = match serde_json::from_str(&t) {
                    Ok(v) => v,
                    Err(_) if self.tenant.sees_all => return Upstream::Forward(Message::Text(t)),
                    Err(_) => return Upstream::Drop(Dropped::Unreadable, "text".into()),
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
                    return Upstream::Forward(Message::Text(t));
                }
                let verdict = match ty.as_str() {
                    "status" => {
                        self.rewrite_status(&mut v, arrived).await;
                        Ok(())
                    }
                    "feature_flags" => Ok(()),
                    t if TARGETED.contains(&t) => match &prompt_id {
                        Some(p) if self.tenant.owns_prompt(p) => Ok(()),
                        Some(_) => Err(Dropped::OthersPrompt),
                        None if !matches!(t, "executing" | "progress" | "progress_state") => {
                            Err(Dropped::Withheld)
                        }
                        None => self.running_here(),
                    },
                    "display_component" => self.running_here(),
                    _ => Err(Dropped::Withheld),
                };
                if let Err(why) = verdict {
                    return Upstream::Drop(why, ty);
                }
                if let Some(data) = v.get_mut("data") {
                    if let Some(out) = data.get_mut("output") {
                        filter::node_output_to_client(
                            out,
                            &self.tenant.ns,
                            &self.tenant.owner,
                            &self.tenant.tenancy.ledger,
                        );
                    }
                    if ty == "execution_error" || ty == "execution_interrupted" {
                        filter::redact_all(data, &self.tenant.ns);
                    }
                }
                Upstream::Forward(Message::Text(v.to_string().into()))
            }
            Message::Binary(b) => {
                let ty = binary_type(&b);
                let verdict = if self.tenant.sees_all {
                    Ok(())
                } else {
                    match ty {
                        Some(4) => match binary_prompt_id(&b) {
                            Some(p) if self.tenant.owns_prompt(&p) => Ok(()),
                            _ => Err(Dropped::OthersPrompt),
                        },
                        Some(1 | 3) => self.running_here(),
                        _ => Err(Dropped::Withheld),
                    }
                };
                match verdict {
                    Ok(()) => Upstream::Forward(Message::Binary(b)),
                    Err(why) => Upstream::Drop(
                        why,
                        format!("binary:{}", ty.map_or("?".into(), |t| t.to_string())),
                    ),
                }
            }
            other => Upstream::Forward(other),
        }
    }

    fn running_here(&self) -> Result<(), Dropped> {
        if self.owns_running() {
            Ok(())
        } else {
            Err(Dropped::NotRunningHere)
        }
    }

    async fn rewrite_status(&self, v: &mut Value, arrived: std::time::Instant) {
        let snap = self.config.get();
        let count = match self.tenant.tenancy.live.queue_since(&snap, arrived).await {
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
        .and_then(|h| <[u8; 4]>::try_from(h).ok())
        .map(u32::from_be_bytes)
}

/// The prompt id in a type-4 frame: `[u32 4][u32 meta_len][meta JSON][image]`.
fn binary_prompt_id(b: &Bytes) -> Option<String> {
    let len = b
        .get(4..8)
        .and_then(|h| <[u8; 4]>::try_from(h).ok())
        .map(|h| u32::from_be_bytes(h) as usize)?;
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
