//! A login flood (wrong passwords from ~10 concurrent tasks, many addresses and one address)
//! does not take the service down: every flood attempt is answered 401 or 429, and another
//! client's proxied requests keep succeeding meanwhile. Success is asserted, never latency.
use crate::support::config::{TestConfig, TestUser};
use crate::support::double::Double;
use crate::support::harness::Warden;
use crate::support::http::{bearer, get, login, post_json};
use crate::support::users::alice;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

const FLOOD: usize = 300;
const TASKS: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn proxied_requests_succeed_during_a_login_flood() {
    let d = Double::start().await;
    let cfg = TestConfig::new(&d.url())
        .users(vec![
            alice(),
            TestUser::new("victim", "victim-pw", &["user"]),
        ])
        .server(|s| s.trusted_proxies(&["127.0.0.1/32"]));
    let w = Arc::new(Warden::start(&cfg));
    let auth = bearer(&login(&w.url(""), "victim", "victim-pw").await);

    let outcome = tokio::time::timeout(Duration::from_secs(180), async {
        let next = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let mut flood = Vec::new();
        for task in 0..TASKS {
            let (w, next) = (w.clone(), next.clone());
            flood.push(tokio::spawn(async move {
                let mut statuses = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= FLOOD {
                        break statuses;
                    }
                    // Even tasks spread over many addresses (nothing locks, every attempt is
                    // hashed); odd tasks hammer from one address (locked after a few).
                    let from = if task % 2 == 0 {
                        format!("198.51.{}.{}", i / 250, i % 250 + 1)
                    } else {
                        "203.0.113.66".to_string()
                    };
                    let user = if i % 3 == 0 {
                        "alice".to_string()
                    } else {
                        format!("nobody{i}")
                    };
                    let r = post_json(
                        &w.url("/login"),
                        &[("x-forwarded-for", &from)],
                        &serde_json::json!({"username": user, "password": "wrong"}),
                    )
                    .await;
                    statuses.push(r.status.as_u16());
                }
            }));
        }
        let victim = {
            let (w, done, auth) = (w.clone(), done.clone(), auth.clone());
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                while !done.load(Ordering::Relaxed) || statuses.len() < 10 {
                    let r = get(&w.url("/api/embeddings"), &[("authorization", &auth)]).await;
                    statuses.push(r.status.as_u16());
                }
                statuses
            })
        };
        let mut flood_statuses = Vec::new();
        for t in flood {
            flood_statuses.extend(t.await.unwrap());
        }
        done.store(true, Ordering::Relaxed);
        (flood_statuses, victim.await.unwrap())
    })
    .await;
    let (flood, victim) = outcome.expect("the flood test did not finish within its deadline");

    assert_eq!(flood.len(), FLOOD);
    assert!(
        flood.iter().all(|s| *s == 401 || *s == 429),
        "every flood attempt is refused cleanly: {flood:?}"
    );
    assert!(flood.contains(&429), "the single-address flood was locked");
    assert!(victim.len() >= 10);
    assert!(
        victim.iter().all(|s| *s == 200),
        "the other client's requests all succeeded: {victim:?}"
    );
    // The service is still there for sign-ins from an unaffected address.
    let r = post_json(
        &w.url("/login"),
        &[("x-forwarded-for", "192.0.2.200")],
        &serde_json::json!({"username": "alice", "password": "alice-pw"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
}
