//! The prompt-graph rewriter: confines every path a user's `POST /prompt` graph can read or
//! write to that user's namespace (following the rules of `nodes.rs`), refuses what cannot be
//! confined (links into path inputs, unknown/custom/API/denied classes), and tags every output
//! node with a hidden owner input so ComfyUI's cache is partitioned per user.
use super::inputs::{DICT_FILE_FIELDS, InputError, literal, literal_str};
use crate::tenancy::catalog::{Catalog, Origin};
use crate::tenancy::nodes::{NodeRule, NodeRules, OWNER_INPUT, config_key};
use crate::tenancy::paths::{
    Kind, clean, from_upstream, path_from_upstream, path_to_upstream, split_annotation, to_upstream,
};
use serde_json::{Map, Value, json};

/// The prefix used when a writer's prefix is empty or names a folder only (ComfyUI's default).
const DEFAULT_PREFIX: &str = "ComfyUI";

/// Everything [`rewrite`] needs to know about the caller.
pub struct Caller<'a> {
    /// The user's namespace, e.g. `u_alice`.
    pub ns: &'a str,
    /// The literal put into [`OWNER_INPUT`] on every output node.
    pub owner_tag: &'a str,
    pub catalog: &'a Catalog,
    pub rules: &'a NodeRules,
    /// Admins may use custom/API/denied classes without configuration; their paths are still
    /// namespaced the same way.
    pub admin: bool,
    /// `(kind, upstream subfolder, file name)`: the ledger says this user owns exactly that file
    /// (for references outside NS, e.g. temp-root previews).
    pub owns_file: &'a dyn Fn(Kind, &str, &str) -> bool,
}

/// Why a graph was refused: the node, its class, the input (when one is at fault) and a message
/// for the user.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub node_id: String,
    pub class_type: String,
    pub input: Option<String>,
    pub message: String,
}

impl Refusal {
    /// The 400 body, in the shape ComfyUI uses for validation errors, so the stock frontend shows
    /// the message and highlights the node.
    pub fn to_comfy_error(&self) -> Value {
        let mut details = format!("Node ID '#{}'", self.node_id);
        if !self.class_type.is_empty() {
            details.push_str(&format!(" ({})", self.class_type));
        }
        if let Some(input) = &self.input {
            details.push_str(&format!(", input '{input}'"));
        }
        let extra_info = match &self.input {
            Some(input) => json!({ "input_name": input }),
            None => json!({}),
        };
        let mut node_errors = Map::new();
        node_errors.insert(
            self.node_id.clone(),
            json!({
                "errors": [{
                    "type": "prompt_refused",
                    "message": self.message,
                    "details": self.input.clone().unwrap_or_default(),
                    "extra_info": extra_info,
                }],
                "dependent_outputs": [],
                "class_type": self.class_type,
            }),
        );
        json!({
            "error": {
                "type": "prompt_refused",
                "message": self.message,
                "details": details,
                "extra_info": {},
            },
            "node_errors": node_errors,
        })
    }
}

/// Rewrites a `POST /prompt` graph in place for the caller in `ctx`, or refuses it. On refusal
/// the graph is left untouched.
pub fn rewrite(prompt: &mut Map<String, Value>, ctx: &Caller) -> Result<(), Refusal> {
    let mut out = prompt.clone();
    for (id, node) in out.iter_mut() {
        rewrite_node(id, node, ctx)?;
    }
    *prompt = out;
    Ok(())
}

fn rewrite_node(id: &str, node: &mut Value, ctx: &Caller) -> Result<(), Refusal> {
    let refuse = |class: &str, input: Option<&str>, message: String| Refusal {
        node_id: id.to_owned(),
        class_type: class.to_owned(),
        input: input.map(str::to_owned),
        message,
    };
    let Some(obj) = node.as_object_mut() else {
        return Err(refuse("", None, "a node must be a JSON object".into()));
    };
    let Some(class) = obj
        .get("class_type")
        .and_then(Value::as_str)
        .map(str::to_owned)
    else {
        return Err(refuse("", None, "a node needs a string class_type".into()));
    };
    let class = class.as_str();
    if ctx.catalog.is_empty() {
        // ComfyUI's node list could not be read: nothing can be checked, so nothing passes.
        return Err(refuse(
            class,
            None,
            "the node list of ComfyUI is not available right now; try again later".into(),
        ));
    }
    let Some(info) = ctx.catalog.get(class) else {
        return Err(refuse(class, None, format!("unknown node class '{class}'")));
    };
    let rule = ctx.rules.get(class);
    if !ctx.admin {
        let what = match info.origin() {
            Origin::Core => None,
            Origin::Custom => Some("custom node class"),
            Origin::Api => Some("API node class"),
            Origin::Other => Some("node class of an unrecognised module"),
        };
        if let Some(what) = what {
            // An empty configured rule does not count: the operator must say how it uses files.
            let allowed = ctx.rules.configured(class) && rule.is_some_and(NodeRule::is_declared);
            if !allowed {
                return Err(refuse(
                    class,
                    None,
                    format!(
                        "the {what} '{class}' is not allowed; an administrator can allow it with {} in warden.toml \
                         (declaring `pure = true` or its path inputs)",
                        config_key(class)
                    ),
                ));
            }
        }
        if rule.is_some_and(|r| r.denied) {
            return Err(refuse(
                class,
                None,
                format!("the node class '{class}' is not available to non-admin users"),
            ));
        }
    }
    let Some(inputs) = obj.get_mut("inputs").and_then(Value::as_object_mut) else {
        return Err(refuse(
            class,
            None,
            "a node needs an object of inputs".into(),
        ));
    };
    if !ctx.admin
        && let Some((name, _)) = inputs.iter().find(|(_, v)| names_a_file(v))
    {
        // A literal `{filename, type}` dict (Preview3D's `camera_info`, say) is echoed back in
        // the node's output: it is no one's file, so it cannot be an input either.
        return Err(refuse(
            class,
            Some(name),
            format!("'{name}' may not contain a file locator ({{filename, type}})"),
        ));
    }
    if let Some(rule) = rule {
        apply_rule(rule, inputs, ctx).map_err(|(input, msg)| refuse(class, Some(&input), msg))?;
    }
    // The owner input is reserved: a client-sent one is dropped (or overwritten) everywhere.
    inputs.remove(OWNER_INPUT);
    if info.output_node {
        inputs.insert(
            OWNER_INPUT.to_owned(),
            Value::String(ctx.owner_tag.to_owned()),
        );
    }
    Ok(())
}

/// Does a literal input value hold a file-locator-shaped object (`filename` and `type`) at
/// any depth?
fn names_a_file(v: &Value) -> bool {
    match v {
        Value::Object(m) => {
            (m.contains_key("filename") && m.contains_key("type")) || m.values().any(names_a_file)
        }
        Value::Array(a) => a.iter().any(names_a_file),
        _ => false,
    }
}

fn apply_rule(
    rule: &NodeRule,
    inputs: &mut Map<String, Value>,
    ctx: &Caller,
) -> Result<(), InputError> {
    let ns = ctx.ns;
    for name in &rule.prefix_inputs {
        let raw = literal_str(inputs, name)?.unwrap_or("");
        let v = map_prefix(ns, raw).map_err(|m| (name.clone(), m))?;
        inputs.insert(name.clone(), Value::String(v));
    }
    for name in &rule.file_inputs {
        if let Some(raw) = literal_str(inputs, name)? {
            let v = map_file(ns, raw, ctx.owns_file, false).map_err(|m| (name.clone(), m))?;
            inputs.insert(name.clone(), Value::String(v));
        }
    }
    for name in &rule.folder_inputs {
        if let Some(raw) = literal_str(inputs, name)? {
            let v = map_folder(ns, raw).map_err(|m| (name.clone(), m))?;
            inputs.insert(name.clone(), Value::String(v));
        }
    }
    for name in &rule.model3d_inputs {
        if let Some(raw) = literal_str(inputs, name)? {
            let v = map_file(ns, raw, ctx.owns_file, true).map_err(|m| (name.clone(), m))?;
            inputs.insert(name.clone(), Value::String(v));
        }
    }
    for name in &rule.dict_inputs {
        let Some(v) = literal(inputs, name)? else {
            continue;
        };
        let Some(obj) = v.as_object() else {
            return Err((name.clone(), format!("'{name}' must be an object")));
        };
        let mut obj = obj.clone();
        for field in DICT_FILE_FIELDS {
            match obj.get(field) {
                None => {}
                Some(Value::String(s)) if s.is_empty() => {}
                Some(Value::String(s)) => {
                    let mapped = map_file(ns, s, ctx.owns_file, false)
                        .map_err(|m| (name.clone(), format!("{field}: {m}")))?;
                    obj.insert(field.to_owned(), Value::String(mapped));
                }
                Some(_) => {
                    return Err((name.clone(), format!("'{name}.{field}' must be a string")));
                }
            }
        }
        inputs.insert(name.clone(), Value::Object(obj));
    }
    for name in &rule.strict_name_inputs {
        if let Some(raw) = literal_str(inputs, name)? {
            if !strict_name(raw) {
                return Err((
                    name.clone(),
                    format!("'{name}' may only contain letters, digits, '_' and '-' (1 to 64)"),
                ));
            }
            inputs.insert(name.clone(), Value::String(raw.to_owned()));
        }
    }
    Ok(())
}

pub(super) fn strict_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// `filename_prefix` → `NS/<clean value>`. `%var%` tokens are kept (ComfyUI expands them to
/// digits). Empty → `ComfyUI`; a folder-only value (`foo/`) gets `ComfyUI` appended, so no file
/// lands in the namespace root under a dot name or the namespace's own name. Already `NS/…` →
/// unchanged (idempotent).
fn map_prefix(ns: &str, raw: &str) -> Result<String, String> {
    let c = clean(raw).map_err(|e| e.to_string())?;
    let c = if c.is_empty() {
        DEFAULT_PREFIX.to_owned()
    } else if raw.ends_with('/') {
        format!("{c}/{DEFAULT_PREFIX}")
    } else {
        c
    };
    let out = if c.starts_with(&format!("{ns}/")) {
        c
    } else {
        format!("{ns}/{c}")
    };
    // Re-checked as a whole: the namespace must not push it past the length limits.
    clean(&out).map_err(|e| e.to_string())
}

/// A file reference `sub/name [kind]` → `NS/sub/name [kind]` (`3d/NS/…` for input `3d/…`),
/// unless the ledger says the caller owns exactly that file (then it is kept, cleaned), or it is
/// already inside NS. `model3d` additionally requires the `3d/` prefix of Load3D.
fn map_file(
    ns: &str,
    raw: &str,
    owns: &dyn Fn(Kind, &str, &str) -> bool,
    model3d: bool,
) -> Result<String, String> {
    let (path, ann) = split_annotation(raw);
    let kind = ann.unwrap_or(Kind::Input);
    let suffix = ann.map(Kind::annotation).unwrap_or_default();
    let p = clean(path).map_err(|e| e.to_string())?;
    if ["[output]", "[input]", "[temp]"]
        .iter()
        .any(|a| path.ends_with(a) || p.ends_with(a))
    {
        // ComfyUI tests `endswith("[output]")` and then cuts a fixed 9 characters: a value such
        // as `x[output]`, `a [temp] [temp]` or `[temp]/` (cleaned to `[temp]`) would be read
        // from another root than it says. Checked on the raw and the cleaned path.
        return Err("malformed [input]/[output]/[temp] annotation".into());
    }
    if p.is_empty() {
        return Err("the file name is empty".into());
    }
    if model3d && !p.starts_with("3d/") {
        return Err("a 3D model must be in the 3d folder ('3d/…')".into());
    }
    let (dir, name) = p.rsplit_once('/').unwrap_or(("", p.as_str()));
    if owns(kind, dir, name) || path_from_upstream(ns, kind, &p).is_some() {
        return Ok(format!("{p}{suffix}"));
    }
    Ok(format!("{}{suffix}", path_to_upstream(ns, kind, &p)))
}

/// An input subfolder → `NS/<folder>` (`3d/NS/…` for `3d/…`); already inside NS → unchanged.
fn map_folder(ns: &str, raw: &str) -> Result<String, String> {
    let p = clean(raw).map_err(|e| e.to_string())?;
    if from_upstream(ns, Kind::Input, &p).is_some() {
        return Ok(p);
    }
    Ok(to_upstream(ns, Kind::Input, &p))
}
