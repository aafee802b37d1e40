//! Brute-force lockout: 429 with Retry-After while locked (login JSON, form and HTTP Basic),
//! no password hashed while locked, counters per (user, address), bans after N failures, expiry,
//! the unban list, the snapshot across a restart, a corrupted snapshot, the admin endpoints and
//! the `bans` / `unban` commands against a running and a stopped daemon.
//! Two client addresses are simulated from loopback with `trusted_proxies` and X-Forwarded-For.
use crate::support;
use crate::support::config::{IpRules, Lockout, TestConfig};
use crate::support::double::Double;
use crate::support::harness::{Warden, binary};
use crate::support::http::{self, basic, bearer, get, login, login_answer, post, try_get};
use crate::support::poll::eventually;
use crate::support::users::users;
use serde_json::Value;

/// A daemon behind a "proxy" on loopback (X-Forwarded-For names the client) with `lockout`.
async fn start(
    lockout: impl FnOnce(Lockout) -> Lockout,
    ip_rules: impl FnOnce(IpRules) -> IpRules,
) -> (Double, Warden) {
    let d = Double::start().await;
    let cfg = TestConfig::new(&d.url())
        .users(users())
        .server(|s| s.trusted_proxies(&["127.0.0.1/32"]))
        .lockout(lockout)
        .ip_rules(ip_rules);
    let w = Warden::start(&cfg);
    (d, w)
}

async fn sign_in(w: &Warden, user: &str, password: &str, from: &str) -> http::Resp {
    login_answer(&w.url(""), user, password, &[("x-forwarded-for", from)]).await
}

async fn admin(w: &Warden) -> String {
    bearer(&login(&w.url(""), "root", "root-pw").await)
}

async fn guard(w: &Warden, admin: &str) -> Value {
    let r = get(&w.url("/warden/admin/guard"), &[("authorization", admin)]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

fn retry_after(r: &http::Resp) -> u64 {
    r.header("retry-after")
        .unwrap_or_else(|| panic!("no Retry-After: {:?}", r.headers))
        .parse()
        .unwrap()
}

async fn health_from(w: &Warden, from: &str) -> u16 {
    match try_get(&w.url("/warden/health"), &[("x-forwarded-for", from)]).await {
        Ok(r) => r.status.as_u16(),
        Err(_) => 0,
    }
}

fn cli(args: &[&str], dir: &std::path::Path) -> (bool, String, String) {
    let out = std::process::Command::new(binary())
        .args(args)
        .arg("--config")
        .arg(dir)
        .env_remove("COMFY_WARDEN_CONFIG")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn locked_sign_ins_get_429_with_retry_after() {
    let (_d, w) = start(
        |l| {
            l.max_failures(3)
                .window("5m")
                .first_delay("1m")
                .max_delay("2m")
        },
        |r| r,
    )
    .await;
    // Success clears the user's counter at that address: 2 + 2 failures never lock.
    let me = "198.51.100.1";
    for _ in 0..2 {
        assert_eq!(sign_in(&w, "alice", "wrong", me).await.status, 401);
    }
    assert_eq!(sign_in(&w, "alice", "alice-pw", me).await.status, 200);
    for _ in 0..2 {
        assert_eq!(sign_in(&w, "alice", "wrong", me).await.status, 401);
    }
    assert_eq!(sign_in(&w, "alice", "alice-pw", me).await.status, 200);

    for _ in 0..3 {
        assert_eq!(sign_in(&w, "alice", "wrong", me).await.status, 401);
    }
    // Even the right password waits.
    let r = sign_in(&w, "alice", "alice-pw", me).await;
    assert_eq!(r.status, 429, "{}", r.text());
    let secs = retry_after(&r);
    assert!((1..=60).contains(&secs), "Retry-After {secs}");
    assert_eq!(
        r.json()["error"],
        format!("Too many failed sign-ins. Try again in {secs} seconds.")
    );

    let form = post(
        &w.url("/login"),
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("x-forwarded-for", me),
        ],
        "username=alice&password=alice-pw",
    )
    .await;
    assert_eq!(form.status, 429);
    retry_after(&form);
    assert!(
        form.text()
            .contains("Too many failed sign-ins. Try again in")
    );
    assert!(form.text().contains("<form"), "the login page");

    let b = get(
        &w.url("/warden/me"),
        &[
            ("authorization", &basic("alice", "alice-pw")),
            ("x-forwarded-for", me),
        ],
    )
    .await;
    assert_eq!(b.status, 429, "HTTP Basic is locked too");
    retry_after(&b);
    // The log is read from the daemon's stderr in the background: wait for the line.
    assert!(w.wait_log("event=\"lockout\"", 0), "{}", w.log());
}

#[tokio::test]
async fn no_password_is_hashed_while_locked() {
    let (_d, w) = start(
        |l| {
            l.max_failures(3)
                .window("5m")
                .first_delay("1m")
                .max_delay("1m")
        },
        |r| r,
    )
    .await;
    let root = admin(&w).await;
    let me = "198.51.100.1";
    let before = guard(&w, &root).await["password_hashes"].as_u64().unwrap();
    for _ in 0..3 {
        assert_eq!(sign_in(&w, "alice", "wrong", me).await.status, 401);
    }
    let locked = guard(&w, &root).await;
    assert_eq!(locked["password_hashes"].as_u64().unwrap(), before + 3);
    let entries = locked["locked"].as_array().unwrap();
    assert!(
        entries.iter().any(|e| e["ip"] == me
            && e["user"] == "alice"
            && e["failures"] == 3
            && e["retry_at"].as_u64().is_some()),
        "{locked}"
    );

    for i in 0..10 {
        let pw = if i % 2 == 0 { "alice-pw" } else { "wrong" };
        assert_eq!(sign_in(&w, "alice", pw, me).await.status, 429);
        let r = get(
            &w.url("/warden/me"),
            &[
                ("authorization", &basic("alice", pw)),
                ("x-forwarded-for", me),
            ],
        )
        .await;
        assert_eq!(r.status, 429);
    }
    let after = guard(&w, &root).await["password_hashes"].as_u64().unwrap();
    assert_eq!(after, before + 3, "nothing was hashed while locked");
}

#[tokio::test]
async fn lockout_is_per_user_and_address() {
    let (_d, w) = start(
        |l| {
            l.max_failures(3)
                .window("5m")
                .first_delay("1m")
                .max_delay("1m")
        },
        |r| r,
    )
    .await;
    let root = admin(&w).await;
    let (a, b) = ("198.51.100.1", "198.51.100.2");
    for _ in 0..3 {
        assert_eq!(sign_in(&w, "alice", "wrong", a).await.status, 401);
    }
    assert_eq!(sign_in(&w, "alice", "alice-pw", a).await.status, 429);
    assert_eq!(
        sign_in(&w, "alice", "alice-pw", b).await.status,
        200,
        "alice is not locked out from another address"
    );
    assert_eq!(
        sign_in(&w, "bob", "bob-pw", a).await.status,
        200,
        "bob is not locked out by alice's failures"
    );
    assert_eq!(sign_in(&w, "alice", "alice-pw", a).await.status, 429);

    // Invalid tokens are not password guesses.
    let c = "198.51.100.3";
    for i in 0..20 {
        let h = if i % 2 == 0 {
            ("authorization", "Bearer not.a.jwt".to_string())
        } else {
            ("cookie", "comfy_warden_session=forged".to_string())
        };
        let r = get(&w.url("/api/queue"), &[(h.0, &h.1), ("x-forwarded-for", c)]).await;
        assert_eq!(r.status, 401);
    }
    let g = guard(&w, &root).await;
    assert!(
        !g["locked"].as_array().unwrap().iter().any(|e| e["ip"] == c),
        "{g}"
    );
    assert_eq!(sign_in(&w, "alice", "alice-pw", c).await.status, 200);

    // HTTP Basic failures count like login failures.
    let d = "198.51.100.4";
    for _ in 0..3 {
        let r = get(
            &w.url("/warden/me"),
            &[
                ("authorization", &basic("alice", "wrong")),
                ("x-forwarded-for", d),
            ],
        )
        .await;
        assert_eq!(r.status, 401);
    }
    assert_eq!(sign_in(&w, "alice", "alice-pw", d).await.status, 429);

    // An address guessing many names is slowed down as a whole (4 × max_failures).
    let e = "198.51.100.5";
    for i in 0..12 {
        assert_eq!(
            sign_in(&w, &format!("nobody{i}"), "wrong", e).await.status,
            401
        );
    }
    assert_eq!(sign_in(&w, "bob", "bob-pw", e).await.status, 429);
    assert_eq!(sign_in(&w, "bob", "bob-pw", b).await.status, 200);
}

#[tokio::test]
async fn ban_after_n_failures_and_the_unban_list() {
    let (_d, w) = start(
        |l| l.max_failures(10).ban_after(4).ban_for("1h"),
        |r| r.unban(&["198.51.100.6"]),
    )
    .await;
    let root = admin(&w).await;
    let bad = "198.51.100.5";
    for i in 0..4 {
        assert_eq!(
            sign_in(&w, &format!("u{i}"), "wrong", bad).await.status,
            401
        );
    }
    let r = get(&w.url("/warden/health"), &[("x-forwarded-for", bad)]).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.text(), "Forbidden\n", "a bare 403");
    assert_eq!(sign_in(&w, "alice", "alice-pw", bad).await.status, 403);
    let g = guard(&w, &root).await;
    let now = support::http::unix_now();
    let bans = g["bans"].as_array().unwrap();
    assert_eq!(bans.len(), 1, "{g}");
    assert_eq!(bans[0]["ip"], bad);
    let until = bans[0]["until"].as_u64().unwrap();
    assert!(
        until > now + 3000 && until <= now + 3700,
        "{until} vs {now}"
    );
    assert_eq!(health_from(&w, "198.51.100.50").await, 200);
    assert!(w.log().contains("ip_banned"), "{}", w.log());

    // Listed in unban: never banned.
    let spared = "198.51.100.6";
    for i in 0..6 {
        assert_eq!(
            sign_in(&w, &format!("u{i}"), "wrong", spared).await.status,
            401
        );
    }
    assert_eq!(health_from(&w, spared).await, 200);

    // Adding the banned address to the unban list lifts its ban on reload.
    w.replace_file(
        "ip-rules.toml",
        "unban = [\"198.51.100.6\", \"198.51.100.0/28\"]\n",
    );
    eventually("the reload to lift the ban", || async {
        health_from(&w, bad).await == 200
    })
    .await;
    assert!(
        guard(&w, &root).await["bans"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn locks_and_bans_expire() {
    let (_d, w) = start(
        |l| {
            l.max_failures(2)
                .window("10s")
                .first_delay("1s")
                .max_delay("1s")
        },
        |r| r,
    )
    .await;
    let root = admin(&w).await;
    let a = "198.51.100.7";
    for user in ["alice", "bob"] {
        for _ in 0..2 {
            assert_eq!(sign_in(&w, user, "wrong", a).await.status, 401);
        }
    }
    let is_locked = |g: &Value, user: &str| {
        g["locked"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["ip"] == a && e["user"] == user)
    };
    let g = guard(&w, &root).await;
    assert!(is_locked(&g, "alice") && is_locked(&g, "bob"), "{g}");
    eventually("alice's delay to pass", || async {
        sign_in(&w, "alice", "alice-pw", a).await.status == 200
    })
    .await;
    eventually("bob's failures to leave the window", || async {
        !is_locked(&guard(&w, &root).await, "bob")
    })
    .await;
    drop(w);

    // A long window (so the failures surely add up) and a short ban.
    let (_d, w) = start(
        |l| l.max_failures(10).window("1h").ban_after(3).ban_for("2s"),
        |r| r,
    )
    .await;
    let root = admin(&w).await;
    let b = "198.51.100.8";
    let mark = w.log_len();
    for i in 0..3 {
        assert_eq!(sign_in(&w, &format!("u{i}"), "wrong", b).await.status, 401);
    }
    assert!(w.wait_log("ip_banned", mark), "banned:\n{}", w.log());
    eventually("the ban to expire", || async {
        health_from(&w, b).await == 200
    })
    .await;
    assert!(
        guard(&w, &root).await["bans"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn bans_and_counters_survive_a_restart() {
    let (_d, w) = start(
        |l| {
            l.max_failures(2)
                .window("1h")
                .max_delay("1h")
                .ban_after(5)
                .ban_for("1h")
        },
        |r| r,
    )
    .await;
    let bad = "198.51.100.9";
    for i in 0..5 {
        assert_eq!(
            sign_in(&w, &format!("u{i}"), "wrong", bad).await.status,
            401
        );
    }
    let other = "198.51.100.10";
    for _ in 0..2 {
        assert_eq!(sign_in(&w, "alice", "wrong", other).await.status, 401);
    }
    let root = admin(&w).await;
    let before = guard(&w, &root).await;
    assert_eq!(before["bans"].as_array().unwrap().len(), 1);

    let w = w.restart();
    assert_eq!(health_from(&w, bad).await, 403, "the ban is restored");
    assert_eq!(health_from(&w, other).await, 200);
    let root = admin(&w).await;
    let after = guard(&w, &root).await;
    assert_eq!(after["bans"], before["bans"], "same address, same expiry");
    assert!(
        after["locked"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["ip"] == other && e["user"] == "alice" && e["failures"] == 2),
        "the counter is restored: {after}"
    );
    // The next failure adds to the restored count (3, not 1).
    eventually("the restored delay to pass", || async {
        sign_in(&w, "alice", "wrong", other).await.status == 401
    })
    .await;
    let later = guard(&w, &root).await;
    assert!(
        later["locked"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["ip"] == other && e["user"] == "alice" && e["failures"] == 3),
        "{later}"
    );
}

#[tokio::test]
async fn a_corrupted_snapshot_is_moved_aside() {
    let d = Double::start().await;
    let dir = tempfile::tempdir().unwrap();
    TestConfig::new(&d.url()).users(users()).write(dir.path());
    std::fs::create_dir_all(dir.path().join("state")).unwrap();
    std::fs::write(dir.path().join("state/lockout.json"), b"{\"bans\": [oops").unwrap();
    let w = Warden::start_in(dir, &[]);
    assert!(
        w.wait_log("snapshot is corrupted", 0),
        "no warning:\n{}",
        w.log()
    );
    assert!(w.log().contains("lockout.json"));
    let aside: Vec<String> = std::fs::read_dir(w.path("state"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        aside.iter().any(|n| n.starts_with("lockout.corrupt-")),
        "{aside:?}"
    );
    assert_eq!(get(&w.url("/warden/health"), &[]).await.status, 200);
    assert_eq!(
        login(&w.url(""), "alice", "alice-pw")
            .await
            .split('.')
            .count(),
        3
    );
}

#[tokio::test]
async fn admin_endpoints_need_the_admin_permission() {
    let (_d, w) = start(|l| l.max_failures(10).ban_after(2).ban_for("1h"), |r| r).await;
    let root = admin(&w).await;
    let alice = bearer(&login(&w.url(""), "alice", "alice-pw").await);
    assert_eq!(get(&w.url("/warden/admin/guard"), &[]).await.status, 401);
    assert_eq!(
        get(&w.url("/warden/admin/guard"), &[("authorization", &alice)])
            .await
            .status,
        403
    );
    let bad = "198.51.100.13";
    for i in 0..2 {
        sign_in(&w, &format!("u{i}"), "wrong", bad).await;
    }
    assert_eq!(health_from(&w, bad).await, 403);
    let url = w.url(&format!("/warden/admin/bans/{bad}"));
    let denied = http::send(
        ::http::Method::DELETE,
        &url,
        &[("authorization", &alice)],
        http::full(""),
    )
    .await;
    assert_eq!(denied.status, 403);
    assert_eq!(health_from(&w, bad).await, 403);
    let r = http::send(
        ::http::Method::DELETE,
        &url,
        &[("authorization", &root)],
        http::full(""),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["lifted"], true);
    assert_eq!(health_from(&w, bad).await, 200);
}

#[tokio::test]
async fn cli_bans_and_unban_against_a_running_then_stopped_daemon() {
    let (_d, w) = start(|l| l.max_failures(10).ban_after(2).ban_for("1h"), |r| r).await;
    let dir = w.dir.path().to_path_buf();
    let bad = "198.51.100.11";
    for i in 0..2 {
        sign_in(&w, &format!("u{i}"), "wrong", bad).await;
    }
    assert_eq!(health_from(&w, bad).await, 403);
    eventually("`bans` to list the address", || async {
        let (ok, out, err) = cli(&["bans"], &dir);
        assert!(ok, "{err}");
        out.contains(bad)
    })
    .await;

    let (ok, out, err) = cli(&["unban", bad], &dir);
    assert!(ok, "{out}{err}");
    assert!(out.contains("requested") && out.contains(bad), "{out}");
    eventually("the daemon to lift the ban", || async {
        health_from(&w, bad).await == 200
    })
    .await;
    eventually("`bans` to drop the address", || async {
        !cli(&["bans"], &dir).1.contains(bad)
    })
    .await;
    assert!(w.log().contains("ip_unbanned"), "{}", w.log());

    let (ok, _, err) = cli(&["unban", "not-an-address"], &dir);
    assert!(!ok, "refused");
    assert!(err.contains("not an IP address"), "{err}");

    // Stopped daemon: the snapshot is edited directly.
    let again = "198.51.100.12";
    for i in 0..2 {
        sign_in(&w, &format!("u{i}"), "wrong", again).await;
    }
    assert_eq!(health_from(&w, again).await, 403);
    let (status, tmp) = w.stop_keep_dir();
    assert!(status.success());
    let (ok, out, _) = cli(&["bans"], tmp.path());
    assert!(ok && out.contains(again), "{out}");
    let (ok, out, err) = cli(&["unban", again], tmp.path());
    assert!(ok, "{err}");
    assert!(
        out.contains("unbanned") && out.contains("no daemon"),
        "{out}"
    );
    assert!(!cli(&["bans"], tmp.path()).1.contains(again));
    let w = Warden::start_in(tmp, &[]);
    assert_eq!(health_from(&w, again).await, 200);
}
