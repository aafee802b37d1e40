//! Scheduling: who runs next and where. comfy-warden gives each prompt a place in ComfyUI's own
//! queue (`fair`: per-user turns with weights, expressed as ComfyUI `number`s), so ComfyUI's
//! min-heap runs the fair order and ComfyUI's own validation still answers `POST /prompt` at
//! once. This layer is pure data below tenancy: it knows users, weights and prompt ids, never
//! HTTP or `App`. docs/scheduling.md explains the design and why prompts wait inside ComfyUI.
pub mod fair;
