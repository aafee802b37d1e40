//! Tenancy's HTTP handlers: the ComfyUI routes as each user sees them. `handle` applies the
//! route table (`tenancy::route_table`) and calls the route's handler; `ctx` is who is asking.
//! These are the only tenancy files that know the daemon (`App`) and HTTP requests; the
//! tenancy core below them (paths, nodes, prompt, filter, ledger, live, provision, catalog,
//! events) takes what it needs as arguments.
pub mod ctx;
pub mod extensions;
pub mod files;
pub mod handle;
pub mod info;
pub mod objectinfo;
pub mod queue;
pub mod submit;
pub mod websocket;
