//! The HTTP side facing clients: accept loop and connection limits (`listen`), the request
//! pipeline (`dispatch`), comfy-warden's own endpoints (`routes`), administration (`admin`) and
//! pages (`pages`).
pub mod admin;
pub mod dispatch;
pub mod listen;
pub mod pages;
pub mod routes;
pub mod tokens;
