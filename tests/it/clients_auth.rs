//! How clients that only take a user name and a password (comfy-api-simplified, comfy-catapult)
//! sign in: an API token as the HTTP Basic password (`user:token`). It is not a password guess:
//! not hashed, not counted by the lockout, and it works while password sign-ins of that user are
//! locked; it is still only that user's, only an API token, and revocation holds.
use crate::support::config::TestConfig;
use crate::support::double::Double;
use crate::support::harness::Warden;
use crate::support::http::{self, cookie_header, get, login, post_json};
use crate::support::users::{alice, bob};
use base64::Engine;
use serde_json::json;

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

async fn status(w: &Warden, auth: &str) -> u16 {
    get(&w.url("/api/embeddings"), &[("authorization", auth)])
        .await
        .status
        .as_u16()
}

#[tokio::test]
async fn an_api_token_is_a_basic_password_of_its_user_only() {
    let d = Double::start().await;
    let cfg = TestConfig::new(&d.url())
        .users([alice(), bob()])
        .lockout(|l| {
            l.max_failures(2)
                .window("5m")
                .first_delay("1m")
                .max_delay("1m")
        });
    let w = Warden::start(&cfg);
    let session = login(&w.url(""), "alice", "alice-pw").await;
    let alice = cookie_header(&session);
    let r = post_json(
        &w.url("/warden/token"),
        &[("cookie", &alice)],
        &json!({"label": "script", "ttl": "2h"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let token = r.json()["token"].as_str().unwrap().to_string();
    let jti = r.json()["jti"].as_str().unwrap().to_string();

    for _ in 0..5 {
        assert_eq!(status(&w, &basic("alice", &token)).await, 200);
    }
    assert!(!w.log().contains("basic_failed"), "{}", w.log());

    // Wrong passwords lock alice's password sign-ins from here; her token still works.
    for _ in 0..3 {
        status(&w, &basic("alice", "wrong")).await;
    }
    assert_eq!(status(&w, &basic("alice", "alice-pw")).await, 429);
    assert_eq!(
        status(&w, &basic("alice", &token)).await,
        200,
        "a valid token is not a password check"
    );

    // A token cannot mint tokens, also not as a Basic password.
    let r = post_json(
        &w.url("/warden/token"),
        &[("authorization", &basic("alice", &token))],
        &json!({"label": "x"}),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.text());

    // Only alice's, only an API token (not a session).
    assert_eq!(status(&w, &basic("bob", &token)).await, 401);
    assert_eq!(status(&w, &basic("alice", &session)).await, 429);
    assert_eq!(status(&w, &basic("bob", &session)).await, 401);

    // Revoked: refused at once.
    let r = http::send(
        ::http::Method::DELETE,
        &w.url(&format!("/warden/tokens/{jti}")),
        &[("cookie", &alice)],
        http::full(""),
    )
    .await;
    assert_eq!(r.status, 204);
    assert_ne!(status(&w, &basic("alice", &token)).await, 200);
}
