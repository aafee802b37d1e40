//! Cross-site checks apply to every identity a browser attaches by itself: the session cookie,
//! cached HTTP Basic credentials, and a gateway's identity (trusted header, set by the gateway
//! from its own cookie). Bearer tokens and identity-provider JWTs are exempt (issue 17).

use crate::support::config::TestConfig;
use crate::support::double::Double;
use crate::support::harness::Warden;
use crate::support::http::post_json;
use crate::support::tenants::{self, preview_graph};
use crate::support::users::alice;
use crate::support::ws;
use base64::Engine;
use serde_json::json;

#[tokio::test]
async fn cross_site_requests_with_basic_credentials_are_refused() {
    let t = tenants::start().await;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("alice:alice-pw")
    );
    let body = json!({"prompt": preview_graph()});
    let r = post_json(
        &t.w.url("/prompt"),
        &[("authorization", &basic), ("sec-fetch-site", "cross-site")],
        &body,
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("another site"));
    assert!(t.d.received_path("/prompt").is_empty());
    assert!(
        ws::connect(
            t.w.addr,
            "/ws",
            &[
                ("authorization", &basic),
                ("origin", "https://evil.example")
            ]
        )
        .await
        .is_err()
    );
    let r = post_json(
        &t.w.url("/prompt"),
        &[("authorization", &basic), ("sec-fetch-site", "same-origin")],
        &body,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test]
async fn cross_site_requests_with_a_gateway_identity_are_refused() {
    let d = Double::start().await;
    let cfg = TestConfig::new(&d.url()).user(alice()).auth(|a| {
        a.trusted_header(|h| {
            h.name("X-Authenticated-User")
                .from(&["127.0.0.1/32"])
                .default_roles(&["user"])
        })
    });
    let w = Warden::start(&cfg);
    let body = json!({"prompt": preview_graph()});
    let r = post_json(
        &w.url("/prompt"),
        &[
            ("x-authenticated-user", "erin"),
            ("origin", "https://evil.example"),
        ],
        &body,
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(d.received_path("/prompt").is_empty());
    let r = post_json(
        &w.url("/prompt"),
        &[("x-authenticated-user", "erin")],
        &body,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
}
