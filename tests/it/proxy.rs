//! Proxying: what ComfyUI receives (no client comfy-user, no warden cookie, no Origin, no
//! Authorization; forwarding headers set by comfy-warden), streaming of large bodies both
//! ways, a clear 502 when ComfyUI is down, and the worker threads serving connections.
use crate::support::config::TestConfig;
use crate::support::double::Double;
use crate::support::harness::Warden;
use crate::support::http::{self, bearer, cookie_header, get, login};
use crate::support::users::alice;
use ::http::Method;

async fn setup() -> (Double, Warden, String) {
    let double = Double::start().await;
    let w = Warden::start(&TestConfig::new(&double.url()).user(alice()));
    let token = login(&w.url(""), "alice", "alice-pw").await;
    (double, w, token)
}

#[tokio::test]
async fn client_identity_headers_never_reach_comfyui() {
    let (d, w, token) = setup().await;
    let cookie = format!("theme=dark; {}; other=1", cookie_header(&token));
    let r = get(
        &w.url("/api/embeddings"),
        &[
            ("cookie", &cookie),
            ("comfy-user", "bob_041ef96f"),
            ("Comfy-User", "default"),
            ("COMFY-USER", ""),
            ("origin", "http://evil.example"),
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-host", "evil.example"),
            ("connection", "x-drop-me"),
            ("x-drop-me", "1"),
            ("x-keep-me", "1"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let got = d.received_path("/api/embeddings");
    assert_eq!(got.len(), 1);
    let req = &got[0];
    let ids = req.header_all("comfy-user");
    assert_eq!(ids.len(), 1, "exactly one comfy-user: {:?}", req.headers);
    assert!(
        ids[0].starts_with("u_alice_"),
        "the id comfy-warden provisioned for alice, got {:?}",
        ids[0]
    );
    assert!(req.header("origin").is_none(), "Origin must be removed");
    assert!(req.header("authorization").is_none());
    assert!(
        req.header("x-drop-me").is_none(),
        "headers named in Connection are hop-by-hop"
    );
    assert_eq!(req.header("x-keep-me"), Some("1"));
    let cookies = req.header_all("cookie").join("; ");
    assert!(
        !cookies.contains("comfy_warden_session"),
        "session cookie leaked: {cookies}"
    );
    assert!(
        cookies.contains("theme=dark") && cookies.contains("other=1"),
        "{cookies}"
    );
    assert_eq!(
        req.header("x-forwarded-for"),
        Some("127.0.0.1"),
        "client XFF must not be believed"
    );
    assert_eq!(req.header("x-forwarded-proto"), Some("http"));
    assert_eq!(
        req.header_all("host"),
        [d.addr().to_string()],
        "one Host, ComfyUI's own address (what its Origin check compares with)"
    );
    assert_eq!(
        req.header("x-forwarded-host"),
        Some(w.addr.to_string().as_str())
    );
}

#[tokio::test]
async fn bearer_token_is_not_forwarded() {
    let (d, w, token) = setup().await;
    let auth = bearer(&token);
    assert_eq!(
        get(&w.url("/api/embeddings"), &[("authorization", &auth)])
            .await
            .status,
        200
    );
    let req = &d.received_path("/api/embeddings")[0];
    assert!(req.header("authorization").is_none());
    assert!(
        req.headers.iter().all(|(_, v)| !v.contains(&token)),
        "the token must not reach ComfyUI"
    );
}

#[tokio::test]
async fn a_50_mb_view_streams_through() {
    let (d, w, token) = setup().await;
    let size = 50 * 1024 * 1024;
    d.put_large_file("output", "u_alice", "big.bin", size);
    let (status, len, sha) = http::get_streamed(
        &w.url("/view?filename=big.bin&type=output"),
        &[("cookie", &cookie_header(&token))],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(len, size);
    assert_eq!(sha, http::generated_sha256(size));
}

#[tokio::test]
async fn a_50_mb_upload_streams_through() {
    let (d, w, token) = setup().await;
    let size: u64 = 50 * 1024 * 1024;
    let boundary = "wardenboundary7d1";
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"big.png\"\r\nContent-Type: image/png\r\n\r\n"
    );
    let tail = format!(
        "\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"type\"\r\n\r\ninput\r\n--{boundary}--\r\n"
    );
    use futures_util::StreamExt;
    use http_body_util::{BodyExt, BodyStream, StreamBody};
    let parts = futures_util::stream::iter([
        http::full(head.clone().into_bytes()),
        http::generated(size),
        http::full(tail.clone().into_bytes()),
    ])
    .flat_map(BodyStream::new);
    let body = BodyExt::boxed(StreamBody::new(parts));
    let content_type = format!("multipart/form-data; boundary={boundary}");
    let r = http::send(
        Method::POST,
        &w.url("/upload/image"),
        &[
            ("cookie", &cookie_header(&token)),
            ("content-type", &content_type),
        ],
        body,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["subfolder"], "", "the namespace is not shown");
    let stored = d
        .stored_file("input", "u_alice", "big.png")
        .expect("stored in alice's namespace");
    assert_eq!(stored.len, size);
    assert_eq!(stored.sha256, http::generated_sha256(size));
    let rec = &d.received_path("/upload/image")[0];
    assert!(
        rec.body_len > size,
        "the whole file went up in one rebuilt form"
    );
    let ct = rec.header("content-type").unwrap();
    assert!(
        ct.contains("boundary=comfywarden") && !ct.contains(boundary),
        "the form is rebuilt, not forwarded raw: {ct}"
    );
}

#[tokio::test]
async fn comfyui_down_gives_502_page_or_json() {
    let (d, w, token) = setup().await;
    d.stop();
    let cookie = cookie_header(&token);
    let api = get(&w.url("/api/queue"), &[("cookie", &cookie)]).await;
    assert_eq!(api.status, 502);
    assert!(
        api.json()["error"]
            .as_str()
            .unwrap()
            .contains("unreachable")
    );
    let page = get(&w.url("/"), &[("cookie", &cookie), ("accept", "text/html")]).await;
    assert_eq!(page.status, 502);
    assert!(page.text().contains("ComfyUI is unavailable"));
}

/// `server.workers` threads serve connections, each with its own event loop; connections go
/// to the worker with the fewest open ones, so concurrent keep-alive connections are spread
/// evenly (seen in the `worker_connections_open` metric) and all answered.
#[tokio::test]
async fn workers_serve_concurrent_connections() {
    let double = Double::start().await;
    let cfg = TestConfig::new(&double.url())
        .user(alice())
        .server(|s| s.workers(3).metrics_listen("127.0.0.1:0"));
    let w = Warden::start(&cfg);
    let metrics_addr = w.log_addr("serving metrics on ");
    // Each thread names itself as it starts.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let names = loop {
        let mut names: Vec<String> = std::fs::read_dir(format!("/proc/{}/task", w.pid()))
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .map(|n| n.trim().to_string())
            .filter(|n| n.starts_with("worker-"))
            .collect();
        names.sort();
        if names.len() >= 3 || std::time::Instant::now() > deadline {
            break names;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(names, ["worker-0", "worker-1", "worker-2"]);

    let token = login(&w.url(""), "alice", "alice-pw").await;
    let cookie = cookie_header(&token);
    let mut clients = Vec::new();
    for _ in 0..12 {
        let (url, cookie) = (w.url("/api/embeddings"), cookie.clone());
        clients.push(tokio::spawn(async move {
            // One client per task: its requests reuse one keep-alive connection, which stays
            // open while the client is kept.
            let client = http::client();
            let mut statuses = Vec::new();
            for _ in 0..5 {
                let req = ::http::Request::get(&url)
                    .header("cookie", &cookie)
                    .body(http::full(""))
                    .unwrap();
                statuses.push(client.request(req).await.unwrap().status().as_u16());
            }
            (statuses, client)
        }));
    }
    let mut kept = Vec::new();
    for c in clients {
        let (statuses, client) = c.await.unwrap();
        assert_eq!(statuses, [200; 5]);
        kept.push(client);
    }
    assert_eq!(double.received_path("/api/embeddings").len(), 60);

    // 12 open keep-alive connections plus this metrics request (and, if its close is not yet
    // seen, the sign-in's): spread evenly.
    let m = get(&format!("http://{metrics_addr}/metrics"), &[]).await;
    let mut open: Vec<u64> = m
        .text()
        .lines()
        .filter(|l| l.starts_with("comfy_warden_worker_connections_open{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    open.sort();
    assert_eq!(open.len(), 3, "{}", m.text());
    let total: u64 = open.iter().sum();
    assert!((13..=14).contains(&total), "{open:?}");
    assert!(open[2] - open[0] <= 1, "uneven: {open:?}");
    drop(kept);
}
