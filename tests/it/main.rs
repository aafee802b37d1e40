//! comfy-warden's integration tests, in one test binary (`cargo test --test it`). Each module
//! is one area and starts the real `comfy-warden` binary against the ComfyUI test double over
//! loopback; `support` holds the shared kit (the double, the harness and its configuration
//! builder, HTTP/WebSocket/TLS clients, fixtures). How to add a test: `docs/testing.md`.
// Test code: a failed unwrap, expect, panic or index is a failed test, which is the point. The
// crate lints (Cargo.toml) deny them in the daemon; here they are the assertions' tools. The
// socket-activation test hands a listening socket to the daemon with libc (unsafe).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    unsafe_code
)]
mod support;

mod admin_setup;
mod admin_users;
mod auth_csrf;
mod auth_oidc;
mod auth_permissions;
mod auth_sources;
mod auth_tokens;
mod auth_totp;
mod browser;
mod cli_check;
mod clients;
mod clients_auth;
mod clients_query_token;
mod clients_ws;
mod double_selftest;
mod frontend_extension;
mod guard_client_ip;
mod guard_flood;
mod guard_limits;
mod guard_lockout;
mod hardening_csrf;
mod hardening_faults;
mod hardening_weak_spots;
mod login;
mod ops_metrics;
mod ops_systemd;
mod ops_tls;
mod proxy;
mod reload;
mod tenancy_files;
mod tenancy_ledger;
mod tenancy_prompts;
mod tenancy_queue;
mod tenancy_routes;
mod tenancy_ws;
mod upstream_faults;
mod websocket;
