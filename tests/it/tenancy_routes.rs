//! The remaining rows of the route table, each tried by a non-admin and (where it matters) by an
//! admin: synthesised /users, gated routes, unknown routes, redacted information routes, the
//! model-preview traversal, and per-user settings/userdata through the injected comfy-user.
use crate::support;
use crate::support::tenants;
use serde_json::json;

#[tokio::test]
async fn users_are_answered_locally() {
    let t = tenants::start().await;
    let r = t.get(&t.bob, "/api/users").await;
    assert_eq!(r.json(), json!({"storage": "server", "migrated": true}));
    assert_eq!(
        t.post_json(&t.bob, "/users", &json!({"username": "mallory"}))
            .await
            .status,
        403
    );
    assert!(t.d.users().iter().all(|(_, name)| name != "mallory"));
    assert!(
        t.d.users().iter().all(|(_, name)| name.starts_with("u_")),
        "only namespaces reach ComfyUI: {:?}",
        t.d.users()
    );
}

#[tokio::test]
async fn dangerous_routes_need_their_permission() {
    let t = tenants::start().await;
    for (method, path) in [
        ("POST", "/free"),
        ("POST", "/api/free"),
        ("GET", "/internal/logs"),
        ("GET", "/internal/logs/raw"),
        ("GET", "/internal/folder_paths"),
        ("GET", "/api/internal/logs"),
        ("GET", "/manager/queue/status"),
        ("POST", "/api/manager/queue/install"),
        ("GET", "/customnode/getlist"),
        ("GET", "/api/jobs"),
        ("GET", "/my_custom_node/secret"),
    ] {
        let r = if method == "GET" {
            t.get(&t.bob, path).await
        } else {
            t.post_json(&t.bob, path, &json!({})).await
        };
        assert_eq!(r.status, 403, "{method} {path}: {}", r.text());
    }
    let upstream: Vec<String> = t.d.received().into_iter().map(|r| r.path).collect();
    assert!(
        upstream
            .iter()
            .all(|p| !p.contains("free") && !p.contains("internal") && !p.contains("manager")),
        "{upstream:?}"
    );

    assert_eq!(
        t.post_json(&t.root, "/free", &json!({"unload_models": true}))
            .await
            .status,
        200
    );
    assert_eq!(t.d.received_path("/free").len(), 1);
    assert_eq!(t.get(&t.root, "/internal/logs").await.status, 200);
}

#[tokio::test]
async fn allow_routes_opens_a_custom_route() {
    let t = tenants::start_with(|c| c.tenancy(|t| t.allow_routes(&["/my_custom_node/*"]))).await;
    let r = t.get(&t.bob, "/my_custom_node/status").await;
    assert_eq!(r.status, 404, "forwarded (the double does not know it)");
    assert_eq!(t.d.received_path("/my_custom_node/status").len(), 1);
    assert_eq!(t.get(&t.bob, "/other_node/x").await.status, 403);
}

#[tokio::test]
async fn information_routes_leak_no_paths() {
    let t = tenants::start().await;
    let stats = t.get(&t.bob, "/system_stats").await.json();
    assert!(stats["system"].get("argv").is_none(), "{stats}");
    assert!(stats["system"].get("os").is_some());
    assert!(
        t.get(&t.root, "/system_stats").await.json()["system"]
            .get("argv")
            .is_some()
    );
    let models = t.get(&t.bob, "/experiment/models").await.json();
    assert!(
        models
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m.get("folders").is_none()),
        "{models}"
    );
}

#[tokio::test]
async fn model_preview_traversal_is_refused() {
    let t = tenants::start().await;
    t.d.put_file(
        "output",
        "u_alice",
        "test_00001_.png",
        support::tenants::PNG.to_vec(),
    );
    let r = t.get(&t.bob, "/experiment/models/preview/checkpoints/0/..%2F..%2F..%2Foutput%2Fu_alice%2Ftest_00001_.png").await;
    assert_eq!(r.status, 400);
    assert!(t.d.received().iter().all(|r| !r.path.contains("preview")));
}

#[tokio::test]
async fn settings_and_userdata_are_per_user() {
    let t = tenants::start().await;
    assert_eq!(
        t.post_json(
            &t.alice,
            "/api/settings",
            &json!({"Comfy.ColorPalette": "alice-dark"})
        )
        .await
        .status,
        200
    );
    let bob = t.get(&t.bob, "/api/settings").await;
    assert_eq!(bob.status, 200);
    assert!(!bob.text().contains("alice-dark"));
    assert!(bob.header("cache-control").unwrap().contains("private"));
    assert!(
        t.get(&t.alice, "/settings")
            .await
            .text()
            .contains("alice-dark")
    );

    let r = support::http::post(
        &t.w.url("/api/userdata/workflows%2Fsecret.json"),
        &[("cookie", &t.alice)],
        "{\"nodes\":[]}",
    )
    .await;
    assert!(r.status.is_success(), "{}", r.text());
    let listing = t.get(&t.bob, "/api/userdata?dir=workflows").await;
    assert!(
        !listing.text().contains("secret.json"),
        "{}",
        listing.text()
    );
    assert_ne!(
        t.get(&t.bob, "/api/userdata/workflows%2Fsecret.json")
            .await
            .status,
        200
    );

    // A spoofed comfy-user header is replaced by bob's own id.
    let alice_id =
        t.d.received_path("/api/settings")
            .iter()
            .find(|r| r.method == "POST")
            .unwrap()
            .header("comfy-user")
            .unwrap()
            .to_string();
    let spoof = support::http::get(
        &t.w.url("/api/settings"),
        &[("cookie", &t.bob), ("comfy-user", &alice_id)],
    )
    .await;
    assert!(!spoof.text().contains("alice-dark"));
    let last = t.d.received_path("/api/settings").pop().unwrap();
    assert_eq!(last.header_all("comfy-user").len(), 1);
    assert_ne!(last.header("comfy-user"), Some(alice_id.as_str()));
}

#[tokio::test]
async fn dot_segments_and_empty_segments_are_refused_before_routing() {
    // ComfyUI's URL library normalises `..` and `.` segments (also percent-encoded ones): a path
    // that looks like a static file to comfy-warden could reach an unfiltered route upstream.
    let t = tenants::start().await;
    for path in [
        "/assets/../queue",
        "/assets/%2e%2e/queue",
        "/assets/%2E%2E/api/queue",
        "/extensions/./../history",
        "/assets/./index.js",
        "/api//queue",
        "/scripts/..",
    ] {
        let r = t.get(&t.bob, path).await;
        assert_eq!(r.status, 400, "{path}: {}", r.text());
    }
    assert!(
        t.d.received()
            .iter()
            .all(|r| !r.path.contains("..") && !r.path.to_ascii_lowercase().contains("%2e")),
        "nothing of it reached ComfyUI"
    );
    assert_eq!(
        t.get(&t.bob, "/assets/index.js").await.status,
        200,
        "a plain static path still goes through"
    );
}
