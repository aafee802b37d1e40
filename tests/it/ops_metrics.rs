//! Observability over real sockets: Prometheus metrics on `/warden/metrics` (admins only) and on
//! the unauthenticated metrics listener, counting sign-ins, requests by route class and status,
//! ComfyUI latency, WebSockets and the last reload; the audit file (one JSON object per security
//! event); and no password or token in any log.
use crate::support::config::{TestConfig, TestUser};
use crate::support::double::Double;
use crate::support::harness::Warden;
use crate::support::http::{basic, cookie_header, get, login, post_json};
use crate::support::ws;

const ALICE_PW: &str = "alice-correct-horse";
const WRONG_PW: &str = "alice-wrong-battery-staple";
const ADMIN_PW: &str = "admin-pw-9f3e1";

fn metric(text: &str, line_start: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn metrics_audit_file_and_no_secrets_in_logs() {
    let d = Double::start().await;
    let cfg = TestConfig::new(&d.url())
        .users(vec![
            TestUser::new("alice", ALICE_PW, &["user"]),
            TestUser::new("root", ADMIN_PW, &["admin"]),
        ])
        .server(|s| s.metrics_listen("127.0.0.1:0"))
        .log(|l| l.audit_file("audit.log"));
    let w = Warden::start(&cfg);
    let metrics_addr = w.log_addr("serving metrics on ");

    // One failed sign-in (JSON), one failed HTTP Basic, then successful ones.
    let r = post_json(
        &w.url("/login"),
        &[],
        &serde_json::json!({"username": "alice", "password": WRONG_PW}),
    )
    .await;
    assert_eq!(r.status, 401);
    let basic_auth = basic("alice", WRONG_PW);
    let r = get(&w.url("/api/embeddings"), &[("authorization", &basic_auth)]).await;
    assert_eq!(r.status, 401);
    let alice_token = login(&w.url(""), "alice", ALICE_PW).await;
    let alice = cookie_header(&alice_token);
    let root = cookie_header(&login(&w.url(""), "root", ADMIN_PW).await);
    assert_eq!(
        get(&w.url("/api/embeddings"), &[("cookie", &alice)])
            .await
            .status,
        200
    );
    let mut sock = ws::connect(w.addr, "/ws", &[("cookie", &alice)])
        .await
        .unwrap();
    assert_eq!(
        ws::next_json(&mut sock, 10).await.unwrap()["type"],
        "status"
    );

    // /warden/metrics: 401 without identity, 403 without admin, 200 for admins.
    assert_eq!(get(&w.url("/warden/metrics"), &[]).await.status, 401);
    assert_eq!(
        get(&w.url("/warden/metrics"), &[("cookie", &alice)])
            .await
            .status,
        403
    );
    let m = get(&w.url("/warden/metrics"), &[("cookie", &root)]).await;
    assert_eq!(m.status, 200);
    assert!(
        m.header("content-type")
            .unwrap()
            .contains("openmetrics-text"),
        "{:?}",
        m.header("content-type")
    );
    let text = m.text();
    let expect = [
        ("comfy_warden_logins_total{result=\"failed\"}", 2.0),
        ("comfy_warden_logins_total{result=\"ok\"}", 2.0),
        (
            "comfy_warden_requests_total{route=\"login\",status=\"401\"}",
            1.0,
        ),
        (
            "comfy_warden_requests_total{route=\"login\",status=\"200\"}",
            2.0,
        ),
        (
            "comfy_warden_requests_total{route=\"info\",status=\"200\"}",
            1.0,
        ),
        (
            "comfy_warden_requests_total{route=\"metrics\",status=\"403\"}",
            1.0,
        ),
        ("comfy_warden_websockets_active", 1.0),
        ("comfy_warden_sessions_active", 2.0),
        ("comfy_warden_config_last_reload_success", 1.0),
        (
            "comfy_warden_audit_events_total{event=\"login_failed\"}",
            1.0,
        ),
        (
            "comfy_warden_audit_events_total{event=\"basic_failed\"}",
            1.0,
        ),
    ];
    for (name, want) in expect {
        assert_eq!(
            metric(&text, &format!("{name} ")),
            Some(want),
            "{name} in\n{text}"
        );
    }
    assert!(
        metric(&text, "comfy_warden_upstream_response_seconds_count ").unwrap() >= 1.0,
        "{text}"
    );
    assert!(
        metric(
            &text,
            "comfy_warden_config_last_reload_success_timestamp_seconds "
        )
        .unwrap()
            > 1.6e9,
        "{text}"
    );
    assert!(text.trim_end().ends_with("# EOF"), "{text}");

    // The metrics listener needs no sign-in and serves nothing else.
    let m = get(&format!("http://{metrics_addr}/metrics"), &[]).await;
    assert_eq!(m.status, 200);
    assert!(
        m.text().contains("comfy_warden_logins_total"),
        "{}",
        m.text()
    );
    let other = get(
        &format!("http://{metrics_addr}/queue"),
        &[("cookie", &alice)],
    )
    .await;
    assert_eq!(other.status, 404);

    // The audit file: one JSON object per line, with the common keys.
    let audit_path = w.path("state/audit.log");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let audit = loop {
        let a = std::fs::read_to_string(&audit_path).unwrap_or_default();
        if a.contains("\"login_ok\"") || std::time::Instant::now() > deadline {
            break a;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let lines: Vec<serde_json::Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let failed = lines
        .iter()
        .find(|l| l["event"] == "login_failed")
        .unwrap_or_else(|| panic!("no login_failed in {audit}"));
    assert_eq!(failed["user"], "alice");
    assert_eq!(failed["client_ip"], "127.0.0.1");
    assert_eq!(failed["route"], "/login");
    assert_eq!(failed["reason"], "invalid credentials");
    assert!(failed["time"].as_str().unwrap().ends_with('Z'));
    for key in [
        "time",
        "event",
        "user",
        "client_ip",
        "route",
        "reason",
        "message",
    ] {
        assert!(
            lines.iter().all(|l| l.get(key).is_some()),
            "every line has {key}: {audit}"
        );
    }
    assert!(lines.iter().any(|l| l["event"] == "basic_failed"));
    assert!(
        lines
            .iter()
            .any(|l| l["event"] == "route_denied" && l["user"] == "alice"),
        "{audit}"
    );
    assert!(
        lines.iter().all(|l| l["level"] != "TRACE"),
        "only audit events: {audit}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&audit_path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    // No password, Basic credential or token anywhere in the logs.
    let log = w.log();
    for (what, secret) in [
        ("password", ALICE_PW),
        ("wrong password", WRONG_PW),
        ("admin password", ADMIN_PW),
        ("Basic credentials", basic_auth.trim_start_matches("Basic ")),
        ("session token", alice_token.as_str()),
    ] {
        assert!(!log.contains(secret), "{what} in the log:\n{log}");
        assert!(
            !audit.contains(secret),
            "{what} in the audit file:\n{audit}"
        );
    }
    // Nor a recognisable part of the token (its signature).
    let signature = alice_token.rsplit('.').next().unwrap();
    assert!(!log.contains(signature) && !audit.contains(signature));
}
