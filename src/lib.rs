//! comfy-warden: a hardened gateway in front of an unmodified ComfyUI server.
//!
//! The daemon terminates client connections, authenticates people, decides what each of them may
//! do, and proxies everything else to ComfyUI (HTTP and WebSocket). The module map follows
//! `docs/architecture.md`: `config` (TOML → validated snapshot, hot reload), `auth` (passwords,
//! sessions, identity), `accounts` (the writable users file, first administrator), `guard` (client IP, IP rules), `proxy` (upstream client, header hygiene,
//! WebSocket relay), `server` (listeners, routing, comfy-warden's own endpoints), `ops` (systemd).
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod accounts;
pub mod app;
pub mod auth;
pub mod body;
pub mod cli;
pub mod config;
pub mod daemon;
/// Entry points of the fuzz targets in `fuzz/` (docs/fuzzing.md); not an API.
#[doc(hidden)]
pub mod fuzz_api;
pub mod guard;
pub mod ops;
pub mod proxy;
pub mod server;
pub mod tenancy;
