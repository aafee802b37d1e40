//! Shared test kit: the ComfyUI test double, a harness that runs the real comfy-warden binary
//! on loopback with a configuration built by `config`, the people of the tests, HTTP,
//! WebSocket and TLS clients, and a poll helper.
pub mod config;
pub mod double;
pub mod harness;
pub mod http;
pub mod oidc;
pub mod poll;
pub mod tenants;
pub mod tls;
pub mod users;
pub mod ws;
