//! `POST /prompt` (number/front, client prompt ids, `validate_prompt` with ComfyUI's error
//! shapes) and the queue/history/interrupt/free endpoints.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::{Map, Value, json};

use super::fixtures;
use super::http::Resp;
use super::paths::{self, annotated_filepath, join};
use super::pyjson::{self, float_value, py_repr, py_str, truthy};
use super::server::Req;
use super::state::{Inner, QueueItem, Shared};

// ----- key order of the "prompt" object -----------------------------------------------------

/// Key order of the top-level `"prompt"` object (Python dicts keep it; `serde_json` sorts).
pub struct PromptOrder(pub Option<Vec<String>>);

struct KeysOnly(Option<Vec<String>>);

impl<'de> Deserialize<'de> for KeysOnly {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = KeysOnly;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<KeysOnly, A::Error> {
                let mut keys: Vec<String> = Vec::new();
                while let Some(k) = map.next_key::<String>()? {
                    map.next_value::<IgnoredAny>()?;
                    if !keys.contains(&k) {
                        keys.push(k);
                    }
                }
                Ok(KeysOnly(Some(keys)))
            }
        }
        d.deserialize_map(V)
    }
}

impl<'de> Deserialize<'de> for PromptOrder {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = PromptOrder;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PromptOrder, A::Error> {
                let mut order = None;
                while let Some(k) = map.next_key::<String>()? {
                    if k == "prompt" {
                        order = map.next_value::<KeysOnly>()?.0;
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(PromptOrder(order))
            }
        }
        d.deserialize_map(V)
    }
}

// ----- validation -----------------------------------------------------------------------------

/// ComfyUI's `is_link`.
pub fn is_link(v: &Value) -> bool {
    match v.as_array() {
        Some(a) if a.len() == 2 => a[0].is_string() && a[1].is_number(),
        _ => false,
    }
}

/// Nodes whose `VALIDATE_INPUTS` takes `image` (the combo check is skipped for it and the file
/// must exist instead).
pub fn is_image_loader(class: &str) -> bool {
    matches!(
        class,
        "LoadImage" | "LoadImageMask" | "LoadImageOutput" | "WebcamCapture"
    )
}

/// `folder_paths.exists_annotated_filepath`.
pub fn exists_annotated(g: &Inner, name: &str) -> bool {
    let (name, dir) = annotated_filepath(name);
    g.vfs.exists(&join(dir.unwrap_or(paths::INPUT), &name))
}

struct Exception {
    type_name: &'static str,
    message: String,
}

type Validated = (bool, Vec<Value>);

struct Validator<'a> {
    g: &'a Inner,
    prompt: &'a mut Map<String, Value>,
    validated: HashMap<String, Validated>,
    validated_order: Vec<String>,
    visiting: HashSet<String>,
}

fn input_spec(class: &Map<String, Value>) -> Vec<(String, bool, Value)> {
    let mut out = Vec::new();
    let inputs = class.get("input");
    let order = class.get("input_order");
    for (cat, required) in [("required", true), ("optional", false)] {
        let Some(specs) = inputs.and_then(|i| i.get(cat)).and_then(Value::as_object) else {
            continue;
        };
        let names: Vec<String> = order
            .and_then(|o| o.get(cat))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_else(|| specs.keys().cloned().collect());
        for n in names {
            if let Some(spec) = specs.get(&n) {
                out.push((n, required, spec.clone()));
            }
        }
    }
    out
}

/// `validate_node_input(received_type, input_type)`.
fn types_compatible(received: &Value, expected: &Value) -> bool {
    if received == expected {
        return true;
    }
    let (Some(r), Some(e)) = (received.as_str(), expected.as_str()) else {
        return false;
    };
    let rs: HashSet<&str> = r.split(',').map(str::trim).collect();
    let es: HashSet<&str> = e.split(',').map(str::trim).collect();
    rs.contains("*") || es.contains("*") || rs.intersection(&es).next().is_some()
}

fn values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Bool(x), Value::Number(y)) | (Value::Number(y), Value::Bool(x)) => {
            y.as_f64() == Some(if *x { 1.0 } else { 0.0 })
        }
        _ => a == b,
    }
}

fn py_int(v: &Value) -> Result<Value, String> {
    match v {
        Value::Number(n) => {
            if n.is_i64() || n.is_u64() {
                Ok(v.clone())
            } else {
                let f = n.as_f64().unwrap_or(0.0);
                Ok(json!(f.trunc() as i64))
            }
        }
        Value::Bool(b) => Ok(json!(i64::from(*b))),
        Value::String(s) => s
            .trim()
            .replace('_', "")
            .parse::<i64>()
            .map(|i| json!(i))
            .map_err(|_| format!("invalid literal for int() with base 10: {}", py_repr(v))),
        _ => Err(format!(
            "int() argument must be a string, a bytes-like object or a real number, not '{}'",
            py_type(v)
        )),
    }
}

fn py_float_conv(v: &Value) -> Result<Value, String> {
    match v {
        Value::Number(n) => Ok(float_value(n.as_f64().unwrap_or(0.0))),
        Value::Bool(b) => Ok(float_value(if *b { 1.0 } else { 0.0 })),
        Value::String(s) => s
            .trim()
            .parse::<f64>()
            .map(float_value)
            .map_err(|_| format!("could not convert string to float: {}", py_repr(v))),
        _ => Err(format!(
            "float() argument must be a string or a real number, not '{}'",
            py_type(v)
        )),
    }
}

fn py_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

impl Validator<'_> {
    fn validate_inputs(&mut self, id: &str) -> Result<Validated, Exception> {
        if let Some(v) = self.validated.get(id) {
            return Ok(v.clone());
        }
        if !self.visiting.insert(id.to_string()) {
            return Err(Exception {
                type_name: "RecursionError",
                message: "maximum recursion depth exceeded".into(),
            });
        }
        let result = self.validate_inputs_inner(id);
        self.visiting.remove(id);
        let result = result?;
        self.set_validated(id, result.clone());
        Ok(result)
    }

    fn set_validated(&mut self, id: &str, v: Validated) {
        if !self.validated.contains_key(id) {
            self.validated_order.push(id.to_string());
        }
        self.validated.insert(id.to_string(), v);
    }

    fn validate_inputs_inner(&mut self, id: &str) -> Result<Validated, Exception> {
        let node = self.prompt.get(id).cloned().unwrap_or(Value::Null);
        let Some(inputs) = node.get("inputs").and_then(Value::as_object).cloned() else {
            return Err(Exception {
                type_name: "KeyError",
                message: "'inputs'".into(),
            });
        };
        let class_type = py_str(node.get("class_type").unwrap_or(&Value::Null));
        let Some(class) = fixtures::node_class(&class_type) else {
            return Err(Exception {
                type_name: "KeyError",
                message: py_repr(&Value::String(class_type)),
            });
        };
        let mut errors: Vec<Value> = Vec::new();
        let mut valid = true;
        let custom = is_image_loader(&class_type);
        for (x, required, spec) in input_spec(class) {
            let input_type = spec.get(0).cloned().unwrap_or(Value::Null);
            let extra = spec.get(1).cloned().unwrap_or_else(|| json!({}));
            let info = json!([input_type, extra]);
            let Some(val) = inputs.get(&x).cloned() else {
                if required {
                    errors.push(json!({
                        "type": "required_input_missing",
                        "message": "Required input is missing",
                        "details": x,
                        "extra_info": {"input_name": x},
                    }));
                }
                continue;
            };
            if let Value::Array(link) = &val {
                if link.len() != 2 {
                    errors.push(json!({
                        "type": "bad_linked_input",
                        "message": "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                        "details": x,
                        "extra_info": {"input_name": x, "input_config": info, "received_value": val},
                    }));
                    continue;
                }
                let o_id = py_str(&link[0]);
                let Some(o_node) = self.prompt.get(&o_id).cloned() else {
                    return Err(Exception {
                        type_name: "KeyError",
                        message: py_repr(&link[0]),
                    });
                };
                let o_class = py_str(o_node.get("class_type").unwrap_or(&Value::Null));
                let outputs = fixtures::node_class(&o_class)
                    .and_then(|c| c.get("output"))
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                let slot = link[1].as_f64().unwrap_or(-1.0);
                let Some(received) = (slot >= 0.0)
                    .then(|| outputs.get(slot as usize))
                    .flatten()
                    .cloned()
                else {
                    return Err(Exception {
                        type_name: "IndexError",
                        message: "tuple index out of range".into(),
                    });
                };
                if !types_compatible(&received, &input_type) {
                    errors.push(json!({
                        "type": "return_type_mismatch",
                        "message": "Return type mismatch between linked nodes",
                        "details": format!("{x}, received_type({}) mismatch input_type({})", py_str(&received), py_str(&input_type)),
                        "extra_info": {"input_name": x, "input_config": info, "received_type": received, "linked_node": val},
                    }));
                    continue;
                }
                match self.validate_inputs(&o_id) {
                    Ok((false, _)) => {
                        valid = false;
                        continue;
                    }
                    Ok(_) => {}
                    Err(ex) => {
                        valid = false;
                        let reasons = vec![json!({
                            "type": "exception_during_inner_validation",
                            "message": "Exception when validating inner node",
                            "details": ex.message,
                            "extra_info": {
                                "input_name": x, "input_config": info, "exception_message": ex.message,
                                "exception_type": ex.type_name, "traceback": [], "linked_node": val,
                            },
                        })];
                        self.set_validated(&o_id, (false, reasons));
                        continue;
                    }
                }
                continue;
            }
            let mut val = val;
            if let Some(inner) = val.as_object().and_then(|o| o.get("__value__")).cloned() {
                val = inner;
                self.set_input(id, &x, val.clone());
            }
            let conv = match input_type.as_str() {
                Some("INT") => Some(py_int(&val)),
                Some("FLOAT") => Some(py_float_conv(&val)),
                Some("STRING") => Some(Ok(Value::String(py_str(&val)))),
                Some("BOOLEAN") => Some(Ok(Value::Bool(truthy(&val)))),
                _ => None,
            };
            if let Some(conv) = conv {
                match conv {
                    Ok(v) => {
                        val = v;
                        self.set_input(id, &x, val.clone());
                    }
                    Err(msg) => {
                        errors.push(json!({
                            "type": "invalid_input_type",
                            "message": format!("Failed to convert an input value to a {} value", py_str(&input_type)),
                            "details": format!("{x}, {}, {msg}", py_str(&val)),
                            "extra_info": {"input_name": x, "input_config": info, "received_value": val, "exception_message": msg},
                        }));
                        continue;
                    }
                }
            }
            if custom && x == "image" {
                continue;
            }
            if let (Some(min), Some(v)) = (extra.get("min").and_then(Value::as_f64), val.as_f64()) {
                if v < min {
                    errors.push(json!({
                        "type": "value_smaller_than_min",
                        "message": format!("Value {} smaller than min of {}", py_str(&val), py_str(&extra["min"])),
                        "details": x,
                        "extra_info": {"input_name": x, "input_config": info, "received_value": val},
                    }));
                    continue;
                }
            }
            if let (Some(max), Some(v)) = (extra.get("max").and_then(Value::as_f64), val.as_f64()) {
                if v > max {
                    errors.push(json!({
                        "type": "value_bigger_than_max",
                        "message": format!("Value {} bigger than max of {}", py_str(&val), py_str(&extra["max"])),
                        "details": x,
                        "extra_info": {"input_name": x, "input_config": info, "received_value": val},
                    }));
                    continue;
                }
            }
            let combo: Option<Vec<Value>> = match &input_type {
                Value::Array(options) => Some(options.clone()),
                Value::String(t) if t == "COMBO" => {
                    extra.get("options").and_then(Value::as_array).cloned()
                }
                _ => None,
            };
            if let Some(options) = combo {
                if !options.iter().any(|o| values_equal(o, &val)) {
                    let (list_info, input_config) = if options.len() > 20 {
                        (format!("(list of length {})", options.len()), Value::Null)
                    } else {
                        (py_repr(&Value::Array(options.clone())), info.clone())
                    };
                    errors.push(json!({
                        "type": "value_not_in_list",
                        "message": "Value not in list",
                        "details": format!("{x}: '{}' not in {list_info}", py_str(&val)),
                        "extra_info": {"input_name": x, "input_config": input_config, "received_value": val},
                    }));
                    continue;
                }
            }
        }
        if custom {
            if let Some(image) = inputs.get("image").filter(|v| !v.is_array()) {
                let image = self
                    .prompt
                    .get(id)
                    .and_then(|n| n.get("inputs"))
                    .and_then(|i| i.get("image"))
                    .cloned()
                    .unwrap_or_else(|| image.clone());
                let ok = image.as_str().is_some_and(|s| exists_annotated(self.g, s));
                if !ok {
                    errors.push(json!({
                        "type": "custom_validation_failed",
                        "message": "Custom validation failed for node",
                        "details": format!("image - Invalid image file: {}", py_str(&image)),
                        "extra_info": {"input_name": "image"},
                    }));
                }
            }
        }
        Ok((errors.is_empty() && valid, errors))
    }

    fn set_input(&mut self, id: &str, name: &str, v: Value) {
        if let Some(inputs) = self
            .prompt
            .get_mut(id)
            .and_then(|n| n.get_mut("inputs"))
            .and_then(Value::as_object_mut)
        {
            inputs.insert(name.to_string(), v);
        }
    }
}

struct Validation {
    error: Option<Value>,
    outputs: Vec<String>,
    node_errors: Vec<(String, Value)>,
}

/// `execution.validate_prompt` (outputs are reported in reverse order of appearance).
fn validate_prompt(
    g: &Inner,
    prompt: &mut Map<String, Value>,
    order: &[String],
    partial: Option<&Value>,
) -> Validation {
    let fail = |error: Value| Validation {
        error: Some(error),
        outputs: vec![],
        node_errors: vec![],
    };
    let mut outputs: Vec<String> = Vec::new();
    for x in order {
        let node = &prompt[x];
        let Some(class_type) = node.get("class_type") else {
            return fail(json!({
                "type": "invalid_prompt",
                "message": "Cannot execute because a node is missing the class_type property.",
                "details": format!("Node ID '#{x}'"),
                "extra_info": {},
            }));
        };
        let class_type = py_str(class_type);
        if fixtures::node_class(&class_type).is_none() {
            return fail(json!({
                "type": "invalid_prompt",
                "message": format!("Cannot execute because node {class_type} does not exist."),
                "details": format!("Node ID '#{x}'"),
                "extra_info": {},
            }));
        }
        if fixtures::is_output_node(&class_type) {
            let selected = match partial {
                Some(Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(x)),
                Some(Value::String(s)) => s.contains(x.as_str()),
                _ => true,
            };
            if selected {
                outputs.push(x.clone());
            }
        }
    }
    outputs.reverse();
    if outputs.is_empty() {
        return fail(
            json!({"type": "prompt_no_outputs", "message": "Prompt has no outputs", "details": "", "extra_info": {}}),
        );
    }
    let mut v = Validator {
        g,
        prompt,
        validated: HashMap::new(),
        validated_order: Vec::new(),
        visiting: HashSet::new(),
    };
    let mut good: Vec<String> = Vec::new();
    let mut errors: Vec<(String, Vec<Value>)> = Vec::new();
    let mut node_errors: Vec<(String, Value)> = Vec::new();
    for o in &outputs {
        let (ok, reasons) = match v.validate_inputs(o) {
            Ok(r) => r,
            Err(ex) => {
                let reasons = vec![json!({
                    "type": "exception_during_validation",
                    "message": "Exception when validating node",
                    "details": ex.message,
                    "extra_info": {"exception_type": ex.type_name, "traceback": []},
                })];
                v.set_validated(o, (false, reasons.clone()));
                (false, reasons)
            }
        };
        if ok {
            good.push(o.clone());
            continue;
        }
        errors.push((o.clone(), reasons));
        for node_id in v.validated_order.clone() {
            let (nok, nreasons) = v.validated[&node_id].clone();
            if !nok && !nreasons.is_empty() {
                if !node_errors.iter().any(|(k, _)| *k == node_id) {
                    let class_type = v
                        .prompt
                        .get(&node_id)
                        .and_then(|n| n.get("class_type"))
                        .cloned()
                        .unwrap_or(Value::Null);
                    node_errors.push((node_id.clone(), json!({"errors": nreasons, "dependent_outputs": [], "class_type": class_type})));
                }
                if let Some((_, e)) = node_errors.iter_mut().find(|(k, _)| *k == node_id) {
                    if let Some(d) = e.get_mut("dependent_outputs").and_then(Value::as_array_mut) {
                        d.push(Value::String(o.clone()));
                    }
                }
            }
        }
    }
    if good.is_empty() {
        let details: Vec<String> = errors
            .iter()
            .flat_map(|(_, rs)| {
                rs.iter()
                    .map(|e| format!("{}: {}", py_str(&e["message"]), py_str(&e["details"])))
            })
            .collect();
        return Validation {
            error: Some(json!({
                "type": "prompt_outputs_failed_validation",
                "message": "Prompt outputs failed validation",
                "details": details.join("\n"),
                "extra_info": {},
            })),
            outputs: vec![],
            node_errors,
        };
    }
    Validation {
        error: None,
        outputs: good,
        node_errors,
    }
}

fn node_errors_json(errs: &[(String, Value)]) -> String {
    pyjson::dumps_ordered(errs.iter().map(|(k, v)| (k.as_str(), pyjson::dumps(v))))
}

// ----- handlers ---------------------------------------------------------------------------------

pub async fn post_prompt(shared: &Arc<Shared>, req: &Req) -> Resp {
    let (body, order) = match req.json_with_prompt_order().await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Value::Object(json_data) = body else {
        return Resp::server_error();
    };
    let mut g = shared.lock();
    let (number, key) = match json_data.get("number") {
        Some(n) => {
            let f = match n {
                Value::Number(x) => x.as_f64(),
                Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
                Value::String(s) => s.trim().parse::<f64>().ok(),
                _ => None,
            };
            let Some(f) = f else {
                return Resp::server_error();
            };
            (float_value(f), f)
        }
        None => {
            let mut n = g.number;
            if json_data.get("front").is_some_and(truthy) {
                n = -n;
            }
            g.number += 1;
            (json!(n), n as f64)
        }
    };
    let Some(prompt) = json_data.get("prompt") else {
        let error = json!({"type": "no_prompt", "message": "No prompt provided", "details": "No prompt provided", "extra_info": {}});
        return Resp::json_status(400, &json!({"error": error, "node_errors": {}}));
    };
    let Value::Object(mut prompt) = prompt.clone() else {
        return Resp::server_error();
    };
    let prompt_id = match json_data.get("prompt_id") {
        Some(v) => py_str(v),
        None => uuid::Uuid::new_v4().to_string(),
    };
    let mut node_order: Vec<String> = order
        .unwrap_or_default()
        .into_iter()
        .filter(|k| prompt.contains_key(k))
        .collect();
    for k in prompt.keys() {
        if !node_order.contains(k) {
            node_order.push(k.clone());
        }
    }
    let validation = validate_prompt(
        &g,
        &mut prompt,
        &node_order,
        json_data.get("partial_execution_targets"),
    );
    let mut extra_data = json_data
        .get("extra_data")
        .cloned()
        .unwrap_or_else(|| json!({}));
    if let Some(client_id) = json_data.get("client_id") {
        match extra_data.as_object_mut() {
            Some(m) => {
                m.insert("client_id".into(), client_id.clone());
            }
            None => return Resp::server_error(),
        }
    }
    if let Some(error) = validation.error {
        let text = format!(
            "{{\"error\": {}, \"node_errors\": {}}}",
            pyjson::dumps(&error),
            node_errors_json(&validation.node_errors)
        );
        return Resp::json_text(400, text);
    }
    let item = QueueItem {
        number: number.clone(),
        key,
        prompt_id: prompt_id.clone(),
        prompt: Value::Object(prompt),
        node_order,
        extra_data,
        outputs: validation.outputs,
    };
    g.heap_push(item);
    g.queue_updated();
    drop(g);
    shared.worker_wake.notify_one();
    let text = format!(
        "{{\"prompt_id\": {}, \"number\": {}, \"node_errors\": {}}}",
        pyjson::dumps_str(&prompt_id),
        pyjson::dumps(&number),
        node_errors_json(&validation.node_errors)
    );
    Resp::json_text(200, text)
}

pub fn get_history(shared: &Arc<Shared>, req: &Req) -> Resp {
    let max_items = match req.q("max_items") {
        None => None,
        Some(s) => match s.trim().parse::<i64>() {
            Ok(n) => Some(n),
            Err(_) => return Resp::server_error(),
        },
    };
    let mut offset = match req.q("offset") {
        None => -1,
        Some(s) => match s.trim().parse::<i64>() {
            Ok(n) => n,
            Err(_) => return Resp::server_error(),
        },
    };
    let g = shared.lock();
    if offset < 0 {
        if let Some(m) = max_items {
            offset = g.history.len() as i64 - m;
        }
    }
    let mut out: Vec<(String, Value)> = Vec::new();
    for (i, (k, v)) in g.history.iter().enumerate() {
        if i as i64 >= offset {
            out.push((k.clone(), v.clone()));
            if max_items.is_some_and(|m| out.len() as i64 >= m) {
                break;
            }
        }
    }
    Resp::json_text(200, g.history_json(&out))
}

pub fn get_history_id(shared: &Arc<Shared>, id: &str) -> Resp {
    let g = shared.lock();
    let out: Vec<(String, Value)> = g.history.iter().filter(|(k, _)| k == id).cloned().collect();
    Resp::json_text(200, g.history_json(&out))
}

/// `"key" in json_data` for whatever JSON value the body was.
fn py_contains(v: &Value, key: &str) -> bool {
    match v {
        Value::Object(m) => m.contains_key(key),
        Value::Array(a) => a.iter().any(|x| x.as_str() == Some(key)),
        Value::String(s) => s.contains(key),
        _ => false,
    }
}

/// The ids of a `"delete"` value as Python would iterate them.
fn delete_ids(v: &Value) -> Result<Vec<Value>, Resp> {
    match v {
        Value::Array(a) => Ok(a.clone()),
        Value::String(s) => Ok(s.chars().map(|c| Value::String(c.to_string())).collect()),
        Value::Object(m) => Ok(m.keys().map(|k| Value::String(k.clone())).collect()),
        _ => Err(Resp::server_error()),
    }
}

fn clear_and_delete(body: &Value) -> Result<(bool, Vec<Value>), Resp> {
    let mut clear = false;
    let mut ids = Vec::new();
    if py_contains(body, "clear") {
        let Value::Object(m) = body else {
            return Err(Resp::server_error());
        };
        clear = truthy(&m["clear"]);
    }
    if py_contains(body, "delete") {
        let Value::Object(m) = body else {
            return Err(Resp::server_error());
        };
        ids = delete_ids(&m["delete"])?;
    }
    Ok((clear, ids))
}

pub async fn post_queue(shared: &Arc<Shared>, req: &Req) -> Resp {
    let body = match req.json().await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let (clear, ids) = match clear_and_delete(&body) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let mut g = shared.lock();
    if clear {
        g.queue.clear();
        g.queue_updated();
    }
    for id in ids {
        if let Value::String(id) = id {
            g.delete_pending(&id);
        }
    }
    Resp::empty(200)
}

pub async fn post_history(shared: &Arc<Shared>, req: &Req) -> Resp {
    let body = match req.json().await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let (clear, ids) = match clear_and_delete(&body) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let mut g = shared.lock();
    if clear {
        g.history.clear();
    }
    for id in ids {
        if let Value::String(id) = id {
            g.history.retain(|(k, _)| *k != id);
        }
    }
    Resp::empty(200)
}

pub async fn post_interrupt(shared: &Arc<Shared>, req: &Req) -> Resp {
    if let Some(r) = req.too_large() {
        return r;
    }
    let bytes = req.body.read_all().await.unwrap_or_default();
    let body = match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(m)) => Value::Object(m),
        Ok(_) => return Resp::server_error(),
        Err(_) => json!({}),
    };
    let mut g = shared.lock();
    let target = body.get("prompt_id").filter(|v| truthy(v)).cloned();
    let interrupt = match target {
        Some(id) => g
            .running
            .as_ref()
            .is_some_and(|r| Value::String(r.prompt_id.clone()) == id),
        None => true,
    };
    if interrupt {
        g.interrupt = true;
        drop(g);
        shared.release_wake.notify_waiters();
    }
    Resp::empty(200)
}

pub async fn post_free(shared: &Arc<Shared>, req: &Req) -> Resp {
    let body = match req.json().await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Value::Object(m) = body else {
        return Resp::server_error();
    };
    if m.get("free_memory").is_some_and(truthy) {
        let mut g = shared.lock();
        if g.running.is_some() {
            g.pending_free = true;
        } else {
            g.cache.clear();
        }
    }
    Resp::empty(200)
}
