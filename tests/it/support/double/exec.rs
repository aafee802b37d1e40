//! The prompt worker: one prompt at a time, ComfyUI's execution order (`ExecutionList` with
//! `ux_friendly_pick_node`), the output cache keyed by input signatures (so identical graphs
//! are "cached" like in ComfyUI), the WebSocket event sequence, hold/release and interrupts,
//! and the file effects of LoadImage / SaveImage / PreviewImage.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rand::Rng;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::blob::Blob;
use super::files::PNG_RESULT;
use super::fixtures;
use super::http::civil_from_days;
use super::paths::{
    self, abspath, annotated_filepath, basename, commonpath, dirname, join, normpath,
};
use super::prompt::{is_image_loader, is_link};
use super::pyjson::{self, py_str};
use super::state::{CacheEntry, Inner, QueueItem, SENSITIVE_EXTRA_DATA_KEYS, Shared};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub async fn worker(shared: Arc<Shared>) {
    loop {
        let item = loop {
            let notified = shared.worker_wake.notified();
            {
                let mut g = shared.lock();
                if g.running.is_none() {
                    if let Some(item) = g.heap_pop() {
                        g.running = Some(item.clone());
                        g.queue_updated();
                        break item;
                    }
                }
            }
            notified.await;
        };
        run_prompt(&shared, item).await;
    }
}

// ----- graph ---------------------------------------------------------------------------------

struct Graph {
    prompt: Map<String, Value>,
    order: Vec<String>,
    sigs: HashMap<String, String>,
}

fn inputs_of(prompt: &Map<String, Value>, id: &str) -> Map<String, Value> {
    prompt
        .get(id)
        .and_then(|n| n.get("inputs"))
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

fn class_of(prompt: &Map<String, Value>, id: &str) -> String {
    prompt
        .get(id)
        .and_then(|n| n.get("class_type"))
        .map(py_str)
        .unwrap_or_default()
}

impl Graph {
    fn new(item: &QueueItem, g: &Inner) -> Graph {
        let prompt = item.prompt.as_object().cloned().unwrap_or_default();
        let mut graph = Graph {
            prompt,
            order: item.node_order.clone(),
            sigs: HashMap::new(),
        };
        let mut visiting = HashSet::new();
        for id in graph.order.clone() {
            graph.signature(&id, g, &mut visiting);
        }
        graph
    }

    /// Cache key of a node: class, `IS_CHANGED`, literal inputs and the keys of linked nodes.
    fn signature(&mut self, id: &str, g: &Inner, visiting: &mut HashSet<String>) -> String {
        if let Some(s) = self.sigs.get(id) {
            return s.clone();
        }
        if !visiting.insert(id.to_string()) {
            return format!("cycle:{}", uuid::Uuid::new_v4());
        }
        let class = class_of(&self.prompt, id);
        let inputs = inputs_of(&self.prompt, id);
        let is_changed = if class == WS_IMAGE_NODE {
            // `IS_CHANGED` returns `time.time()`: never cached.
            Value::String(uuid::Uuid::new_v4().to_string())
        } else if is_image_loader(&class) {
            match inputs.get("image").and_then(Value::as_str) {
                Some(image) => {
                    let (name, dir) = annotated_filepath(image);
                    match g.vfs.get(&join(dir.unwrap_or(paths::INPUT), &name)) {
                        Some(e) => Value::String(e.blob.sha256()),
                        None => Value::String(uuid::Uuid::new_v4().to_string()),
                    }
                }
                None => Value::Null,
            }
        } else {
            Value::Null
        };
        let mut parts = vec![Value::String(class), is_changed];
        let mut sorted: Vec<(&String, &Value)> = inputs.iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(b.0));
        for (k, v) in sorted {
            if is_link(v) {
                let from = py_str(&v[0]);
                let sig = if self.prompt.contains_key(&from) {
                    self.signature(&from, g, visiting)
                } else {
                    format!("missing:{from}")
                };
                parts.push(json!([k, "link", sig, v[1]]));
            } else {
                parts.push(json!([k, v]));
            }
        }
        visiting.remove(id);
        let sig = hex::encode(Sha256::digest(
            pyjson::dumps(&Value::Array(parts)).as_bytes(),
        ));
        self.sigs.insert(id.to_string(), sig.clone());
        sig
    }

    fn is_output(&self, id: &str) -> bool {
        fixtures::is_output_node(&class_of(&self.prompt, id))
    }
}

/// `comfy_execution.graph.ExecutionList` (strong links only).
struct ExecList {
    pending: Vec<String>,
    block_count: HashMap<String, usize>,
    blocking: HashMap<String, Vec<String>>,
}

impl ExecList {
    fn add_node(&mut self, graph: &Graph, cached: &HashSet<String>, id: &str) {
        let mut stack = vec![id.to_string()];
        let mut links: Vec<(String, String)> = Vec::new();
        while let Some(u) = stack.pop() {
            if self.pending.contains(&u) {
                continue;
            }
            self.pending.push(u.clone());
            self.block_count.insert(u.clone(), 0);
            self.blocking.insert(u.clone(), Vec::new());
            for v in inputs_of(&graph.prompt, &u).values() {
                if is_link(v) {
                    let from = py_str(&v[0]);
                    if !cached.contains(&from) {
                        stack.push(from.clone());
                    }
                    links.push((from, u.clone()));
                }
            }
        }
        for (from, to) in links {
            if cached.contains(&from) || !self.blocking.contains_key(&from) {
                continue;
            }
            let list = self.blocking.entry(from).or_default();
            if !list.contains(&to) {
                list.push(to.clone());
                *self.block_count.entry(to).or_default() += 1;
            }
        }
    }

    /// `stage_node_execution` + `ux_friendly_pick_node`; `Err` on a dependency cycle.
    fn stage(&self, graph: &Graph) -> Result<Option<String>, String> {
        if self.pending.is_empty() {
            return Ok(None);
        }
        let available: Vec<&String> = self
            .pending
            .iter()
            .filter(|n| self.block_count.get(*n).copied().unwrap_or(0) == 0)
            .collect();
        if available.is_empty() {
            return Err(self.pending[0].clone());
        }
        let blocks_output = |n: &String| {
            self.blocking
                .get(n)
                .is_some_and(|bs| bs.iter().any(|b| graph.is_output(b)))
        };
        let pick = available
            .iter()
            .find(|n| graph.is_output(n))
            .or_else(|| available.iter().find(|n| blocks_output(n)))
            .or_else(|| {
                available.iter().find(|n| {
                    self.blocking
                        .get(**n)
                        .is_some_and(|bs| bs.iter().any(blocks_output))
                })
            })
            .unwrap_or(&available[0]);
        Ok(Some((*pick).clone()))
    }

    fn complete(&mut self, id: &str) {
        self.pending.retain(|n| n != id);
        if let Some(bs) = self.blocking.get(id).cloned() {
            for b in bs {
                if let Some(c) = self.block_count.get_mut(&b) {
                    *c = c.saturating_sub(1);
                }
            }
        }
    }
}

// ----- one run ---------------------------------------------------------------------------------

struct Run {
    prompt_id: String,
    client_id: Option<String>,
    messages: Vec<Value>,
    progress: Vec<(String, f64, f64, &'static str)>,
    executed: Vec<String>,
    success: bool,
}

impl Run {
    /// `PromptExecutor.add_message`.
    fn add_message(&mut self, g: &Inner, event: &str, mut data: Value, broadcast: bool) {
        data["timestamp"] = json!(now_ms());
        self.messages.push(json!([event, data]));
        if self.client_id.is_some() || broadcast {
            g.send_json(event, data, self.client_id.as_deref());
        }
    }

    fn set_progress(&mut self, id: &str, value: f64, max: f64, state: &'static str) {
        match self.progress.iter_mut().find(|p| p.0 == id) {
            Some(p) => {
                p.1 = value;
                p.2 = max;
                p.3 = state;
            }
            None => self.progress.push((id.to_string(), value, max, state)),
        }
    }

    /// `WebUIProgressHandler._send_progress_state`.
    fn send_progress_state(&self, g: &Inner) {
        let mut nodes = Map::new();
        for (id, value, max, state) in &self.progress {
            nodes.insert(
                id.clone(),
                json!({
                    "value": num(*value), "max": num(*max), "state": state, "node_id": id,
                    "prompt_id": self.prompt_id, "display_node_id": id,
                    "parent_node_id": null, "real_node_id": id,
                }),
            );
        }
        g.send_json(
            "progress_state",
            json!({"prompt_id": self.prompt_id, "nodes": nodes}),
            self.client_id.as_deref(),
        );
    }
}

fn num(f: f64) -> Value {
    if f.fract() == 0.0 {
        json!(f as i64)
    } else {
        json!(f)
    }
}

fn meta(id: &str) -> Value {
    json!({"node_id": id, "display_node": id, "parent_node": null, "real_node_id": id})
}

enum Hold {
    Continue,
    Interrupted,
}

async fn hold_point(shared: &Arc<Shared>, prompt_id: &str) -> Hold {
    loop {
        let notified = shared.release_wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        {
            let g = shared.lock();
            if g.interrupt {
                return Hold::Interrupted;
            }
            if !g.hold || g.released.as_deref() == Some(prompt_id) {
                return Hold::Continue;
            }
        }
        notified.await;
    }
}

async fn run_prompt(shared: &Arc<Shared>, item: QueueItem) {
    let prompt_id = item.prompt_id.clone();
    let (mut run, graph, mut list, current_outputs) = {
        let mut g = shared.lock();
        g.interrupt = false;
        let client_id = item.client_id();
        g.client_id = client_id.clone();
        g.last_prompt_id = Some(prompt_id.clone());
        let mut run = Run {
            prompt_id: prompt_id.clone(),
            client_id,
            messages: Vec::new(),
            progress: Vec::new(),
            executed: Vec::new(),
            success: true,
        };
        run.add_message(
            &g,
            "execution_start",
            json!({"prompt_id": prompt_id}),
            false,
        );
        let graph = Graph::new(&item, &g);
        let keys: HashSet<&String> = graph.sigs.values().collect();
        g.cache.retain(|k, _| keys.contains(k));
        let cached: HashSet<String> = graph
            .order
            .iter()
            .filter(|n| g.cache.contains_key(&graph.sigs[*n]))
            .cloned()
            .collect();
        let cached_nodes: Vec<&String> =
            graph.order.iter().filter(|n| cached.contains(*n)).collect();
        run.add_message(
            &g,
            "execution_cached",
            json!({"nodes": cached_nodes, "prompt_id": prompt_id}),
            false,
        );
        let mut list = ExecList {
            pending: Vec::new(),
            block_count: HashMap::new(),
            blocking: HashMap::new(),
        };
        for o in &item.outputs {
            list.add_node(&graph, &cached, o);
        }
        let current: Vec<String> = cached_nodes.into_iter().cloned().collect();
        (run, graph, list, current)
    };

    let mut first = true;
    loop {
        let staged = list.stage(&graph);
        let node = match staged {
            Ok(None) => break,
            Ok(Some(n)) => n,
            Err(n) => {
                let g = shared.lock();
                let err = ExecError {
                    exception_message: "Dependency cycle detected".into(),
                    exception_type: "comfy_execution.graph.DependencyCycleError".into(),
                    traceback: vec![],
                    current_inputs: json!([]),
                };
                execution_error(&g, &mut run, &graph, &n, err, &current_outputs);
                break;
            }
        };
        let sig = graph.sigs[&node].clone();
        let class = class_of(&graph.prompt, &node);
        {
            let mut g = shared.lock();
            if let Some(entry) = g.cache.get(&sig).cloned() {
                if let Some(c) = &run.client_id {
                    let output = entry
                        .ui
                        .as_ref()
                        .and_then(|u| u.get("output"))
                        .cloned()
                        .unwrap_or(Value::Null);
                    g.send_json(
                        "executed",
                        json!({"node": node, "display_node": node, "output": output, "prompt_id": prompt_id}),
                        Some(c),
                    );
                }
                run.set_progress(&node, 1.0, 1.0, "finished");
                run.send_progress_state(&g);
                list.complete(&node);
                continue;
            }
            run.set_progress(&node, 0.0, 1.0, "running");
            run.send_progress_state(&g);
            if let Some(c) = &run.client_id {
                g.last_node_id = Some(node.clone());
                g.send_json(
                    "executing",
                    json!({"node": node, "display_node": node, "prompt_id": prompt_id}),
                    Some(c),
                );
            }
        }
        let mut interrupted = false;
        if first {
            interrupted = matches!(hold_point(shared, &prompt_id).await, Hold::Interrupted);
        }
        let mut g = shared.lock();
        if interrupted || g.interrupt {
            run.success = false;
            let data = json!({"prompt_id": prompt_id, "node_id": node, "node_type": class, "executed": run.executed});
            run.add_message(&g, "execution_interrupted", data, true);
            break;
        }
        if first {
            first = false;
        }
        if class == super::fixtures::PROGRESS_NODE {
            send_progress_frames(&g, &mut run, &node);
        }
        if class == WS_IMAGE_NODE {
            send_ws_images(&g, &mut run, &node);
        }
        match execute_node(&mut g, &graph, &node) {
            Err(err) => {
                execution_error(&g, &mut run, &graph, &node, *err, &current_outputs);
                break;
            }
            Ok(ui) => {
                let ui_entry = ui.map(|output| json!({"meta": meta(&node), "output": output}));
                if let (Some(entry), Some(c)) = (&ui_entry, &run.client_id) {
                    g.send_json(
                        "executed",
                        json!({"node": node, "display_node": node, "output": entry["output"], "prompt_id": prompt_id}),
                        Some(c),
                    );
                }
                g.cache.insert(sig, CacheEntry { ui: ui_entry });
                run.set_progress(&node, 1.0, 1.0, "finished");
                run.send_progress_state(&g);
                run.executed.push(node.clone());
                list.complete(&node);
            }
        }
    }

    // Held prompts whose nodes were all cached still wait for release().
    if first && run.success {
        if let Hold::Interrupted = hold_point(shared, &prompt_id).await {
            let g = shared.lock();
            run.success = false;
            let last = graph.order.last().cloned().unwrap_or_default();
            let data = json!({"prompt_id": prompt_id, "node_id": last, "node_type": class_of(&graph.prompt, &last), "executed": run.executed});
            run.add_message(&g, "execution_interrupted", data, true);
        }
    }

    let mut g = shared.lock();
    if run.success {
        run.add_message(
            &g,
            "execution_success",
            json!({"prompt_id": prompt_id}),
            false,
        );
    }
    let mut outputs = Map::new();
    let mut metas = Map::new();
    for id in &graph.order {
        if let Some(ui) = g.cache.get(&graph.sigs[id]).and_then(|e| e.ui.clone()) {
            outputs.insert(id.clone(), ui["output"].clone());
            metas.insert(id.clone(), ui["meta"].clone());
        }
    }
    let mut stored = item.clone();
    if let Some(extra) = stored.extra_data.as_object_mut() {
        extra.retain(|k, _| !SENSITIVE_EXTRA_DATA_KEYS.contains(&k.as_str()));
    }
    let entry = json!({
        "prompt": stored.to_json(),
        "outputs": outputs,
        "status": {
            "status_str": if run.success { "success" } else { "error" },
            "completed": run.success,
            "messages": run.messages,
        },
        "meta": metas,
    });
    g.running = None;
    g.history_put(prompt_id.clone(), entry);
    g.queue_updated();
    if let Some(c) = &run.client_id {
        g.send_json(
            "executing",
            json!({"node": null, "prompt_id": prompt_id}),
            Some(c),
        );
    }
    g.last_node_id = None;
    g.released = None;
    if g.pending_free {
        g.pending_free = false;
        g.cache.clear();
    }
}

/// `custom_nodes/websocket_image_save.py`, shipped with ComfyUI and loaded by default.
pub const WS_IMAGE_NODE: &str = "SaveImageWebsocket";

/// `SaveImageWebsocket.save_images`: for each image, `ProgressBar.update_absolute(step, total,
/// ("PNG", img, None))`, i.e. what main.py's progress hook sends: `progress_state`, the image as
/// a preview (type 4 with metadata to clients that asked for it, else type 1, format PNG), and
/// `progress`, all to the prompt's client id. It has no UI output (no `executed`). The double's
/// images are batches of one.
fn send_ws_images(g: &Inner, run: &mut Run, node: &str) {
    let client = run.client_id.clone();
    run.set_progress(node, 0.0, 1.0, "running");
    run.send_progress_state(g);
    let metadata_ok = g.supports_preview_metadata(client.as_deref());
    if metadata_ok {
        g.send_binary(
            preview_with_metadata(&run.prompt_id, node),
            client.as_deref(),
        );
    }
    g.send_json(
        "progress",
        json!({"value": 0, "max": 1, "prompt_id": run.prompt_id, "node": node}),
        client.as_deref(),
    );
    if !metadata_ok {
        g.send_binary(preview_png(), client.as_deref());
    }
}

/// A type-4 preview frame: `[u32 4][u32 len][metadata JSON][PNG]`.
fn preview_with_metadata(prompt_id: &str, node: &str) -> Vec<u8> {
    let meta = json!({
        "node_id": node, "prompt_id": prompt_id, "display_node_id": node,
        "parent_node_id": null, "real_node_id": node, "image_type": "image/png",
    });
    let meta = pyjson::dumps(&meta).into_bytes();
    let mut frame = Vec::with_capacity(8 + meta.len() + PNG_RESULT.len());
    frame.extend_from_slice(&4u32.to_be_bytes());
    frame.extend_from_slice(&(meta.len() as u32).to_be_bytes());
    frame.extend_from_slice(&meta);
    frame.extend_from_slice(PNG_RESULT);
    frame
}

/// A type-1 preview frame: `[u32 1][u32 2 = PNG][PNG]`.
fn preview_png() -> Vec<u8> {
    let mut frame = Vec::with_capacity(8 + PNG_RESULT.len());
    frame.extend_from_slice(&1u32.to_be_bytes());
    frame.extend_from_slice(&2u32.to_be_bytes());
    frame.extend_from_slice(PNG_RESULT);
    frame
}

/// Progress of a `ZZProgress` node: `progress_state`, preview (type 4 or 1), `progress`, and a
/// `send_progress_text` frame (type 3, always broadcast). Real core nodes without a progress bar
/// send none of these (checked against ComfyUI 0.3.64).
fn send_progress_frames(g: &Inner, run: &mut Run, node: &str) {
    let client = run.client_id.clone();
    run.set_progress(node, 1.0, 1.0, "running");
    run.send_progress_state(g);
    let metadata_ok = g.supports_preview_metadata(client.as_deref());
    if metadata_ok {
        g.send_binary(
            preview_with_metadata(&run.prompt_id, node),
            client.as_deref(),
        );
    }
    g.send_json(
        "progress",
        json!({"value": 1, "max": 1, "prompt_id": run.prompt_id, "node": node}),
        client.as_deref(),
    );
    if !metadata_ok {
        g.send_binary(preview_png(), client.as_deref());
    }
    let text = format!("ComfyUI double: node {node} of prompt {}", run.prompt_id);
    let mut frame = Vec::new();
    frame.extend_from_slice(&3u32.to_be_bytes());
    frame.extend_from_slice(&(node.len() as u32).to_be_bytes());
    frame.extend_from_slice(node.as_bytes());
    frame.extend_from_slice(text.as_bytes());
    g.send_binary(frame, None);
}

struct ExecError {
    exception_message: String,
    exception_type: String,
    traceback: Vec<String>,
    current_inputs: Value,
}

fn execution_error(
    g: &Inner,
    run: &mut Run,
    graph: &Graph,
    node: &str,
    err: ExecError,
    current_outputs: &[String],
) {
    run.success = false;
    let data = json!({
        "prompt_id": run.prompt_id,
        "node_id": node,
        "node_type": class_of(&graph.prompt, node),
        "executed": run.executed,
        "exception_message": err.exception_message,
        "exception_type": err.exception_type,
        "traceback": err.traceback,
        "current_inputs": err.current_inputs,
        "current_outputs": current_outputs,
    });
    run.add_message(g, "execution_error", data, false);
}

fn traceback(last: &str) -> Vec<String> {
    vec![
        "  File \"/opt/comfyui/execution.py\", line 496, in execute\n    output_data, output_ui, has_subgraph, has_pending_tasks = await get_output_data(prompt_id, unique_id, obj, input_data_all, execution_block_cb=execution_block_cb, pre_execute_cb=pre_execute_cb, hidden_inputs=hidden_inputs)\n".into(),
        "  File \"/opt/comfyui/execution.py\", line 315, in get_output_data\n    return_values = await _async_map_node_over_list(prompt_id, unique_id, obj, input_data_all, obj.FUNCTION, allow_interrupt=True, execution_block_cb=execution_block_cb, pre_execute_cb=pre_execute_cb, hidden_inputs=hidden_inputs)\n".into(),
        last.to_string(),
    ]
}

fn current_inputs(graph: &Graph, node: &str) -> Value {
    let mut out = Map::new();
    for (k, v) in inputs_of(&graph.prompt, node) {
        let shown = if is_link(&v) {
            Value::String("tensor([[[[0.7843, 0.3922, 0.1961]]]])".into())
        } else {
            match &v {
                Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => v.clone(),
                other => Value::String(pyjson::py_repr(other)),
            }
        };
        out.insert(k, json!([shown]));
    }
    Value::Object(out)
}

/// Evaluate a string input that may be linked to PrimitiveString / StringConcatenate.
fn eval_string(graph: &Graph, v: &Value, depth: usize) -> Option<String> {
    if !is_link(v) {
        return v.as_str().map(str::to_string);
    }
    if depth > 32 {
        return None;
    }
    let from = py_str(&v[0]);
    let inputs = inputs_of(&graph.prompt, &from);
    match class_of(&graph.prompt, &from).as_str() {
        "PrimitiveString" | "PrimitiveStringMultiline" => {
            eval_string(graph, inputs.get("value")?, depth + 1)
        }
        "StringConcatenate" => {
            let a = eval_string(graph, inputs.get("string_a")?, depth + 1)?;
            let b = eval_string(graph, inputs.get("string_b")?, depth + 1)?;
            let d = match inputs.get("delimiter") {
                Some(d) => eval_string(graph, d, depth + 1)?,
                None => String::new(),
            };
            Some(format!("{a}{d}{b}"))
        }
        _ => None,
    }
}

fn compute_vars(prefix: &str) -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (y, m, d) = civil_from_days(secs.div_euclid(86400));
    let rem = secs.rem_euclid(86400);
    prefix
        .replace("%width%", "1")
        .replace("%height%", "1")
        .replace("%year%", &y.to_string())
        .replace("%month%", &format!("{m:02}"))
        .replace("%day%", &format!("{d:02}"))
        .replace("%hour%", &format!("{:02}", rem / 3600))
        .replace("%minute%", &format!("{:02}", (rem % 3600) / 60))
        .replace("%second%", &format!("{:02}", rem % 60))
}

/// `folder_paths.get_save_image_path` → (folder, filename, counter, subfolder).
fn save_image_path(
    g: &mut Inner,
    prefix: &str,
    output_dir: &str,
) -> Result<(String, String, u64, String), Box<ExecError>> {
    let prefix = if prefix.contains('%') {
        compute_vars(prefix)
    } else {
        prefix.to_string()
    };
    let np = normpath(&prefix);
    let subfolder = dirname(&np);
    let filename = basename(&np);
    let full = join(output_dir, &subfolder);
    let common = commonpath(output_dir, &abspath(&full)).unwrap_or_default();
    if common != output_dir {
        let msg = format!(
            "**** ERROR: Saving image outside the output folder is not allowed.\n full_output_folder: {}\n         output_dir: {}\n         commonpath: {}",
            abspath(&full),
            output_dir,
            common
        );
        return Err(Box::new(ExecError {
            exception_message: format!("{msg}\n"),
            exception_type: "Exception".into(),
            traceback: traceback(
                "  File \"/opt/comfyui/folder_paths.py\", line 432, in get_save_image_path\n    raise Exception(err)\n",
            ),
            current_inputs: json!({}),
        }));
    }
    let prefix_len = basename(&prefix).chars().count();
    let counter = if g.vfs.is_dir(&full) {
        let (files, dirs) = g.vfs.children(&full);
        files
            .iter()
            .chain(dirs.iter())
            .filter_map(|f| {
                let chars: Vec<char> = f.chars().collect();
                let cut = (prefix_len + 1).min(chars.len());
                let head: String = chars[..cut].iter().collect();
                let rest: String = chars[cut..].iter().collect();
                let digits = rest
                    .split('_')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .parse::<u64>()
                    .unwrap_or(0);
                let (stem, last) = head.split_at(head.len().saturating_sub(1));
                (stem == filename && last == "_").then_some(digits)
            })
            .max()
            .map(|m| m + 1)
            .unwrap_or(1)
    } else {
        let _ = g.vfs.makedirs(&full);
        1
    };
    Ok((full, filename, counter, subfolder))
}

/// Run one node: `Ok(Some(ui))` for nodes with UI output.
fn execute_node(g: &mut Inner, graph: &Graph, node: &str) -> Result<Option<Value>, Box<ExecError>> {
    let class = class_of(&graph.prompt, node);
    let inputs = inputs_of(&graph.prompt, node);
    if is_image_loader(&class) {
        if let Some(image) = inputs.get("image").and_then(Value::as_str) {
            let (name, dir) = annotated_filepath(image);
            let path = join(dir.unwrap_or(paths::INPUT), &name);
            let (errno, what, ty) = if g.vfs.is_dir(&path) {
                (21, "Is a directory", "IsADirectoryError")
            } else {
                (2, "No such file or directory", "FileNotFoundError")
            };
            if !g.vfs.is_file(&path) {
                let message = format!(
                    "[Errno {errno}] {what}: {}",
                    pyjson::py_repr(&Value::String(path.clone()))
                );
                return Err(Box::new(ExecError {
                    exception_message: format!("{message}\n"),
                    exception_type: ty.into(),
                    traceback: traceback(&format!(
                        "  File \"/opt/comfyui/nodes.py\", line 1686, in load_image\n    img = node_helpers.pillow(Image.open, image_path)\n          ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n  {message}\n"
                    )),
                    current_inputs: current_inputs(graph, node),
                }));
            }
        }
        return Ok(None);
    }
    let (prefix, dir, kind) = match class.as_str() {
        "SaveImage" => {
            let prefix = match inputs.get("filename_prefix") {
                None => "ComfyUI".to_string(),
                Some(v) => eval_string(graph, v, 0).unwrap_or_else(|| "ComfyUI".into()),
            };
            (prefix, paths::OUTPUT, "output")
        }
        "PreviewImage" => {
            const CHARS: &[u8] = b"abcdefghijklmnopqrstupvxyz";
            let mut rng = rand::rng();
            let suffix: String = (0..5)
                .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
                .collect();
            (format!("ComfyUI_temp_{suffix}"), paths::TEMP, "temp")
        }
        _ => return Ok(None),
    };
    let (folder, filename, counter, subfolder) =
        save_image_path(g, &prefix, dir).map_err(|mut e| {
            e.current_inputs = current_inputs(graph, node);
            e
        })?;
    let file = format!("{}_{counter:05}_.png", filename.replace("%batch_num%", "0"));
    if g.vfs
        .write(&join(&folder, &file), Blob::from_bytes(PNG_RESULT))
        .is_err()
    {
        return Err(Box::new(ExecError {
            exception_message: format!(
                "[Errno 2] No such file or directory: '{}'\n",
                join(&folder, &file)
            ),
            exception_type: "FileNotFoundError".into(),
            traceback: traceback(
                "  File \"/opt/comfyui/nodes.py\", line 1589, in save_images\n    img.save(os.path.join(full_output_folder, file), pnginfo=metadata, compress_level=self.compress_level)\n",
            ),
            current_inputs: current_inputs(graph, node),
        }));
    }
    Ok(Some(
        json!({"images": [{"filename": file, "subfolder": subfolder, "type": kind}]}),
    ))
}
