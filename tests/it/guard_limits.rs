//! Limits that hold under abuse: oversized request heads (431), oversized uploads (413, by
//! Content-Length and by counting a streamed body), and connection limits per address and in
//! total, enforced on accept (excess connections are closed at once), with WebSocket upgrades
//! keeping their place until they close.
use crate::support::config::TestConfig;
use crate::support::double::Double;
use crate::support::harness::Warden;
use crate::support::http::{self, bearer, login, try_get};
use crate::support::poll::eventually;
use crate::support::users::alice;
use crate::support::ws;
use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const DEADLINE: Duration = Duration::from_secs(30);

/// Sends `request` on a fresh connection and reads what comes back until the peer closes, the
/// response is complete enough (`until` seen), or a few seconds pass.
async fn raw(w: &Warden, request: &[u8], until: &str) -> String {
    let mut s = TcpStream::connect(w.addr).await.unwrap();
    let _ = s.write_all(request).await;
    read_some(&mut s, until).await
}

async fn read_some(s: &mut TcpStream, until: &str) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
        if String::from_utf8_lossy(&out).contains(until) {
            break;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

const HEALTH: &[u8] = b"GET /warden/health HTTP/1.1\r\nHost: warden\r\n\r\n";

/// A connection that made one request and stays open (keep-alive).
async fn open_connection(w: &Warden) -> Option<TcpStream> {
    let mut s = TcpStream::connect(w.addr).await.ok()?;
    s.write_all(HEALTH).await.ok()?;
    let got = read_some(&mut s, "ok\n").await;
    got.starts_with("HTTP/1.1 200").then_some(s)
}

/// Retries [`open_connection`] until it works (connections of earlier requests may still be
/// counted for a moment after the client let go of them).
async fn open_connection_eventually(w: &Warden) -> TcpStream {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(s) = open_connection(w).await {
            return s;
        }
        assert!(Instant::now() < deadline, "no connection was accepted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn eventually_health_ok(w: &Warden) {
    eventually("the service accepts connections again", || async {
        try_get(&w.url("/warden/health"), &[])
            .await
            .is_ok_and(|r| r.status == 200)
    })
    .await;
}

fn refused(answer: &str) -> bool {
    !answer.contains("HTTP/1.1")
}

#[tokio::test]
async fn oversized_request_heads_get_431() {
    let d = Double::start().await;
    let cfg = TestConfig::new(&d.url())
        .user(alice())
        .server(|s| s.max_header_bytes(8192));
    let w = Warden::start(&cfg);
    let small = format!(
        "GET /warden/health HTTP/1.1\r\nHost: w\r\nX-Pad: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(4000)
    );
    assert!(
        raw(&w, small.as_bytes(), "ok\n")
            .await
            .starts_with("HTTP/1.1 200")
    );
    let big = format!(
        "GET /warden/health HTTP/1.1\r\nHost: w\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(16 * 1024)
    );
    let answer = raw(&w, big.as_bytes(), "\r\n\r\n").await;
    assert!(
        answer.starts_with("HTTP/1.1 431"),
        "expected 431, got {answer:?}"
    );
    assert!(d.received().is_empty());
}

#[tokio::test]
async fn slow_request_heads_are_cut_off() {
    let d = Double::start().await;
    let cfg = TestConfig::new(&d.url())
        .user(alice())
        .server(|s| s.header_read_timeout("1s"));
    let w = Warden::start(&cfg);
    let mut s = TcpStream::connect(w.addr).await.unwrap();
    s.write_all(b"GET /warden/health HTTP/1.1\r\nHost: w\r\nX-Slow: ")
        .await
        .unwrap();
    // The daemon closes the connection by itself (bounded wait; no timing asserted).
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(DEADLINE, s.read_to_end(&mut buf)).await;
    assert!(closed.is_ok(), "a half-sent request head was not cut off");
    assert!(!String::from_utf8_lossy(&buf).contains("200 OK"));
}

fn multipart_head(boundary: &str, name: &str) -> String {
    format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{name}\"\r\nContent-Type: image/png\r\n\r\n"
    )
}

fn multipart(boundary: &str, name: &str, len: usize) -> Vec<u8> {
    let mut v = multipart_head(boundary, name).into_bytes();
    v.extend(std::iter::repeat_n(b'x', len));
    v.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    v
}

#[tokio::test]
async fn uploads_over_the_limit_get_413() {
    let d = Double::start().await;
    let cfg = TestConfig::new(&d.url())
        .user(alice())
        .server(|s| s.max_upload_bytes(65536));
    let w = Warden::start(&cfg);
    let auth = bearer(&login(&w.url(""), "alice", "alice-pw").await);
    let ct = "multipart/form-data; boundary=XBOUNDARY";
    let headers = [("authorization", auth.as_str()), ("content-type", ct)];

    let ok = http::post(
        &w.url("/upload/image"),
        &headers,
        multipart("XBOUNDARY", "small.png", 10_000),
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.text());

    // Declared too large: refused before anything is read or sent to ComfyUI.
    d.clear_received();
    let mark = w.log_len();
    let r = http::post(
        &w.url("/upload/image"),
        &headers,
        multipart("XBOUNDARY", "declared.png", 100_000),
    )
    .await;
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(d.received_path("/upload/image").is_empty());
    assert!(w.wait_log("upload_refused", mark));

    // Streamed without a length: counted, refused, and ComfyUI's upload is aborted.
    let mark = w.log_len();
    let mut chunks = vec![Bytes::from(multipart_head("XBOUNDARY", "streamed.png"))];
    for _ in 0..16 {
        chunks.push(Bytes::from(vec![b'y'; 16 * 1024]));
    }
    chunks.push(Bytes::from("\r\n--XBOUNDARY--\r\n"));
    let body = StreamBody::new(futures_util::stream::iter(
        chunks
            .into_iter()
            .map(|c| Ok::<_, std::io::Error>(Frame::data(c))),
    ))
    .boxed();
    let r = http::try_send(
        ::http::Method::POST,
        &w.url("/api/upload/image"),
        &headers,
        body,
    )
    .await;
    if let Ok(r) = &r {
        assert_eq!(r.status, 413, "{}", r.text());
    }
    assert!(w.wait_log("upload_refused", mark), "{}", w.log());
    let log = w.log()[mark..].to_string();
    assert_eq!(
        log.matches("upload_refused").count(),
        1,
        "logged once per upload, not per chunk:\n{log}"
    );
    let files = d.list_files("input");
    assert!(files.iter().any(|f| f.ends_with("small.png")), "{files:?}");
    assert!(
        !files
            .iter()
            .any(|f| f.ends_with("streamed.png") || f.ends_with("declared.png")),
        "nothing over the limit was stored: {files:?}"
    );
}

#[tokio::test]
async fn connections_per_address_are_limited_and_websockets_keep_their_place() {
    let d = Double::start().await;
    let cfg = TestConfig::new(&d.url())
        .user(alice())
        .server(|s| s.max_connections_per_ip(2).header_read_timeout("60s"));
    let w = Warden::start(&cfg);
    let cookie = http::cookie_header(&login(&w.url(""), "alice", "alice-pw").await);

    // Two WebSockets (retried: the login's connection may still be counted for a moment). The
    // refusal log is throttled: a refusal during these retries may be the one logged, so the
    // log is searched from here.
    let mark = w.log_len();
    let mut sockets = Vec::new();
    let deadline = Instant::now() + DEADLINE;
    while sockets.len() < 2 {
        match ws::connect(w.addr, "/ws", &[("cookie", &cookie)]).await {
            Ok(s) => sockets.push(s),
            Err(_) => {
                assert!(Instant::now() < deadline, "WebSockets were not accepted");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    let answer = raw(&w, HEALTH, "ok\n").await;
    assert!(
        refused(&answer),
        "a third connection is closed at once: {answer:?}"
    );
    assert!(w.wait_log("connection_refused", mark), "{}", w.log());

    // Closing one WebSocket gives its place back.
    let mut first = sockets.remove(0);
    let _ = futures_util::SinkExt::close(&mut first).await;
    drop(first);
    eventually_health_ok(&w).await;
    drop(sockets);
}

#[tokio::test]
async fn total_connections_are_limited() {
    let d = Double::start().await;
    let cfg = TestConfig::new(&d.url())
        .user(alice())
        .server(|s| s.max_connections(3).header_read_timeout("60s"));
    let w = Warden::start(&cfg);
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(open_connection_eventually(&w).await);
    }
    let answer = raw(&w, HEALTH, "ok\n").await;
    assert!(refused(&answer), "over the total: {answer:?}");
    drop(open.pop());
    eventually_health_ok(&w).await;
}
