//! `?token=` for clients that cannot set headers: an API token or a session token on the
//! WebSocket upgrade, and on `/view` only where `auth.query_token_view` allows it. The token is
//! removed before the request reaches ComfyUI and appears in no log line.
use crate::support::http::{self, get, post_json};
use crate::support::tenants::{self, PNG, Tenants};
use crate::support::ws;
use serde_json::json;

async fn api_token(t: &Tenants) -> String {
    let r = post_json(
        &t.w.url("/warden/token"),
        &[("cookie", &t.alice)],
        &json!({"label": "viewer", "ttl": "1h"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["token"].as_str().unwrap().to_string()
}

/// The session token inside alice's cookie header (`name=value`).
fn session_token(cookie: &str) -> String {
    cookie.split_once('=').unwrap().1.to_string()
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// ComfyUI saw none of these strings, in any request line or header.
fn comfyui_never_saw(t: &Tenants, secrets: &[&str]) {
    for r in t.d.received() {
        let all = format!(
            "{} {} {:?} {:?} {}",
            r.method,
            r.path,
            r.query,
            r.headers,
            String::from_utf8_lossy(&r.body)
        );
        for s in secrets {
            assert!(!all.contains(s), "ComfyUI saw a token: {all}");
        }
    }
    for c in t.d.ws_clients() {
        assert!(!c.query.contains("token"), "{}", c.query);
    }
}

#[tokio::test]
async fn a_query_token_opens_the_websocket_and_never_reaches_comfyui() {
    let t = tenants::start().await;
    let api = api_token(&t).await;
    let session = session_token(&t.alice);
    for token in [&api, &session] {
        let id = uuid::Uuid::new_v4().to_string();
        let mut s = ws::connect(
            t.w.addr,
            &format!("/ws?clientId={id}&token={}", enc(token)),
            &[],
        )
        .await
        .expect("the token opens the socket");
        let v = ws::next_json(&mut s, 10).await.unwrap();
        assert_eq!(
            v["data"]["sid"],
            id.as_str(),
            "the other parameters are kept"
        );
        let up = t.d.ws_clients();
        assert!(
            up.iter().any(|c| c.query == format!("clientId={id}")),
            "{up:?}"
        );
    }
    // An invalid token is no identity, and does not fall back to the cookie.
    assert!(
        ws::connect(t.w.addr, "/ws?token=eyJnope", &[])
            .await
            .is_err()
    );
    assert!(
        ws::connect(t.w.addr, "/ws?token=eyJnope", &[("cookie", &t.alice)])
            .await
            .is_err()
    );
    // Off by default on /view: not an identity there (but still removed).
    let r = get(
        &t.w.url(&format!("/view?filename=x.png&token={}", enc(&api))),
        &[],
    )
    .await;
    assert_eq!(r.status, 401);
    let log = t.w.log();
    for s in [&api, &session] {
        assert!(!log.contains(s.as_str()), "the log shows a token:\n{log}");
    }
    comfyui_never_saw(&t, &[&api, &session]);
}

#[tokio::test]
async fn a_query_token_on_view_where_allowed() {
    let t = tenants::start_with(|c| c.auth(|a| a.query_token_view(true))).await;
    let r = t
        .upload(&t.alice, "/upload/image", &[], "cat.png", PNG)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let name = r.json()["name"].as_str().unwrap().to_string();
    let api = api_token(&t).await;
    t.d.clear_received();
    let r = get(
        &t.w.url(&format!(
            "/api/view?filename={}&type=input&token={}",
            enc(&name),
            enc(&api)
        )),
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(&r.body[..], PNG);
    let mut views = t.d.received_path("/view");
    views.extend(t.d.received_path("/api/view"));
    assert_eq!(views.len(), 1);
    assert!(!views[0].query.clone().unwrap_or_default().contains("token"));
    // Bob's token does not open alice's file.
    let r = post_json(
        &t.w.url("/warden/token"),
        &[("cookie", &t.bob)],
        &json!({"label": "b", "ttl": "1h"}),
    )
    .await;
    let bob_api = r.json()["token"].as_str().unwrap().to_string();
    let r = http::get(
        &t.w.url(&format!(
            "/view?filename={}&type=input&token={}",
            enc(&name),
            enc(&bob_api)
        )),
        &[],
    )
    .await;
    assert_ne!(r.status, 200);
    let log = t.w.log();
    assert!(!log.contains(&api) && !log.contains(&bob_api), "{log}");
    comfyui_never_saw(&t, &[&api, &bob_api]);
}
