//! Shared test kit: the ComfyUI test double, a harness that runs the real comfy-warden binary
//! on loopback, and a small HTTP client.
#![allow(dead_code)]
pub mod double;
pub mod harness;
pub mod http;
pub mod oidc;
pub mod tenants;
pub mod tls;
pub mod ws;
