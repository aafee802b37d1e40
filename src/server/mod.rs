//! The HTTP side facing clients: listeners and accept loops (`listen`), the worker threads
//! that serve connections (`workers`), one connection with TLS (`conn`) and its lingering
//! close (`linger`), the request pipeline (`dispatch`), comfy-warden's own endpoints
//! (`own_routes`, `login`, `tokens`, the second sign-in step `second_factor`), single sign-on
//! (`oidc_routes`), administration (`admin`, `admin_users`), the first-administrator setup
//! (`setup`), the metrics answers (`exposition`), freeing ComfyUI's memory after the last
//! sign-out (`free_memory`), the https redirect listener (`redirect`), refusals rendered
//! (`refusal`) and the frontend extension comfy-warden adds to ComfyUI (`extension`). The pages
//! themselves are rendered by `crate::pages`; ComfyUI's routes are handled by
//! `crate::tenancy::http`.
pub mod admin;
pub mod admin_users;
pub mod conn;
pub mod dispatch;
pub mod exposition;
pub mod extension;
pub mod free_memory;
pub mod linger;
pub mod listen;
pub mod login;
pub mod oidc_routes;
pub mod own_routes;
pub mod redirect;
pub mod refusal;
pub mod second_factor;
pub mod setup;
pub mod tokens;
pub mod workers;
