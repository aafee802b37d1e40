//! Proxying to ComfyUI: the pooled upstream client, header hygiene, HTTP forwarding with
//! streamed bodies, and the WebSocket relay.
pub mod forward;
pub mod headers;
pub mod upgrade;
pub mod upstream;
