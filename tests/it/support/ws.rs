//! WebSocket client helpers for tests (real sockets, with the session cookie).
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{WebSocketStream, client_async};

pub type Ws = WebSocketStream<TcpStream>;

pub async fn connect(
    addr: std::net::SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    let mut req = format!("ws://{addr}{path}").into_client_request()?;
    for (k, v) in headers {
        req.headers_mut().append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(tokio_tungstenite::tungstenite::Error::Io)?;
    client_async(req, tcp).await.map(|(ws, _)| ws)
}

/// Next message that is not a ping/pong, within `secs` seconds.
pub async fn next(ws: &mut Ws, secs: u64) -> Option<Message> {
    loop {
        match tokio::time::timeout(Duration::from_secs(secs), ws.next()).await {
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            Ok(Some(Ok(m))) => return Some(m),
            _ => return None,
        }
    }
}

/// Reads every frame until `idle_secs` pass without one.
pub async fn drain(ws: &mut Ws, idle_secs: u64) -> Vec<Message> {
    let mut out = Vec::new();
    while let Some(m) = next(ws, idle_secs).await {
        out.push(m);
    }
    out
}

/// Next text message parsed as JSON (skipping binary frames), within `secs` seconds.
pub async fn next_json(ws: &mut Ws, secs: u64) -> Option<serde_json::Value> {
    loop {
        match next(ws, secs).await? {
            Message::Text(t) => return serde_json::from_str(&t).ok(),
            Message::Binary(_) => continue,
            _ => return None,
        }
    }
}

/// Sends a ping and waits for its pong.
pub async fn ping_pong(ws: &mut Ws) -> bool {
    if ws
        .send(Message::Ping(b"warden?".to_vec().into()))
        .await
        .is_err()
    {
        return false;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while let Ok(Some(m)) = tokio::time::timeout_at(deadline, ws.next()).await {
        match m {
            Ok(Message::Pong(p)) if &p[..] == b"warden?" => return true,
            Ok(_) => continue,
            Err(_) => return false,
        }
    }
    false
}
