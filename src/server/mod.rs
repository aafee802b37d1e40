//! The HTTP side facing clients: accept loop and connection limits (`listen`), the request
//! pipeline (`dispatch`), comfy-warden's own endpoints (`routes`), administration (`admin`),
//! pages (`pages`) and the frontend extension comfy-warden adds to ComfyUI (`extension`).
pub mod admin;
pub mod dispatch;
pub mod extension;
pub mod listen;
pub mod pages;
pub mod routes;
pub mod tokens;
