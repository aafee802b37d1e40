//! Weak spots found by review and by trying comfy-warden as an attacker would (issue 17): each
//! test here failed before its fix.
use crate::support;
use crate::support::tenants;
use serde_json::json;
use std::io::{Read, Write};
use std::time::Duration;

/// ComfyUI (aiohttp) decodes `%70` to `p` before routing: a path that spells a route with
/// encoded letters must not slip past the route table's checks.
#[tokio::test]
async fn encoded_letters_in_the_path_are_refused() {
    let t = tenants::start().await;
    for path in [
        "/experiment/models/%70review/checkpoints/0/%2Fetc%2Fpasswd",
        "/api/experiment/models/pr%65view/checkpoints/0/%2Fetc%2Fpasswd",
        "/%66ree",
        "/internal/%6Cogs",
        "/view%5Fmetadata/x",
    ] {
        let r = t.get(&t.bob, path).await;
        assert_eq!(r.status, 400, "{path}: {}", r.text());
    }
    assert!(
        t.d.received()
            .iter()
            .all(|r| !r.path.contains("review") && !r.path.contains("%6")),
        "{:?}",
        t.d.received().iter().map(|r| &r.path).collect::<Vec<_>>()
    );
    // Encoded characters that are not letters, digits or `-._~` still pass (file names with
    // spaces, encoded slashes inside a userdata file name).
    let r = t.get(&t.bob, "/userdata/workflows%2Fmy%20flow.json").await;
    assert_ne!(r.status, 400, "{}", r.text());
}

/// A request target in authority form (`GET host:port HTTP/1.1`) has no path: it is refused,
/// and the daemon keeps answering.
#[tokio::test]
async fn authority_form_targets_are_refused() {
    let t = tenants::start().await;
    let addr = t.w.url("").trim_start_matches("http://").to_string();
    for target in [addr.as_str(), "*"] {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        write!(
            s,
            "GET {target} HTTP/1.1\r\nHost: {addr}\r\nCookie: {}\r\nConnection: close\r\n\r\n",
            t.bob.trim_start_matches("cookie: ")
        )
        .unwrap();
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 400"), "{target}: {answer:?}");
    }
    assert_eq!(t.get(&t.bob, "/queue").await.status, 200);
}

/// `/userdata/{file}/move/{dest}`: both segments are cleaned as paths are (decoded twice, no
/// `..`), so an escaping destination never reaches ComfyUI.
#[tokio::test]
async fn userdata_move_segments_are_cleaned() {
    let t = tenants::start().await;
    for path in [
        "/userdata/a.json/move/%252E%252E%252Fusers.json",
        "/api/userdata/a.json/move/..%252Fusers.json",
        "/userdata/%252E%252E%252Fusers.json/move/b.json",
        "/userdata/..%252Fu_alice%252Fcomfy.settings.json",
    ] {
        let r = t.post_json(&t.bob, path, &json!({})).await;
        assert_eq!(r.status, 400, "{path}: {}", r.text());
    }
    assert!(
        t.d.received()
            .iter()
            .all(|r| !r.path.contains("users.json") && !r.path.contains("settings.json")),
        "{:?}",
        t.d.received().iter().map(|r| &r.path).collect::<Vec<_>>()
    );
    let r = t
        .post_json(&t.bob, "/userdata/workflows%2Fa.json", &json!({"a": 1}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = t
        .post_json(
            &t.bob,
            "/userdata/workflows%2Fa.json/move/workflows%2Fb.json",
            &json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

/// Polls `cond` for up to 30 s.
async fn wait_for(what: &str, cond: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Provisioning locks per namespace: while ComfyUI is slow to create alice's user, bob's first
/// request is provisioned and answered.
#[tokio::test]
async fn one_slow_provisioning_does_not_stall_another_user() {
    let t = tenants::start().await;
    t.d.close_gate("POST /users u_alice");
    let (url, cookie) = (t.w.url("/api/embeddings"), t.alice.clone());
    let alice = tokio::spawn(async move { support::http::get(&url, &[("cookie", &cookie)]).await });
    wait_for("alice's provisioning to reach ComfyUI", || {
        t.d.gate_arrivals("POST /users u_alice") == 1
    })
    .await;
    let bob = tokio::time::timeout(Duration::from_secs(60), t.get(&t.bob, "/api/embeddings"))
        .await
        .expect("bob's request waited for alice's provisioning");
    assert_eq!(bob.status, 200, "{}", bob.text());
    assert!(!alice.is_finished(), "alice's request is still held");
    t.d.open_gate("POST /users u_alice");
    assert_eq!(alice.await.unwrap().status, 200);
    let names: Vec<String> = t.d.users().into_iter().map(|(_, n)| n).collect();
    assert_eq!(
        names.iter().filter(|n| *n == "u_alice").count(),
        1,
        "{names:?}"
    );
}

/// One value of the daemon's metrics, read as the admin.
async fn metric(t: &tenants::Tenants, name: &str) -> f64 {
    let text = t.get(&t.root, "/warden/metrics").await.text();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in:\n{text}"))
}

/// Concurrent `GET /history` requests (of different users) share one fetch of ComfyUI's whole
/// history, as `/queue` does, and each still sees only its own entries.
#[tokio::test]
async fn concurrent_history_requests_share_one_upstream_fetch() {
    let t = tenants::start().await;
    let (alice_id, _) = t.run(&t.alice, tenants::preview_graph()).await;
    let (bob_id, _) = t.run(&t.bob, tenants::preview_graph()).await;
    let fetches = || t.d.received_path("/history").len();
    let before = fetches();
    t.d.close_gate("GET /history");
    let mut asked = Vec::new();
    for i in 0..6 {
        let url = t.w.url("/api/history");
        let who = if i % 2 == 0 {
            t.alice.clone()
        } else {
            t.bob.clone()
        };
        asked.push(tokio::spawn(async move {
            (i, support::http::get(&url, &[("cookie", &who)]).await)
        }));
    }
    wait_for("the first fetch to reach ComfyUI", || {
        t.d.gate_arrivals("GET /history") == 1
    })
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while metric(&t, "comfy_warden_history_waiting").await < 5.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the other five requests never waited for the shared fetch"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    t.d.open_gate("GET /history");
    for a in asked {
        let (i, r) = a.await.unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        let (mine, theirs) = if i % 2 == 0 {
            (&alice_id, &bob_id)
        } else {
            (&bob_id, &alice_id)
        };
        let h = r.json();
        assert!(h.get(mine).is_some() && h.get(theirs).is_none(), "{i}: {h}");
    }
    assert_eq!(fetches() - before, 1, "one upstream fetch for six requests");
}

/// Sends `head` and then `body_len` bytes in slow chunks, as aiohttp's multipart upload does,
/// and only then reads the answer: the status line must arrive, not a reset.
fn refused_while_sending(addr: &str, head: &str, body_len: usize) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    let chunk = vec![b'x'; 64 * 1024];
    let mut sent = 0;
    while sent < body_len {
        let n = chunk.len().min(body_len - sent);
        if let Err(e) = s.write_all(&chunk[..n]) {
            panic!("the connection broke after {sent} bytes of the body: {e}");
        }
        sent += n;
        std::thread::sleep(Duration::from_millis(2));
    }
    let mut answer = Vec::new();
    if let Err(e) = s.read_to_end(&mut answer) {
        assert!(!answer.is_empty(), "no answer, only {e}");
    }
    String::from_utf8_lossy(&answer).into_owned()
}

/// A request refused before its body was read (401, 403) still gets its answer to a client
/// that sends the whole body before reading: the connection lingers instead of being reset.
#[tokio::test]
async fn refused_requests_with_a_body_are_answered_not_reset() {
    let t = tenants::start().await;
    let addr = t.w.url("").trim_start_matches("http://").to_string();
    let len = 3 * 1024 * 1024;
    let unauthenticated = format!(
        "POST /upload/image HTTP/1.1\r\nHost: {addr}\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: {len}\r\n\r\n"
    );
    let cross_site = format!(
        "POST /upload/image HTTP/1.1\r\nHost: {addr}\r\nCookie: {}\r\nSec-Fetch-Site: cross-site\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: {len}\r\n\r\n",
        t.alice
    );
    for (head, status) in [(unauthenticated, "401"), (cross_site, "403")] {
        let a = addr.clone();
        let answer = tokio::task::spawn_blocking(move || refused_while_sending(&a, &head, len))
            .await
            .unwrap();
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{status}: {answer:?}"
        );
    }
}

/// A sign-in flood from one address gets one password check per spacing slot: counted in
/// hashes, not in time. The rest are refused with 429 and Retry-After, without hashing.
#[tokio::test]
async fn a_sign_in_flood_from_one_address_is_spaced() {
    let t = tenants::start().await;
    let hashes = || async {
        t.get(&t.root, "/warden/admin/guard").await.json()["password_hashes"]
            .as_u64()
            .unwrap()
    };
    let before = hashes().await;
    let mut flood = Vec::new();
    for i in 0..30 {
        let url = t.w.url("/login");
        flood.push(tokio::spawn(async move {
            support::http::post_json(
                &url,
                &[],
                &json!({"username": format!("nobody{i}"), "password": "wrong"}),
            )
            .await
        }));
    }
    let mut refused = 0;
    for f in flood {
        let r = f.await.unwrap();
        match r.status.as_u16() {
            401 => {}
            429 => {
                assert!(r.header("retry-after").is_some());
                refused += 1;
            }
            s => panic!("unexpected {s}: {}", r.text()),
        }
    }
    let checked = hashes().await - before;
    // 1 s of slots at 100 ms (11), and the slots that free up while the flood is answered.
    assert!(checked <= 20, "{checked} password checks for one address");
    assert_eq!(
        checked + refused,
        30,
        "checked {checked}, refused {refused}"
    );
}
