//! The WebSocket relay for `/ws`: comfy-warden connects its own WebSocket to ComfyUI first (so a
//! dead upstream is a clean 502), then completes the client's upgrade and relays frames both ways,
//! one message at a time. Pings are answered on each hop by the WebSocket library; close frames
//! are passed on. A reload that removes, disables or revokes the user closes the socket (1008);
//! shutdown closes it with 1001. Other users' sockets stay up across reloads.
use crate::app::App;
use crate::auth::identity::{Identity, still_valid};
use crate::body::{self, Body};
use crate::config::Snapshot;
use crate::proxy::headers::{self, Forwarding};
use crate::proxy::upstream::UpstreamError;
use crate::reject::Reject;
use crate::tenancy::events::{SocketFilter, Upstream};
use crate::tenancy::tenant::Tenant;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{WebSocketStream, client_async_with_config};

/// Largest WebSocket message relayed (ComfyUI sends whole preview images as one message).
pub const MAX_MESSAGE: usize = 64 << 20;

pub fn is_websocket_upgrade(req: &Request<Incoming>) -> bool {
    let h = req.headers();
    let has_token = |name: header::HeaderName, token: &str| {
        h.get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    req.method() == http::Method::GET
        && has_token(header::CONNECTION, "upgrade")
        && has_token(header::UPGRADE, "websocket")
}

/// Small buffers: most sockets sit idle for hours, and each relay holds two of them. The
/// library's defaults (128 KiB to read and to write, per socket) cost ~260 KiB per idle relay;
/// a large preview message still arrives whole (the read buffer grows per message), and every
/// message is written out at once (no write batching is needed for a relay).
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE))
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(MAX_MESSAGE + (1 << 20))
}

pub async fn relay(
    app: Arc<App>,
    snap: &Snapshot,
    ident: Identity,
    mut req: Request<Incoming>,
    client_ip: IpAddr,
    tls: bool,
) -> Result<Response<Body>, Reject> {
    let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY).cloned() else {
        return Err(Reject::BadRequest("missing Sec-WebSocket-Key".into()));
    };
    if req
        .headers()
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(|v| v.as_bytes())
        != Some(b"13")
    {
        return Err(Reject::WebSocketVersion);
    }

    // The upstream handshake: our own request, with the client's headers cleaned.
    let authority = snap.upstream.authority.clone();
    // comfy-warden owns the client-id space: a proposed id is kept only if it is this user's.
    let proposed = req.uri().query().and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "clientId")
            .map(|(_, v)| v.into_owned())
    });
    let (sid, reconnect) = app
        .tenancy
        .live
        .socket_sid(&ident.user.name, proposed.as_deref());
    if proposed.as_deref().is_some_and(|p| p != sid) {
        tracing::debug!(sid = %sid, user = %ident.user.name, "proposed clientId not taken (another user's, or not 1-64 of A-Za-z0-9_-): a new id is used");
    }
    let pq = format!("{}?clientId={sid}", req.uri().path());
    let mut up_req = match tungstenite::client::IntoClientRequest::into_client_request(format!(
        "ws://{authority}{pq}"
    )) {
        Ok(r) => r,
        Err(_) => return Err(Reject::InvalidPath),
    };
    {
        let mut h = req.headers().clone();
        let host = h.get(header::HOST).cloned();
        headers::to_upstream(
            &mut h,
            &Forwarding {
                client_ip,
                tls,
                host: host.as_ref(),
                identity_header: snap.trusted_header.as_ref().map(|t| &t.name),
            },
        );
        for name in [
            header::SEC_WEBSOCKET_KEY,
            header::SEC_WEBSOCKET_VERSION,
            header::SEC_WEBSOCKET_EXTENSIONS,
            header::HOST,
        ] {
            h.remove(name);
        }
        for (name, value) in h.iter() {
            if name.as_str().starts_with("sec-websocket") {
                continue;
            }
            up_req.headers_mut().append(name.clone(), value.clone());
        }
    }
    let port = authority.port_u16().unwrap_or(80);
    let connect = async {
        let tcp = tokio::net::TcpStream::connect((authority.host(), port))
            .await
            .map_err(|e| e.to_string())?;
        let _ = tcp.set_nodelay(true);
        client_async_with_config(up_req, tcp, Some(ws_config()))
            .await
            .map_err(|e| e.to_string())
    };
    let upstream = match tokio::time::timeout(
        snap.upstream.connect_timeout
            + snap
                .upstream
                .response_timeout
                .min(std::time::Duration::from_secs(30)),
        connect,
    )
    .await
    {
        Ok(Ok((ws, _))) => ws,
        Ok(Err(e)) => return Err(UpstreamError::Unreachable(format!("WebSocket: {e}")).into()),
        Err(_) => return Err(UpstreamError::Timeout(snap.upstream.connect_timeout).into()),
    };

    let on_upgrade = hyper::upgrade::on(&mut req);
    // The connection's slot stays taken while the relay runs (its HTTP task ends at the upgrade).
    let hold = req
        .extensions_mut()
        .remove::<crate::guard::conns::ConnHold>();
    let accept = derive_accept_key(key.as_bytes());
    tokio::spawn(async move {
        let _hold = hold;
        match on_upgrade.await {
            Ok(upgraded) => {
                let downstream = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(ws_config()),
                )
                .await;
                app.counters.websockets.fetch_add(1, Ordering::Relaxed);
                let mut filter =
                    SocketFilter::new(Tenant::new(&app.tenancy, &ident.user), app.config.clone());
                if reconnect {
                    // Fetched now, after the upstream socket connected: see `seed_from_queue`.
                    let snap = app.config.get();
                    if let Ok(q) = app
                        .tenancy
                        .live
                        .queue_since(&snap, std::time::Instant::now())
                        .await
                    {
                        filter.seed_from_queue(&q, &sid);
                    }
                }
                tracing::debug!(sid = %sid, user = %ident.user.name, reconnect, running = ?filter.running(), "WebSocket opened");
                let ended = pump(&app, &ident, &sid, filter, downstream, upstream).await;
                app.counters.websockets.fetch_sub(1, Ordering::Relaxed);
                app.tenancy.live.socket_closed(&sid);
                tracing::debug!(sid = %sid, user = %ident.user.name, ended = %ended, "WebSocket closed");
            }
            Err(e) => tracing::debug!(error = %e, "client WebSocket upgrade failed"),
        }
    });

    let mut resp = Response::new(body::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    Ok(resp)
}

fn close(code: CloseCode, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

async fn pump<D, U>(
    app: &App,
    ident: &Identity,
    sid: &str,
    mut filter: SocketFilter,
    downstream: WebSocketStream<D>,
    upstream: WebSocketStream<U>,
) -> &'static str
where
    D: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    U: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut down_tx, mut down_rx) = downstream.split();
    let (mut up_tx, mut up_rx) = upstream.split();
    let mut generation = app.config.subscribe();
    let mut shutdown = app.shutdown.clone();
    loop {
        tokio::select! {
            m = down_rx.next() => match m {
                Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => {
                    if !filter.client_frame(&m) {
                        tracing::debug!(sid = %sid, user = %ident.user.name, "client frame dropped: only a first feature_flags frame goes to ComfyUI");
                    } else if up_tx.send(m).await.is_err() { break "ComfyUI went away" }
                }
                Some(Ok(Message::Close(c))) => {
                    // The library queued the answer to the client's Close: send it (a dropped
                    // connection would read as 1006 to the client), then tell ComfyUI.
                    let _ = down_tx.close().await;
                    let _ = up_tx.send(Message::Close(c)).await;
                    break "closed by the client"
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {
                    // Pings are answered by the library; flush so the pong leaves now.
                    if down_tx.flush().await.is_err() { break "client went away" }
                }
                Some(Err(_)) | None => { let _ = up_tx.send(close(CloseCode::Away, "client went away")).await; break "client went away" }
            },
            m = up_rx.next() => match m {
                Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => {
                    match filter.upstream_frame(m).await {
                        Upstream::Forward(out) => if down_tx.send(out).await.is_err() { break "client went away" },
                        Upstream::Drop(why, kind) => {
                            tracing::debug!(sid = %sid, user = %ident.user.name, frame = %kind, reason = why.reason(), "frame from ComfyUI dropped");
                        }
                    }
                }
                Some(Ok(Message::Close(c))) => { let _ = down_tx.send(Message::Close(c)).await; break "closed by ComfyUI" }
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {
                    if up_tx.flush().await.is_err() { break "ComfyUI went away" }
                }
                Some(Err(_)) | None => { let _ = down_tx.send(close(CloseCode::Error, "ComfyUI closed the connection")).await; break "ComfyUI went away" }
            },
            changed = generation.changed() => {
                if changed.is_err() { continue }
                let snap = app.config.get();
                if !still_valid(ident, &snap, &app.sessions) {
                    tracing::info!(user = %ident.user.name, "closing WebSocket: access revoked by configuration");
                    let _ = down_tx.send(close(CloseCode::Policy, "access revoked")).await;
                    let _ = up_tx.send(close(CloseCode::Normal, "")).await;
                    break "access revoked";
                }
            }
            _ = crate::shutdown::shutting_down(&mut shutdown) => {
                let _ = down_tx.send(close(CloseCode::Away, "comfy-warden is restarting")).await;
                let _ = up_tx.send(close(CloseCode::Away, "")).await;
                break "comfy-warden is shutting down";
            }
        }
    }
}
