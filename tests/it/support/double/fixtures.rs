//! The recorded ComfyUI 0.3.64 answers the double replays (`tests/fixtures/comfyui-0.3.64/`),
//! compiled in and parsed once per process.

use std::sync::OnceLock;

use serde_json::{Map, Value};

macro_rules! recording {
    ($name:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/comfyui-0.3.64/",
            $name
        ))
    };
}

/// Directory of the recordings, for tests that compare against them.
pub fn dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/comfyui-0.3.64")
}

/// A whole recording (`{"request","status","headers","body"}`) read from disk.
pub fn load(name: &str) -> Value {
    let path = dir().join(name);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

fn body_of(text: &str) -> Value {
    let v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    v.get("body").cloned().unwrap_or(Value::Null)
}

pub fn object_info() -> &'static Map<String, Value> {
    static CELL: OnceLock<Map<String, Value>> = OnceLock::new();
    CELL.get_or_init(|| match body_of(recording!("object_info.json")) {
        Value::Object(mut m) => {
            m.insert(PROGRESS_NODE.into(), progress_node());
            m
        }
        _ => Map::new(),
    })
}

/// A test-only custom node (like the `ZZSlow` node the reference used against the real
/// ComfyUI): it passes its image through and reports progress the way samplers and API nodes
/// do — `progress`, a preview frame and a `send_progress_text` frame. Core nodes such as
/// LoadImage or PreviewImage send none of these, and neither does the double for them.
pub const PROGRESS_NODE: &str = "ZZProgress";

fn progress_node() -> Value {
    serde_json::json!({
        "input": {"required": {"image": ["IMAGE", {}]}},
        "input_order": {"required": ["image"]},
        "output": ["IMAGE"],
        "output_is_list": [false],
        "output_name": ["IMAGE"],
        "name": PROGRESS_NODE,
        "display_name": "ZZ Progress (test)",
        "description": "",
        "python_module": "custom_nodes.zz_progress",
        "category": "testing",
        "output_node": false,
        "deprecated": false,
        "experimental": false,
        "api_node": false
    })
}

pub fn system_stats() -> &'static Value {
    static CELL: OnceLock<Value> = OnceLock::new();
    CELL.get_or_init(|| body_of(recording!("system_stats.json")))
}

pub fn extensions() -> &'static Value {
    static CELL: OnceLock<Value> = OnceLock::new();
    CELL.get_or_init(|| body_of(recording!("extensions.json")))
}

pub fn internal_logs() -> &'static Value {
    static CELL: OnceLock<Value> = OnceLock::new();
    CELL.get_or_init(|| body_of(recording!("internal_logs.json")))
}

/// Node class definition from `object_info`.
pub fn node_class(name: &str) -> Option<&'static Map<String, Value>> {
    object_info().get(name).and_then(Value::as_object)
}

pub fn is_output_node(class: &str) -> bool {
    node_class(class)
        .and_then(|c| c.get("output_node"))
        .and_then(Value::as_bool)
        .unwrap_or(false)
}
