//! Third-party clients over the WebSocket, as they really behave: ids they choose themselves
//! (ComfyUI's `websockets_api_example.py`, comfy-api-simplified, comfy-catapult), several
//! sockets of one account, `SaveImageWebsocket` images and previews while other users work and
//! poll, and a clean close.
use crate::support;
use crate::support::tenants::{self, PROGRESS_NODE, Tenants};
use crate::support::ws;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

fn texts(frames: &[Message]) -> Vec<Value> {
    frames
        .iter()
        .filter_map(|m| match m {
            Message::Text(t) => serde_json::from_str(t).ok(),
            _ => None,
        })
        .collect()
}

fn has_event(frames: &[Message], ty: &str, prompt_id: &str) -> bool {
    texts(frames)
        .iter()
        .any(|v| v["type"] == ty && v["data"]["prompt_id"] == prompt_id)
}

async fn sid_of(sock: &mut ws::Ws) -> String {
    let v = ws::next_json(sock, 10).await.expect("a status frame");
    assert_eq!(v["type"], "status", "{v}");
    v["data"]["sid"].as_str().expect("sid").to_string()
}

fn preview_graph(color: u64) -> Value {
    json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": color}},
        "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}
    })
}

#[tokio::test]
async fn two_sockets_of_one_user_with_their_own_ids_each_get_their_prompts() {
    let t = tenants::start().await;
    let id1 = uuid::Uuid::new_v4().to_string();
    let id2 = uuid::Uuid::new_v4().to_string();
    let mut s1 = ws::connect(
        t.w.addr,
        &format!("/ws?clientId={id1}"),
        &[("cookie", &t.alice)],
    )
    .await
    .unwrap();
    assert_eq!(
        sid_of(&mut s1).await,
        id1,
        "a fresh id is claimed on connect"
    );
    let mut s2 = ws::connect(
        t.w.addr,
        &format!("/ws?clientId={id2}"),
        &[("cookie", &t.alice)],
    )
    .await
    .unwrap();
    assert_eq!(
        sid_of(&mut s2).await,
        id2,
        "a second socket keeps its own id"
    );

    // Each prompt's events reach the socket whose id it was sent with, not the newest socket.
    let r1 = t
        .post_json(
            &t.alice,
            "/prompt",
            &json!({"prompt": preview_graph(1), "client_id": id1}),
        )
        .await;
    assert_eq!(r1.status, 200, "{}", r1.text());
    let p1 = r1.json()["prompt_id"].as_str().unwrap().to_string();
    let f1 = ws::drain(&mut s1, 2).await;
    assert!(has_event(&f1, "execution_success", &p1), "{:?}", texts(&f1));
    let f2 = ws::drain(&mut s2, 1).await;
    assert!(!has_event(&f2, "execution_start", &p1), "{:?}", texts(&f2));

    let r2 = t
        .post_json(
            &t.alice,
            "/prompt",
            &json!({"prompt": preview_graph(2), "client_id": id2}),
        )
        .await;
    let p2 = r2.json()["prompt_id"].as_str().unwrap().to_string();
    let f2 = ws::drain(&mut s2, 2).await;
    assert!(has_event(&f2, "execution_success", &p2), "{:?}", texts(&f2));
    let f1 = ws::drain(&mut s1, 1).await;
    assert!(!has_event(&f1, "execution_start", &p2));

    // A prompt may claim an id nobody has yet: a socket opened later with it is the user's.
    let id3 = uuid::Uuid::new_v4().to_string();
    let r3 = t
        .post_json(
            &t.alice,
            "/prompt",
            &json!({"prompt": preview_graph(3), "client_id": id3}),
        )
        .await;
    assert_eq!(r3.status, 200);
    let queued = t.d.received_path("/prompt");
    let sent = queued.last().unwrap().json();
    assert_eq!(
        sent["client_id"],
        id3.as_str(),
        "the claimed id went to ComfyUI"
    );
    let mut s3 = ws::connect(
        t.w.addr,
        &format!("/ws?clientId={id3}"),
        &[("cookie", &t.alice)],
    )
    .await
    .unwrap();
    assert_eq!(sid_of(&mut s3).await, id3);

    // Ids of another user stay refused, on connect and on POST /prompt.
    for id in [&id1, &id3] {
        let mut b = ws::connect(
            t.w.addr,
            &format!("/ws?clientId={id}"),
            &[("cookie", &t.bob)],
        )
        .await
        .unwrap();
        let bob_sid = sid_of(&mut b).await;
        assert_ne!(&bob_sid, id, "bob cannot take alice's id");
        let r = t
            .post_json(
                &t.bob,
                "/prompt",
                &json!({"prompt": preview_graph(9), "client_id": id}),
            )
            .await;
        assert_eq!(r.status, 200);
        let sent = t.d.received_path("/prompt").last().unwrap().json();
        assert_eq!(
            sent["client_id"],
            bob_sid.as_str(),
            "bob's prompt goes to bob's socket"
        );
        let bp = r.json()["prompt_id"].as_str().unwrap().to_string();
        let f = ws::drain(&mut s1, 1).await;
        assert!(!f.iter().any(|m| m.to_text().is_ok_and(|t| t.contains(&bp))));
    }
}

/// What one socket received, collected in the background.
#[derive(Default)]
struct Seen {
    binary: Vec<Vec<u8>>,
    texts: Vec<Value>,
}

fn collect(mut sock: ws::Ws) -> Arc<Mutex<Seen>> {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let s = seen.clone();
    tokio::spawn(async move {
        while let Some(Ok(m)) = sock.next().await {
            let mut g = s.lock().unwrap();
            match m {
                Message::Binary(b) => g.binary.push(b.to_vec()),
                Message::Text(t) => {
                    if let Ok(v) = serde_json::from_str(&t) {
                        g.texts.push(v)
                    }
                }
                _ => {}
            }
        }
    });
    seen
}

fn binary_type(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

async fn wait_history(t: &Tenants, who: &str, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let h = t.get(who, &format!("/history/{id}")).await.json();
        if h.get(id).is_some() {
            return;
        }
        assert!(Instant::now() < deadline, "prompt {id} did not finish");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A status frame reaches alice's socket in the middle of her run (bob queues a prompt), and the
/// `/queue` read it causes answers after her run ended (a busy ComfyUI): a process-wide
/// "running prompt" set from that snapshot would drop her later frames and could hand bob's
/// broadcast frames to her, or hers to him. Decided per socket, none is lost or leaked.
#[tokio::test]
async fn binary_frames_follow_each_sockets_own_stream() {
    let t = tenants::start_with(|c| {
        c.tenancy(|t| t.pure_node(PROGRESS_NODE).pure_node("SaveImageWebsocket"))
    })
    .await;
    t.d.enable_progress_node();
    t.d.set_queue_delay(Duration::from_millis(300));
    // Like websockets_api_example.py: no feature_flags, so previews are type 1 (no prompt id).
    let a = ws::connect(t.w.addr, "/ws", &[("cookie", &t.alice)])
        .await
        .unwrap();
    let b = ws::connect(t.w.addr, "/ws", &[("cookie", &t.bob)])
        .await
        .unwrap();
    let alice_seen = collect(a);
    let bob_seen = collect(b);
    wait_until("both sockets", || {
        !alice_seen.lock().unwrap().texts.is_empty() && !bob_seen.lock().unwrap().texts.is_empty()
    })
    .await;

    // Bob polls /queue all along, as the frontend's queue panel does.
    let polling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let poll = {
        let url = t.w.url("/queue");
        let bob = t.bob.clone();
        let polling = polling.clone();
        tokio::spawn(async move {
            while polling.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = support::http::get(&url, &[("cookie", &bob)]).await;
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
        })
    };

    const RUNS: u64 = 6;
    let mut alice_ids = Vec::new();
    let mut bob_ids = Vec::new();
    for i in 0..RUNS {
        t.d.set_hold(true);
        let r = t
            .post_json(
                &t.alice,
                "/prompt",
                &json!({"prompt": {
                    "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 100 + i}},
                    "2": {"class_type": "ZZProgress", "inputs": {"image": ["1", 0]}},
                    "3": {"class_type": "SaveImageWebsocket", "inputs": {"images": ["2", 0]}}
                }}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        let pa = r.json()["prompt_id"].as_str().unwrap().to_string();
        wait_until("alice's run to start", || {
            t.d.queue_snapshot()["queue_running"][0][1] == pa.as_str()
        })
        .await;
        let r = t
            .post_json(
                &t.bob,
                "/prompt",
                &json!({"prompt": {
                    "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 200 + i}},
                    "2": {"class_type": "ZZProgress", "inputs": {"image": ["1", 0]}},
                    "3": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}}
                }}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        let pb = r.json()["prompt_id"].as_str().unwrap().to_string();
        t.d.set_hold(false);
        wait_history(&t, &t.alice, &pa).await;
        wait_history(&t, &t.bob, &pb).await;
        alice_ids.push(pa);
        bob_ids.push(pb);
    }
    let done = |seen: &Arc<Mutex<Seen>>, ids: &[String]| {
        let g = seen.lock().unwrap();
        ids.iter().all(|id| {
            g.texts
                .iter()
                .any(|v| v["type"] == "execution_success" && v["data"]["prompt_id"] == id.as_str())
        })
    };
    wait_until("every run's end on its owner's socket", || {
        done(&alice_seen, &alice_ids) && done(&bob_seen, &bob_ids)
    })
    .await;
    polling.store(false, std::sync::atomic::Ordering::Relaxed);
    let _ = poll.await;

    let count = |seen: &Arc<Mutex<Seen>>, ty: u32| {
        seen.lock()
            .unwrap()
            .binary
            .iter()
            .filter(|b| binary_type(b) == ty)
            .count() as u64
    };
    // Alice: per run one ZZProgress preview and one SaveImageWebsocket image (type 1), and one
    // progress text (type 3). Bob: one preview and one text of his own per run.
    assert_eq!(count(&alice_seen, 1), 2 * RUNS, "alice's images, none lost");
    assert_eq!(count(&alice_seen, 3), RUNS, "alice's progress texts");
    assert_eq!(
        count(&bob_seen, 1),
        RUNS,
        "bob's previews, and none of alice's"
    );
    assert_eq!(count(&bob_seen, 3), RUNS, "bob's progress texts");
    for (seen, own, other) in [
        (&alice_seen, &alice_ids, &bob_ids),
        (&bob_seen, &bob_ids, &alice_ids),
    ] {
        let g = seen.lock().unwrap();
        for text in g.binary.iter().filter(|b| binary_type(b) == 3) {
            let s = String::from_utf8_lossy(text);
            assert!(own.iter().any(|id| s.contains(id.as_str())), "{s}");
            assert!(
                !other.iter().any(|id| s.contains(id.as_str())),
                "leaked: {s}"
            );
        }
    }
}

#[tokio::test]
async fn a_clients_close_is_answered_with_a_close() {
    let t = tenants::start().await;
    let mut s = ws::connect(t.w.addr, "/ws", &[("cookie", &t.alice)])
        .await
        .unwrap();
    sid_of(&mut s).await;
    s.send(Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    })))
    .await
    .unwrap();
    let answer = loop {
        match tokio::time::timeout(Duration::from_secs(10), s.next()).await {
            Ok(Some(Ok(Message::Close(c)))) => break Ok(c),
            Ok(Some(Ok(_))) => continue,
            other => break Err(format!("{other:?}")),
        }
    };
    let frame = answer
        .expect("a Close frame back, not a dropped connection")
        .expect("with a code");
    assert_eq!(frame.code, CloseCode::Normal);
    // ComfyUI was told too: its socket goes away.
    wait_until("the upstream socket to close", || {
        t.d.ws_clients().is_empty()
    })
    .await;
}

/// What the relay decided is in the debug log: sockets opened and closed with their sid, and
/// frames the filter dropped with the reason.
#[tokio::test]
async fn the_relay_logs_what_it_decides_at_debug() {
    let t = tenants::start_with(|c| c.tenancy(|t| t.pure_node(PROGRESS_NODE))).await;
    t.d.enable_progress_node();
    let mut a = ws::connect(t.w.addr, "/ws", &[("cookie", &t.alice)])
        .await
        .unwrap();
    let mut b = ws::connect(t.w.addr, "/ws", &[("cookie", &t.bob)])
        .await
        .unwrap();
    let alice_sid = sid_of(&mut a).await;
    let bob_sid = sid_of(&mut b).await;
    assert!(
        t.w.wait_log(&format!("WebSocket opened sid={bob_sid}"), 0),
        "{}",
        t.w.log()
    );
    // Alice's progress text (type 3) is broadcast by ComfyUI: bob's socket drops it.
    t.run(&t.alice, support::tenants::progress_graph()).await;
    assert!(
        t.w.wait_log(
            &format!("frame from ComfyUI dropped sid={bob_sid} user=bob frame=binary:3"),
            0
        ),
        "{}",
        t.w.log()
    );
    let log = t.w.log();
    assert!(
        log.lines().any(|l| l.contains("frame from ComfyUI dropped")
            && l.contains(&bob_sid)
            && l.contains("none of the user's runs on this socket")),
        "{log}"
    );
    // A client reads what it is sent before it closes: a socket left unread fills up, and the
    // relay, blocked writing to it, would see the Close only once the run ends.
    let _ = ws::drain(&mut a, 2).await;
    a.close(None).await.unwrap();
    assert!(
        t.w.wait_log(
            &format!("WebSocket closed sid={alice_sid} user=alice ended=closed by the client"),
            0
        ),
        "{}",
        t.w.log()
    );
}
