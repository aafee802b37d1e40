//! Cross-tenant tests for the WebSocket: no socket takeover through clientId, run events only to
//! the owner, broadcast frames (binary text progress, previews) only to the owner of the running
//! prompt, `status` counts per user, unknown and log frames dropped for non-admins.
use crate::support::tenants::{self, PROGRESS_NODE, preview_graph, progress_graph};
use crate::support::ws;
use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

fn text_types(frames: &[Message]) -> Vec<String> {
    frames
        .iter()
        .filter_map(|m| match m {
            Message::Text(t) => serde_json::from_str::<serde_json::Value>(t).ok(),
            _ => None,
        })
        .map(|v| v["type"].as_str().unwrap_or("").to_string())
        .collect()
}

#[tokio::test]
async fn a_client_id_of_another_user_is_never_taken_over() {
    let t = tenants::start().await;
    let mut a = ws::connect(t.w.addr, "/ws", &[("cookie", &t.alice)])
        .await
        .unwrap();
    let sid = ws::next_json(&mut a, 10).await.unwrap()["data"]["sid"]
        .as_str()
        .unwrap()
        .to_string();
    let mut b = ws::connect(
        t.w.addr,
        &format!("/ws?clientId={sid}"),
        &[("cookie", &t.bob)],
    )
    .await
    .unwrap();
    let bob_sid = ws::next_json(&mut b, 10).await.unwrap()["data"]["sid"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(bob_sid, sid);
    let sids: Vec<String> = t.d.ws_clients().into_iter().map(|c| c.sid).collect();
    assert!(
        sids.contains(&sid) && sids.contains(&bob_sid),
        "alice's upstream socket is still hers: {sids:?}"
    );

    // Alice's run still reaches alice, and not bob.
    let r = t
        .post_json(
            &t.alice,
            "/prompt",
            &json!({"prompt": preview_graph(), "client_id": sid}),
        )
        .await;
    let pid = r.json()["prompt_id"].as_str().unwrap().to_string();
    let alice_frames = text_types(&ws::drain(&mut a, 2).await);
    assert!(
        alice_frames.contains(&"execution_success".to_string()),
        "{alice_frames:?}"
    );
    let bob_frames = ws::drain(&mut b, 1).await;
    for f in &bob_frames {
        if let Message::Text(t) = f {
            assert!(!t.contains(&pid), "bob got alice's event: {t}");
        }
    }
    // Alice reconnecting with her own id keeps it.
    drop(a);
    let mut a2 = ws::connect(
        t.w.addr,
        &format!("/ws?clientId={sid}"),
        &[("cookie", &t.alice)],
    )
    .await
    .unwrap();
    assert_eq!(
        ws::next_json(&mut a2, 10).await.unwrap()["data"]["sid"],
        sid.as_str()
    );
}

#[tokio::test]
async fn run_events_and_broadcasts_go_only_to_the_owner() {
    let t = tenants::start_with(|c| c.tenancy(|t| t.pure_node(PROGRESS_NODE))).await;
    t.d.enable_progress_node();
    let mut a = ws::connect(t.w.addr, "/ws", &[("cookie", &t.alice)])
        .await
        .unwrap();
    let mut b = ws::connect(t.w.addr, "/ws", &[("cookie", &t.bob)])
        .await
        .unwrap();
    ws::next_json(&mut a, 10).await.unwrap();
    ws::next_json(&mut b, 10).await.unwrap();
    for s in [&mut a, &mut b] {
        s.send(Message::Text(
            json!({"type": "feature_flags", "data": {"supports_preview_metadata": true}})
                .to_string()
                .into(),
        ))
        .await
        .unwrap();
        assert_eq!(ws::next_json(s, 10).await.unwrap()["type"], "feature_flags");
    }
    // A prompt without client_id: ComfyUI would broadcast its progress; comfy-warden forces one.
    // The text-progress frame (binary type 3) is broadcast by ComfyUI whatever the client_id.
    let r = t
        .post_json(&t.alice, "/prompt", &json!({"prompt": progress_graph()}))
        .await;
    assert_eq!(r.status, 200);
    let af = ws::drain(&mut a, 2).await;
    let bf = ws::drain(&mut b, 1).await;
    let a_types = text_types(&af);
    assert!(a_types.contains(&"executed".to_string()), "{a_types:?}");
    assert!(
        af.iter().any(|m| matches!(m, Message::Binary(_))),
        "alice gets her previews and text progress"
    );
    assert!(
        bf.iter().all(|m| !matches!(m, Message::Binary(_))),
        "bob gets no binary frame of alice's run"
    );
    let b_types = text_types(&bf);
    assert!(
        b_types.iter().all(|t| t == "status"),
        "bob sees only status frames: {b_types:?}"
    );
    for m in &bf {
        if let Message::Text(t) = m {
            let v: serde_json::Value = serde_json::from_str(t).unwrap();
            assert_eq!(
                v["data"]["status"]["exec_info"]["queue_remaining"], 0,
                "bob's own count: {t}"
            );
        }
    }
}

#[tokio::test]
async fn unknown_and_log_frames_are_dropped_for_users() {
    let t = tenants::start().await;
    let mut b = ws::connect(t.w.addr, "/ws", &[("cookie", &t.bob)])
        .await
        .unwrap();
    ws::next_json(&mut b, 10).await.unwrap();
    t.d.broadcast_ws_text(json!({"type": "crystools.monitor", "data": {"gpu": 1}}))
        .await;
    t.d.broadcast_ws_text(
        json!({"type": "logs", "data": {"entries": [{"t": "x", "m": "alice's secret prompt"}]}}),
    )
    .await;
    t.d.broadcast_ws_text(
        json!({"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 7}}}}),
    )
    .await;
    let v = ws::next_json(&mut b, 10).await.unwrap();
    assert_eq!(
        v["type"], "status",
        "the unknown and log frames were dropped: {v}"
    );
    assert_eq!(v["data"]["status"]["exec_info"]["queue_remaining"], 0);

    let mut root = ws::connect(t.w.addr, "/ws", &[("cookie", &t.root)])
        .await
        .unwrap();
    ws::next_json(&mut root, 10).await.unwrap();
    t.d.broadcast_ws_text(json!({"type": "crystools.monitor", "data": {"gpu": 1}}))
        .await;
    assert_eq!(
        ws::next_json(&mut root, 10).await.unwrap()["type"],
        "crystools.monitor",
        "admins see everything"
    );
}

#[tokio::test]
async fn status_counts_are_taken_after_the_frame_arrived() {
    let t = tenants::start().await;
    let mut a = ws::connect(t.w.addr, "/ws", &[("cookie", &t.alice)])
        .await
        .unwrap();
    ws::next_json(&mut a, 10).await.unwrap();
    t.d.set_hold(true);
    let r = t
        .post_json(&t.alice, "/prompt", &json!({"prompt": preview_graph()}))
        .await;
    assert_eq!(r.status, 200);
    // The status frames ComfyUI sends for this submission must count it (1), not show the
    // queue as it was just before (0).
    let mut counts = Vec::new();
    while let Some(v) = ws::next_json(&mut a, 2).await {
        if v["type"] == "status" {
            counts.push(
                v["data"]["status"]["exec_info"]["queue_remaining"]
                    .as_u64()
                    .unwrap(),
            );
        }
    }
    assert!(
        !counts.is_empty() && counts.iter().all(|c| *c == 1),
        "while alice's prompt is held: {counts:?}"
    );
    t.d.set_hold(false);
    t.d.release();
    let mut last = None;
    while let Some(v) = ws::next_json(&mut a, 2).await {
        if v["type"] == "status" {
            last = v["data"]["status"]["exec_info"]["queue_remaining"].as_u64();
        }
    }
    assert_eq!(last, Some(0), "after the run the count is 0 again");
}
