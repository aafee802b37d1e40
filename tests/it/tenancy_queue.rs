//! Cross-tenant tests for the queue, history and interrupt: bob sees, clears, deletes and
//! interrupts nothing of alice's; alice's own use works; paging applies after filtering.
use crate::support::tenants::{self, preview_graph};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn ids(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|i| i[1].as_str().unwrap().to_string())
        .collect()
}

async fn wait_running(t: &tenants::Tenants, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while ids(&t.d.queue_snapshot()["queue_running"]) != [id.to_string()] {
        assert!(Instant::now() < deadline, "{id} never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Alice: one running (held) and one pending prompt.
async fn alice_busy(t: &tenants::Tenants) -> (String, String) {
    t.d.set_hold(true);
    let running = t.queue_prompt(&t.alice, preview_graph()).await.json()["prompt_id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_running(t, &running).await;
    let pending = t.queue_prompt(&t.alice, json!({"1": {"class_type": "EmptyImage", "inputs": {"width": 4, "height": 4, "batch_size": 1, "color": 1}}, "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}})).await;
    (
        running,
        pending.json()["prompt_id"].as_str().unwrap().to_string(),
    )
}

#[tokio::test]
async fn queue_and_counts_are_per_user() {
    let t = tenants::start().await;
    let (running, pending) = alice_busy(&t).await;

    let bob = t.get(&t.bob, "/queue").await.json();
    assert_eq!(bob, json!({"queue_running": [], "queue_pending": []}));
    let alice = t.get(&t.alice, "/api/queue").await.json();
    assert_eq!(ids(&alice["queue_running"]), vec![running.clone()]);
    assert_eq!(ids(&alice["queue_pending"]), vec![pending.clone()]);
    assert!(
        alice.to_string().find("u_alice").is_none(),
        "no namespace in alice's view: {alice}"
    );

    assert_eq!(
        t.get(&t.bob, "/prompt").await.json()["exec_info"]["queue_remaining"],
        0
    );
    assert_eq!(
        t.get(&t.alice, "/prompt").await.json()["exec_info"]["queue_remaining"],
        2
    );
    let root = t.get(&t.root, "/queue").await.json();
    assert_eq!(
        ids(&root["queue_running"]).len() + ids(&root["queue_pending"]).len(),
        2,
        "admins see everything"
    );
    t.d.set_hold(false);
    t.d.release();
}

#[tokio::test]
async fn credentials_in_extra_data_are_never_shown() {
    let t = tenants::start().await;
    t.d.set_hold(true);
    let r = t.post_json(&t.root, "/prompt", &json!({"prompt": preview_graph(), "extra_data": {"api_key_comfy_org": "sk-root", "auth_token_comfy_org": "tok"}})).await;
    assert_eq!(r.status, 200);
    assert!(
        t.d.queue_snapshot().to_string().contains("sk-root"),
        "admins may pass API keys to ComfyUI"
    );
    let shown = t.get(&t.root, "/queue").await.text();
    assert!(
        !shown.contains("sk-root") && !shown.contains("\"tok\""),
        "{shown}"
    );
    t.d.set_hold(false);
    t.d.release();
}

#[tokio::test]
async fn clear_and_delete_touch_only_own_entries() {
    let t = tenants::start().await;
    let (_running, pending) = alice_busy(&t).await;

    assert_eq!(
        t.post_json(&t.bob, "/queue", &json!({"clear": true}))
            .await
            .status,
        200
    );
    assert_eq!(
        t.post_json(&t.bob, "/api/queue", &json!({"delete": [pending.clone()]}))
            .await
            .status,
        200
    );
    assert!(
        t.d.received_path("/queue")
            .iter()
            .all(|r| r.method != "POST"),
        "bob's clear/delete never reached ComfyUI"
    );
    assert_eq!(
        ids(&t.d.queue_snapshot()["queue_pending"]),
        vec![pending.clone()]
    );

    assert_eq!(
        t.post_json(&t.alice, "/queue", &json!({"clear": true}))
            .await
            .status,
        200
    );
    let sent: Vec<Value> =
        t.d.received_path("/queue")
            .iter()
            .filter(|r| r.method == "POST")
            .map(|r| r.json())
            .collect();
    assert_eq!(
        sent,
        vec![json!({"delete": [pending]})],
        "clear became a delete of alice's ids"
    );
    assert!(ids(&t.d.queue_snapshot()["queue_pending"]).is_empty());
    t.d.set_hold(false);
    t.d.release();
}

#[tokio::test]
async fn interrupt_only_reaches_own_running_prompt() {
    let t = tenants::start().await;
    let (running, _) = alice_busy(&t).await;

    for body in ["", "{}", "not json"] {
        assert_eq!(t.post_raw(&t.bob, "/interrupt", body).await.status, 200);
    }
    assert_eq!(
        t.post_json(&t.bob, "/api/interrupt", &json!({"prompt_id": running}))
            .await
            .status,
        200
    );
    assert!(
        t.d.received_path("/interrupt").is_empty(),
        "bob's interrupts are no-ops"
    );
    assert_eq!(
        ids(&t.d.queue_snapshot()["queue_running"]),
        vec![running.clone()],
        "alice's run goes on"
    );

    assert_eq!(t.post_raw(&t.alice, "/interrupt", "").await.status, 200);
    let sent = t.d.received_path("/interrupt");
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].json(),
        json!({"prompt_id": running}),
        "an empty body became a targeted interrupt"
    );
    t.d.set_hold(false);
}

#[tokio::test]
async fn history_is_per_user_and_paged_after_filtering() {
    let t = tenants::start().await;
    let mut alice_ids = Vec::new();
    for i in 0..3 {
        alice_ids.push(t.run(&t.alice, json!({"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": i}}, "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}})).await.0);
        t.run(&t.bob, preview_graph()).await;
    }
    let bob = t.get(&t.bob, "/history").await.json();
    assert_eq!(bob.as_object().unwrap().len(), 3);
    assert!(alice_ids.iter().all(|id| bob.get(id).is_none()));
    for id in &alice_ids {
        assert_eq!(
            t.get(&t.bob, &format!("/history/{id}")).await.json(),
            json!({})
        );
    }
    let keys = |v: Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(t.get(&t.alice, "/history").await.json()), alice_ids);
    assert_eq!(
        keys(t.get(&t.alice, "/history?max_items=2").await.json()),
        alice_ids[1..].to_vec()
    );
    assert_eq!(
        keys(
            t.get(&t.alice, "/api/history?max_items=1&offset=1")
                .await
                .json()
        ),
        alice_ids[1..2].to_vec()
    );
    assert_eq!(
        t.get(&t.root, "/history")
            .await
            .json()
            .as_object()
            .unwrap()
            .len(),
        6,
        "admins see everything"
    );

    // bob clears his history: only his ids go to ComfyUI.
    assert_eq!(
        t.post_json(&t.bob, "/history", &json!({"clear": true}))
            .await
            .status,
        200
    );
    assert_eq!(
        t.post_json(&t.bob, "/history", &json!({"delete": [alice_ids[0]]}))
            .await
            .status,
        200
    );
    let left = t.d.history_ids();
    assert!(
        alice_ids.iter().all(|id| left.contains(id)),
        "alice's history survives bob's clear"
    );
    assert_eq!(left.len(), 3);
}
