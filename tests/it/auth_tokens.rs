//! API tokens: issued from a session (never from another token), bounded lifetime, listed,
//! revoked one by one (persisting across restarts), revoked all at once by a token_version bump
//! in a live users.toml edit, and verified across a key rotation (`kid`).
use crate::support;
use crate::support::config::{TestConfig, users_toml};
use crate::support::harness::Warden;
use crate::support::http::{self, bearer, cookie_header, get, login, post_json};
use crate::support::users;
use serde_json::json;

async fn token(w: &Warden, cookie: &str, body: serde_json::Value) -> http::Resp {
    post_json(&w.url("/warden/token"), &[("cookie", cookie)], &body).await
}

#[tokio::test]
async fn tokens_are_issued_listed_used_and_revoked() {
    let d = support::double::Double::start().await;
    let w = Warden::start(&TestConfig::new(&d.url()).users([
        users::alice(),
        users::bob(),
        users::gail(),
    ]));
    let alice = cookie_header(&login(&w.url(""), "alice", "alice-pw").await);
    let r = token(&w, &alice, json!({"label": "render farm", "ttl": "2h"})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let t = r.json()["token"].as_str().unwrap().to_string();
    let jti = r.json()["jti"].as_str().unwrap().to_string();
    let exp = r.json()["expires_at"].as_u64().unwrap();
    assert!(exp > support::http::unix_now() + 7000 && exp <= support::http::unix_now() + 7300);

    assert_eq!(
        get(&w.url("/api/embeddings"), &[("authorization", &bearer(&t))])
            .await
            .status,
        200
    );
    let list = get(&w.url("/warden/tokens"), &[("cookie", &alice)])
        .await
        .json();
    assert_eq!(list["tokens"][0]["label"], "render farm");
    assert!(
        !list.to_string().contains(&t),
        "the token itself is shown only once"
    );

    // A token cannot mint tokens; other users cannot delete it.
    let r = post_json(
        &w.url("/warden/token"),
        &[("authorization", &bearer(&t))],
        &json!({"label": "x"}),
    )
    .await;
    assert_eq!(r.status, 403);
    let bob = cookie_header(&login(&w.url(""), "bob", "bob-pw").await);
    let r = http::send(
        ::http::Method::DELETE,
        &w.url(&format!("/warden/tokens/{jti}")),
        &[("cookie", &bob)],
        http::full(""),
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(
        get(&w.url("/api/embeddings"), &[("authorization", &bearer(&t))])
            .await
            .status,
        200
    );

    let r = http::send(
        ::http::Method::DELETE,
        &w.url(&format!("/warden/tokens/{jti}")),
        &[("cookie", &alice)],
        http::full(""),
    )
    .await;
    assert_eq!(r.status, 204);
    assert_eq!(
        get(&w.url("/api/embeddings"), &[("authorization", &bearer(&t))])
            .await
            .status,
        401
    );

    // The revocation survives a restart.
    let w = w.restart();
    assert_eq!(
        get(&w.url("/api/embeddings"), &[("authorization", &bearer(&t))])
            .await
            .status,
        401
    );
}

#[tokio::test]
async fn permission_and_lifetime_are_enforced() {
    let d = support::double::Double::start().await;
    let cfg = TestConfig::new(&d.url())
        .users([users::alice(), users::bob(), users::gail()])
        .auth(|a| a.max_token_ttl("7d").session_ttl("1h"));
    let w = Warden::start(&cfg);
    let gail = cookie_header(&login(&w.url(""), "gail", "gail-pw").await);
    assert_eq!(
        token(&w, &gail, json!({"label": "x"})).await.status,
        403,
        "guests have no api_tokens permission"
    );
    let alice = cookie_header(&login(&w.url(""), "alice", "alice-pw").await);
    assert_eq!(
        token(&w, &alice, json!({"label": "x", "ttl": "8d"}))
            .await
            .status,
        400
    );
    assert_eq!(
        token(&w, &alice, json!({"label": "", "ttl": "1d"}))
            .await
            .status,
        400
    );
    assert_eq!(
        token(&w, &alice, json!({"label": "x", "ttl": "soon"}))
            .await
            .status,
        400
    );
    let r = token(&w, &alice, json!({"label": "x"})).await;
    assert_eq!(r.status, 200);
    assert!(
        r.json()["expires_at"].as_u64().unwrap() <= support::http::unix_now() + 7 * 86400 + 5,
        "default capped by max_token_ttl"
    );

    // The HTML form flow shows the token once.
    let page = get(
        &w.url("/warden/token"),
        &[("cookie", &alice), ("accept", "text/html")],
    )
    .await;
    assert!(page.text().contains("<form") && page.header("content-security-policy").is_some());
    let r = http::post(
        &w.url("/warden/token"),
        &[
            ("cookie", &alice),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        "label=laptop&ttl=1d",
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(
        r.text().contains("Token “laptop” created") && r.text().contains("eyJ"),
        "{}",
        r.text()
    );
}

#[tokio::test]
async fn a_token_version_bump_revokes_everything_of_that_user() {
    let d = support::double::Double::start().await;
    let w = Warden::start(&TestConfig::new(&d.url()).users([
        users::alice(),
        users::bob(),
        users::gail(),
    ]));
    let alice = cookie_header(&login(&w.url(""), "alice", "alice-pw").await);
    let t = token(&w, &alice, json!({"label": "x"})).await.json()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let bob = cookie_header(&login(&w.url(""), "bob", "bob-pw").await);
    // Several connections, so every worker has verified (and remembers) the tokens.
    for _ in 0..4 {
        assert_eq!(
            get(&w.url("/queue"), &[("cookie", &alice)]).await.status,
            200
        );
        assert_eq!(
            get(&w.url("/queue"), &[("authorization", &bearer(&t))])
                .await
                .status,
            200
        );
    }

    let mut changed = vec![users::alice(), users::bob(), users::gail()];
    changed[0].token_version = 2;
    let mark = w.log_len();
    w.replace_file("users.toml", &users_toml(&changed));
    assert!(w.wait_log("configuration reloaded", mark));
    assert_eq!(
        get(&w.url("/queue"), &[("cookie", &alice)]).await.status,
        401,
        "alice's session is revoked"
    );
    assert_eq!(
        get(&w.url("/queue"), &[("authorization", &bearer(&t))])
            .await
            .status,
        401,
        "and her token"
    );
    assert_eq!(
        get(&w.url("/queue"), &[("cookie", &bob)]).await.status,
        200,
        "bob is untouched"
    );
    login(&w.url(""), "alice", "alice-pw").await;
}

#[tokio::test]
async fn key_rotation_keeps_old_tokens_while_the_old_key_is_listed() {
    let d = support::double::Double::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("key-a"), "a".repeat(48)).unwrap();
    std::fs::write(dir.path().join("key-b"), "b".repeat(48)).unwrap();
    let cfg = TestConfig::new(&d.url()).users([users::alice(), users::bob(), users::gail()]);
    cfg.clone()
        .auth(|a| a.secret_file("key-a"))
        .write(dir.path());
    let w = Warden::start_in(dir, &[]);
    let old = login(&w.url(""), "alice", "alice-pw").await;

    let (_, dir) = w.stop_keep_dir();
    let rotated = cfg
        .clone()
        .auth(|a| a.secret_file("key-b").previous_secret_files(&["key-a"]));
    std::fs::write(dir.path().join("warden.toml"), rotated.warden_toml()).unwrap();
    let w = Warden::start_in(dir, &[]);
    assert_eq!(
        get(&w.url("/queue"), &[("authorization", &bearer(&old))])
            .await
            .status,
        200,
        "verified by the previous key"
    );
    let new = login(&w.url(""), "alice", "alice-pw").await;

    let (_, dir) = w.stop_keep_dir();
    let retired = cfg.auth(|a| a.secret_file("key-b"));
    std::fs::write(dir.path().join("warden.toml"), retired.warden_toml()).unwrap();
    let w = Warden::start_in(dir, &[]);
    assert_eq!(
        get(&w.url("/queue"), &[("authorization", &bearer(&old))])
            .await
            .status,
        401,
        "the retired key's tokens are gone"
    );
    assert_eq!(
        get(&w.url("/queue"), &[("authorization", &bearer(&new))])
            .await
            .status,
        200
    );
}
