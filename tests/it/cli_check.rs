//! `comfy-warden check`: the example configuration is valid; broken ones fail naming file and key.
use crate::support::config::{TestConfig, TestUser, phc};
use crate::support::harness::binary;
use std::process::Command;

fn check(dir: &std::path::Path) -> (bool, String) {
    let out = Command::new(binary())
        .arg("check")
        .arg("--config")
        .arg(dir)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// A valid configuration with one user.
fn valid() -> TestConfig {
    TestConfig::new("http://127.0.0.1:8188").user(TestUser::new("alice", "pw-alice", &["user"]))
}

/// A configuration directory holding `cfg`.
fn dir_with(cfg: &TestConfig) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    cfg.write(dir.path());
    dir
}

fn valid_dir() -> tempfile::TempDir {
    dir_with(&valid())
}

#[test]
fn examples_are_valid() {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let (ok, out) = check(&examples);
    assert!(ok, "{out}");
    assert!(
        out.contains("demo") && out.contains("http://127.0.0.1:8188"),
        "{out}"
    );
}

#[test]
fn plaintext_password_is_refused_without_echo() {
    let dir = valid_dir();
    std::fs::write(
        dir.path().join("users.toml"),
        "[users.alice]\nroles = [\"user\"]\npassword_hash = \"hunter2-secret\"\n",
    )
    .unwrap();
    let (ok, out) = check(dir.path());
    assert!(!ok);
    assert!(out.contains("users.toml line 3"), "{out}");
    assert!(out.contains("users.alice.password_hash"), "{out}");
    assert!(out.contains("plaintext"), "{out}");
    assert!(
        !out.contains("hunter2-secret"),
        "the refused value must not be printed: {out}"
    );
}

#[test]
fn unknown_key_is_named() {
    let dir = dir_with(&valid().unchecked_key("upstream.urll", "x"));
    let (ok, out) = check(dir.path());
    assert!(!ok);
    assert!(out.contains("warden.toml line"), "{out}");
    assert!(out.contains("upstream.urll"), "{out}");
    assert!(out.contains("unknown field"), "{out}");
}

#[test]
fn bad_duration_is_named() {
    let dir = dir_with(&valid().upstream(|u| u.connect_timeout("2 fortnights")));
    let (ok, out) = check(dir.path());
    assert!(!ok);
    assert!(out.contains("warden.toml line"), "{out}");
    assert!(out.contains("upstream.connect_timeout"), "{out}");
    assert!(out.contains("invalid duration"), "{out}");
}

#[test]
fn unknown_role_and_bad_user_name_are_named() {
    let dir = valid_dir();
    std::fs::write(
        dir.path().join("users.toml"),
        format!(
            "[users.alice]\npassword_hash = \"{}\"\nroles = [\"wizard\"]\n",
            phc("x")
        ),
    )
    .unwrap();
    let (ok, out) = check(dir.path());
    assert!(
        !ok && out.contains("unknown role \"wizard\"") && out.contains("line 3"),
        "{out}"
    );

    std::fs::write(
        dir.path().join("users.toml"),
        "[users.\"../evil\"]\nroles = []\n",
    )
    .unwrap();
    let (ok, out) = check(dir.path());
    assert!(!ok && out.contains("not a valid user name"), "{out}");
    assert!(
        out.contains("not starting with . or -"),
        "the whole rule is told: {out}"
    );
}

#[test]
fn plain_http_on_public_address_is_refused() {
    let dir = dir_with(&valid().listen("0.0.0.0:8080"));
    let (ok, out) = check(dir.path());
    assert!(
        !ok && out.contains("server.listen") && out.contains("loopback"),
        "{out}"
    );
}

#[test]
fn hash_password_reads_stdin() {
    use std::io::Write;
    let mut child = Command::new(binary())
        .arg("hash-password")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"s3cret\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let phc = String::from_utf8(out.stdout).unwrap();
    assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    let parsed = PasswordHash::new(phc.trim()).unwrap();
    assert!(
        argon2::Argon2::default()
            .verify_password(b"s3cret", &parsed)
            .is_ok()
    );
}

#[test]
fn guard_settings_are_checked_with_file_line_and_key() {
    type Change = fn(TestConfig) -> TestConfig;
    let cases: [(&str, Change, &str, &str, &str); 4] = [
        (
            "max_failures = 0",
            |c| c.lockout(|l| l.max_failures(0)),
            "max_failures = 0",
            "lockout.max_failures",
            "between 1 and",
        ),
        (
            "window = 0s",
            |c| c.lockout(|l| l.window("0s")),
            "window",
            "lockout.window",
            "at least",
        ),
        (
            "first_delay over max_delay",
            |c| c.lockout(|l| l.first_delay("10m").max_delay("1m")),
            "first_delay",
            "lockout.first_delay",
            "max_delay",
        ),
        (
            "an unknown key",
            |c| c.unchecked_key("lockout.bans_after", 3),
            "bans_after",
            "lockout",
            "unknown field",
        ),
    ];
    for (case, change, line, key, message) in cases {
        let cfg = change(valid());
        let text = cfg.warden_toml();
        let dir = dir_with(&cfg);
        let (ok, out) = check(dir.path());
        assert!(!ok, "{case}: {out}");
        let line_no = text
            .lines()
            .position(|l| l.contains(line))
            .map(|i| i + 1)
            .unwrap();
        assert!(
            out.contains(&format!("warden.toml line {line_no}")),
            "{case}: {out}"
        );
        assert!(out.contains(key) && out.contains(message), "{case}: {out}");
    }

    let dir = dir_with(&valid().server(|s| s.max_header_bytes(1024)));
    let (ok, out) = check(dir.path());
    assert!(!ok);
    assert!(
        out.contains("server.max_header_bytes") && out.contains("8192"),
        "{out}"
    );

    for (workers, ok_expected) in [(0, false), (1025, false), (3, true)] {
        let dir = dir_with(&valid().server(|s| s.workers(workers)));
        let (ok, out) = check(dir.path());
        assert_eq!(ok, ok_expected, "workers = {workers}: {out}");
        if ok {
            assert!(out.contains("workers     3"), "{out}");
        } else {
            assert!(
                out.contains("server.workers") && out.contains("between 1 and 1024"),
                "{out}"
            );
        }
    }

    let dir = valid_dir();
    std::fs::write(
        dir.path().join("ip-rules.toml"),
        "unban = [\"10.0.0.300\"]\n",
    )
    .unwrap();
    let (ok, out) = check(dir.path());
    assert!(!ok);
    assert!(
        out.contains("ip-rules.toml line 1") && out.contains("unban"),
        "{out}"
    );

    let dir = valid_dir();
    let path = dir.path().join("warden.toml");
    let text = format!(
        "{}\n[lockout]\nmax_failures = 3\nban_after = 10\nban_for = \"1h\"\n",
        std::fs::read_to_string(&path).unwrap()
    );
    std::fs::write(&path, text).unwrap();
    let (ok, out) = check(dir.path());
    assert!(ok, "{out}");
    assert!(out.contains("ban after 10 failures for 1h"), "{out}");
}

/// A relative `password_hash_file` is read from the folder of the users file that names it.
#[test]
fn relative_password_hash_file_is_beside_its_users_file() {
    let cfg = valid().files(|f| f.users("people/users.toml"));
    let text = cfg.warden_toml();
    assert!(text.contains("people/users.toml"), "{text}");
    let dir = dir_with(&cfg);
    std::fs::create_dir(dir.path().join("people")).unwrap();
    std::fs::write(
        dir.path().join("people/users.toml"),
        "[users.alice]\nroles = [\"user\"]\npassword_hash_file = \"alice.phc\"\n",
    )
    .unwrap();
    let (ok, out) = check(dir.path());
    assert!(!ok, "the hash file does not exist yet: {out}");
    assert!(out.contains("people/alice.phc"), "{out}");
    std::fs::write(dir.path().join("people/alice.phc"), phc("pw-alice")).unwrap();
    let (ok, out) = check(dir.path());
    assert!(ok, "{out}");
}
