//! `GET /ws?clientId=`: the WebSocket upgrade, the socket map keyed by sid (a reused
//! `clientId` replaces the older socket, and a closing socket pops its sid whoever owns it
//! now, as 0.3.64 does), the connect `status`, and first-frame `feature_flags` negotiation.

use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::http::Resp;
use super::routes::features;
use super::server::Req;
use super::state::{Shared, Socket};

fn header_has_token(req: &Req, name: &str, token: &str) -> bool {
    req.headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

pub fn upgrade(shared: &Arc<Shared>, mut req: Req) -> Resp {
    if !header_has_token(&req, "upgrade", "websocket") {
        let got = req
            .header("upgrade")
            .map(|u| format!("'{u}'"))
            .unwrap_or_else(|| "None".into());
        return Resp::raised_text(
            400,
            &format!("No WebSocket UPGRADE hdr: {got}\n Can \"Upgrade\" only to \"WebSocket\"."),
        );
    }
    if !header_has_token(&req, "connection", "upgrade") {
        let got = req
            .header("connection")
            .map(|u| format!("'{u}'"))
            .unwrap_or_else(|| "None".into());
        return Resp::raised_text(400, &format!("No CONNECTION upgrade hdr: {got}"));
    }
    let version = req.header("sec-websocket-version").unwrap_or_default();
    if version != "13" && version != "8" && version != "7" {
        return Resp::raised_text(400, &format!("Unsupported version: {version}"));
    }
    let Some(key) = req.header("sec-websocket-key").filter(|k| k.len() == 24) else {
        return Resp::raised_text(
            400,
            &format!(
                "Handshake error: {:?}",
                req.header("sec-websocket-key").unwrap_or_default()
            ),
        );
    };
    let Some(on_upgrade) = req.on_upgrade.take() else {
        return Resp::server_error();
    };
    let sid_param = req.q("clientId").unwrap_or_default();
    let sid = if sid_param.is_empty() {
        uuid::Uuid::new_v4().simple().to_string()
    } else {
        sid_param
    };
    let query = req.query.clone().unwrap_or_default();
    let s = shared.clone();
    let task = tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        serve_socket(s, ws, sid, query).await;
    });
    shared.track(task.abort_handle());
    Resp::new(101)
        .header("Upgrade", "websocket")
        .header("Connection", "upgrade")
        .header("Sec-WebSocket-Accept", derive_accept_key(key.as_bytes()))
}

async fn serve_socket<S>(shared: Arc<Shared>, ws: WebSocketStream<S>, sid: String, query: String)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
    {
        let mut g = shared.lock();
        g.sockets.retain(|s| s.sid != sid);
        g.sockets.push(Socket {
            sid: sid.clone(),
            tx,
            query,
            feature_flags: json!({}),
        });
        let mut status = json!({"status": g.queue_info()});
        status["sid"] = Value::String(sid.clone());
        g.send_json("status", status, Some(&sid));
        if g.client_id.as_deref() == Some(sid.as_str()) {
            if let Some(node) = g.last_node_id.clone() {
                g.send_json("executing", json!({"node": node}), Some(&sid));
            }
        }
    }
    let writer = tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            if sink.send(msg).await.is_err() {
                break;
            }
        }
        // aiohttp answers a client's Close with a Close (the library queued it; send it).
        let _ = sink.close().await;
    });
    shared.track(writer.abort_handle());
    let mut first_message = true;
    while let Some(msg) = stream.next().await {
        match msg {
            Ok(Message::Text(text)) => {
                if let Ok(Value::Object(m)) = serde_json::from_str::<Value>(text.as_str()) {
                    if first_message
                        && m.get("type").and_then(Value::as_str) == Some("feature_flags")
                    {
                        let flags = m.get("data").cloned().unwrap_or_else(|| json!({}));
                        let mut g = shared.lock();
                        if let Some(s) = g.sockets.iter_mut().find(|s| s.sid == sid) {
                            s.feature_flags = flags;
                        }
                        g.send_json("feature_flags", features(), Some(&sid));
                    }
                    first_message = false;
                }
            }
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => {}
        }
    }
    // `finally: self.sockets.pop(sid, None)` — even if a newer socket now owns that sid.
    shared.lock().sockets.retain(|s| s.sid != sid);
}
