//! Faults with the real daemon (issue 17): ComfyUI killed while a large download, an upload and
//! a WebSocket relay run, then restarted; the state directory full; kill -9 while snapshots are
//! written; reloads under load. The daemon must keep serving, leak neither file descriptors nor
//! tasks, and start again from valid state files.
use crate::support;
use crate::support::harness::Warden;
use crate::support::http::{self, cookie_header, login};
use crate::support::tenants::{self, Tenants};
use crate::support::ws;
use bytes::Bytes;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

async fn metric(t: &Tenants, name: &str) -> f64 {
    let text = t.get(&t.root, "/warden/metrics").await.text();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in:\n{text}"))
}

/// Waits (generously) until `f` holds.
async fn eventually<F: std::future::Future<Output = bool>>(what: &str, f: impl Fn() -> F) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A user signing in, a download, an upload and a WebSocket: pools and sockets open once.
async fn warm_up(t: &Tenants) {
    assert_eq!(t.get(&t.alice, "/api/embeddings").await.status, 200);
    assert_eq!(t.get(&t.bob, "/api/embeddings").await.status, 200);
    let r = t
        .upload(&t.alice, "/upload/image", &[], "w.png", tenants::PNG)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let mut s = ws::connect(t.w.addr, "/ws", &[("cookie", &t.alice)])
        .await
        .unwrap();
    assert!(ws::next_json(&mut s, 20).await.is_some());
    drop(s);
}

#[tokio::test]
async fn comfyui_killed_mid_stream_and_restarted() {
    let t = tenants::start().await;
    t.d.put_large_file("output", "u_alice", "big.bin", 200 * 1024 * 1024);
    warm_up(&t).await;
    let pid = t.w.pid();
    // Let connection pools and lingering sockets settle, then take the baseline.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let fds_before = fds(pid);
    let tasks_before = metric(&t, "comfy_warden_tasks_alive").await;

    // A 200 MB download, started and partly read.
    let req = ::http::Request::builder()
        .uri(t.w.url("/api/view?filename=big.bin&type=output"))
        .header("cookie", &t.alice)
        .body(http::full(Bytes::new()))
        .unwrap();
    let resp = http::client().request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut got = 0u64;
    while got < 1024 * 1024 {
        let f = body.frame().await.unwrap().unwrap();
        got += f.into_data().map(|d| d.len() as u64).unwrap_or(0);
    }
    // An upload in flight (its answer awaited in a task).
    let big = vec![7u8; 30 * 1024 * 1024];
    let (w_url, alice) = (t.w.url(""), t.alice.clone());
    let upload = tokio::spawn(async move {
        let boundary = "faultboundary";
        let mut b = format!("--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"up.png\"\r\nContent-Type: image/png\r\n\r\n").into_bytes();
        b.extend_from_slice(&big);
        b.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let ct = format!("multipart/form-data; boundary={boundary}");
        http::try_send(
            ::http::Method::POST,
            &format!("{w_url}/upload/image"),
            &[("cookie", &alice), ("content-type", &ct)],
            http::full(b),
        )
        .await
    });
    // A relayed WebSocket.
    let mut sock = ws::connect(t.w.addr, "/ws", &[("cookie", &t.alice)])
        .await
        .unwrap();
    assert!(ws::next_json(&mut sock, 20).await.is_some());

    t.d.stop();

    // The download ends early (an error, or a short body), never hangs.
    let rest = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(f) = body.frame().await {
            match f {
                Ok(f) => got += f.into_data().map(|d| d.len() as u64).unwrap_or(0),
                Err(_) => return,
            }
        }
    })
    .await;
    assert!(rest.is_ok(), "the download hung after ComfyUI died");
    assert!(
        got < 200 * 1024 * 1024,
        "a dead ComfyUI cannot have sent it all"
    );
    // The upload gets an answer that says ComfyUI failed, or its connection ends.
    match tokio::time::timeout(Duration::from_secs(60), upload)
        .await
        .expect("the upload hung after ComfyUI died")
        .unwrap()
    {
        Ok(r) => assert!(r.status.is_server_error(), "{} {}", r.status, r.text()),
        Err(_closed) => {}
    }
    // The WebSocket is closed (or ends), never left hanging silently open.
    let mut closed = false;
    for _ in 0..10 {
        match ws::next(&mut sock, 30).await {
            None | Some(tokio_tungstenite::tungstenite::Message::Close(_)) => {
                closed = true;
                break;
            }
            Some(_) => continue,
        }
    }
    assert!(closed, "the relayed socket stayed open after ComfyUI died");

    // The daemon serves everyone meanwhile: its own routes, and a clean 502 for ComfyUI's.
    assert_eq!(t.get(&t.bob, "/warden/me").await.status, 200);
    let r = t.get(&t.bob, "/api/embeddings").await;
    assert!(r.status == 502 || r.status == 504, "{}", r.status);

    t.d.restart().await;
    eventually("ComfyUI to be reachable again", || async {
        t.get(&t.bob, "/api/embeddings").await.status == 200
    })
    .await;
    // Sockets opened afterwards get events again.
    let mut again = ws::connect(t.w.addr, "/ws", &[("cookie", &t.alice)])
        .await
        .unwrap();
    let first = ws::next_json(&mut again, 20).await.expect("an event");
    assert_eq!(first["type"], "status", "{first}");
    drop(again);
    drop(sock);
    drop(body);

    // No descriptor or task leaks once pools and lingering sockets have settled.
    eventually("file descriptors back to the baseline", || async {
        fds(pid) <= fds_before + 2
    })
    .await;
    eventually("tasks back to the baseline", || async {
        metric(&t, "comfy_warden_tasks_alive").await <= tasks_before + 2.0
    })
    .await;
}

/// Mounts a tmpfs of `size` at `dir`; `false` (and a message) when mounting is refused.
fn mount_tmpfs(dir: &std::path::Path, size: &str) -> bool {
    std::fs::create_dir_all(dir).unwrap();
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!(
            "skipped: cannot mount a tmpfs at {} (not root?)",
            dir.display()
        );
    }
    ok
}

struct Unmount(std::path::PathBuf);
impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[tokio::test]
async fn a_full_state_directory_is_survived() {
    let d = support::double::Double::start().await;
    let cfg = support::config::TestConfig::new(&d.url())
        .users([support::users::alice(), support::users::root()]);
    let dir = tempfile::tempdir().unwrap();
    cfg.write(dir.path());
    let state = dir.path().join("state");
    if !mount_tmpfs(&state, "1m") {
        return;
    }
    let _unmount = Unmount(state.clone());
    let w = Warden::start_in(dir, &[]);
    let alice = cookie_header(&login(&w.url(""), "alice", "alice-pw").await);
    let root = cookie_header(&login(&w.url(""), "root", "root-pw").await);
    // Something to snapshot, written while there is room.
    let wrong = json!({"username": "alice", "password": "wrong"});
    assert_eq!(
        http::post_json(&w.url("/login"), &[], &wrong).await.status,
        401
    );
    let lockout = state.join("lockout.json");
    eventually("a first lockout snapshot", || async { lockout.exists() }).await;
    let good: Value = serde_json::from_slice(&std::fs::read(&lockout).unwrap()).unwrap();

    // Fill the disk, then change the state again.
    let filler = state.join("filler");
    let _ = std::fs::write(&filler, vec![0u8; 2 * 1024 * 1024]);
    let from = w.log_len();
    let wrong = json!({"username": "nobody", "password": "wrong"});
    assert_eq!(
        http::post_json(&w.url("/login"), &[], &wrong).await.status,
        401
    );
    assert!(
        w.wait_log("cannot write the lockout snapshot", from),
        "the failure is logged"
    );
    let m = http::get(&w.url("/warden/metrics"), &[("cookie", &root)])
        .await
        .text();
    let failures: f64 = m
        .lines()
        .find_map(|l| {
            l.strip_prefix("comfy_warden_snapshot_write_failures_total ")?
                .parse()
                .ok()
        })
        .unwrap_or(0.0);
    assert!(failures >= 1.0, "the failure is counted:\n{m}");
    // The daemon keeps serving, and the last good file is still there and valid.
    assert_eq!(
        http::get(&w.url("/warden/me"), &[("cookie", &alice)])
            .await
            .status,
        200
    );
    let now: Value = serde_json::from_slice(&std::fs::read(&lockout).unwrap()).unwrap();
    assert_eq!(now, good, "the last good snapshot is kept as it was");
    assert!(
        std::fs::read_dir(&state)
            .unwrap()
            .flatten()
            .all(|e| !e.file_name().to_string_lossy().contains(".tmp-")),
        "no half-written temporary file is left on the full disk"
    );

    // Room again: the pending change is written at the next round, and a new start reads it.
    std::fs::remove_file(&filler).unwrap();
    eventually("the snapshot written again", || async {
        std::fs::read(&lockout)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .is_some_and(|v| v != good)
    })
    .await;
    let w = w.restart();
    assert!(!w.log().contains("snapshot is corrupted"), "{}", w.log());
}

#[tokio::test]
async fn kill_9_while_snapshots_are_written_leaves_valid_files() {
    let d = support::double::Double::start().await;
    let cfg = support::config::TestConfig::new(&d.url()).user(support::users::alice());
    let mut w = Warden::start(&cfg);
    for round in 0..8 {
        // Keep the lockout state changing, so every 2 s round writes a snapshot.
        for i in 0..3 {
            let wrong = json!({"username": format!("u{round}x{i}"), "password": "wrong"});
            let _ = http::post_json(&w.url("/login"), &[], &wrong).await;
        }
        tokio::time::sleep(Duration::from_millis(300 * (round % 4) + 100)).await;
        w.signal("KILL");
        let (_, dir) = w.stop_keep_dir();
        for name in ["lockout.json", "ledger.json", "tokens.json"] {
            let p = dir.path().join("state").join(name);
            if let Ok(bytes) = std::fs::read(&p) {
                assert!(
                    serde_json::from_slice::<Value>(&bytes).is_ok(),
                    "round {round}: {name} is not valid JSON"
                );
            }
        }
        w = Warden::start_in(dir, &[]);
        assert!(
            !w.log().contains("snapshot is corrupted"),
            "round {round}: {}",
            w.log()
        );
        let alice = login(&w.url(""), "alice", "alice-pw").await;
        assert!(!alice.is_empty());
    }
}

#[tokio::test]
async fn reloads_under_load_fail_no_request() {
    let t = tenants::start().await;
    let users = std::fs::read_to_string(t.w.path("users.toml")).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for who in [t.alice.clone(), t.bob.clone()] {
        let (stop, base) = (stop.clone(), t.w.url(""));
        load.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0u32, Vec::new());
            let mut i = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && i < 20_000 {
                i += 1;
                let path = if i % 2 == 0 {
                    "/api/embeddings"
                } else {
                    "/warden/me"
                };
                match http::try_get(&format!("{base}{path}"), &[("cookie", &who)]).await {
                    Ok(r) if r.status == 200 => ok += 1,
                    Ok(r) => failed.push(format!("{path}: {} {}", r.status, r.text())),
                    Err(e) => failed.push(format!("{path}: {e}")),
                }
            }
            (ok, failed)
        }));
    }
    for i in 0..50 {
        t.w.signal("HUP");
        t.w.replace_file("users.toml", &format!("{users}\n# rewrite {i}\n"));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Let the last reloads land while the load still runs.
    assert!(t.w.wait_log("configuration reloaded", 0));
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for l in load {
        let (ok, failed) = l.await.unwrap();
        assert!(ok > 0);
        assert!(
            failed.is_empty(),
            "{} failed, e.g. {:?}",
            failed.len(),
            &failed[..failed.len().min(5)]
        );
    }
    assert_eq!(t.get(&t.alice, "/api/embeddings").await.status, 200);
}
