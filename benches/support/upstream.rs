//! A fast stand-in for ComfyUI's cheap routes, for the benchmark: it answers from memory with
//! no per-request work, so what is measured is the proxy in front of it.
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

type Body = BoxBody<Bytes, std::io::Error>;

pub const BIG: u64 = 200 * 1024 * 1024;

pub struct Data {
    pub object_info: Bytes,
    pub history: Bytes,
}

fn full(b: impl Into<Bytes>, ct: &'static str) -> Response<Body> {
    let mut r = Response::new(Full::new(b.into()).map_err(|n| match n {}).boxed());
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(ct),
    );
    r
}

fn big_body(size: u64) -> Body {
    let chunk = Bytes::from(vec![7u8; 256 * 1024]);
    let s = futures_util::stream::unfold(0u64, move |off| {
        let chunk = chunk.clone();
        async move {
            if off >= size {
                return None;
            }
            let n = (size - off).min(chunk.len() as u64) as usize;
            Some((
                Ok::<_, std::io::Error>(Frame::data(chunk.slice(..n))),
                off + n as u64,
            ))
        }
    });
    BodyExt::boxed(StreamBody::new(s))
}

async fn serve(data: Arc<Data>, mut req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().trim_start_matches("/api").to_owned();
    let json = "application/json; charset=utf-8";
    Ok(match (req.method().as_str(), path.as_str()) {
        ("GET", "/ws") => {
            let key = req.headers().get("sec-websocket-key").cloned();
            let on = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                if let Ok(up) = on.await {
                    let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
                        TokioIo::new(up),
                        tokio_tungstenite::tungstenite::protocol::Role::Server,
                        None,
                    )
                    .await;
                    let (mut tx, mut rx) = ws.split();
                    let hello = r#"{"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": "x"}}"#;
                    let _ = tx
                        .send(tokio_tungstenite::tungstenite::Message::text(hello))
                        .await;
                    while let Some(Ok(_)) = rx.next().await {}
                }
            });
            let mut r = Response::new(BodyExt::boxed(
                Full::new(Bytes::new()).map_err(|n| match n {}),
            ));
            *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            let h = r.headers_mut();
            h.insert("connection", http::HeaderValue::from_static("upgrade"));
            h.insert("upgrade", http::HeaderValue::from_static("websocket"));
            if let Some(k) = key
                && let Ok(v) = http::HeaderValue::from_str(
                    &tokio_tungstenite::tungstenite::handshake::derive_accept_key(k.as_bytes()),
                )
            {
                h.insert("sec-websocket-accept", v);
            }
            r
        }
        ("GET", "/embeddings") => full("[]", json),
        ("GET", "/users") => full(
            r#"{"storage": "server", "users": {"u_bench_1": "u_bench"}}"#,
            json,
        ),
        ("POST", "/users") => full(r#""u_bench_1""#, json),
        ("GET", "/object_info") => full(data.object_info.clone(), json),
        ("GET", "/history") => full(data.history.clone(), json),
        ("GET", "/queue") => full(r#"{"queue_running": [], "queue_pending": []}"#, json),
        ("GET", "/view") => {
            let mut r = Response::new(big_body(BIG));
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("image/png"),
            );
            r.headers_mut()
                .insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(BIG));
            r
        }
        ("POST", "/upload/image") => {
            let mut n = 0u64;
            let mut b = req.into_body();
            while let Some(Ok(f)) = b.frame().await {
                if let Ok(d) = f.into_data() {
                    n += d.len() as u64;
                }
            }
            full(
                format!(
                    r#"{{"name": "big.png", "subfolder": "u_bench", "type": "input", "bytes": {n}}}"#
                ),
                json,
            )
        }
        _ => {
            let mut r = full("404: Not Found", "text/plain");
            *r.status_mut() = StatusCode::NOT_FOUND;
            r
        }
    })
}

/// `history` entries: `n`, half of them tagged as the bench user's.
pub fn history(n: usize) -> Bytes {
    let mut m = serde_json::Map::new();
    for i in 0..n {
        let id = format!("00000000-0000-4000-8000-{i:012}");
        let owner = if i % 2 == 0 { "u_bench" } else { "u_other" };
        m.insert(
            id.clone(),
            serde_json::json!({
                "prompt": [i, id, {"2": {"class_type": "SaveImage", "inputs": {"filename_prefix": format!("{owner}/out"), "images": ["1", 0]}}}, {"client_id": "x", "comfy_warden_owner": owner}, ["2"]],
                "outputs": {"2": {"images": [{"filename": format!("out_{i:05}_.png"), "subfolder": owner, "type": "output"}]}},
                "status": {"status_str": "success", "completed": true, "messages": []},
                "meta": {}
            }),
        );
    }
    Bytes::from(serde_json::to_vec(&m).unwrap_or_default())
}

/// Starts the stand-in on its own runtime thread; returns its address.
pub fn start(data: Data) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            tx.send(l.local_addr().expect("addr")).expect("send");
            let data = Arc::new(data);
            loop {
                let Ok((s, _)) = l.accept().await else {
                    continue;
                };
                let _ = s.set_nodelay(true);
                let data = data.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |r| serve(data.clone(), r));
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(s), svc)
                        .await;
                });
            }
        });
    });
    rx.recv().expect("upstream address")
}
