//! The ownership ledger across restarts: snapshotted to the state directory, restored at start,
//! and rebuilt from the owner tag in ComfyUI's history when the snapshot is lost.
use crate::support::harness::Warden;
use crate::support::http::{cookie_header, get, login};
use crate::support::tenants::{self, preview_graph};
use serde_json::json;

async fn sessions(w: &Warden) -> (String, String) {
    let base = w.url("");
    (
        cookie_header(&login(&base, "alice", "alice-pw").await),
        cookie_header(&login(&base, "bob", "bob-pw").await),
    )
}

#[tokio::test]
async fn ownership_survives_a_restart_and_a_lost_snapshot() {
    let t = tenants::start().await;
    let (id, entry) = t.run(&t.alice, preview_graph()).await;
    let preview = entry["outputs"]["2"]["images"][0]["filename"]
        .as_str()
        .unwrap()
        .to_string();
    let tenants::Tenants { d, w, .. } = t;

    // Restart: the snapshot written at shutdown is restored.
    let w = w.restart();
    assert!(w.path("state/ledger.json").exists());
    let (alice, bob) = sessions(&w).await;
    assert!(
        get(&w.url(&format!("/history/{id}")), &[("cookie", &alice)])
            .await
            .json()
            .get(&id)
            .is_some()
    );
    assert_eq!(
        get(&w.url(&format!("/history/{id}")), &[("cookie", &bob)])
            .await
            .json(),
        json!({})
    );
    assert_eq!(
        get(
            &w.url(&format!("/view?filename={preview}&type=temp")),
            &[("cookie", &alice)]
        )
        .await
        .status,
        200,
        "the temp preview is still alice's"
    );

    // Lose the snapshot: ownership of prompts comes back from the owner tag in ComfyUI's history.
    let (status, dir) = w.stop_keep_dir();
    assert!(status.success());
    std::fs::remove_file(dir.path().join("state/ledger.json")).unwrap();
    let w = Warden::start_in(dir, &[]);
    let (alice, bob) = sessions(&w).await;
    assert_eq!(
        get(&w.url(&format!("/history/{id}")), &[("cookie", &bob)])
            .await
            .json(),
        json!({}),
        "bob gains nothing from the loss"
    );
    let his = get(&w.url("/history"), &[("cookie", &bob)]).await.json();
    assert!(his.get(&id).is_none(), "not adopted by bob: {his}");
    let mine = get(&w.url("/history"), &[("cookie", &alice)]).await.json();
    assert!(mine.get(&id).is_some(), "rebuilt from the tag: {mine}");
    assert!(
        get(&w.url(&format!("/history/{id}")), &[("cookie", &alice)])
            .await
            .json()
            .get(&id)
            .is_some()
    );
    drop(d);
}
