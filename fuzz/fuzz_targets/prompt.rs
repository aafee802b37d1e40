//! The prompt-graph rewrite (`POST /prompt`) and its inverse, strip (graphs ComfyUI echoes).
//! Input: either a JSON graph as bytes (the seeds are real graphs) or a graph built by
//! `arbitrary` from node classes that have rules, their path inputs and odd values; plus extra
//! node rules as an operator could configure them, and whether the caller is an admin.
//! Asserts: no panic; after a successful rewrite every path input of every node with a rule
//! names a file inside the caller's namespace (no `..`, not absolute), strict names are strict,
//! every output node carries the caller's owner tag; strip never panics, on the rewritten graph
//! or on the raw one.
#![no_main]
use arbitrary::{Arbitrary, Unstructured};
use comfy_warden::fuzz_api::{
    Catalog, Kind, NodeRule, NodeRules, OWNER_INPUT, PromptCaller, path_from_upstream, rewrite,
    strip,
};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::sync::OnceLock;

const NS: &str = "u_alice";
const TAG: &str = "owner-tag-alice";
const DICT_FILE_FIELDS: [&str; 5] = ["image", "mask", "normal", "lineart", "recording"];
const MODULES: [&str; 5] = [
    "nodes",
    "comfy_extras.nodes_images",
    "custom_nodes.pack",
    "comfy_api_nodes.x",
    "elsewhere",
];
/// Strings the rewrite must treat with care, mixed into arbitrary ones.
const NASTY: [&str; 16] = [
    "../x.png",
    "/etc/passwd",
    "~/x",
    "u_bob/x.png",
    "u_alice/../u_bob/x.png",
    "x.png [output]",
    "a [temp] [temp]",
    "[temp]/",
    "3d/",
    "3d/u_bob/m.glb",
    "u_alice",
    "u_alice/",
    "blake3:abc",
    "a\\..\\b",
    "C:x",
    "%2e%2e/x",
];

fn builtin() -> &'static NodeRules {
    static R: OnceLock<NodeRules> = OnceLock::new();
    R.get_or_init(NodeRules::builtin)
}

#[derive(Debug, Arbitrary)]
enum Val {
    Str(String),
    Nasty(u8),
    Wrapped(Box<Val>),
    Link(String, u8),
    Num(i64),
    Bool(bool),
    Null,
    Dict(Vec<(u8, Box<Val>)>),
}

impl Val {
    fn json(&self) -> Value {
        match self {
            Val::Str(s) => json!(s),
            Val::Nasty(i) => json!(NASTY[*i as usize % NASTY.len()]),
            Val::Wrapped(v) => json!({ "__value__": v.json() }),
            Val::Link(n, s) => json!([n, s]),
            Val::Num(n) => json!(n),
            Val::Bool(b) => json!(b),
            Val::Null => Value::Null,
            Val::Dict(fields) => {
                let mut m = Map::new();
                for (f, v) in fields {
                    m.insert(
                        DICT_FILE_FIELDS[*f as usize % DICT_FILE_FIELDS.len()].to_owned(),
                        v.json(),
                    );
                }
                Value::Object(m)
            }
        }
    }
}

#[derive(Debug, Arbitrary)]
struct Node {
    id: String,
    /// An index into the classes with rules, or a free class name.
    class: Result<u16, String>,
    /// (an index into the class's path inputs, or a free input name; the value)
    inputs: Vec<(Result<u8, String>, Val)>,
    no_inputs: bool,
}

#[derive(Debug, Arbitrary)]
struct Rule {
    prefix: Vec<String>,
    file: Vec<String>,
    folder: Vec<String>,
    model3d: Vec<String>,
    dict: Vec<String>,
    strict: Vec<String>,
    denied: bool,
    pure: bool,
}

#[derive(Debug, Arbitrary)]
struct Input {
    admin: bool,
    extra: Vec<(String, Rule)>,
    /// Per class with a rule: the module it comes from and whether it is an output node.
    origins: Vec<(u8, bool)>,
    graph: Result<Vec<Node>, Vec<u8>>,
}

/// A JSON document (the seeds: real `POST /prompt` bodies) is taken as the graph, for a plain
/// user, with the built-in rules and every class from ComfyUI's core; anything else is decoded
/// by `arbitrary`.
fn main_fuzz(data: &[u8]) -> arbitrary::Result<()> {
    let input = if data.first() == Some(&b'{') {
        Input {
            admin: false,
            extra: Vec::new(),
            origins: Vec::new(),
            graph: Err(data.to_vec()),
        }
    } else {
        Input::arbitrary(&mut Unstructured::new(data))?
    };
    let mut extra = BTreeMap::new();
    for (class, r) in &input.extra {
        let rule = NodeRule {
            prefix_inputs: r.prefix.clone(),
            file_inputs: r.file.clone(),
            folder_inputs: r.folder.clone(),
            model3d_inputs: r.model3d.clone(),
            dict_inputs: r.dict.clone(),
            strict_name_inputs: r.strict.clone(),
            denied: r.denied,
            pure: r.pure,
        };
        // The loader refuses inconsistent rules; only valid ones reach the rewrite.
        if rule.check().is_ok() {
            extra.insert(class.clone(), rule);
        }
    }
    let rules = if extra.is_empty() {
        builtin().clone()
    } else {
        NodeRules::with_config(&extra)
    };
    let classes: Vec<(String, NodeRule)> = rules
        .iter()
        .map(|(c, r)| (c.to_owned(), r.clone()))
        .collect();
    let mut info = Map::new();
    for (i, (class, _)) in classes.iter().enumerate() {
        let (m, out) = input.origins.get(i).copied().unwrap_or((0, true));
        info.insert(
            class.clone(),
            json!({ "python_module": MODULES[m as usize % MODULES.len()], "output_node": out }),
        );
    }
    let catalog = Catalog::from_object_info(&Value::Object(info));

    let graph = match &input.graph {
        Err(bytes) => match serde_json::from_slice::<Value>(bytes) {
            // A whole POST /prompt body or just its graph.
            Ok(Value::Object(mut m)) => match m.remove("prompt") {
                Some(Value::Object(g)) => g,
                Some(_) => return Ok(()),
                None => m,
            },
            _ => return Ok(()),
        },
        Ok(nodes) => {
            let mut g = Map::new();
            for n in nodes {
                let (class, rule) = match &n.class {
                    Ok(i) if !classes.is_empty() => {
                        let (c, r) = &classes[*i as usize % classes.len()];
                        (c.clone(), Some(r))
                    }
                    Ok(_) => continue,
                    Err(s) => (s.clone(), None),
                };
                let names: Vec<&str> = rule
                    .map(|r| r.path_inputs().map(|(_, n)| n).collect())
                    .unwrap_or_default();
                let mut inputs = Map::new();
                for (name, v) in &n.inputs {
                    let name = match name {
                        Ok(i) if !names.is_empty() => names[*i as usize % names.len()].to_owned(),
                        Ok(_) => OWNER_INPUT.to_owned(),
                        Err(s) => s.clone(),
                    };
                    inputs.insert(name, v.json());
                }
                let mut node = json!({ "class_type": class });
                if !n.no_inputs {
                    node["inputs"] = Value::Object(inputs);
                }
                g.insert(n.id.clone(), node);
            }
            g
        }
    };

    let owns = |_: Kind, _: &str, _: &str| false;
    let ctx = PromptCaller {
        ns: NS,
        owner_tag: TAG,
        catalog: &catalog,
        rules: &rules,
        admin: input.admin,
        owns_file: &owns,
    };
    let mut raw = graph.clone();
    strip(&mut raw, NS, &rules);
    let mut rewritten = graph.clone();
    match rewrite(&mut rewritten, &ctx) {
        Err(_) => assert_eq!(rewritten, graph, "a refused graph is left untouched"),
        Ok(()) => {
            check_confined(&rewritten, &rules, &catalog);
            strip(&mut rewritten, NS, &rules);
        }
    }
    Ok(())
}

fn inside_file(v: &str) -> bool {
    let (path, kind) = split_annotation(v);
    clean_inside(path) && path_from_upstream(NS, kind.unwrap_or(Kind::Input), path).is_some()
}

fn split_annotation(s: &str) -> (&str, Option<Kind>) {
    for (a, k) in [
        (" [output]", Kind::Output),
        (" [input]", Kind::Input),
        (" [temp]", Kind::Temp),
    ] {
        if let Some(rest) = s.strip_suffix(a) {
            return (rest, Some(k));
        }
    }
    (s, None)
}

/// Relative, no `.`/`..`/empty segment, no backslash or colon (ComfyUI joins it to a root).
fn clean_inside(p: &str) -> bool {
    !p.starts_with('/')
        && !p.contains('\\')
        && !p.contains(':')
        && !p.chars().any(char::is_control)
        && p.split('/').all(|s| !s.is_empty() && s != "." && s != "..")
}

fn check_confined(g: &Map<String, Value>, rules: &NodeRules, catalog: &Catalog) {
    for (id, node) in g {
        let class = node["class_type"]
            .as_str()
            .expect("a rewritten node has a class");
        let inputs = node["inputs"]
            .as_object()
            .expect("a rewritten node has inputs");
        if catalog.get(class).is_some_and(|c| c.output_node) {
            assert_eq!(
                inputs.get(OWNER_INPUT),
                Some(&json!(TAG)),
                "node {id}: owner tag"
            );
        } else {
            assert!(
                inputs.get(OWNER_INPUT).is_none(),
                "node {id}: client owner input kept"
            );
        }
        let Some(rule) = rules.get(class) else {
            continue;
        };
        let s = |name: &str| {
            inputs.get(name).map(|v| {
                v.as_str()
                    .unwrap_or_else(|| panic!("node {id} {name}: not a string: {v}"))
            })
        };
        for name in &rule.prefix_inputs {
            let v = s(name).unwrap_or_else(|| panic!("node {id}: {name} missing"));
            assert!(
                v.strip_prefix(NS).is_some_and(|r| r.starts_with('/')) && clean_inside(v),
                "node {id} {name}: prefix {v:?} outside {NS}"
            );
        }
        for name in rule.file_inputs.iter().chain(&rule.model3d_inputs) {
            if let Some(v) = s(name) {
                assert!(inside_file(v), "node {id} {name}: file {v:?} outside {NS}");
            }
        }
        for name in &rule.folder_inputs {
            if let Some(v) = s(name) {
                assert!(
                    clean_inside(v)
                        && (v == NS
                            || v.starts_with(&format!("{NS}/"))
                            || v == format!("3d/{NS}")
                            || v.starts_with(&format!("3d/{NS}/"))),
                    "node {id} {name}: folder {v:?} outside {NS}"
                );
            }
        }
        for name in &rule.dict_inputs {
            let Some(d) = inputs.get(name) else { continue };
            let d = d
                .as_object()
                .unwrap_or_else(|| panic!("node {id} {name}: not an object"));
            for f in DICT_FILE_FIELDS {
                if let Some(v) = d.get(f).and_then(Value::as_str)
                    && !v.is_empty()
                {
                    assert!(
                        inside_file(v),
                        "node {id} {name}.{f}: file {v:?} outside {NS}"
                    );
                }
            }
        }
        for name in &rule.strict_name_inputs {
            if let Some(v) = s(name) {
                assert!(
                    (1..=64).contains(&v.len())
                        && v.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
                    "node {id} {name}: {v:?}"
                );
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = main_fuzz(data);
});
