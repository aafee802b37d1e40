//! The WebSocket relay: a whole ComfyUI run relayed to the client, text and binary frames,
//! ping/pong and close, and no identity → no socket.
use crate::support::config::TestConfig;
use crate::support::double::Double;
use crate::support::harness::Warden;
use crate::support::http::{cookie_header, login, post_json};
use crate::support::tenants::{PNG, PROGRESS_NODE};
use crate::support::users::alice;
use crate::support::ws;
use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

async fn setup() -> (Double, Warden, String) {
    let double = Double::start().await;
    // The double's test node that reports progress (binary frames), allowed like a custom node.
    let cfg = TestConfig::new(&double.url())
        .user(alice())
        .tenancy(|t| t.pure_node(PROGRESS_NODE));
    let w = Warden::start(&cfg);
    double.enable_progress_node();
    let token = login(&w.url(""), "alice", "alice-pw").await;
    (double, w, token)
}

#[tokio::test]
async fn a_run_is_relayed_frame_by_frame() {
    let (d, w, token) = setup().await;
    d.put_file("input", "u_alice", "cat.png", PNG.to_vec());
    let cookie = cookie_header(&token);
    let mut sock = ws::connect(w.addr, "/ws", &[("cookie", &cookie)])
        .await
        .expect("upgrade");
    let status = ws::next_json(&mut sock, 10)
        .await
        .expect("status on connect");
    assert_eq!(status["type"], "status");
    let sid = status["data"]["sid"].as_str().unwrap().to_string();

    sock.send(Message::Text(
        json!({"type": "feature_flags", "data": {"supports_preview_metadata": true}})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    let flags = ws::next_json(&mut sock, 10).await.unwrap();
    assert_eq!(flags["type"], "feature_flags");

    let prompt = json!({
        "client_id": sid,
        "prompt": {
            "1": {"class_type": "LoadImage", "inputs": {"image": "cat.png"}},
            "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
            "4": {"class_type": "ZZProgress", "inputs": {"image": ["2", 0]}},
            "3": {"class_type": "SaveImage", "inputs": {"filename_prefix": "inverted", "images": ["4", 0]}}
        }
    });
    let r = post_json(&w.url("/prompt"), &[("cookie", &cookie)], &prompt).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let prompt_id = r.json()["prompt_id"].as_str().unwrap().to_string();

    let mut types = Vec::new();
    let mut binary = 0;
    loop {
        match ws::next(&mut sock, 15).await.expect("the run's frames") {
            Message::Text(t) => {
                let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                let ty = v["type"].as_str().unwrap().to_string();
                let done = ty == "executing"
                    && v["data"]["node"].is_null()
                    && v["data"]["prompt_id"] == prompt_id.as_str();
                types.push(ty);
                if done {
                    break;
                }
            }
            Message::Binary(b) => {
                assert!(b.len() >= 4, "binary frames carry a type");
                binary += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    for expected in ["execution_start", "executed", "execution_success"] {
        assert!(
            types.iter().any(|t| t == expected),
            "{expected} missing from {types:?}"
        );
    }
    let start = types.iter().position(|t| t == "execution_start").unwrap();
    let success = types.iter().position(|t| t == "execution_success").unwrap();
    assert!(start < success);
    assert!(binary >= 1, "binary frames are relayed");

    assert!(ws::ping_pong(&mut sock).await, "ping is answered");
    sock.send(Message::Close(None)).await.unwrap();
    let closed = ws::next(&mut sock, 10).await;
    assert!(matches!(closed, Some(Message::Close(_)) | None));
}

#[tokio::test]
async fn no_identity_no_socket() {
    let (d, w, _token) = setup().await;
    assert!(ws::connect(w.addr, "/ws", &[]).await.is_err());
    assert!(
        ws::connect(w.addr, "/ws", &[("cookie", "comfy_warden_session=forged")])
            .await
            .is_err()
    );
    assert!(d.ws_clients().is_empty());
}

#[tokio::test]
async fn upgrade_sends_no_origin_upstream() {
    let (d, w, token) = setup().await;
    let cookie = cookie_header(&token);
    // The browser's own Origin passes comfy-warden's check and is still not sent to ComfyUI
    // (which refuses a loopback Host with any other Origin).
    let origin = format!("http://{}", w.addr);
    let mut sock = ws::connect(
        w.addr,
        "/api/ws?clientId=abc",
        &[("cookie", &cookie), ("origin", &origin)],
    )
    .await
    .expect("upgrade");
    assert_eq!(
        ws::next_json(&mut sock, 10).await.unwrap()["type"],
        "status"
    );
    let up = d.received_path("/api/ws");
    assert_eq!(up.len(), 1);
    assert!(up[0].header("origin").is_none());
    assert!(
        up[0]
            .header("cookie")
            .is_none_or(|c| !c.contains("comfy_warden_session"))
    );
}
