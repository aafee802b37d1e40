//! Single sign-on against a real OpenID provider: the `oidc-provider` package (installed by
//! scripts/oidc-deps) runs on loopback over HTTPS with a test CA (tests/oidc/provider.mjs), and
//! comfy-warden trusts that CA through `ca_file`. The tests drive the provider over plain HTTP
//! (its interaction signs in the `login_hint` user at once), as a browser would: redirects and
//! cookies by hand.
use crate::support;
use crate::support::config::{Auth, Oidc, TestConfig, TestUser};
use crate::support::double::Double;
use crate::support::harness::Warden;
use crate::support::http::{self, get};
use crate::support::oidc::{Provider, free_port};
use serde_json::json;
use std::collections::HashMap;

/// The `[auth.oidc]` every test starts from: the provider at `issuer`, trusted through `ca_file`.
fn base_oidc(issuer: &str, ca_file: &std::path::Path) -> impl FnOnce(Oidc) -> Oidc {
    let (issuer, ca) = (issuer.to_owned(), ca_file.display().to_string());
    move |o: Oidc| {
        o.issuer(&issuer)
            .client_id("comfy-warden")
            .client_secret_file("oidc-secret")
            .roles_claim("groups")
            .role_map(&[("comfy-admins", "admin"), ("comfy-users", "user")])
            .scopes(&["profile", "groups"])
            .ca_file(&ca)
            .display_name("Test provider")
    }
}

/// Users.toml users carol (`user`), frank (disabled) and pat, signing in on `port`.
fn base_config(d: &Double, port: u16) -> TestConfig {
    TestConfig::new(&d.url())
        .users([
            TestUser::new("carol", "carol-pw", &["user"]),
            TestUser::new("frank", "frank-pw", &["user"]).disabled(),
            TestUser::new("pat", "pat-pw", &["user"]),
        ])
        .listen(&format!("127.0.0.1:{port}"))
}

fn start_warden(cfg: &TestConfig, secret: &str) -> Warden {
    let dir = tempfile::tempdir().unwrap();
    cfg.write(dir.path());
    std::fs::write(dir.path().join("oidc-secret"), format!("{secret}\n")).unwrap();
    Warden::start_in(dir, &[])
}

struct Setup {
    _d: Double,
    p: Provider,
    w: Warden,
    cfg: TestConfig,
}

/// A daemon and a provider; `f` adds to the base `[auth]`.
async fn setup(f: impl FnOnce(Auth, &Provider) -> Auth) -> Setup {
    let d = Double::start().await;
    let port = free_port();
    let p = Provider::start(port);
    let base = base_oidc(&p.issuer, &p.ca_file);
    let cfg = base_config(&d, port).auth(|a| f(a.oidc(base), &p));
    let w = start_warden(&cfg, "test-client-secret");
    Setup { _d: d, p, w, cfg }
}

fn set_cookies(r: &http::Resp) -> Vec<String> {
    r.headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

/// `name=value` of a Set-Cookie header named `name`.
fn cookie_pair(r: &http::Resp, name: &str) -> Option<String> {
    set_cookies(r)
        .into_iter()
        .find(|c| c.starts_with(&format!("{name}=")))
        .map(|c| c.split(';').next().unwrap().to_owned())
}

/// Follows the provider's redirects (with its cookies) from `url` until one leaves the
/// provider; returns that location (comfy-warden's callback).
async fn through_provider(p: &Provider, url: &str) -> String {
    let mut jar: HashMap<String, String> = HashMap::new();
    let mut url = url.to_owned();
    for _ in 0..10 {
        let path = url
            .strip_prefix(&p.issuer)
            .unwrap_or_else(|| panic!("{url} is not the provider's"))
            .to_owned();
        let cookie = jar
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let r = provider_get(p, &path, &cookie).await;
        for c in set_cookies(&r) {
            let pair = c.split(';').next().unwrap();
            if let Some((k, v)) = pair.split_once('=') {
                jar.insert(k.to_owned(), v.to_owned());
            }
        }
        let loc = r
            .header("location")
            .unwrap_or_else(|| panic!("the provider answered {} {}", r.status, r.text()));
        let loc = if loc.starts_with('/') {
            format!("{}{loc}", p.issuer)
        } else {
            loc
        };
        if !loc.starts_with(&p.issuer) {
            return loc;
        }
        url = loc;
    }
    panic!("too many redirects at the provider");
}

/// One GET to the provider over TLS (trusting the test CA), with the issuer's Host.
async fn provider_get(p: &Provider, path: &str, cookie: &str) -> http::Resp {
    provider_request(p, ::http::Method::GET, path, &[("cookie", cookie)], "").await
}

async fn provider_request(
    p: &Provider,
    method: ::http::Method,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> http::Resp {
    use http_body_util::BodyExt;
    let cfg = support::tls::client_config(&p.ca, &[b"http/1.1"]);
    let stream = support::tls::connect(p.addr(), cfg).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut req = ::http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", p.issuer.trim_start_matches("https://"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(http_body_util::Full::new(bytes::Bytes::from(
            body.to_owned(),
        )))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    http::Resp {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

/// Starts a sign-in at comfy-warden: the provider URL and the browser's flow cookie.
async fn begin(w: &Warden, next: &str) -> (String, String) {
    let r = get(
        &w.url(&format!("/login/oidc?next={}", urlencode(next))),
        &[],
    )
    .await;
    assert_eq!(r.status, 302, "{}", r.text());
    let flow = cookie_pair(&r, "comfy_warden_oidc").expect("a flow cookie");
    (r.header("location").unwrap(), flow)
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The callback URL the provider sends `user`'s browser to.
async fn code_for(s: &Setup, user: &str, next: &str) -> (String, String) {
    let (auth, flow) = begin(&s.w, next).await;
    let callback = through_provider(&s.p, &format!("{auth}&login_hint={user}")).await;
    (callback, flow)
}

/// A whole sign-in; returns the callback's answer.
async fn sign_in(s: &Setup, user: &str, next: &str) -> http::Resp {
    let (callback, flow) = code_for(s, user, next).await;
    get(&callback, &[("cookie", &flow)]).await
}

fn session(r: &http::Resp) -> String {
    cookie_pair(r, "comfy_warden_session")
        .filter(|c| c.len() > "comfy_warden_session=".len())
        .unwrap_or_else(|| panic!("no session cookie: {} {}", r.status, r.text()))
}

async fn me(w: &Warden, cookie: &str) -> http::Resp {
    get(&w.url("/warden/me"), &[("cookie", cookie)]).await
}

fn assert_refused(r: &http::Resp, status: u16, words: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    assert!(r.text().contains(words), "{}", r.text());
    assert!(
        r.text().contains("href=\"/login\""),
        "a way back: {}",
        r.text()
    );
    assert!(
        cookie_pair(r, "comfy_warden_session").is_none(),
        "no session on a refusal"
    );
}

#[tokio::test]
async fn a_mapped_user_signs_in_and_lands_on_next() {
    let s = setup(|a, _| a).await;
    let page = get(&s.w.url("/login?next=%2Fqueue"), &[]).await;
    assert!(
        page.text()
            .contains("href=\"/login/oidc?next=%2Fqueue\">Sign in with Test provider</a>"),
        "{}",
        page.text()
    );
    let r = sign_in(&s, "alice", "/queue?x=1").await;
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(r.header("location").unwrap(), "/queue?x=1");
    let cookie = session(&r);
    // Only comfy-warden's own session and the cleared flow cookie: no provider token.
    for c in set_cookies(&r) {
        assert!(
            c.starts_with("comfy_warden_session=") || c.starts_with("comfy_warden_oidc=;"),
            "{c}"
        );
    }
    assert!(r.body.is_empty(), "{}", r.text());
    let m = me(&s.w, &cookie).await;
    assert_eq!(m.status, 200, "{}", m.text());
    assert_eq!(m.json()["user"], "alice");
    assert_eq!(m.json()["roles"], json!(["user"]));
    assert_eq!(m.json()["auth"], "cookie");
    assert!(
        !m.json()["permissions"]
            .as_array()
            .unwrap()
            .contains(&json!("admin"))
    );
    // No API token for a name users.toml does not list (its roles live in the session only).
    let t = http::post_json(
        &s.w.url("/warden/token"),
        &[("cookie", &cookie)],
        &json!({"label": "x"}),
    )
    .await;
    assert_eq!(t.status, 403, "{}", t.text());
    // ComfyUI is reached with the session.
    let q = get(&s.w.url("/api/queue"), &[("cookie", &cookie)]).await;
    assert_eq!(q.status, 200, "{}", q.text());
    assert!(s.w.wait_log("login_ok", 0));
    assert!(s.w.log().contains("oidc"), "{}", s.w.log());
}

#[tokio::test]
async fn an_admin_group_gives_admin_and_listed_users_keep_their_roles() {
    let s = setup(|a, _| a).await;
    let bob = session(&sign_in(&s, "bob", "/").await);
    let m = me(&s.w, &bob).await;
    assert_eq!(m.json()["roles"], json!(["admin"]), "{}", m.text());
    let guard = get(&s.w.url("/warden/admin/guard"), &[("cookie", &bob)]).await;
    assert_eq!(guard.status, 200, "{}", guard.text());

    // carol is `user` in users.toml and in the provider's admin group: both.
    let carol = session(&sign_in(&s, "carol", "/").await);
    let m = me(&s.w, &carol).await;
    assert_eq!(m.json()["roles"], json!(["user", "admin"]), "{}", m.text());
    let t = http::post_json(
        &s.w.url("/warden/token"),
        &[("cookie", &carol)],
        &json!({"label": "x"}),
    )
    .await;
    assert_eq!(t.status, 200, "a listed user may have tokens: {}", t.text());

    // frank is disabled in users.toml: the provider's word does not let him in.
    let r = sign_in(&s, "frank", "/").await;
    assert_refused(&r, 403, "disabled");
}

#[tokio::test]
async fn users_without_a_role_and_unusable_names_are_refused() {
    let s = setup(|a, _| a).await;
    let mark = s.w.log_len();
    let r = sign_in(&s, "dave", "/").await;
    assert_refused(&r, 403, "no access to ComfyUI here");
    assert!(s.w.wait_log("oidc_refused", mark));
    assert!(s.w.log().contains("no role"));

    // "eve smith" is not a user name: refused, never rewritten into another name.
    let r = sign_in(&s, "eve", "/").await;
    assert_refused(&r, 403, "no name comfy-warden can use");
}

#[tokio::test]
async fn default_roles_let_unmapped_users_in() {
    let s = setup(|a, _| a.oidc(|o| o.default_roles(&["user"]))).await;
    let dave = session(&sign_in(&s, "dave", "/").await);
    let m = me(&s.w, &dave).await;
    assert_eq!(m.json()["roles"], json!(["user"]), "{}", m.text());
}

#[tokio::test]
async fn tampered_unknown_and_replayed_states_are_refused() {
    let s = setup(|a, _| a).await;
    // A changed state.
    let (callback, flow) = code_for(&s, "alice", "/").await;
    let tampered = callback.replace("state=", "state=x");
    let r = get(&tampered, &[("cookie", &flow)]).await;
    assert_refused(
        &r,
        400,
        "already used, it took too long, or the link was changed",
    );
    // An unknown state takes nothing out, so the real callback still works once…
    let r = get(&callback, &[("cookie", &flow)]).await;
    assert_eq!(r.status, 303, "{}", r.text());
    // …and only once.
    let r = get(&callback, &[("cookie", &flow)]).await;
    assert_refused(&r, 400, "already used");

    // Another browser (no flow cookie, or another one) cannot finish someone's sign-in.
    let (callback, _flow) = code_for(&s, "alice", "/").await;
    let r = get(&callback, &[("cookie", "comfy_warden_oidc=someone-else")]).await;
    assert_refused(&r, 400, "already used");
    let r = get(&s.w.url("/login/oidc/callback?code=abc"), &[]).await;
    assert_refused(&r, 400, "Start again");
    assert!(s.w.log().contains("oidc_refused"));
}

#[tokio::test]
async fn a_replayed_code_is_refused_by_the_exchange() {
    let s = setup(|a, _| a).await;
    let (callback, flow) = code_for(&s, "alice", "/").await;
    let r = get(&callback, &[("cookie", &flow)]).await;
    assert_eq!(r.status, 303, "{}", r.text());
    let code = callback
        .split(['?', '&'])
        .find_map(|kv| kv.strip_prefix("code="))
        .unwrap()
        .to_owned();
    // A fresh sign-in of the same browser, finished with the old code.
    let (auth, flow2) = begin(&s.w, "/").await;
    let state = auth
        .split(['?', '&'])
        .find_map(|kv| kv.strip_prefix("state="))
        .unwrap()
        .to_owned();
    let mark = s.w.log_len();
    let r = get(
        &s.w.url(&format!("/login/oidc/callback?code={code}&state={state}")),
        &[("cookie", &flow2)],
    )
    .await;
    assert_refused(&r, 403, "did not accept this sign-in (invalid_grant)");
    assert!(s.w.wait_log("code refused", mark));
}

#[tokio::test]
async fn a_wrong_nonce_is_refused() {
    let s = setup(|a, _| a).await;
    let (auth, flow) = begin(&s.w, "/").await;
    // Someone between the browser and the provider swaps the nonce.
    let nonce = auth
        .split(['?', '&'])
        .find_map(|kv| kv.strip_prefix("nonce="))
        .unwrap()
        .to_owned();
    let swapped = auth.replace(&format!("nonce={nonce}"), "nonce=chosen-by-someone-else");
    let callback = through_provider(&s.p, &format!("{swapped}&login_hint=alice")).await;
    let mark = s.w.log_len();
    let r = get(&callback, &[("cookie", &flow)]).await;
    assert_refused(&r, 403, "could not be verified");
    assert!(s.w.wait_log("wrong nonce", mark));
}

#[tokio::test]
async fn a_provider_error_is_a_page_not_a_500() {
    let s = setup(|a, _| a).await;
    let (callback, flow) = code_for(&s, "deny", "/").await;
    assert!(callback.contains("error=access_denied"), "{callback}");
    let mark = s.w.log_len();
    let r = get(&callback, &[("cookie", &flow)]).await;
    assert_refused(&r, 403, "did not sign you in (access_denied)");
    assert!(s.w.wait_log("provider error access_denied", mark));
}

#[tokio::test]
async fn a_provider_that_is_down_leaves_passwords_working() {
    let d = Double::start().await;
    let port = free_port();
    let p = Provider::start(port);
    let closed = free_port();
    let down = format!("https://127.0.0.1:{closed}");
    let cfg = base_config(&d, port).auth(|a| a.oidc(base_oidc(&down, &p.ca_file)));
    let w = start_warden(&cfg, "test-client-secret");
    let r = get(&w.url("/login/oidc?next=%2F"), &[]).await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(
        r.text()
            .contains("Test provider cannot be reached right now"),
        "{}",
        r.text()
    );
    assert!(w.wait_log("oidc_unavailable", 0));
    let token = http::login(&w.url(""), "pat", "pat-pw").await;
    let m = get(
        &w.url("/warden/me"),
        &[("authorization", &format!("Bearer {token}"))],
    )
    .await;
    assert_eq!(m.json()["user"], "pat");
}

#[tokio::test]
async fn client_secret_post_works() {
    let d = Double::start().await;
    let port = free_port();
    let p = Provider::start(port);
    let base = base_oidc(&p.issuer, &p.ca_file);
    let cfg = base_config(&d, port).auth(|a| {
        a.oidc(|o| {
            base(o)
                .token_endpoint_auth("client_secret_post")
                .client_id("comfy-warden-post")
        })
    });
    let w = start_warden(&cfg, "test-post-secret");
    let s = Setup { _d: d, p, w, cfg };
    let r = sign_in(&s, "alice", "/").await;
    assert_eq!(r.status, 303, "{}", r.text());
}

#[tokio::test]
async fn sign_out_ends_the_session_and_visits_the_provider() {
    let s = setup(|a, _| a.oidc(|o| o.end_session_redirect(true))).await;
    let cookie = session(&sign_in(&s, "alice", "/").await);
    let r = http::post(
        &s.w.url("/logout"),
        &[("cookie", &cookie), ("accept", "application/json")],
        "",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let redirect = r.json()["redirect"].as_str().unwrap().to_owned();
    assert!(
        redirect.starts_with(&format!(
            "{}/session/end?client_id=comfy-warden",
            s.p.issuer
        )),
        "{redirect}"
    );
    assert_eq!(me(&s.w, &cookie).await.status, 401);
}

#[tokio::test]
async fn a_reload_that_drops_a_mapping_ends_its_sessions() {
    let s = setup(|a, _| a).await;
    let alice = session(&sign_in(&s, "alice", "/").await);
    assert_eq!(me(&s.w, &alice).await.status, 200);
    let toml = (s.cfg.clone())
        .auth(|a| a.oidc(|o| o.role_map(&[("comfy-admins", "admin")])))
        .warden_toml();
    let mark = s.w.log_len();
    s.w.replace_file("warden.toml", &toml);
    assert!(s.w.wait_log("configuration reloaded", mark));
    assert_eq!(me(&s.w, &alice).await.status, 401);
}

#[tokio::test]
async fn bearer_tokens_of_the_provider_use_its_discovered_keys() {
    use base64::Engine;
    use sha2::Digest;
    let s = setup(|a, p| {
        a.external_jwt(|j| {
            j.issuer(&p.issuer)
                .audience("comfy-warden")
                .user_claim("preferred_username")
                .default_roles(&["user"])
        })
    })
    .await;
    let _ = &s;
    // The provider's own ID token for alice, obtained as any client of it would.
    let verifier = "a-verifier-of-the-test-that-is-long-enough-for-pkce-0123456789";
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()));
    let redirect = s.w.url("/login/oidc/callback");
    let auth = format!(
        "{}/auth?client_id=comfy-warden&response_type=code&scope=openid%20profile%20groups&redirect_uri={}&state=st&nonce=no&code_challenge={challenge}&code_challenge_method=S256&login_hint=alice",
        s.p.issuer,
        urlencode(&redirect)
    );
    let callback = through_provider(&s.p, &auth).await;
    let code = callback
        .split(['?', '&'])
        .find_map(|kv| kv.strip_prefix("code="))
        .unwrap()
        .to_owned();
    let basic = base64::engine::general_purpose::STANDARD.encode("comfy-warden:test-client-secret");
    let form = format!(
        "grant_type=authorization_code&code={code}&redirect_uri={}&code_verifier={verifier}",
        urlencode(&redirect)
    );
    let t = provider_request(
        &s.p,
        ::http::Method::POST,
        "/token",
        &[
            ("authorization", &format!("Basic {basic}")),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        &form,
    )
    .await;
    assert_eq!(t.status, 200, "{}", t.text());
    let id_token = t.json()["id_token"].as_str().unwrap().to_owned();
    let m = get(
        &s.w.url("/warden/me"),
        &[("authorization", &format!("Bearer {id_token}"))],
    )
    .await;
    assert_eq!(m.status, 200, "{}", m.text());
    assert_eq!(m.json()["user"], "alice");
    assert_eq!(m.json()["auth"], "external_jwt");
    // A token with a changed signature is refused.
    let mut bad = id_token.clone().into_bytes();
    let i = id_token.rfind('.').unwrap() + 20;
    bad[i] = if bad[i] == b'A' { b'B' } else { b'A' };
    let bad = String::from_utf8(bad).unwrap();
    let m = get(
        &s.w.url("/warden/me"),
        &[("authorization", &format!("Bearer {bad}"))],
    )
    .await;
    assert_eq!(m.status, 401);
}

/// comfy-warden's second factor is asked for only by its own sign-in form, so an account whose
/// role requires one is refused here rather than let in around it (fail closed).
#[tokio::test]
async fn accounts_with_comfy_wardens_second_factor_are_refused() {
    let d = Double::start().await;
    let port = free_port();
    let p = Provider::start(port);
    let base = base_oidc(&p.issuer, &p.ca_file);
    // alice's group maps to `user`, and this roles.toml makes `user` require TOTP.
    let cfg = base_config(&d, port)
        .totp_role("user", &["run", "settings"])
        .auth(|a| a.oidc(base));
    let w = start_warden(&cfg, "test-client-secret");
    let s = Setup { _d: d, p, w, cfg };
    let mark = s.w.log_len();
    let r = sign_in(&s, "alice", "/").await;
    assert_refused(&r, 403, "a password and a second factor");
    assert!(s.w.wait_log("oidc_refused", mark));
    assert!(s.w.log().contains("second factor"));
}
