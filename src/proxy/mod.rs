//! Proxying to ComfyUI: the pooled upstream client, header hygiene, HTTP forwarding with
//! streamed bodies. (The WebSocket relay, which filters events per user, is
//! `tenancy::http::websocket`.)
pub mod forward;
pub mod headers;
pub mod upstream;
