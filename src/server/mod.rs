//! The HTTP side facing clients: accept loop and connection limits (`listen`), the request
//! pipeline (`dispatch`), comfy-warden's own endpoints (`routes`), administration (`admin`,
//! `admin_users`), the first-administrator setup (`setup`), freeing ComfyUI's memory after the
//! last sign-out (`free_memory`) and pages (`pages`).
pub mod admin;
pub mod admin_users;
pub mod dispatch;
pub mod free_memory;
pub mod listen;
pub mod pages;
pub mod routes;
pub mod setup;
pub mod tokens;
