//! The first administrator: with no administrator the daemon logs a one-time setup URL; only
//! its token creates the administrator (in the writable users file), exactly once even under
//! racing requests; afterwards setup is closed and the new administrator can sign in.
use crate::support;
use crate::support::config::{TestConfig, TestUser, users_toml};
use crate::support::double::Double;
use crate::support::harness::Warden;
use crate::support::http::{bearer, get, login, post, post_json};
use crate::support::users::{alice, root};

fn config(url: &str, users: Vec<TestUser>, writable: bool) -> TestConfig {
    let c = TestConfig::new(url).users(users);
    if writable {
        c.files(|f| f.users_writable("state/users.local.toml"))
    } else {
        c
    }
}

/// The token of the newest setup URL in the log (after byte `from`).
fn setup_token(w: &Warden, from: usize) -> String {
    assert!(
        w.wait_log("/warden/setup?token=", from),
        "no setup URL in the log:\n{}",
        w.log()
    );
    let log = w.log();
    let at = log[from..].rfind("/warden/setup?token=").unwrap() + from;
    let line = log[at..].lines().next().unwrap();
    let token: String = line["/warden/setup?token=".len()..]
        .chars()
        .take_while(|c| c.is_ascii_hexdigit())
        .collect();
    assert_eq!(token.len(), 64, "{line}");
    token
}

fn form(token: &str, user: &str, pw: &str, pw2: &str) -> String {
    form_urlencoded::Serializer::new(String::new())
        .append_pair("token", token)
        .append_pair("username", user)
        .append_pair("password", pw)
        .append_pair("password2", pw2)
        .finish()
}

const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

#[tokio::test]
async fn the_setup_token_creates_the_first_admin_once() {
    let d = Double::start().await;
    let w = Warden::start(&config(&d.url(), vec![alice()], true));
    let token = setup_token(&w, 0);
    let line = w
        .log()
        .lines()
        .find(|l| l.contains("/warden/setup?token="))
        .unwrap()
        .to_string();
    assert!(line.contains("WARN"), "{line}");
    assert!(
        line.contains(&format!("http://{}/warden/setup?token=", w.addr)),
        "{line}"
    );
    let wrong = "0".repeat(64);
    let file = w.path("state/users.local.toml");

    // The page: no identity needed, no redirect to /login.
    let r = get(
        &w.url(&format!("/warden/setup?token={token}")),
        &[("accept", "text/html")],
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-security-policy")
            .unwrap()
            .contains("default-src 'none'")
    );
    assert!(r.text().contains(&format!("value=\"{token}\"")));
    assert!(r.text().contains("name=\"password2\""));
    for bad in [format!("?token={wrong}"), String::new()] {
        let r = get(
            &w.url(&format!("/warden/setup{bad}")),
            &[("accept", "text/html")],
        )
        .await;
        assert_eq!(r.status, 403, "{bad}");
    }

    // Wrong token, mismatched passwords, a declarative name: refused, nothing written.
    let r = post(
        &w.url("/warden/setup"),
        &[FORM],
        form(&wrong, "boss", "boss-pw", "boss-pw"),
    )
    .await;
    assert_eq!(r.status, 403);
    let r = post(
        &w.url("/warden/setup"),
        &[FORM],
        form(&token, "boss", "boss-pw", "other"),
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("The passwords differ."), "{}", r.text());
    assert!(r.text().contains(&format!("value=\"{token}\"")));
    let r = post(
        &w.url("/warden/setup"),
        &[FORM],
        form(&token, "alice", "pw", "pw"),
    )
    .await;
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(!file.exists(), "nothing written yet");

    // The right token creates the administrator and sends the browser to /login.
    let r = post(
        &w.url("/warden/setup"),
        &[FORM],
        form(&token, "boss", "boss-pw", "boss-pw"),
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(r.header("location").unwrap(), "/login");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains("[users.boss]") && text.contains("roles = [\"admin\"]"),
        "{text}"
    );
    assert!(text.contains("$argon2id$"), "{text}");
    assert!(!text.contains("boss-pw"));

    // Setup is closed now.
    let r = get(&w.url(&format!("/warden/setup?token={token}")), &[]).await;
    assert_eq!(r.status, 410);
    let r = post(
        &w.url("/warden/setup"),
        &[FORM],
        form(&token, "boss2", "pw", "pw"),
    )
    .await;
    assert_eq!(r.status, 410);
    assert!(w.log().contains("setup closed"));

    // The new administrator signs in and administers.
    let boss = login(&w.url(""), "boss", "boss-pw").await;
    let auth = bearer(&boss);
    let r = get(&w.url("/warden/admin/users"), &[("authorization", &auth)]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    // ... but cannot remove the only administrator.
    let r = support::http::send(
        http::Method::DELETE,
        &w.url("/warden/admin/users/boss"),
        &[("authorization", &auth)],
        support::http::full(""),
    )
    .await;
    assert_eq!(r.status, 409, "{}", r.text());
}

#[tokio::test]
async fn racing_setup_requests_create_exactly_one_admin() {
    let d = Double::start().await;
    let w = Warden::start(&config(&d.url(), vec![], true));
    let token = setup_token(&w, 0);
    let url = w.url("/warden/setup");
    let tries = (0..8).map(|i| {
        let url = url.clone();
        let token = token.clone();
        async move {
            post_json(
                &url,
                &[],
                &serde_json::json!({"token": token, "username": format!("admin{i}"), "password": "pw-12345"}),
            )
            .await
            .status
            .as_u16()
        }
    });
    let mut statuses = futures_util::future::join_all(tries).await;
    statuses.sort();
    assert_eq!(statuses, [201, 410, 410, 410, 410, 410, 410, 410]);
    let text = std::fs::read_to_string(w.path("state/users.local.toml")).unwrap();
    assert_eq!(text.matches("[users.").count(), 1, "{text}");
}

#[tokio::test]
async fn without_a_writable_file_the_page_explains_what_to_do() {
    let d = Double::start().await;
    let w = Warden::start(&config(&d.url(), vec![], false));
    let token = setup_token(&w, 0);
    let r = get(
        &w.url(&format!("/warden/setup?token={token}")),
        &[("accept", "text/html")],
    )
    .await;
    assert_eq!(r.status, 200);
    let page = r.text();
    assert!(
        page.contains("files.users_writable") && page.contains("comfy-warden hash-password"),
        "{page}"
    );
    assert!(!page.contains("<form"), "{page}");
    let r = post_json(
        &w.url("/warden/setup"),
        &[],
        &serde_json::json!({"token": token, "username": "boss", "password": "pw"}),
    )
    .await;
    assert_eq!(r.status, 409);
}

#[tokio::test]
async fn setup_is_closed_while_an_admin_exists_and_reopens_when_none_is_left() {
    let d = Double::start().await;
    let w = Warden::start(&config(&d.url(), vec![root()], true));
    assert!(w.wait_log("comfy-warden is ready", 0));
    assert!(!w.log().contains("setup?token="), "{}", w.log());
    let r = get(&w.url("/warden/setup?token=abc"), &[]).await;
    assert_eq!(r.status, 410);

    // The administrator is demoted by an edit of users.toml: setup opens with a fresh token.
    let mark = w.log_len();
    w.replace_file(
        "users.toml",
        &users_toml(&[TestUser::new("root", "root-pw", &["user"])]),
    );
    let token = setup_token(&w, mark);
    let r = get(&w.url(&format!("/warden/setup?token={token}")), &[]).await;
    assert_eq!(r.status, 200);
}
