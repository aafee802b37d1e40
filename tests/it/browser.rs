//! End to end in headless Chromium: the real ComfyUI frontend (PyPI `comfyui-frontend-package`
//! 1.27.10, served by the test double) behind the real comfy-warden binary. The browser half is
//! `tests/browser/e2e.mjs` (playwright-core driving Debian's Chromium); this file starts the
//! double and the daemon, runs it, and checks what reached ComfyUI.
//!
//! What it needs is installed by `scripts/browser-deps` (run by `scripts/test`). Without it the
//! test prints SKIP and passes, unless `COMFY_WARDEN_BROWSER=required` (set by `scripts/test`
//! once the install worked), where anything missing is a failure.

use crate::support::config::{TestConfig, TestUser};
use crate::support::double::Double;
use crate::support::harness::Warden;

use std::path::{Path, PathBuf};
use std::time::Duration;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `comfyui_frontend_package/static`, where `scripts/browser-deps` installs it.
fn frontend_dir() -> PathBuf {
    match std::env::var_os("COMFY_FRONTEND_STATIC") {
        Some(p) => PathBuf::from(p),
        None => root().join("target/comfyui-frontend/comfyui_frontend_package/static"),
    }
}

fn chromium() -> PathBuf {
    match std::env::var_os("CHROMIUM") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from("/usr/bin/chromium"),
    }
}

/// What is missing for the browser test, if anything.
fn missing() -> Vec<String> {
    let mut out = Vec::new();
    let need = |p: &Path, what: &str, out: &mut Vec<String>| {
        if !p.exists() {
            out.push(format!("{what} ({})", p.display()));
        }
    };
    need(&chromium(), "Chromium", &mut out);
    need(
        &frontend_dir().join("index.html"),
        "comfyui-frontend-package 1.27.10",
        &mut out,
    );
    need(
        &root().join("tests/browser/node_modules/playwright-core/package.json"),
        "playwright-core (npm ci in tests/browser)",
        &mut out,
    );
    if std::process::Command::new("node")
        .arg("--version")
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        out.push("node".into());
    }
    out
}

/// `None` (after printing SKIP) when the browser test cannot run here and need not.
fn ready() -> Option<()> {
    let missing = missing();
    if missing.is_empty() {
        return Some(());
    }
    let required = std::env::var("COMFY_WARDEN_BROWSER").is_ok_and(|v| v == "required");
    assert!(
        !required,
        "the browser test is required but these are missing: {}",
        missing.join(", ")
    );
    println!(
        "SKIP browser test: missing {} (run scripts/browser-deps to install them)",
        missing.join(", ")
    );
    None
}

fn artifacts() -> PathBuf {
    root().join("target/browser-artifacts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_frontend_login_canvas_queue_logout() {
    if ready().is_none() {
        return;
    }
    let _ = std::fs::remove_dir_all(artifacts());
    let d = Double::start_with_frontend(frontend_dir()).await;
    let users = [
        ("alice", "alice-pw-e2e", "user"),
        ("bob", "bob-pw-e2e", "user"),
        ("carol", "carol-pw-e2e", "guest"),
    ];
    // The browser reaches the daemon over loopback; its X-Forwarded-For stands for the lockout
    // and refused-address checks' own client addresses.
    let cfg = TestConfig::new(&d.url())
        .users(users.iter().map(|(n, p, r)| TestUser::new(n, p, &[r])))
        .server(|s| s.trusted_proxies(&["127.0.0.1/32"]))
        .ip_rules(|r| r.deny(&["203.0.113.0/24"]))
        .lockout(|l| {
            l.max_failures(3)
                .window("5m")
                .first_delay("1m")
                .max_delay("2m")
        });
    let w = Warden::start(&cfg);
    let users_json = serde_json::to_string(
        &users
            .iter()
            .map(|(n, p, _)| serde_json::json!({"name": n, "password": p}))
            .collect::<Vec<_>>(),
    )
    .unwrap();

    let out = tokio::time::timeout(
        Duration::from_secs(240),
        tokio::process::Command::new("node")
            .arg(root().join("tests/browser/e2e.mjs"))
            .env("WARDEN_URL", w.url(""))
            .env("CHROMIUM", chromium())
            .env("ARTIFACTS", artifacts())
            .env("USERS", users_json)
            .env("REFUSED_IP", "203.0.113.9")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the browser test ran for more than 4 minutes")
    .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        out.status.success(),
        "the browser checks failed ({}); screenshots in {}; daemon log:\n{}",
        out.status,
        artifacts().display(),
        w.log()
    );

    // Every screenshot the test promises is there.
    for name in [
        "login.png",
        "login-error.png",
        "login-locked-mobile.png",
        "address-refused.png",
        "canvas.png",
        "canvas-queue.png",
        "badge-menu.png",
        "canvas-second-user.png",
        "badge-fallback.png",
    ] {
        let p = artifacts().join(name);
        let len = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
        assert!(len > 1000, "missing screenshot {}", p.display());
    }

    // What ComfyUI saw: two prompts, each under its own ComfyUI user and never a client's
    // comfy-user, and the frontend loaded comfy-warden's extension from the daemon.
    let posted: Vec<_> = d
        .received()
        .into_iter()
        .filter(|r| r.method == "POST" && (r.path == "/prompt" || r.path == "/api/prompt"))
        .collect();
    assert_eq!(posted.len(), 2, "two prompts were queued");
    let ids: Vec<_> = posted
        .iter()
        .map(|r| r.header("comfy-user").unwrap_or("").to_string())
        .collect();
    assert_ne!(ids[0], ids[1], "each user runs as their own ComfyUI user");
    assert!(
        d.received().iter().all(|r| !r.path.starts_with("/warden/")),
        "comfy-warden's own paths never reach ComfyUI"
    );
}

/// Single sign-on in the browser: the login page's button, the provider's own sign-in page
/// (tests/oidc/provider.mjs, scripts/oidc-deps), back to comfy-warden and on to the canvas
/// (tests/browser/oidc.mjs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_sign_on_reaches_the_canvas() {
    if ready().is_none() {
        return;
    }
    let d = Double::start_with_frontend(frontend_dir()).await;
    let port = crate::support::oidc::free_port();
    let p = crate::support::oidc::Provider::start(port);
    let ca = p.ca_file.display().to_string();
    let cfg = TestConfig::new(&d.url())
        .user(TestUser::new("pat", "pat-pw", &["user"]))
        .listen(&format!("127.0.0.1:{port}"))
        .auth(|a| {
            a.oidc(|o| {
                o.issuer(&p.issuer)
                    .client_id("comfy-warden")
                    .client_secret_file("oidc-secret")
                    .roles_claim("groups")
                    .role_map(&[("comfy-users", "user")])
                    .scopes(&["profile", "groups"])
                    .ca_file(&ca)
                    .display_name("Test provider")
            })
        });
    let dir = tempfile::tempdir().unwrap();
    cfg.write(dir.path());
    std::fs::write(dir.path().join("oidc-secret"), "test-client-secret").unwrap();
    let w = Warden::start_in(dir, &[]);
    let out = tokio::time::timeout(
        Duration::from_secs(180),
        tokio::process::Command::new("node")
            .arg(root().join("tests/browser/oidc.mjs"))
            .env("WARDEN_URL", w.url(""))
            .env("PROVIDER_URL", &p.issuer)
            .env("CHROMIUM", chromium())
            .env("ARTIFACTS", artifacts())
            .env("SSO_USER", "alice")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the single sign-on browser test ran for more than 3 minutes")
    .expect("run node");
    println!("{}", String::from_utf8_lossy(&out.stdout));
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "the single sign-on browser checks failed ({}); screenshots in {}; daemon log:\n{}",
        out.status,
        artifacts().display(),
        w.log()
    );
    for name in ["oidc-login.png", "oidc-provider.png", "oidc-canvas.png"] {
        let len = std::fs::metadata(artifacts().join(name))
            .map(|m| m.len())
            .unwrap_or(0);
        assert!(len > 1000, "missing screenshot {name}");
    }
    assert!(
        d.received()
            .iter()
            .all(|r| r.header("authorization").is_none()),
        "no token of the provider reaches ComfyUI"
    );
}

/// The second factor in the browser (`tests/browser/totp.mjs`): a user whose role requires
/// TOTP is led through enrolment right after the password (QR code, key, one code), sees the
/// recovery codes once, and signs in again with a code and with a recovery code. Needs
/// `oathtool` (scripts/install-tools) besides the browser.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_factor_in_the_browser() {
    if ready().is_none() {
        return;
    }
    let d = Double::start().await;
    let cfg = TestConfig::new(&d.url())
        .user(TestUser::new("dana", "dana-pw-e2e", &["secure"]))
        .totp_role("secure", &["run", "settings"]);
    let dir = tempfile::tempdir().unwrap();
    cfg.write(dir.path());
    let w = Warden::start_in(dir, &[]);
    let artifacts = artifacts().join("totp");
    let out = tokio::time::timeout(
        Duration::from_secs(180),
        tokio::process::Command::new("node")
            .arg(root().join("tests/browser/totp.mjs"))
            .env("WARDEN_URL", w.url(""))
            .env("CHROMIUM", chromium())
            .env("ARTIFACTS", &artifacts)
            .env("USER_NAME", "dana")
            .env("USER_PASSWORD", "dana-pw-e2e")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the browser test ran for more than 3 minutes")
    .expect("run node");
    println!("{}", String::from_utf8_lossy(&out.stdout));
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "the second-factor browser checks failed ({}); screenshots in {}; daemon log:\n{}",
        out.status,
        artifacts.display(),
        w.log()
    );
    for name in ["totp-enrol.png", "totp-recovery-codes.png", "totp-code.png"] {
        let len = std::fs::metadata(artifacts.join(name))
            .map(|m| m.len())
            .unwrap_or(0);
        assert!(len > 1000, "missing screenshot {name}");
    }
    let state = std::fs::read_to_string(w.path("state/totp/dana.json")).unwrap();
    assert!(
        state.contains("\"secret\""),
        "enrolled in the state directory"
    );
}
