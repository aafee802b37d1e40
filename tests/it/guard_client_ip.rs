//! The client IP over real sockets: forwarding headers are believed only from trusted proxies
//! (walked from the right), malformed ones fall back to the peer, IPv6 and IPv4-mapped
//! addresses, and a spoofed X-Forwarded-For neither escapes a ban nor enters an allow list.
//! The resolved address is observed in the `X-Forwarded-For` that ComfyUI (the double) receives
//! and through IP rules.
use crate::support;
use crate::support::config::TestConfig;
use crate::support::double::Double;
use crate::support::harness::Warden;
use crate::support::http::{bearer, get, login, post_json, try_get};
use crate::support::users::alice;

/// Sends one proxied request with `headers` and returns the X-Forwarded-For ComfyUI received.
async fn seen_by_comfy(d: &Double, w: &Warden, auth: &str, headers: &[(&str, &str)]) -> String {
    d.clear_received();
    let mut h = headers.to_vec();
    h.push(("authorization", auth));
    let r = get(&w.url("/api/embeddings"), &h).await;
    assert_eq!(r.status, 200, "{headers:?}: {}", r.text());
    let got = d.received_path("/api/embeddings");
    assert_eq!(got.len(), 1);
    got[0].header_all("x-forwarded-for").join(",").to_string()
}

/// alice's `authorization` header.
async fn alice_bearer(w: &Warden) -> String {
    bearer(&login(&w.url(""), "alice", "alice-pw").await)
}

/// Refused: the connection was closed on accept, or a bare 403.
fn assert_refused(r: &Result<support::http::Resp, String>, what: &str) {
    match r {
        Err(_) => {}
        Ok(r) => {
            assert_eq!(r.status, 403, "{what}: {}", r.text());
            assert_eq!(r.text(), "Forbidden\n", "{what}: a bare 403");
        }
    }
}

#[tokio::test]
async fn untrusted_peer_cannot_choose_its_address() {
    let d = Double::start().await;
    let cfg = TestConfig::new(&d.url())
        .user(alice())
        .ip_rules(|r| r.deny(&["6.6.6.6"]));
    let w = Warden::start(&cfg);
    let auth = alice_bearer(&w).await;
    for headers in [
        vec![("x-forwarded-for", "6.6.6.6")],
        vec![("x-forwarded-for", "198.51.100.7, 6.6.6.6")],
        vec![("forwarded", "for=6.6.6.6")],
        vec![("x-real-ip", "6.6.6.6"), ("x-forwarded-for", "10.0.0.1")],
    ] {
        assert_eq!(
            seen_by_comfy(&d, &w, &auth, &headers).await,
            "127.0.0.1",
            "{headers:?}"
        );
    }
}

#[tokio::test]
async fn trusted_chain_resolves_right_to_left() {
    let d = Double::start().await;
    let cfg = TestConfig::new(&d.url())
        .user(alice())
        .server(|s| s.trusted_proxies(&["127.0.0.1/32", "10.0.0.0/8"]));
    let w = Warden::start(&cfg);
    let auth = alice_bearer(&w).await;
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![], "127.0.0.1"),
        (vec![("x-forwarded-for", "198.51.100.7")], "198.51.100.7"),
        (
            vec![("x-forwarded-for", "6.6.6.6, 198.51.100.7")],
            "198.51.100.7",
        ),
        (
            vec![("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.0.0.2")],
            "198.51.100.7",
        ),
        (
            vec![
                ("x-forwarded-for", "6.6.6.6"),
                ("x-forwarded-for", "198.51.100.7"),
            ],
            "198.51.100.7",
        ),
        (vec![("x-forwarded-for", "10.9.9.9, 10.0.0.2")], "10.9.9.9"),
        (
            vec![("forwarded", "for=198.51.100.8;proto=https, for=10.0.0.3")],
            "198.51.100.8",
        ),
        (
            vec![("x-forwarded-for", "198.51.100.9:4711")],
            "198.51.100.9",
        ),
    ];
    for (headers, want) in cases {
        assert_eq!(
            seen_by_comfy(&d, &w, &auth, &headers).await,
            want,
            "{headers:?}"
        );
    }
}

#[tokio::test]
async fn ip_rules_apply_to_the_resolved_address() {
    let d = Double::start().await;
    let cfg = TestConfig::new(&d.url())
        .user(alice())
        .server(|s| s.trusted_proxies(&["127.0.0.1/32"]))
        .ip_rules(|r| r.deny(&["198.51.100.7"]));
    let w = Warden::start(&cfg);
    let auth = alice_bearer(&w).await;
    d.clear_received();
    for xff in ["198.51.100.7", "6.6.6.6, 198.51.100.7", "198.51.100.7:1234"] {
        let r = get(
            &w.url("/api/embeddings"),
            &[("x-forwarded-for", xff), ("authorization", &auth)],
        )
        .await;
        assert_eq!(r.status, 403, "{xff}");
        assert_eq!(r.text(), "Forbidden\n", "a bare 403 without detail");
    }
    assert!(
        d.received().is_empty(),
        "denied requests never reach ComfyUI"
    );
    assert_eq!(
        seen_by_comfy(
            &d,
            &w,
            &auth,
            &[("x-forwarded-for", "198.51.100.7, 198.51.100.8")]
        )
        .await,
        "198.51.100.8",
        "the client is the rightmost untrusted hop"
    );
}

#[tokio::test]
async fn malformed_forwarding_falls_back_to_the_peer() {
    let d = Double::start().await;
    let cfg = TestConfig::new(&d.url())
        .user(alice())
        .server(|s| s.trusted_proxies(&["127.0.0.1/32"]))
        .ip_rules(|r| r.deny(&["198.51.100.7"]));
    let w = Warden::start(&cfg);
    let auth = alice_bearer(&w).await;
    for headers in [
        vec![("x-forwarded-for", "198.51.100.7, not-an-ip")],
        vec![("x-forwarded-for", "not-an-ip, 198.51.100.7")],
        vec![("x-forwarded-for", "198.51.100.7,,")],
        vec![("x-forwarded-for", "")],
        vec![("forwarded", "for=unknown")],
        vec![("forwarded", "for=198.51.100.7, by=10.0.0.1")],
    ] {
        assert_eq!(
            seen_by_comfy(&d, &w, &auth, &headers).await,
            "127.0.0.1",
            "{headers:?}: a broken header must not pick the address"
        );
    }
}

fn ipv6_loopback_available() -> bool {
    std::net::TcpListener::bind("[::1]:0").is_ok()
}

#[tokio::test]
async fn ipv6_and_v4_mapped_addresses() {
    let d = Double::start().await;

    // A v4-mapped trusted proxy entry matches the IPv4 peer.
    let cfg = TestConfig::new(&d.url())
        .user(alice())
        .server(|s| s.trusted_proxies(&["::ffff:127.0.0.1"]));
    let w = Warden::start(&cfg);
    let auth = alice_bearer(&w).await;
    assert_eq!(
        seen_by_comfy(&d, &w, &auth, &[("x-forwarded-for", "198.51.100.7")]).await,
        "198.51.100.7"
    );
    assert_eq!(
        seen_by_comfy(&d, &w, &auth, &[("x-forwarded-for", "::ffff:198.51.100.7")]).await,
        "198.51.100.7",
        "a v4-mapped client address is IPv4"
    );
    assert_eq!(
        seen_by_comfy(&d, &w, &auth, &[("x-forwarded-for", "2001:db8::7")]).await,
        "2001:db8::7"
    );
    drop(w);

    if !ipv6_loopback_available() {
        eprintln!(
            "SKIPPED: IPv6 loopback ([::1]) is not available here; the IPv6 listener sub-case did not run"
        );
        return;
    }
    let cfg = TestConfig::new(&d.url()).user(alice()).listen("[::1]:0");
    let w = Warden::start(&cfg);
    assert!(w.addr.is_ipv6());
    let auth = alice_bearer(&w).await;
    assert_eq!(
        seen_by_comfy(&d, &w, &auth, &[("x-forwarded-for", "2001:db8::7")]).await,
        "::1",
        "untrusted IPv6 peer"
    );
    drop(w);

    let cfg = TestConfig::new(&d.url())
        .user(alice())
        .listen("[::1]:0")
        .server(|s| s.trusted_proxies(&["::1"]))
        .ip_rules(|r| r.deny(&["2001:db8:6::/48"]));
    let w = Warden::start(&cfg);
    let auth = alice_bearer(&w).await;
    for (headers, want) in [
        (vec![("x-forwarded-for", "2001:db8::7")], "2001:db8::7"),
        (
            vec![("x-forwarded-for", "::ffff:198.51.100.7")],
            "198.51.100.7",
        ),
        (
            vec![("forwarded", "for=\"[2001:db8::8]:4711\";proto=https")],
            "2001:db8::8",
        ),
        (
            vec![("x-forwarded-for", "[2001:db8::9]:4711")],
            "2001:db8::9",
        ),
        (vec![("x-forwarded-for", "2001:db8::7, zz")], "::1"),
    ] {
        assert_eq!(
            seen_by_comfy(&d, &w, &auth, &headers).await,
            want,
            "{headers:?}"
        );
    }
    let r = get(
        &w.url("/api/embeddings"),
        &[
            ("x-forwarded-for", "2001:db8:6::1"),
            ("authorization", &auth),
        ],
    )
    .await;
    assert_eq!(r.status, 403, "IPv6 deny rule on the resolved address");
}

#[tokio::test]
async fn spoofed_xff_does_not_enter_an_allow_list() {
    let d = Double::start().await;
    let cfg = TestConfig::new(&d.url())
        .user(alice())
        .ip_rules(|r| r.allow(&["10.0.0.0/8"]));
    let w = Warden::start(&cfg);
    let mark = w.log_len();
    for xff in ["10.1.2.3", "127.0.0.1, 10.1.2.3"] {
        let r = try_get(&w.url("/warden/health"), &[("x-forwarded-for", xff)]).await;
        assert_refused(&r, xff);
    }
    assert!(
        w.wait_log("ip_denied", mark),
        "the refusal is audited:\n{}",
        w.log()
    );
    assert!(d.received().is_empty());
}

async fn fail_login(w: &Warden, user: &str, xff: Option<&str>) -> u16 {
    let mut h = vec![];
    if let Some(x) = xff {
        h.push(("x-forwarded-for", x));
    }
    post_json(
        &w.url("/login"),
        &h,
        &serde_json::json!({"username": user, "password": "wrong"}),
    )
    .await
    .status
    .as_u16()
}

#[tokio::test]
async fn spoofed_xff_does_not_escape_a_ban() {
    let d = Double::start().await;
    let cfg = TestConfig::new(&d.url())
        .user(alice())
        .lockout(|l| l.max_failures(10).ban_after(3).ban_for("1h"));
    let w = Warden::start(&cfg);
    for (i, xff) in ["198.51.100.1", "198.51.100.2", "198.51.100.3"]
        .into_iter()
        .enumerate()
    {
        assert_eq!(
            fail_login(&w, &format!("user{i}"), Some(xff)).await,
            401,
            "attempt {i}"
        );
    }
    for xff in ["198.51.100.99", "10.0.0.1", "127.0.0.2"] {
        let r = try_get(&w.url("/warden/health"), &[("x-forwarded-for", xff)]).await;
        assert_refused(&r, xff);
    }
    let r = try_get(&w.url("/warden/health"), &[]).await;
    assert_refused(&r, "no header");
}

#[tokio::test]
async fn bans_behind_a_trusted_proxy_hit_the_client_not_the_proxy() {
    let d = Double::start().await;
    let cfg = TestConfig::new(&d.url())
        .user(alice())
        .server(|s| s.trusted_proxies(&["127.0.0.1/32"]))
        .lockout(|l| l.max_failures(10).ban_after(3).ban_for("1h"));
    let w = Warden::start(&cfg);
    for i in 0..3 {
        assert_eq!(
            fail_login(&w, &format!("user{i}"), Some("198.51.100.9")).await,
            401
        );
    }
    for xff in [
        "198.51.100.9",
        "6.6.6.6, 198.51.100.9",
        "198.51.100.10, 198.51.100.9",
    ] {
        let r = try_get(&w.url("/warden/health"), &[("x-forwarded-for", xff)]).await;
        assert_refused(&r, xff);
    }
    let ok = get(
        &w.url("/warden/health"),
        &[("x-forwarded-for", "198.51.100.9, 198.51.100.10")],
    )
    .await;
    assert_eq!(ok.status, 200, "another client behind the same proxy");
    assert_eq!(get(&w.url("/warden/health"), &[]).await.status, 200);
}
