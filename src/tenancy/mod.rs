//! Tenancy: what makes one ComfyUI look like a private one to each user.
pub mod namespace;
pub mod paths;
