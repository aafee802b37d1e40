//! comfy-warden: a hardened gateway in front of an unmodified ComfyUI server.
//!
//! The daemon terminates client connections, authenticates people, decides what each of them may
//! do, and proxies everything else to ComfyUI (HTTP and WebSocket). The module map and the
//! layers follow `docs/architecture.md` (lowest first; a file imports only from its own layer or
//! lower ones, with no cycle: `scripts/check-layers`): `clock`, `shutdown`, `body`, `pages`
//! (base); `config` (TOML → validated snapshot, hot reload); `auth` (passwords, sessions,
//! identity), `accounts` (the writable users file, first administrator), `guard` (client IP,
//! IP rules, lockout), `proxy` (upstream client, header hygiene, forwarding), `ops` (systemd,
//! metrics, audit, TLS); `tenancy` (the per-user isolation); `app` (the daemon's shared state);
//! `server` (listeners, comfy-warden's own routes) and `tenancy::http` (ComfyUI's routes);
//! `daemon` (start-up, signals, offline commands).

pub mod accounts;
pub mod app;
pub mod auth;
pub mod body;
pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon;
/// Entry points of the fuzz targets in `fuzz/` (docs/fuzzing.md); not an API. Built only for
/// the fuzzer (`cargo fuzz` sets `--cfg fuzzing`).
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzz_api;
pub mod guard;
pub mod ops;
pub mod pages;
pub mod proxy;
pub mod reject;
pub mod sched;
pub mod server;
pub mod shutdown;
pub mod tenancy;
