//! The HTTP side facing clients: listeners and accept loops (`listen`), the worker threads
//! that serve connections (`workers`), one connection with TLS (`conn`) and its
//! lingering close (`linger`), the request pipeline (`dispatch`), comfy-warden's own endpoints (`routes`,
//! `tokens`), administration (`admin`, `admin_users`), the first-administrator setup (`setup`),
//! freeing ComfyUI's memory after the last sign-out (`free_memory`), the https redirect listener
//! (`redirect`), pages (`pages`) and the frontend extension comfy-warden adds to ComfyUI
//! (`extension`).
pub mod admin;
pub mod admin_users;
pub mod conn;
pub mod dispatch;
pub mod extension;
pub mod free_memory;
pub mod linger;
pub mod listen;
pub mod pages;
pub mod redirect;
pub mod routes;
pub mod setup;
pub mod tokens;
pub mod workers;
