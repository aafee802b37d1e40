//! Hot reload: a users.toml edit takes effect without a restart (removed users lose access at
//! once, their sockets close) while other users' WebSockets stay up; a broken file keeps the
//! last good configuration.
use crate::support::config::{TestConfig, users_toml};
use crate::support::double::Double;
use crate::support::harness::Warden;
use crate::support::http::{cookie_header, get, login, post_json};
use crate::support::users;
use crate::support::ws;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn removing_a_user_takes_effect_while_other_sockets_stay_up() {
    let d = Double::start().await;
    let w = Warden::start(&TestConfig::new(&d.url()).users([users::alice(), users::bob()]));
    let alice = cookie_header(&login(&w.url(""), "alice", "alice-pw").await);
    let bob = cookie_header(&login(&w.url(""), "bob", "bob-pw").await);
    let mut alice_ws = ws::connect(w.addr, "/ws", &[("cookie", &alice)])
        .await
        .unwrap();
    let mut bob_ws = ws::connect(w.addr, "/ws", &[("cookie", &bob)])
        .await
        .unwrap();
    assert_eq!(
        ws::next_json(&mut alice_ws, 10).await.unwrap()["type"],
        "status"
    );
    assert_eq!(
        ws::next_json(&mut bob_ws, 10).await.unwrap()["type"],
        "status"
    );
    assert_eq!(get(&w.url("/queue"), &[("cookie", &bob)]).await.status, 200);

    let mark = w.log_len();
    w.replace_file("users.toml", &users_toml(&[users::alice()]));
    assert!(
        w.wait_log("configuration reloaded", mark),
        "no reload seen:\n{}",
        w.log()
    );

    assert_eq!(
        get(&w.url("/queue"), &[("cookie", &bob)]).await.status,
        401,
        "bob was removed"
    );
    let r = post_json(
        &w.url("/login"),
        &[],
        &serde_json::json!({"username": "bob", "password": "bob-pw"}),
    )
    .await;
    assert_eq!(r.status, 401);
    match ws::next(&mut bob_ws, 10).await {
        Some(Message::Close(Some(frame))) => assert_eq!(u16::from(frame.code), 1008),
        other => panic!("bob's socket must be closed with 1008, got {other:?}"),
    }

    assert_eq!(
        get(&w.url("/queue"), &[("cookie", &alice)]).await.status,
        200,
        "alice keeps her session"
    );
    assert!(
        ws::ping_pong(&mut alice_ws).await,
        "alice's socket stays up across the reload"
    );
    d.broadcast_ws_text(serde_json::json!({"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}}})).await;
    assert_eq!(
        ws::next_json(&mut alice_ws, 10).await.unwrap()["type"],
        "status",
        "and still relays"
    );
}

#[tokio::test]
async fn a_broken_users_file_keeps_the_last_good_users() {
    let d = Double::start().await;
    let w = Warden::start(&TestConfig::new(&d.url()).users([users::alice(), users::bob()]));
    let alice = cookie_header(&login(&w.url(""), "alice", "alice-pw").await);

    let mark = w.log_len();
    w.replace_file("users.toml", "[users.alice\npassword_hash = \"oops\"\n");
    assert!(
        w.wait_log("NOT reloaded", mark),
        "the failure must be logged:\n{}",
        w.log()
    );
    assert!(
        w.log()[mark..].contains("users.toml line 1"),
        "the log names file and line:\n{}",
        w.log()
    );

    assert_eq!(
        get(&w.url("/queue"), &[("cookie", &alice)]).await.status,
        200
    );
    login(&w.url(""), "bob", "bob-pw").await;

    // Fixing the file is picked up on the next change.
    let mark = w.log_len();
    w.replace_file("users.toml", &users_toml(&[users::bob()]));
    assert!(w.wait_log("configuration reloaded", mark));
    assert_eq!(
        get(&w.url("/queue"), &[("cookie", &alice)]).await.status,
        401
    );
}

#[tokio::test]
async fn disabling_a_user_ends_their_access() {
    let d = Double::start().await;
    let w = Warden::start(&TestConfig::new(&d.url()).users([users::alice(), users::bob()]));
    let bob = cookie_header(&login(&w.url(""), "bob", "bob-pw").await);
    let mut changed = vec![users::alice(), users::bob()];
    changed[1] = changed[1].clone().disabled();
    let mark = w.log_len();
    w.replace_file("users.toml", &users_toml(&changed));
    assert!(w.wait_log("configuration reloaded", mark));
    assert_eq!(get(&w.url("/queue"), &[("cookie", &bob)]).await.status, 401);
}

#[tokio::test]
async fn sighup_reloads() {
    let d = Double::start().await;
    let w = Warden::start(&TestConfig::new(&d.url()).users([users::alice(), users::bob()]));
    let mark = w.log_len();
    w.signal("HUP");
    assert!(w.wait_log("SIGHUP: reloading", mark));
    assert!(w.wait_log("configuration reloaded", mark));
}
