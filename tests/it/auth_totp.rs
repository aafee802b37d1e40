//! The second factor (TOTP) against the real daemon, with codes computed by an independent
//! implementation: Debian's `oathtool` (installed by scripts/install-tools). Covers: the code
//! asked for after the right password, the right code, wrong codes and the lockout, replay
//! (also across a restart), one step of skew either way, recovery codes used once, enrolment
//! by the CLI (driven through stdin) and through the role requirement, Basic refused, API
//! tokens after a two-factor sign-in, and the admin API reset.

use crate::support;
use crate::support::config::{Lockout, TestConfig, phc};
use crate::support::harness::{Warden, binary};
use crate::support::http::{self, cookie_header, get, post_json};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

const SECRET: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
const STEP: u64 = 30;

/// The code of the step `offset` steps from now, by oathtool.
fn oathtool(secret: &str, offset: i64) -> String {
    let at = http::unix_now() as i64 + offset * STEP as i64;
    let out = Command::new("oathtool")
        .args(["--totp", "-b", "-N", &format!("@{at}"), secret])
        .output()
        .expect("oathtool is installed by scripts/install-tools");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let code = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(code.len(), 6, "{code}");
    code
}

/// Waits until at least 15 s remain in the current step, so "the previous step" and "two
/// steps ahead" keep meaning the same while a request is answered on a loaded machine.
fn early_in_step() {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(40);
    while http::unix_now() % STEP >= 15 {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

fn user_block(name: &str, password: &str, roles: &str, extra: &str) -> String {
    format!(
        "[users.{name}]\npassword_hash = \"{}\"\nroles = [{roles}]\n{extra}\n",
        phc(password)
    )
}

/// alice: a secret from totp_secret_file; bob: none; dave: role `secure` (require_totp);
/// carol (writable users file): none; root: admin. Optional `[lockout]` lines.
async fn start(lockout: impl FnOnce(Lockout) -> Lockout) -> (support::double::Double, Warden) {
    let d = support::double::Double::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = TestConfig::new(&d.url())
        .files(|f| f.roles("roles.toml").users_writable("users-writable.toml"))
        .log(|l| l.audit_file("audit.jsonl"))
        .lockout(lockout);
    cfg.write(dir.path());
    std::fs::write(dir.path().join("alice.totp"), format!("{SECRET}\n")).unwrap();
    let users = [
        user_block(
            "alice",
            "alice-pw",
            "\"user\"",
            "totp_secret_file = \"alice.totp\"",
        ),
        user_block("bob", "bob-pw", "\"user\"", ""),
        user_block("dave", "dave-pw", "\"secure\"", ""),
        user_block("root", "root-pw", "\"admin\"", ""),
    ]
    .concat();
    std::fs::write(dir.path().join("users.toml"), users).unwrap();
    std::fs::write(
        dir.path().join("users-writable.toml"),
        user_block("carol", "carol-pw", "\"user\"", ""),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("roles.toml"),
        "[roles.secure]\npermissions = [\"run\", \"settings\", \"api_tokens\"]\nrequire_totp = true\n",
    )
    .unwrap();
    (d, Warden::start_in(dir, &[]))
}

async fn login(w: &Warden, body: Value) -> http::Resp {
    post_json(&w.url("/login"), &[], &body).await
}

async fn second_step(w: &Warden, ticket: &str, code: &str) -> http::Resp {
    post_json(
        &w.url("/login/second-factor"),
        &[],
        &json!({"ticket": ticket, "totp": code}),
    )
    .await
}

fn audit(w: &Warden) -> String {
    std::fs::read_to_string(w.path("state/audit.jsonl")).unwrap_or_default()
}

#[tokio::test]
async fn code_required_then_accepted_once_also_across_a_restart() {
    let (_d, w) = start(|l| l).await;
    // The password alone: 401 asking for the code, with a ticket for the second step.
    let r = login(&w, json!({"username": "alice", "password": "alice-pw"})).await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.json()["totp_required"], true);
    let ticket = r.json()["ticket"].as_str().unwrap().to_string();
    // A wrong password never says a code would be needed.
    let r = login(
        &w,
        json!({"username": "alice", "password": "nope", "totp": "123456"}),
    )
    .await;
    assert_eq!(r.status, 401);
    assert!(r.json().get("totp_required").is_none(), "{}", r.text());
    // Users without a second factor are unchanged.
    let r = login(&w, json!({"username": "bob", "password": "bob-pw"})).await;
    assert_eq!(r.status, 200, "{}", r.text());

    early_in_step();
    let code = oathtool(SECRET, 0);
    let r = login(
        &w,
        json!({"username": "alice", "password": "alice-pw", "totp": code}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["second_factor"], "totp");
    let jwt = r.json()["jwt_token"].as_str().unwrap().to_string();
    let me = get(&w.url("/warden/me"), &[("cookie", &cookie_header(&jwt))]).await;
    assert_eq!(me.status, 200);

    // The same code again: refused, with the password and through the ticket.
    let r = login(
        &w,
        json!({"username": "alice", "password": "alice-pw", "totp": code}),
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.json()["totp_required"], true);
    assert_eq!(second_step(&w, &ticket, &code).await.status, 401);
    assert!(audit(&w).contains("wrong second factor"));

    // The last used step is kept in the state directory: still refused after a restart.
    let state = std::fs::read_to_string(w.path("state/totp/alice.json")).unwrap();
    assert!(state.contains("last_step"), "{state}");
    assert!(
        !state.contains(SECRET),
        "a secret from users.toml is not copied"
    );
    let w = w.restart();
    let r = login(
        &w,
        json!({"username": "alice", "password": "alice-pw", "totp": code}),
    )
    .await;
    assert_eq!(r.status, 401, "replay after a restart: {}", r.text());
    // The next step's code works (one step of skew), through the ticket of the second step.
    let r = login(&w, json!({"username": "alice", "password": "alice-pw"})).await;
    let ticket = r.json()["ticket"].as_str().unwrap().to_string();
    let r = second_step(&w, &ticket, &oathtool(SECRET, 1)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.header("set-cookie")
            .unwrap()
            .contains("comfy_warden_session=")
    );
    // A forged ticket is nothing.
    let r = second_step(&w, &format!("x{ticket}"), &oathtool(SECRET, 1)).await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn one_step_of_skew_either_way_and_no_more() {
    let (_d, w) = start(|l| l.max_failures(50)).await;
    early_in_step();
    for offset in [-2, 2] {
        let r = login(
            &w,
            json!({"username": "alice", "password": "alice-pw", "totp": oathtool(SECRET, offset)}),
        )
        .await;
        assert_eq!(r.status, 401, "offset {offset}: {}", r.text());
    }
    let r = login(
        &w,
        json!({"username": "alice", "password": "alice-pw", "totp": oathtool(SECRET, -1)}),
    )
    .await;
    assert_eq!(r.status, 200, "previous step: {}", r.text());
    let r = login(
        &w,
        json!({"username": "alice", "password": "alice-pw", "totp": oathtool(SECRET, 1)}),
    )
    .await;
    assert_eq!(r.status, 200, "next step: {}", r.text());
    // The current step is before the last one used now.
    let r = login(
        &w,
        json!({"username": "alice", "password": "alice-pw", "totp": oathtool(SECRET, 0)}),
    )
    .await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn wrong_codes_count_for_the_lockout() {
    let (_d, w) = start(|l| {
        l.max_failures(3)
            .window("5m")
            .first_delay("1m")
            .max_delay("1m")
    })
    .await;
    early_in_step();
    let right = oathtool(SECRET, 0);
    let wrong = if right == "000000" {
        "111111"
    } else {
        "000000"
    };
    for _ in 0..3 {
        let r = login(
            &w,
            json!({"username": "alice", "password": "alice-pw", "totp": wrong}),
        )
        .await;
        assert_eq!(r.status, 401, "{}", r.text());
        assert_eq!(r.json()["error"], "Invalid code.");
    }
    // Locked now: even the right code is not checked.
    let r = login(
        &w,
        json!({"username": "alice", "password": "alice-pw", "totp": right}),
    )
    .await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(r.header("retry-after").is_some());
    let log = audit(&w);
    assert_eq!(log.matches("wrong second factor").count(), 3, "{log}");
    assert!(log.contains("\"lockout\""), "{log}");
}

#[tokio::test]
async fn basic_is_refused_and_api_tokens_keep_working() {
    let (_d, w) = start(|l| l).await;
    use base64::Engine;
    let basic = |u: &str, p: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
        )
    };
    let r = get(
        &w.url("/warden/me"),
        &[("authorization", &basic("alice", "alice-pw"))],
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(
        r.json()["error"].as_str().unwrap().contains("API token"),
        "{}",
        r.text()
    );
    // A role requiring a second factor refuses Basic before enrolment too.
    let r = get(
        &w.url("/warden/me"),
        &[("authorization", &basic("dave", "dave-pw"))],
    )
    .await;
    assert_eq!(r.status, 401);
    assert!(r.text().contains("API token"));
    let r = get(
        &w.url("/warden/me"),
        &[("authorization", &basic("bob", "bob-pw"))],
    )
    .await;
    assert_eq!(r.status, 200, "others keep Basic");
    // A wrong password stays a plain failure.
    let r = get(
        &w.url("/warden/me"),
        &[("authorization", &basic("alice", "x"))],
    )
    .await;
    assert_eq!(r.status, 401);
    assert!(!r.text().contains("API token"));

    early_in_step();
    let r = login(
        &w,
        json!({"username": "alice", "password": "alice-pw", "totp": oathtool(SECRET, 0)}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let cookie = cookie_header(r.json()["jwt_token"].as_str().unwrap());
    let r = post_json(
        &w.url("/warden/token"),
        &[("cookie", &cookie)],
        &json!({"label": "script", "ttl": "1h"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let token = r.json()["token"].as_str().unwrap().to_string();
    let me = get(
        &w.url("/warden/me"),
        &[("authorization", &format!("Bearer {token}"))],
    )
    .await;
    assert_eq!(me.status, 200, "{}", me.text());
    assert_eq!(me.json()["user"], "alice");
}

#[tokio::test]
async fn a_role_requirement_leads_through_enrolment_then_recovery_codes_work_once() {
    let (_d, w) = start(|l| l).await;
    let r = login(&w, json!({"username": "dave", "password": "dave-pw"})).await;
    assert_eq!(r.status, 401, "{}", r.text());
    let v = r.json();
    assert_eq!(v["totp_required"], true);
    assert_eq!(v["enrolment_required"], true);
    let secret = v["secret"].as_str().unwrap().to_string();
    let ticket = v["ticket"].as_str().unwrap().to_string();
    assert!(
        v["otpauth_uri"].as_str().unwrap().starts_with(&format!(
            "otpauth://totp/comfy%2Dwarden%3Adave?secret={secret}&"
        )),
        "{v}"
    );
    // Not enrolled: the wrong code gives the same secret back to try again.
    early_in_step();
    let right = oathtool(&secret, 0);
    let wrong = if right == "000000" {
        "111111"
    } else {
        "000000"
    };
    let r = second_step(&w, &ticket, wrong).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["secret"], secret.as_str());
    let r = second_step(&w, &ticket, &right).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let codes: Vec<String> = r.json()["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    assert_eq!(codes.len(), 10);
    let jwt = r.json()["jwt_token"].as_str().unwrap().to_string();
    assert_eq!(
        get(&w.url("/warden/me"), &[("cookie", &cookie_header(&jwt))])
            .await
            .status,
        200
    );
    let state = std::fs::read_to_string(w.path("state/totp/dave.json")).unwrap();
    for c in &codes {
        assert!(
            !state.contains(c.as_str()),
            "recovery codes are stored hashed"
        );
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(w.path("state/totp/dave.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // Confirming again with the same ticket does not enrol twice.
    let r = second_step(&w, &ticket, &oathtool(&secret, 1)).await;
    assert_eq!(r.status, 409, "{}", r.text());

    // Now a code is asked for; a recovery code works in its place, once.
    let r = login(&w, json!({"username": "dave", "password": "dave-pw"})).await;
    assert_eq!(r.status, 401);
    assert!(r.json().get("enrolment_required").is_none());
    let r = login(
        &w,
        json!({"username": "dave", "password": "dave-pw", "totp": codes[2].to_uppercase()}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["second_factor"], "recovery_code");
    assert_eq!(r.json()["recovery_codes_left"], 9);
    let r = login(
        &w,
        json!({"username": "dave", "password": "dave-pw", "totp": codes[2]}),
    )
    .await;
    assert_eq!(r.status, 401, "a recovery code works once");
    assert!(audit(&w).contains("recovery_code_used"));

    // An administrator removes dave's second factor: he enrols again at the next sign-in.
    let root = support::http::login(&w.url(""), "root", "root-pw").await;
    let admin = [("cookie", cookie_header(&root))];
    let admin: Vec<(&str, &str)> = admin.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = get(&w.url("/warden/admin/users/dave/totp"), &admin).await;
    assert_eq!(r.json()["secret"], "state_dir", "{}", r.text());
    assert_eq!(r.json()["recovery_codes_left"], 9);
    let r = http::send(
        ::http::Method::DELETE,
        &w.url("/warden/admin/users/dave/totp"),
        &admin,
        http::full(""),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["removed"], true);
    assert!(audit(&w).contains("totp_reset"));
    // Not enrolled while the role requires it: the session from before is refused too.
    assert_eq!(
        get(&w.url("/warden/me"), &[("cookie", &cookie_header(&jwt))])
            .await
            .status,
        401
    );
    let r = login(&w, json!({"username": "dave", "password": "dave-pw"})).await;
    assert_eq!(r.json()["enrolment_required"], true, "{}", r.text());
    // Only administrators may.
    let bob = support::http::login(&w.url(""), "bob", "bob-pw").await;
    let r = http::send(
        ::http::Method::DELETE,
        &w.url("/warden/admin/users/alice/totp"),
        &[("cookie", &cookie_header(&bob))],
        http::full(""),
    )
    .await;
    assert_eq!(r.status, 403);
}

/// Runs `comfy-warden user <args> --config DIR`, writing `input` to its stdin as prompted
/// by `answer` (called with each line of output, returns what to type, if anything).
fn user_cmd(
    dir: &Path,
    args: &[&str],
    mut answer: impl FnMut(&str) -> Option<String>,
) -> (bool, String) {
    let mut child = Command::new(binary())
        .arg("user")
        .args(args)
        .arg("--config")
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut all = String::new();
    let mut line = String::new();
    while out.read_line(&mut line).unwrap() > 0 {
        all.push_str(&line);
        if let Some(typed) = answer(&line) {
            // The command may have ended already (then the pipe is closed).
            let _ = writeln!(stdin, "{typed}");
        }
        line.clear();
    }
    drop(stdin);
    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    (status.success(), all + &err)
}

#[tokio::test]
async fn enrolment_by_the_cli_while_the_daemon_runs() {
    let (_d, w) = start(|l| l).await;
    let dir = w.dir.path().to_path_buf();
    let mut key: Option<String> = None;
    let mut typed = 0;
    early_in_step();
    let (ok, out) = user_cmd(&dir, &["totp", "carol"], |line| {
        if let Some(k) = key
            .as_ref()
            .filter(|_| line.trim().is_empty() && typed == 0)
        {
            typed += 1;
            // A wrong code first: asked again, nothing changes.
            let right = oathtool(k, 0);
            return Some(if right == "000000" {
                "111111".into()
            } else {
                "000000".into()
            });
        }
        if key.is_none() && line.starts_with("  ") && line.trim().len() == 32 {
            key = Some(line.trim().to_string());
        }
        if line.contains("try again") {
            return key.as_deref().map(|k| oathtool(k, 0));
        }
        None
    });
    assert!(ok, "{out}");
    assert!(
        out.contains("otpauth://totp/comfy%2Dwarden%3Acarol?secret="),
        "{out}"
    );
    assert!(out.contains('█'), "a QR code in the terminal: {out}");
    assert!(out.contains("try again"), "{out}");
    let codes: Vec<&str> = out
        .lines()
        .map(str::trim)
        .filter(|l| l.len() == 19 && l.matches('-').count() == 3)
        .collect();
    assert_eq!(codes.len(), 10, "{out}");
    let key = key.unwrap();
    let mode = {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(dir.join("state/totp/carol.json"))
            .unwrap()
            .permissions()
            .mode()
    };
    assert_eq!(mode & 0o777, 0o600);
    assert!(audit(&w).contains("totp_enrolled"));

    // The running daemon asks for a code at once; the code typed into the CLI is used up.
    let r = login(&w, json!({"username": "carol", "password": "carol-pw"})).await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.json()["totp_required"], true);
    let r = login(
        &w,
        json!({"username": "carol", "password": "carol-pw", "totp": oathtool(&key, 1)}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = login(
        &w,
        json!({"username": "carol", "password": "carol-pw", "totp": codes[0]}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());

    // Enrolling twice is refused; without a right code nothing is written.
    let (ok, out) = user_cmd(&dir, &["totp", "carol"], |_| None);
    assert!(!ok && out.contains("already has a second factor"), "{out}");
    let (ok, out) = user_cmd(&dir, &["show", "carol"], |_| None);
    assert!(
        ok && out.contains("TOTP (enrolled") && out.contains("9 recovery codes left"),
        "{out}"
    );
    let (ok, out) = user_cmd(&dir, &["totp", "alice"], |_| None);
    assert!(!ok && out.contains("totp_secret_file"), "{out}");
    let (ok, out) = user_cmd(&dir, &["totp", "bob"], |l| {
        (l.trim().is_empty() || l.contains("try again")).then(|| "nope".into())
    });
    assert!(!ok, "{out}");
    assert!(!dir.join("state/totp/bob.json").exists());

    // totp-reset: the password alone signs in again.
    let (ok, out) = user_cmd(&dir, &["totp-reset", "carol"], |_| None);
    assert!(ok, "{out}");
    assert!(audit(&w).contains("\"totp_reset\""));
    let r = login(&w, json!({"username": "carol", "password": "carol-pw"})).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn a_bad_secret_file_is_a_configuration_error_that_never_shows_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    TestConfig::new("http://127.0.0.1:8188").write(dir.path());
    let check = |users: &str, secret: Option<&str>| {
        std::fs::write(dir.path().join("users.toml"), users).unwrap();
        if let Some(s) = secret {
            std::fs::write(dir.path().join("alice.totp"), s).unwrap();
        }
        let out = Command::new(binary())
            .args(["check", "--config"])
            .arg(dir.path())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let users = user_block(
        "alice",
        "alice-pw",
        "\"user\"",
        "totp_secret_file = \"alice.totp\"",
    );
    let (ok, out) = check(&users, Some("not-base32-0189!"));
    assert!(!ok, "{out}");
    assert!(
        out.contains("users.alice.totp_secret_file") && out.contains("base32"),
        "{out}"
    );
    assert!(
        !out.contains("not-base32-0189!"),
        "the value is never shown: {out}"
    );
    let (ok, out) = check(&users, Some("JBSWY3DP"));
    assert!(!ok && out.contains("too short"), "{out}");
    let (ok, out) = check(&users, Some(&format!("{}\n", SECRET.to_lowercase())));
    assert!(ok, "{out}");
    let _ = std::fs::remove_file(dir.path().join("alice.totp"));
    let (ok, out) = check(&users, None);
    assert!(!ok && out.contains("cannot read"), "{out}");
    // A role's require_totp must be a boolean.
    std::fs::write(
        dir.path().join("roles.toml"),
        "[roles.x]\npermissions = []\nrequire_totp = \"yes\"\n",
    )
    .unwrap();
    let cfg = TestConfig::new("http://127.0.0.1:8188").files(|f| f.roles("roles.toml"));
    std::fs::write(dir.path().join("warden.toml"), cfg.warden_toml()).unwrap();
    let (ok, out) = check(&user_block("bob", "bob-pw", "\"x\"", ""), None);
    assert!(!ok && out.contains("require_totp"), "{out}");
}
