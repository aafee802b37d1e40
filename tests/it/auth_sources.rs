//! External identity sources: an identity provider's JWT (verified against a JWKS file; signed
//! here with a test Ed25519 key) and a gateway's trusted header from trusted and untrusted peers.
use crate::support::config::{TestConfig, TestUser};
use crate::support::double::Double;
use crate::support::harness::Warden;
use crate::support::http::{self, bearer, get};
use crate::support::users::alice;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

const IDP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/idp");

fn idp_token(key_file: &str, kid: &str, claims: serde_json::Value) -> String {
    let pem = std::fs::read(format!("{IDP}/{key_file}")).unwrap();
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ed_pem(&pem).unwrap()).unwrap()
}

fn claims(sub: &str, aud: &str, exp_in: i64) -> serde_json::Value {
    let now = http::unix_now() as i64;
    json!({"iss": "https://idp.example", "aud": aud, "sub": sub, "iat": now, "exp": now + exp_in})
}

fn jwt_config(d: &Double, default_roles: &[&str]) -> TestConfig {
    let jwks = format!("{IDP}/jwks.json");
    TestConfig::new(&d.url())
        .users([
            alice(),
            TestUser::new("dora", "dora-pw", &["user"]).disabled(),
        ])
        .auth(|a| {
            a.external_jwt(|j| {
                j.jwks_file(&jwks)
                    .issuer("https://idp.example")
                    .audience("comfy-warden")
                    .user_claim("sub")
                    .default_roles(default_roles)
            })
        })
}

#[tokio::test]
async fn identity_provider_tokens_are_verified() {
    let d = Double::start().await;
    let w = Warden::start(&jwt_config(&d, &["user"]));
    let good = idp_token(
        "ed25519-private.pem",
        "test-idp-1",
        claims("carol", "comfy-warden", 600),
    );
    let me = get(&w.url("/warden/me"), &[("authorization", &bearer(&good))]).await;
    assert_eq!(me.status, 200, "{}", me.text());
    assert_eq!(me.json()["user"], "carol");
    assert_eq!(me.json()["auth"], "external_jwt");
    assert_eq!(
        me.json()["roles"],
        json!(["user"]),
        "unknown users get the default roles"
    );

    // carol is a tenant like any other: her files live in her own namespace.
    let boundary = "b";
    let form = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"c.png\"\r\n\r\nx\r\n--{boundary}--\r\n"
    );
    let r = http::post(
        &w.url("/upload/image"),
        &[
            ("authorization", &bearer(&good)),
            ("content-type", "multipart/form-data; boundary=b"),
        ],
        form,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(d.stored_file("input", "u_carol", "c.png").is_some());

    let known = idp_token(
        "ed25519-private.pem",
        "test-idp-1",
        claims("alice", "comfy-warden", 600),
    );
    assert_eq!(
        get(&w.url("/warden/me"), &[("authorization", &bearer(&known))])
            .await
            .json()["user"],
        "alice"
    );
    for bad in [
        idp_token(
            "ed25519-private.pem",
            "test-idp-1",
            claims("carol", "someone-else", 600),
        ),
        idp_token(
            "ed25519-private.pem",
            "test-idp-1",
            claims("carol", "comfy-warden", -600),
        ),
        idp_token(
            "other-private.pem",
            "test-idp-1",
            claims("carol", "comfy-warden", 600),
        ),
        idp_token(
            "ed25519-private.pem",
            "unknown-kid",
            claims("carol", "comfy-warden", 600),
        ),
        idp_token(
            "ed25519-private.pem",
            "test-idp-1",
            claims("../evil", "comfy-warden", 600),
        ),
        idp_token(
            "ed25519-private.pem",
            "test-idp-1",
            claims("dora", "comfy-warden", 600),
        ),
    ] {
        assert_eq!(
            get(&w.url("/api/queue"), &[("authorization", &bearer(&bad))])
                .await
                .status,
            401
        );
    }
    // An HS256 token "signed" with the public key material is not accepted (algorithm pinned).
    let jwks = std::fs::read_to_string(format!("{IDP}/jwks.json")).unwrap();
    let x = serde_json::from_str::<serde_json::Value>(&jwks).unwrap()["keys"][0]["x"]
        .as_str()
        .unwrap()
        .to_string();
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some("test-idp-1".into());
    let confused = jsonwebtoken::encode(
        &h,
        &claims("carol", "comfy-warden", 600),
        &EncodingKey::from_secret(x.as_bytes()),
    )
    .unwrap();
    assert_eq!(
        get(
            &w.url("/api/queue"),
            &[("authorization", &bearer(&confused))]
        )
        .await
        .status,
        401
    );
}

#[tokio::test]
async fn without_default_roles_only_known_users_are_accepted() {
    let d = Double::start().await;
    let w = Warden::start(&jwt_config(&d, &[]));
    let carol = idp_token(
        "ed25519-private.pem",
        "test-idp-1",
        claims("carol", "comfy-warden", 600),
    );
    assert_eq!(
        get(&w.url("/api/queue"), &[("authorization", &bearer(&carol))])
            .await
            .status,
        401
    );
    let alice = idp_token(
        "ed25519-private.pem",
        "test-idp-1",
        claims("alice", "comfy-warden", 600),
    );
    assert_eq!(
        get(&w.url("/api/queue"), &[("authorization", &bearer(&alice))])
            .await
            .status,
        200
    );
}

fn header_config(d: &Double, from: &str) -> TestConfig {
    TestConfig::new(&d.url()).user(alice()).auth(|a| {
        a.trusted_header(|h| {
            h.name("X-Authenticated-User")
                .from(&[from])
                .default_roles(&["user"])
        })
    })
}

#[tokio::test]
async fn a_trusted_gateway_header_names_the_user() {
    let d = Double::start().await;
    let w = Warden::start(&header_config(&d, "127.0.0.1/32"));
    let me = get(&w.url("/warden/me"), &[("x-authenticated-user", "erin")]).await;
    assert_eq!(me.status, 200);
    assert_eq!(me.json()["user"], "erin");
    assert_eq!(me.json()["auth"], "trusted_header");
    assert_eq!(
        get(
            &w.url("/api/embeddings"),
            &[("x-authenticated-user", "erin")]
        )
        .await
        .status,
        200
    );
    let up = &d.received_path("/api/embeddings")[0];
    assert!(
        up.header("x-authenticated-user").is_none(),
        "the identity header never reaches ComfyUI"
    );
    assert_eq!(
        get(&w.url("/api/queue"), &[("x-authenticated-user", "../x")])
            .await
            .status,
        401
    );
}

#[tokio::test]
async fn the_header_from_an_untrusted_peer_is_ignored_and_removed() {
    let d = Double::start().await;
    let w = Warden::start(&header_config(&d, "10.0.0.0/8"));
    assert_eq!(
        get(&w.url("/api/queue"), &[("x-authenticated-user", "alice")])
            .await
            .status,
        401
    );
    let alice = http::cookie_header(&http::login(&w.url(""), "alice", "alice-pw").await);
    let me = get(
        &w.url("/warden/me"),
        &[("cookie", &alice), ("x-authenticated-user", "mallory")],
    )
    .await;
    assert_eq!(me.json()["user"], "alice");
    assert_eq!(
        get(
            &w.url("/api/embeddings"),
            &[("cookie", &alice), ("x-authenticated-user", "mallory")]
        )
        .await
        .status,
        200
    );
    assert!(
        d.received_path("/api/embeddings")[0]
            .header("x-authenticated-user")
            .is_none()
    );
}
