//! Users without a database: the writable users file edited by `comfy-warden user …` (comments
//! kept, declarative users refused, every change picked up by the running daemon), the admin
//! API on the same file, and freeing ComfyUI's memory after the last sign-out.
use crate::support::config::{TestConfig, TestUser, phc};
use crate::support::double::Double;
use crate::support::harness::{Warden, binary};
use crate::support::http::{
    self, bearer, cookie_header, get, login, login_answer, post, post_json,
};
use crate::support::poll::eventually;
use crate::support::users::{alice, bob, root};
use ::http::Method;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// The writable users file (with a lockout that polling sign-ins, while a change becomes live,
/// cannot trip).
fn config(url: &str, users: Vec<TestUser>) -> TestConfig {
    TestConfig::new(url)
        .users(users)
        .files(|f| f.users_writable("state/users.local.toml"))
        .lockout(|l| l.max_failures(1000))
}

/// Runs `comfy-warden ARGS --config DIR` with `stdin`; returns (success, stdout + stderr).
fn cli(dir: &Path, args: &[&str], stdin: Option<&str>) -> (bool, String) {
    let mut child = Command::new(binary())
        .args(args)
        .arg("--config")
        .arg(dir)
        .env_remove("COMFY_WARDEN_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut input = child.stdin.take().unwrap();
        if let Some(s) = stdin {
            // The command may refuse (and exit) before it reads its stdin.
            let _ = input.write_all(s.as_bytes());
        }
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn cli_ok(dir: &Path, args: &[&str], stdin: Option<&str>) -> String {
    let (ok, out) = cli(dir, args, stdin);
    assert!(ok, "comfy-warden {args:?} failed: {out}");
    out
}

async fn login_status(base: &str, user: &str, password: &str) -> u16 {
    login_answer(base, user, password, &[])
        .await
        .status
        .as_u16()
}

async fn me_status(w: &Warden, token: &str) -> u16 {
    get(&w.url("/warden/me"), &[("authorization", &bearer(token))])
        .await
        .status
        .as_u16()
}

const HAND_WRITTEN: &str = "# Local users of this machine.\n# Keep this header.\n\n[users.carol] # carol from the lab\npassword_hash = \"PHC\"\nroles = [\"user\"]   # only a user\n\n# end of the hand-written part\n";

#[tokio::test]
async fn cli_changes_are_picked_up_by_the_running_daemon_and_keep_comments() {
    let d = Double::start().await;
    let cfg = config(&d.url(), vec![alice()]);
    let dir = tempfile::tempdir().unwrap();
    cfg.write(dir.path());
    std::fs::create_dir(dir.path().join("state")).unwrap();
    let file = dir.path().join("state/users.local.toml");
    std::fs::write(&file, HAND_WRITTEN.replace("PHC", &phc("carol-pw"))).unwrap();
    let w = Warden::start_in(dir, &[]);
    let base = w.url("");
    let conf = w.dir.path().to_path_buf();

    // Users of both files are loaded.
    assert_eq!(login_status(&base, "carol", "carol-pw").await, 200);
    assert_eq!(login_status(&base, "alice", "alice-pw").await, 200);

    let out = cli_ok(
        &conf,
        &["user", "add", "bob", "--role", "user", "--password-stdin"],
        Some("bob-pw\n"),
    );
    assert!(out.contains("added bob"), "{out}");
    eventually("bob can sign in", || async {
        login_status(&base, "bob", "bob-pw").await == 200
    })
    .await;
    let first = login(&base, "bob", "bob-pw").await;

    cli_ok(
        &conf,
        &["user", "passwd", "bob", "--password-stdin"],
        Some("bob-pw-2\n"),
    );
    eventually("the new password works", || async {
        login_status(&base, "bob", "bob-pw-2").await == 200
    })
    .await;
    assert_eq!(login_status(&base, "bob", "bob-pw").await, 401);
    assert_eq!(
        me_status(&w, &first).await,
        200,
        "passwd alone keeps sessions"
    );

    let out = cli_ok(&conf, &["user", "revoke", "bob"], None);
    assert!(out.contains("token_version is now 2"), "{out}");
    eventually("bob's old token is revoked", || async {
        me_status(&w, &first).await == 401
    })
    .await;
    let second = login(&base, "bob", "bob-pw-2").await;
    assert_eq!(me_status(&w, &second).await, 200);

    cli_ok(&conf, &["user", "disable", "bob"], None);
    eventually("bob is disabled", || async {
        me_status(&w, &second).await == 401
    })
    .await;
    assert_eq!(login_status(&base, "bob", "bob-pw-2").await, 401);

    cli_ok(&conf, &["user", "enable", "bob"], None);
    eventually("bob is enabled again", || async {
        login_status(&base, "bob", "bob-pw-2").await == 200
    })
    .await;

    let list = cli_ok(&conf, &["user", "list"], None);
    for (name, origin) in [
        ("alice", "declarative"),
        ("bob", "writable"),
        ("carol", "writable"),
    ] {
        let line = list
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} missing: {list}"));
        assert!(line.contains(origin), "{line}");
    }
    let show = cli_ok(&conf, &["user", "show", "bob"], None);
    for expected in [
        "roles          user",
        "disabled       no",
        "token_version  2",
        "input/u_bob",
        "users.local.toml (writable)",
    ] {
        assert!(show.contains(expected), "{expected:?} missing:\n{show}");
    }

    let text = std::fs::read_to_string(&file).unwrap();
    for kept in [
        "# Local users of this machine.\n# Keep this header.\n",
        "[users.carol] # carol from the lab",
        "roles = [\"user\"]   # only a user",
        "# end of the hand-written part",
    ] {
        assert!(text.contains(kept), "{kept:?} lost:\n{text}");
    }
    assert!(text.find("[users.carol]").unwrap() < text.find("[users.bob]").unwrap());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    cli_ok(&conf, &["user", "remove", "bob"], None);
    eventually("bob is removed", || async {
        me_status(&w, &second).await == 401
    })
    .await;
    assert!(
        std::fs::read_to_string(&file)
            .unwrap()
            .contains("# end of the hand-written part")
    );
}

#[test]
fn cli_refuses_declarative_users_and_invalid_input() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config("http://127.0.0.1:8188", vec![alice()]);
    cfg.write(dir.path());
    let declarative = std::fs::read_to_string(dir.path().join("users.toml")).unwrap();
    let writable = dir.path().join("state/users.local.toml");

    for args in [
        vec!["user", "passwd", "alice", "--password-stdin"],
        vec!["user", "add", "alice", "--password-stdin"],
        vec!["user", "disable", "alice"],
        vec!["user", "revoke", "alice"],
        vec!["user", "remove", "alice"],
    ] {
        let (ok, out) = cli(dir.path(), &args, Some("pw\n"));
        assert!(!ok, "{args:?} must fail");
        assert!(
            out.contains("users.toml") && out.contains("never writes"),
            "{args:?}: {out}"
        );
    }
    let (ok, out) = cli(
        dir.path(),
        &["user", "add", "bad/name", "--password-stdin"],
        Some("pw\n"),
    );
    assert!(!ok && out.contains("not a valid user name"), "{out}");
    let (ok, out) = cli(
        dir.path(),
        &[
            "user",
            "add",
            "dave",
            "--role",
            "wizard",
            "--password-stdin",
        ],
        Some("pw\n"),
    );
    assert!(
        !ok && out.contains("unknown role \"wizard\"; known: admin, guest, power, user"),
        "{out}"
    );
    let (ok, out) = cli(dir.path(), &["user", "enable", "nobody"], None);
    assert!(!ok && out.contains("no user \"nobody\""), "{out}");
    let (ok, out) = cli(
        dir.path(),
        &["user", "add", "dave", "--password-stdin"],
        Some("\n"),
    );
    assert!(!ok && out.contains("must not be empty"), "{out}");
    let (ok, out) = cli(dir.path(), &["user", "add", "dave"], None);
    assert!(!ok && out.contains("--password-stdin"), "{out}");
    assert!(!writable.exists(), "nothing was written");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("users.toml")).unwrap(),
        declarative
    );

    // A name in both files is a configuration error naming both.
    std::fs::create_dir_all(writable.parent().unwrap()).unwrap();
    std::fs::write(
        &writable,
        format!(
            "# mine\n[users.alice]\npassword_hash = \"{}\"\nroles = [\"user\"]\n",
            phc("x")
        ),
    )
    .unwrap();
    let (ok, out) = cli(dir.path(), &["check"], None);
    assert!(!ok, "{out}");
    assert!(
        out.contains("users.local.toml line 2")
            && out.contains("users.toml")
            && out.contains("defined in both"),
        "{out}"
    );

    // Without files.users_writable the CLI says what to set.
    let plain = tempfile::tempdir().unwrap();
    TestConfig::new("http://127.0.0.1:8188").write(plain.path());
    let (ok, out) = cli(
        plain.path(),
        &["user", "add", "dave", "--password-stdin"],
        Some("pw\n"),
    );
    assert!(!ok && out.contains("files.users_writable"), "{out}");
}

async fn send_json(method: Method, url: &str, token: &str, v: &serde_json::Value) -> http::Resp {
    let auth = bearer(token);
    http::send(
        method,
        url,
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        http::full(serde_json::to_vec(v).unwrap()),
    )
    .await
}

#[tokio::test]
async fn admin_api_manages_the_writable_users_and_is_gated() {
    let d = Double::start().await;
    let w = Warden::start(&config(&d.url(), vec![root(), alice()]));
    let base = w.url("");
    let users = w.url("/warden/admin/users");
    let root = login(&base, "root", "root-pw").await;
    let alice = login(&base, "alice", "alice-pw").await;

    // Gates.
    assert_eq!(get(&users, &[]).await.status, 401);
    assert_eq!(
        get(&users, &[("authorization", &bearer(&alice))])
            .await
            .status,
        403
    );
    let r = post_json(
        &users,
        &[("authorization", &bearer(&alice))],
        &serde_json::json!({"username": "x", "password": "y"}),
    )
    .await;
    assert_eq!(r.status, 403);
    assert_eq!(
        get(
            &w.url("/warden/admin/sessions"),
            &[("authorization", &bearer(&alice))]
        )
        .await
        .status,
        403
    );

    let r = get(&users, &[("authorization", &bearer(&root))]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let list = r.json();
    let a = list["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "alice")
        .unwrap()
        .clone();
    assert_eq!(a["source"], "declarative");
    assert_eq!(a["active_sessions"], 1);
    assert_eq!(a["namespace"], "u_alice");

    // Add: live at once, no waiting for the watcher.
    let r = post_json(
        &users,
        &[("authorization", &bearer(&root))],
        &serde_json::json!({"username": "dave", "password": "dave-pw", "roles": ["user"]}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["source"], "writable");
    assert_eq!(r.json()["live"], true);
    let dave = login(&base, "dave", "dave-pw").await;

    for (body, status) in [
        (
            serde_json::json!({"username": "dave", "password": "pw"}),
            409,
        ),
        (
            serde_json::json!({"username": "alice", "password": "pw"}),
            409,
        ),
        (
            serde_json::json!({"username": "eve", "password": "pw", "roles": ["wizard"]}),
            400,
        ),
        (
            serde_json::json!({"username": "bad/name", "password": "pw"}),
            400,
        ),
        (
            serde_json::json!({"username": "eve", "password": "pw", "admin": true}),
            400,
        ),
    ] {
        let r = post_json(&users, &[("authorization", &bearer(&root))], &body).await;
        assert_eq!(r.status, status, "{body}: {}", r.text());
    }
    let r = post(
        &users,
        &[
            ("authorization", &bearer(&root)),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        "username=eve&password=pw",
    )
    .await;
    assert_eq!(r.status, 415);

    // Edit.
    let dave_url = w.url("/warden/admin/users/dave");
    let r = send_json(
        Method::PATCH,
        &dave_url,
        &root,
        &serde_json::json!({"roles": ["power"]}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let me = get(&w.url("/warden/me"), &[("authorization", &bearer(&dave))]).await;
    assert_eq!(me.json()["roles"], serde_json::json!(["power"]));

    let r = send_json(
        Method::PATCH,
        &dave_url,
        &root,
        &serde_json::json!({"revoke": true}),
    )
    .await;
    assert_eq!(r.json()["token_version"], 2, "{}", r.text());
    assert_eq!(me_status(&w, &dave).await, 401, "revoked");

    let r = send_json(
        Method::PATCH,
        &dave_url,
        &root,
        &serde_json::json!({"password": "dave-pw-2"}),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(login_status(&base, "dave", "dave-pw").await, 401);
    let dave = login(&base, "dave", "dave-pw-2").await;

    let r = send_json(
        Method::PATCH,
        &dave_url,
        &root,
        &serde_json::json!({"disabled": true}),
    )
    .await;
    assert_eq!(r.json()["disabled"], true);
    assert_eq!(me_status(&w, &dave).await, 401, "disabled");
    assert_eq!(login_status(&base, "dave", "dave-pw-2").await, 401);

    let r = send_json(Method::PATCH, &dave_url, &root, &serde_json::json!({})).await;
    assert_eq!(r.status, 400, "an empty edit");

    // Declarative users are read-only here.
    let r = send_json(
        Method::PATCH,
        &w.url("/warden/admin/users/alice"),
        &root,
        &serde_json::json!({"disabled": true}),
    )
    .await;
    assert_eq!(r.status, 409);
    assert!(r.json()["error"].as_str().unwrap().contains("users.toml"));
    let r = send_json(
        Method::DELETE,
        &w.url("/warden/admin/users/alice"),
        &root,
        &serde_json::json!(null),
    )
    .await;
    assert_eq!(r.status, 409);
    assert_eq!(me_status(&w, &alice).await, 200);

    // Sessions.
    let r = get(
        &w.url("/warden/admin/sessions"),
        &[("authorization", &bearer(&root))],
    )
    .await;
    assert_eq!(r.status, 200);
    let sessions = r.json()["sessions"].as_array().unwrap().clone();
    assert!(sessions.iter().any(|s| s["user"] == "root"), "{sessions:?}");
    assert!(
        sessions.iter().any(|s| s["user"] == "alice"),
        "{sessions:?}"
    );

    // Delete.
    let r = send_json(Method::DELETE, &dave_url, &root, &serde_json::json!(null)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        get(&dave_url, &[("authorization", &bearer(&root))])
            .await
            .status,
        404
    );
    let r = send_json(Method::DELETE, &dave_url, &root, &serde_json::json!(null)).await;
    assert_eq!(r.status, 404);

    let text = std::fs::read_to_string(w.path("state/users.local.toml")).unwrap();
    assert!(!text.contains("dave"), "{text}");
    assert!(w.log().contains("event=\"user_added\"") || w.log().contains("user_added"));
}

#[tokio::test]
async fn without_a_writable_file_the_admin_api_only_lists() {
    let d = Double::start().await;
    let w = Warden::start(&TestConfig::new(&d.url()).user(root()));
    let root = login(&w.url(""), "root", "root-pw").await;
    let users = w.url("/warden/admin/users");
    assert_eq!(
        get(&users, &[("authorization", &bearer(&root))])
            .await
            .status,
        200
    );
    let r = post_json(
        &users,
        &[("authorization", &bearer(&root))],
        &serde_json::json!({"username": "dave", "password": "pw"}),
    )
    .await;
    assert_eq!(r.status, 409);
    assert!(r.text().contains("files.users_writable"), "{}", r.text());
}

// Multi-threaded: `wait_log` blocks its thread while the double must answer `/free`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn free_memory_on_logout_after_the_last_session_only() {
    let d = Double::start().await;
    let cfg = TestConfig::new(&d.url())
        .users(vec![alice(), bob()])
        .tenancy(|t| t.free_memory_on_logout(true));
    let w = Warden::start(&cfg);
    let base = w.url("");
    let first = cookie_header(&login(&base, "alice", "alice-pw").await);
    let second = cookie_header(&login(&base, "alice", "alice-pw").await);
    let _bob = login(&base, "bob", "bob-pw").await;

    let logout = |cookie: String| {
        let url = w.url("/logout");
        async move {
            let r = post(&url, &[("cookie", &cookie)], "").await;
            assert_eq!(r.status, 200, "{}", r.text());
        }
    };
    logout(first).await;
    // A marker in the log: anything the logout logged comes before it.
    let mark = w.log_len();
    assert_eq!(login_status(&base, "nobody", "x").await, 401);
    assert!(w.wait_log("failed sign-in", mark));
    assert!(
        !w.log().contains("free_memory_requested"),
        "alice still has a session:\n{}",
        w.log()
    );

    logout(second).await;
    assert!(
        w.wait_log("free_memory_done", 0),
        "no free after the last session:\n{}",
        w.log()
    );
    assert_eq!(w.log().matches("free_memory_requested").count(), 1);
    let frees = d.received_path("/free");
    assert_eq!(frees.len(), 1, "{frees:?}");
    assert_eq!(
        frees[0].json(),
        serde_json::json!({"unload_models": true, "free_memory": true})
    );
}

#[tokio::test]
async fn free_memory_on_logout_is_off_by_default() {
    let d = Double::start().await;
    let w = Warden::start(&TestConfig::new(&d.url()).user(alice()));
    let cookie = cookie_header(&login(&w.url(""), "alice", "alice-pw").await);
    let r = post(&w.url("/logout"), &[("cookie", &cookie)], "").await;
    assert_eq!(r.status, 200);
    let mark = w.log_len();
    assert_eq!(login_status(&w.url(""), "nobody", "x").await, 401);
    assert!(w.wait_log("failed sign-in", mark));
    assert!(w.log().contains("signed out"));
    assert!(!w.log().contains("free_memory_requested"));
    assert!(d.received_path("/free").is_empty());
}
