//! Switchable faults, for testing what comfy-warden does when ComfyUI misbehaves on one route:
//! answer a server error, answer cut-off JSON, or answer only after a long time. Every faulty
//! body names a `leak` string (another user's prompt id, say), so a test can check that nothing
//! of it reaches the client. Routes are matched on the method and the percent-decoded path
//! without `/api`.
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;

use super::http::Resp;
use super::pyjson;
use super::state::lock;

/// What ComfyUI does wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// This status, with a JSON body full of data comfy-warden must not pass on.
    Status(u16),
    /// A 200 whose JSON body is cut off in the middle.
    Malformed,
    /// No answer until the faults are cleared (or [`SLOW_FOR`] has passed), then the real one.
    Slow,
}

/// The longest a [`Fault::Slow`] answer waits.
pub const SLOW_FOR: Duration = Duration::from_secs(120);

#[derive(Default)]
pub struct Faults {
    set: Mutex<Vec<(String, String, Fault, String)>>,
    cleared: Notify,
}

fn route(path: &str) -> &str {
    path.strip_prefix("/api")
        .filter(|p| p.starts_with('/'))
        .unwrap_or(path)
}

impl Faults {
    pub fn set(&self, method: &str, path: &str, fault: Fault, leak: &str) {
        let mut set = lock(&self.set);
        set.retain(|(m, p, _, _)| !(m == method && p == path));
        set.push((method.into(), path.into(), fault, leak.into()));
    }

    pub fn clear(&self) {
        lock(&self.set).clear();
        self.cleared.notify_waiters();
    }

    /// The faulty answer to this request, if a fault is set for it. `Slow` waits here and then
    /// answers `None` (the request is served as usual).
    pub async fn answer(&self, method: &str, decoded_path: &str) -> Option<Resp> {
        let path = route(decoded_path);
        let (fault, leak) = lock(&self.set)
            .iter()
            .find(|(m, p, _, _)| m == method && p == path)
            .map(|(_, _, f, l)| (f.clone(), l.clone()))?;
        let body = serde_json::json!({
            leak.clone(): {"prompt": [0, leak.clone(), {}, {"comfy_warden_owner": leak.clone()}, []]},
            "error": format!("Traceback naming {leak}"),
        });
        match fault {
            Fault::Status(status) => Some(Resp::json_status(status, &body)),
            Fault::Malformed => {
                let text = pyjson::dumps(&body);
                let cut = text.len() * 2 / 3;
                Some(Resp::json_text(200, text[..cut].to_string()))
            }
            Fault::Slow => {
                let cleared = self.cleared.notified();
                tokio::select! {
                    _ = cleared => {}
                    _ = tokio::time::sleep(SLOW_FOR) => {}
                }
                None
            }
        }
    }
}
