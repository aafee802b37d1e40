//! The inverse of the rewriter for graphs ComfyUI echoes back (queue, history): the owner input
//! removed, namespaced paths mapped back to what the user wrote.
use super::inputs::{DICT_FILE_FIELDS, literal, literal_str};
use crate::tenancy::nodes::{NodeRules, OWNER_INPUT};
use crate::tenancy::paths::{Kind, from_upstream, path_from_upstream, split_annotation};
use serde_json::{Map, Value};

/// The inverse of [`rewrite`] for graphs ComfyUI echoes back (queue and history `prompt[2]`):
/// removes [`OWNER_INPUT`] everywhere and maps namespaced path inputs back to client space.
/// Values outside NS (ledger-owned files, odd shapes) are left as they are. Wrapped
/// `{"__value__": …}` path inputs come back unwrapped.
pub fn strip(prompt: &mut Map<String, Value>, ns: &str, rules: &NodeRules) {
    for node in prompt.values_mut() {
        let Some(obj) = node.as_object_mut() else {
            continue;
        };
        let class = obj
            .get("class_type")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let Some(inputs) = obj.get_mut("inputs").and_then(Value::as_object_mut) else {
            continue;
        };
        inputs.remove(OWNER_INPUT);
        let Some(rule) = class.as_deref().and_then(|c| rules.get(c)) else {
            continue;
        };
        let unprefix = |s: &str| {
            s.strip_prefix(ns)
                .and_then(|r| r.strip_prefix('/'))
                .filter(|r| !r.is_empty())
                .map(str::to_owned)
        };
        let unfolder = |s: &str| from_upstream(ns, Kind::Input, s);
        for name in &rule.prefix_inputs {
            strip_str(inputs, name, &unprefix);
        }
        for name in rule.file_inputs.iter().chain(&rule.model3d_inputs) {
            strip_str(inputs, name, &|s| unfile(ns, s));
        }
        for name in &rule.folder_inputs {
            strip_str(inputs, name, &unfolder);
        }
        for name in &rule.dict_inputs {
            let Ok(Some(Value::Object(obj))) = literal(inputs, name) else {
                continue;
            };
            let mut obj = obj.clone();
            for field in DICT_FILE_FIELDS {
                if let Some(client) = obj
                    .get(field)
                    .and_then(Value::as_str)
                    .and_then(|s| unfile(ns, s))
                {
                    obj.insert(field.to_owned(), Value::String(client));
                }
            }
            inputs.insert(name.clone(), Value::Object(obj));
        }
    }
}

fn strip_str(inputs: &mut Map<String, Value>, name: &str, f: &dyn Fn(&str) -> Option<String>) {
    if let Ok(Some(s)) = literal_str(inputs, name)
        && let Some(client) = f(s)
    {
        inputs.insert(name.to_owned(), Value::String(client));
    }
}

fn unfile(ns: &str, s: &str) -> Option<String> {
    let (path, ann) = split_annotation(s);
    let client = path_from_upstream(ns, ann.unwrap_or(Kind::Input), path)?;
    Some(format!(
        "{client}{}",
        ann.map(Kind::annotation).unwrap_or_default()
    ))
}
