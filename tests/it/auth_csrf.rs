//! CSRF: state-changing requests and WebSocket upgrades authenticated by the session cookie are
//! refused when a browser says they come from another site (Fetch Metadata, or Origin);
//! same-origin requests (the stock frontend) and Bearer/Basic requests pass.
use crate::support::http::{self, bearer, post_json};
use crate::support::tenants::{self, preview_graph};
use crate::support::ws;
use serde_json::json;

#[tokio::test]
async fn cross_site_posts_with_the_cookie_are_refused() {
    let t = tenants::start().await;
    let url = t.w.url("/prompt");
    let body = json!({"prompt": preview_graph()});
    let own_origin = format!("http://{}", t.w.addr);
    for headers in [
        vec![("sec-fetch-site", "cross-site")],
        vec![("sec-fetch-site", "same-site")],
        vec![("origin", "http://evil.example")],
        vec![("origin", "null")],
    ] {
        let mut h = headers.clone();
        h.push(("cookie", &t.alice));
        let r = post_json(&url, &h, &body).await;
        assert_eq!(r.status, 403, "{headers:?}");
        assert!(r.text().contains("another site"));
    }
    assert!(
        t.d.received_path("/prompt").is_empty(),
        "nothing reached ComfyUI"
    );
    assert!(t.w.log().contains("csrf_refused"));

    for headers in [
        vec![("sec-fetch-site", "same-origin")],
        vec![("origin", own_origin.as_str())],
        vec![],
    ] {
        let mut h = headers.clone();
        h.push(("cookie", &t.alice));
        assert_eq!(post_json(&url, &h, &body).await.status, 200, "{headers:?}");
    }
}

#[tokio::test]
async fn bearer_requests_are_exempt() {
    let t = tenants::start().await;
    let token = http::login(&t.w.url(""), "bob", "bob-pw").await;
    let auth = bearer(&token);
    let r = post_json(
        &t.w.url("/prompt"),
        &[("authorization", &auth), ("sec-fetch-site", "cross-site")],
        &json!({"prompt": preview_graph()}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test]
async fn cross_site_websocket_and_logout_are_refused() {
    let t = tenants::start().await;
    assert!(
        ws::connect(
            t.w.addr,
            "/ws",
            &[("cookie", &t.alice), ("origin", "https://evil.example")]
        )
        .await
        .is_err()
    );
    let own = format!("http://{}", t.w.addr);
    assert!(
        ws::connect(t.w.addr, "/ws", &[("cookie", &t.alice), ("origin", &own)])
            .await
            .is_ok()
    );

    let r = http::post(
        &t.w.url("/logout"),
        &[("cookie", &t.alice), ("sec-fetch-site", "cross-site")],
        "",
    )
    .await;
    assert_eq!(r.status, 403, "a forced logout is refused too");
    assert_eq!(
        t.get(&t.alice, "/queue").await.status,
        200,
        "the session is still valid"
    );

    let r = http::post(
        &t.w.url("/login"),
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("sec-fetch-site", "cross-site"),
        ],
        "username=bob&password=bob-pw",
    )
    .await;
    assert_eq!(r.status, 403, "login CSRF");
}
