//! The prompt-graph rewriter: confines every path a user's `POST /prompt` graph can read or
//! write to that user's namespace (following the rules of `nodes.rs`), refuses what cannot be
//! confined (links into path inputs, unknown/custom/API/denied classes), and tags every output
//! node with a hidden owner input so ComfyUI's cache is partitioned per user. `strip` is the
//! inverse for graphs that ComfyUI echoes back (queue, history).
//!
//! `rewrite` (the way in) and `strip` (the way back) share `inputs`, how a node's literal
//! inputs are read; the node catalog they consult is `tenancy::catalog`.
mod inputs;
pub mod rewrite;
pub mod strip;

pub use rewrite::{Caller, Refusal, rewrite};
pub use strip::strip;

#[cfg(test)]
mod tests;
