//! `[tenancy] free_memory_on_logout`: when a sign-out ends a user's last session (of those this
//! daemon issued), ask ComfyUI to unload its models and free memory (`POST /free`). The call
//! runs in the background: a slow or failing ComfyUI never delays or breaks the sign-out, and a
//! failure is only logged.
use crate::app::App;
use crate::proxy::forward;
use http::Method;
use std::net::IpAddr;
use std::sync::Arc;

pub fn after_last_session(app: &Arc<App>, user: &str, client_ip: IpAddr) {
    if !app.config.get().tenancy.free_memory_on_logout {
        return;
    }
    tracing::info!(target: "audit", event = "free_memory_requested", user = %user, client_ip = %client_ip, reason = "last session ended", "asking ComfyUI to free memory");
    let app = app.clone();
    let user = user.to_owned();
    tokio::spawn(async move {
        let snap = app.config.get();
        let body = serde_json::json!({ "unload_models": true, "free_memory": true });
        match forward::call(&snap, Method::POST, "/free", None, Some(&body)).await {
            Ok((status, _, _)) if status.is_success() => {
                tracing::info!(event = "free_memory_done", user = %user, "ComfyUI freed memory after the last session ended");
            }
            Ok((status, _, _)) => {
                tracing::warn!(event = "free_memory_failed", user = %user, %status, "ComfyUI refused to free memory");
            }
            Err(e) => {
                tracing::warn!(event = "free_memory_failed", user = %user, error = %e, "cannot ask ComfyUI to free memory");
            }
        }
    });
}
