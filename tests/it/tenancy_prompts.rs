//! Cross-tenant tests for POST /prompt: the rewritten graph ComfyUI receives, and the traps of
//! the reference (linked prefixes, traversal, absolute paths, custom nodes, prompt_id reuse,
//! client_id takeover, queue jumping, the shared cache).
use crate::support;
use crate::support::tenants::{self, PNG, invert_graph, preview_graph};
use serde_json::{Value, json};

fn last_prompt(t: &tenants::Tenants) -> Value {
    t.d.received()
        .into_iter()
        .rev()
        .find(|r| r.method == "POST" && r.path == "/prompt")
        .expect("a prompt reached ComfyUI")
        .json()
}

#[tokio::test]
async fn the_graph_is_rewritten_into_the_namespace() {
    let t = tenants::start().await;
    t.upload(&t.alice, "/upload/image", &[], "cat.png", PNG)
        .await;
    // Bob holds this client id (an id nobody holds would be claimed by alice's prompt).
    let _bob_socket = support::ws::connect(
        t.w.addr,
        "/ws?clientId=someone-elses-socket",
        &[("cookie", &t.bob)],
    )
    .await
    .unwrap();
    let body = json!({
        "prompt": invert_graph("cat.png", "inverted"),
        "client_id": "someone-elses-socket",
        "number": -1000, "front": true,
        "extra_data": {"api_key_comfy_org": "sk-alice", "extra_pnginfo": {"workflow": {"x": 1}}}
    });
    let r = t.post_json(&t.alice, "/api/prompt", &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let id = r.json()["prompt_id"].as_str().unwrap().to_string();

    let sent = last_prompt(&t);
    assert_eq!(sent["prompt"]["1"]["inputs"]["image"], "u_alice/cat.png");
    assert_eq!(
        sent["prompt"]["3"]["inputs"]["filename_prefix"],
        "u_alice/inverted"
    );
    assert_eq!(
        sent["prompt"]["3"]["inputs"]["__warden_owner"], "u_alice",
        "output nodes get the cache partition"
    );
    assert!(
        sent["prompt"]["1"]["inputs"]
            .get("__warden_owner")
            .is_none()
    );
    assert!(
        sent.get("number").is_none() && sent.get("front").is_none(),
        "no queue jumping: {sent}"
    );
    assert_ne!(sent["client_id"], "someone-elses-socket");
    assert_eq!(sent["prompt_id"], id.as_str());
    assert_eq!(sent["extra_data"]["comfy_warden_owner"], "u_alice");
    assert!(sent["extra_data"].get("api_key_comfy_org").is_none());
    assert_eq!(sent["extra_data"]["extra_pnginfo"]["workflow"]["x"], 1);

    let (_, entry) = t.run(&t.alice, invert_graph("cat.png", "inverted")).await;
    let out = &entry["outputs"]["3"]["images"][0];
    assert_eq!(out["subfolder"], "", "the namespace is stripped: {entry}");
    assert!(out["filename"].as_str().unwrap().starts_with("inverted_"));
    assert_eq!(
        entry["prompt"][2]["1"]["inputs"]["image"], "cat.png",
        "echoed graph in client space"
    );
    assert!(
        entry["prompt"][2]["3"]["inputs"]
            .get("__warden_owner")
            .is_none()
    );
    assert!(entry["prompt"][3].get("comfy_warden_owner").is_none());
    assert!(
        t.d.list_files("output")
            .iter()
            .all(|f| f.starts_with("u_alice/")),
        "{:?}",
        t.d.list_files("output")
    );
}

#[tokio::test]
async fn path_traps_are_refused_before_comfyui_sees_them() {
    let t = tenants::start().await;
    let linked = json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
        "2": {"class_type": "PrimitiveString", "inputs": {"value": "u_alice"}},
        "3": {"class_type": "StringConcatenate", "inputs": {"string_a": ["2", 0], "string_b": "/stolen", "delimiter": ""}},
        "4": {"class_type": "SaveImage", "inputs": {"filename_prefix": ["3", 0], "images": ["1", 0]}}
    });
    let cases = [
        linked,
        invert_graph("cat.png", "u_bob/../u_alice/x"),
        invert_graph("cat.png", "../x"),
        invert_graph("cat.png", "/srv/abs/x"),
        invert_graph("/srv/outside.png", "x"),
        invert_graph("../u_alice/cat.png", "x"),
        invert_graph("../../../srv/outside.png [temp]", "x"),
        invert_graph("cat.png\\..\\x", "x"),
    ];
    for graph in cases {
        let r = t.queue_prompt(&t.bob, graph.clone()).await;
        assert_eq!(r.status, 400, "{graph}: {}", r.text());
        assert!(r.json()["node_errors"].is_object());
    }
    assert!(
        t.d.received_path("/prompt").is_empty(),
        "nothing reached ComfyUI"
    );
}

#[tokio::test]
async fn custom_nodes_need_a_rule_in_the_config() {
    let graph = json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
        "2": {"class_type": "SaveImageWebsocket", "inputs": {"images": ["1", 0]}}
    });
    let t = tenants::start().await;
    let r = t.queue_prompt(&t.bob, graph.clone()).await;
    assert_eq!(r.status, 400);
    let text = r.text();
    assert!(
        text.contains("SaveImageWebsocket") && text.contains("[tenancy.nodes.SaveImageWebsocket]"),
        "{text}"
    );
    let info = t.get(&t.bob, "/object_info").await.json();
    assert!(
        info.get("SaveImageWebsocket").is_none(),
        "not offered to users"
    );
    assert!(
        t.get(&t.root, "/object_info")
            .await
            .json()
            .get("SaveImageWebsocket")
            .is_some()
    );

    let t = tenants::start_with(|c| c.tenancy(|t| t.pure_node("SaveImageWebsocket"))).await;
    let r = t.queue_prompt(&t.bob, graph).await;
    assert_eq!(r.status, 200, "allowed once configured: {}", r.text());
}

#[tokio::test]
async fn prompt_ids_cannot_be_reused_or_forged() {
    let t = tenants::start().await;
    let (alice_id, _) = t.run(&t.alice, preview_graph()).await;
    let steal = t
        .post_json(
            &t.bob,
            "/prompt",
            &json!({"prompt": preview_graph(), "prompt_id": alice_id}),
        )
        .await;
    assert_eq!(steal.status, 409, "{}", steal.text());
    for bad in [
        json!("../../etc"),
        json!(123),
        json!("D5B745FA-A8B7-4161-BF61-97ED1B64AB10"),
    ] {
        let r = t
            .post_json(
                &t.bob,
                "/prompt",
                &json!({"prompt": preview_graph(), "prompt_id": bad}),
            )
            .await;
        assert_eq!(r.status, 400, "{bad}");
    }
    let fresh = uuid::Uuid::new_v4().to_string();
    let r = t
        .post_json(
            &t.bob,
            "/prompt",
            &json!({"prompt": preview_graph(), "prompt_id": fresh}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["prompt_id"], fresh.as_str());
    assert_eq!(
        t.get(&t.alice, &format!("/history/{alice_id}"))
            .await
            .json()[&alice_id]["prompt"][1],
        alice_id.as_str(),
        "alice's entry is intact"
    );
}

#[tokio::test]
async fn the_cache_never_hands_one_users_result_to_another() {
    let t = tenants::start().await;
    let (_, a) = t.run(&t.alice, preview_graph()).await;
    let (_, b) = t.run(&t.bob, preview_graph()).await;
    let fa = a["outputs"]["2"]["images"][0]["filename"]
        .as_str()
        .unwrap()
        .to_string();
    let fb = b["outputs"]["2"]["images"][0]["filename"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(
        fa, fb,
        "bob's identical graph ran again and wrote his own preview"
    );
    assert_eq!(
        t.get(&t.bob, &format!("/view?filename={fb}&type=temp"))
            .await
            .status,
        200,
        "bob sees his preview"
    );
    assert_ne!(
        t.get(&t.bob, &format!("/view?filename={fa}&type=temp"))
            .await
            .status,
        200,
        "but not alice's"
    );
    assert_eq!(
        t.get(&t.alice, &format!("/view?filename={fa}&type=temp"))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn the_per_user_queue_limit_answers_429() {
    let t = tenants::start_with(|c| c.tenancy(|t| t.max_queued_per_user(2))).await;
    t.d.set_hold(true);
    for _ in 0..2 {
        assert_eq!(t.queue_prompt(&t.alice, preview_graph()).await.status, 200);
    }
    let r = t.queue_prompt(&t.alice, preview_graph()).await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(r.json()["error"].as_str().unwrap().contains("2 prompts"));
    assert_eq!(
        t.queue_prompt(&t.bob, preview_graph()).await.status,
        200,
        "bob is not limited by alice's queue"
    );
    t.d.set_hold(false);
}

#[tokio::test]
async fn guests_cannot_queue() {
    let d = support::double::Double::start().await;
    let w =
        support::harness::Warden::start(&support::config::TestConfig::new(&d.url()).users(vec![
            support::config::TestUser::new("gail", "gail-pw", &["guest"]),
        ]));
    let guest =
        support::http::cookie_header(&support::http::login(&w.url(""), "gail", "gail-pw").await);
    let r = support::http::post_json(
        &w.url("/prompt"),
        &[("cookie", &guest)],
        &json!({"prompt": preview_graph()}),
    )
    .await;
    assert_eq!(r.status, 403);
    assert!(d.received_path("/prompt").is_empty());
}
