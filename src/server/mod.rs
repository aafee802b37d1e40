//! The HTTP side facing clients: listeners and accept loops (`listen`), one connection with TLS
//! (`conn`), the request pipeline (`dispatch`), comfy-warden's own endpoints (`routes`),
//! administration (`admin`), the https redirect listener (`redirect`) and pages (`pages`).
pub mod admin;
pub mod conn;
pub mod dispatch;
pub mod listen;
pub mod pages;
pub mod redirect;
pub mod routes;
pub mod tokens;
