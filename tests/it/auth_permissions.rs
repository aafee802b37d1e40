//! Permission gates not covered elsewhere: `settings` (own ComfyUI settings and user data) and
//! `interrupt_any` (interrupt other users' prompts), with roles defined in roles.toml.
use crate::support::config::{TestConfig, TestUser};
use crate::support::double::Double;
use crate::support::harness::Warden;
use crate::support::http::{cookie_header, get, login, post, post_json};
use crate::support::tenants::preview_graph;
use crate::support::users::alice;
use serde_json::json;
use std::time::{Duration, Instant};

async fn start() -> (Double, Warden) {
    let d = Double::start().await;
    let cfg = TestConfig::new(&d.url())
        .users(vec![
            alice(),
            TestUser::new("kiosk", "kiosk-pw", &["runner"]),
            TestUser::new("mod", "mod-pw", &["user", "moderator"]),
        ])
        .role("runner", &["run"])
        .role("moderator", &["interrupt_any"]);
    (d, Warden::start(&cfg))
}

#[tokio::test]
async fn settings_need_the_settings_permission() {
    let (d, w) = start().await;
    let kiosk = cookie_header(&login(&w.url(""), "kiosk", "kiosk-pw").await);
    for path in [
        "/api/settings",
        "/api/userdata?dir=workflows",
        "/api/v2/userdata?path=",
    ] {
        assert_eq!(
            get(&w.url(path), &[("cookie", &kiosk)]).await.status,
            403,
            "{path}"
        );
    }
    assert_eq!(
        post_json(
            &w.url("/api/settings"),
            &[("cookie", &kiosk)],
            &json!({"x": 1})
        )
        .await
        .status,
        403
    );
    assert!(
        d.received()
            .iter()
            .all(|r| !r.path.contains("settings") && !r.path.contains("userdata"))
    );
    let r = post_json(
        &w.url("/prompt"),
        &[("cookie", &kiosk)],
        &json!({"prompt": preview_graph()}),
    )
    .await;
    assert_eq!(r.status, 200, "the runner role may queue: {}", r.text());
}

#[tokio::test]
async fn interrupt_any_reaches_other_users_prompts() {
    let (d, w) = start().await;
    let alice = cookie_header(&login(&w.url(""), "alice", "alice-pw").await);
    let moderator = cookie_header(&login(&w.url(""), "mod", "mod-pw").await);
    d.set_hold(true);
    let id = post_json(
        &w.url("/prompt"),
        &[("cookie", &alice)],
        &json!({"prompt": preview_graph()}),
    )
    .await
    .json()["prompt_id"]
        .as_str()
        .unwrap()
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    while d.queue_snapshot()["queue_running"]
        .as_array()
        .unwrap()
        .is_empty()
    {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = post(
        &w.url("/interrupt"),
        &[("cookie", &moderator), ("content-type", "application/json")],
        format!("{{\"prompt_id\": \"{id}\"}}"),
    )
    .await;
    assert_eq!(r.status, 200);
    let sent = d.received_path("/interrupt");
    assert_eq!(sent.len(), 1, "the moderator's interrupt reached ComfyUI");
    assert_eq!(sent[0].json(), json!({"prompt_id": id}));
    d.set_hold(false);
}
