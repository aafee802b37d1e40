//! Signing in and out: form and JSON login, cookie and Bearer access, 302/401 without, the
//! `next` redirect, identical answers for every kind of failure, logout revocation.
use crate::support::config::{TestConfig, TestUser};
use crate::support::double::Double;
use crate::support::harness::Warden;
use crate::support::http::{self, basic, bearer, cookie_header, get, login, post, post_json};
use crate::support::users::{alice, bob};

async fn setup() -> (Double, Warden) {
    let double = Double::start().await;
    let users = vec![
        alice(),
        bob(),
        TestUser::new("carol", "carol-pw", &["user"]).disabled(),
    ];
    let w = Warden::start(&TestConfig::new(&double.url()).users(users));
    (double, w)
}

#[tokio::test]
async fn form_login_sets_a_hardened_cookie_and_redirects_to_next() {
    let (_d, w) = setup().await;
    let r = post(
        &w.url("/login"),
        &[("content-type", "application/x-www-form-urlencoded")],
        "username=alice&password=alice-pw&next=%2Fqueue%3Fx%3D1",
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(r.header("location").unwrap(), "/queue?x=1");
    let cookie = r.header("set-cookie").unwrap();
    assert!(cookie.starts_with("comfy_warden_session="), "{cookie}");
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=43200"] {
        assert!(cookie.contains(attr), "{attr} missing in {cookie}");
    }
    assert!(
        !cookie.contains("Secure"),
        "no Secure on plain loopback HTTP: {cookie}"
    );
}

#[tokio::test]
async fn foreign_next_is_not_honoured() {
    let (_d, w) = setup().await;
    for evil in [
        "https://evil.example/",
        "//evil.example/",
        "/\\evil.example",
        "javascript:alert(1)",
    ] {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("username", "alice")
            .append_pair("password", "alice-pw")
            .append_pair("next", evil)
            .finish();
        let r = post(
            &w.url("/login"),
            &[("content-type", "application/x-www-form-urlencoded")],
            body,
        )
        .await;
        assert_eq!(r.status, 303);
        assert_eq!(r.header("location").unwrap(), "/", "next={evil}");
    }
}

#[tokio::test]
async fn json_login_gives_a_jwt_usable_as_cookie_and_bearer() {
    let (d, w) = setup().await;
    let token = login(&w.url(""), "alice", "alice-pw").await;
    assert_eq!(token.split('.').count(), 3, "a JWT");

    let by_cookie = get(&w.url("/queue"), &[("cookie", &cookie_header(&token))]).await;
    assert_eq!(by_cookie.status, 200, "{}", by_cookie.text());
    assert!(by_cookie.json().get("queue_running").is_some());

    let auth = bearer(&token);
    let by_bearer = get(&w.url("/api/embeddings"), &[("authorization", &auth)]).await;
    assert_eq!(by_bearer.status, 200);
    assert_eq!(d.received_path("/api/embeddings").len(), 1);

    let me = get(&w.url("/warden/me"), &[("authorization", &auth)]).await;
    assert_eq!(me.json()["user"], "alice");
    assert_eq!(me.json()["auth"], "bearer");
}

#[tokio::test]
async fn without_identity_browsers_are_sent_to_login_and_apis_get_401() {
    let (d, w) = setup().await;
    let page = get(
        &w.url("/some/page?x=1"),
        &[("accept", "text/html,application/xhtml+xml")],
    )
    .await;
    assert_eq!(page.status, 302);
    assert_eq!(
        page.header("location").unwrap(),
        "/login?next=%2Fsome%2Fpage%3Fx%3D1"
    );

    let api = get(&w.url("/api/queue"), &[("accept", "application/json")]).await;
    assert_eq!(api.status, 401);
    assert!(
        api.json()["error"]
            .as_str()
            .unwrap()
            .contains("authentication")
    );

    let forged = get(
        &w.url("/api/queue"),
        &[("authorization", "Bearer not.a.jwt")],
    )
    .await;
    assert_eq!(forged.status, 401);
    let post = post_json(&w.url("/prompt"), &[], &serde_json::json!({"prompt": {}})).await;
    assert_eq!(post.status, 401);
    assert!(
        d.received().is_empty(),
        "nothing may reach ComfyUI without an identity"
    );

    let login_page = get(&w.url("/login?next=%2Fx"), &[]).await;
    assert_eq!(login_page.status, 200);
    assert!(login_page.text().contains("value=\"/x\""));
    assert!(
        login_page
            .header("content-security-policy")
            .unwrap()
            .contains("default-src 'none'")
    );
}

#[tokio::test]
async fn every_failure_gives_the_same_bytes() {
    let (_d, w) = setup().await;
    let attempts = [
        ("nobody", "whatever"),
        ("carol", "carol-pw"),
        ("alice", "wrong"),
    ];
    let mut json = Vec::new();
    let mut form = Vec::new();
    for (u, p) in attempts {
        let r = post_json(
            &w.url("/login"),
            &[],
            &serde_json::json!({"username": u, "password": p}),
        )
        .await;
        assert_eq!(r.status, 401);
        assert!(r.header("set-cookie").is_none());
        json.push(r.body.clone());
        let r = post(
            &w.url("/login"),
            &[("content-type", "application/x-www-form-urlencoded")],
            format!("username={u}&password={p}"),
        )
        .await;
        assert_eq!(r.status, 401);
        form.push(r.body.clone());
    }
    assert!(
        json.windows(2).all(|p| p[0] == p[1]),
        "JSON answers differ: {json:?}"
    );
    assert!(form.windows(2).all(|p| p[0] == p[1]), "form answers differ");
    assert!(String::from_utf8_lossy(&json[0]).contains("Invalid user name or password"));
}

#[tokio::test]
async fn logout_revokes_the_session_and_clears_the_cookie() {
    let (_d, w) = setup().await;
    let token = login(&w.url(""), "alice", "alice-pw").await;
    let cookie = cookie_header(&token);
    // Several connections, so every worker has verified (and remembers) the token.
    for _ in 0..4 {
        assert_eq!(
            get(&w.url("/queue"), &[("cookie", &cookie)]).await.status,
            200
        );
    }

    let out = post(&w.url("/logout"), &[("cookie", &cookie)], "").await;
    assert_eq!(out.status, 200);
    let cleared = out.header("set-cookie").unwrap();
    assert!(
        cleared.starts_with("comfy_warden_session=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );

    assert_eq!(
        get(&w.url("/queue"), &[("cookie", &cookie)]).await.status,
        401,
        "a revoked token stays revoked"
    );
    let auth = bearer(&token);
    assert_eq!(
        get(&w.url("/queue"), &[("authorization", &auth)])
            .await
            .status,
        401
    );
}

#[tokio::test]
async fn health_needs_no_identity_and_says_nothing() {
    let (d, w) = setup().await;
    let r = get(&w.url("/warden/health"), &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "ok\n");
    let unknown = http::get(&w.url("/warden/nothing"), &[]).await;
    assert_eq!(
        unknown.status, 404,
        "an unknown comfy-warden endpoint is not forwarded to ComfyUI"
    );
    assert!(unknown.json()["error"].is_string());
    assert!(d.received().is_empty(), "neither request reached ComfyUI");
}

#[tokio::test]
async fn http_basic_works_for_scripts() {
    let (d, w) = setup().await;
    let ok = basic("alice", "alice-pw");
    for _ in 0..3 {
        assert_eq!(
            get(&w.url("/api/embeddings"), &[("authorization", &ok)])
                .await
                .status,
            200
        );
    }
    assert_eq!(d.received_path("/api/embeddings").len(), 3);
    assert!(
        d.received_path("/api/embeddings")
            .iter()
            .all(|r| r.header("authorization").is_none())
    );
    assert_eq!(
        get(&w.url("/warden/me"), &[("authorization", &ok)])
            .await
            .json()["auth"],
        "basic"
    );
    let garbage = {
        use base64::Engine;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("garbage")
        )
    };
    for bad in [
        basic("alice", "wrong"),
        basic("carol", "carol-pw"),
        basic("nobody", "x"),
        garbage,
    ] {
        let r = get(&w.url("/api/queue"), &[("authorization", &bad)]).await;
        assert_eq!(r.status, 401, "{bad}");
    }
}
