//! Response filtering: what ComfyUI says about files, prompts and errors, rewritten for one user.
//! File locators (`{filename, subfolder, type}`) inside the user's namespace get their
//! client-relative subfolder; those outside (temp-root previews) are recorded in the ledger as the
//! owner's and left as they are. Sensitive `extra_data` keys and comfy-warden's owner tag are
//! removed; namespaces and absolute paths are cut out of error texts.
use super::ledger::{Ledger, OWNER_TAG};
use super::paths::{self, Kind};
use serde_json::{Map, Value};

/// The keys of a node's UI output under which ComfyUI lists the files the node produced
/// (core nodes, and VideoHelperSuite's `gifs`). Locators elsewhere (Preview3D's `result` echoes
/// its inputs, `camera_info` included) are mapped for display but never recorded.
const PRODUCED_KEYS: &[&str] = &["images", "gifs", "audio", "video", "3d", "latents"];

/// History `outputs` (node id → node output): [`node_output_to_client`] for each node.
pub fn outputs_to_client(v: &mut Value, ns: &str, owner: &str, ledger: &Ledger) {
    if let Value::Object(nodes) = v {
        for (_, out) in nodes.iter_mut() {
            node_output_to_client(out, ns, owner, ledger);
        }
    }
}

/// One node's UI output (the `output` of an `executed` event, one entry of history `outputs`):
/// the files it produced outside every namespace (temp-root previews, API node outputs) are
/// recorded in the ledger as `owner`'s; every file locator inside gets its client-relative
/// subfolder when it lies in `ns`.
pub fn node_output_to_client(out: &mut Value, ns: &str, owner: &str, ledger: &Ledger) {
    if let Value::Object(map) = &*out {
        for key in PRODUCED_KEYS {
            let Some(Value::Array(items)) = map.get(*key) else {
                continue;
            };
            for (kind, sub, name) in items.iter().filter_map(locator) {
                if recordable(&sub, &name) {
                    ledger.record_file(kind, &sub, &name, owner);
                }
            }
        }
    }
    map_locators(out, ns);
}

/// `{filename, subfolder, type}` with a known type.
fn locator(v: &Value) -> Option<(Kind, String, String)> {
    match (v.get("filename"), v.get("subfolder"), v.get("type")) {
        (Some(Value::String(f)), Some(Value::String(s)), Some(Value::String(t))) => {
            Kind::parse(t).map(|k| (k, s.clone(), f.clone()))
        }
        _ => None,
    }
}

/// A produced file may be recorded only when its path is clean and lies in no namespace: a
/// file inside a namespace belongs to that namespace, never to whoever names it.
fn recordable(sub: &str, name: &str) -> bool {
    paths::clean(sub).is_ok_and(|c| c == sub)
        && paths::clean_name(name).is_ok()
        && !sub.split('/').any(|seg| seg.starts_with("u_"))
}

/// Maps every file locator inside `v` to client space and removes `fullpath`; strips the
/// namespace from Preview3D's `result` strings.
fn map_locators(v: &mut Value, ns: &str) {
    match v {
        Value::Object(map) => {
            map.remove("fullpath");
            let client = match (map.get("subfolder"), map.get("type")) {
                (Some(Value::String(s)), Some(Value::String(t)))
                    if map.contains_key("filename") =>
                {
                    Kind::parse(t).and_then(|k| paths::from_upstream(ns, k, s))
                }
                _ => None,
            };
            if let Some(client) = client {
                map.insert("subfolder".into(), Value::String(client));
            }
            // Preview3D echoes its model path in `result`: strip the namespace from the strings.
            if let Some(Value::Array(items)) = map.get_mut("result") {
                for item in items.iter_mut() {
                    if let Value::String(text) = item {
                        *text = strip_ns(text, ns);
                    }
                }
            }
            for (_, child) in map.iter_mut() {
                map_locators(child, ns);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| map_locators(i, ns)),
        _ => {}
    }
}

/// A path string with the namespace taken out (`NS/x` → `x`, `3d/NS/x` → `3d/x`).
pub fn strip_ns(text: &str, ns: &str) -> String {
    text.replace(&format!("3d/{ns}/"), "3d/")
        .replace(&format!("{ns}/"), "")
}

/// `extra_data` keys that carry credentials (comfy.org keys, any `*token*`/`*key*`).
pub fn is_sensitive_key(k: &str) -> bool {
    let l = k.to_ascii_lowercase();
    l.contains("token") || l.contains("key") || l.contains("secret") || l.contains("password")
}

/// Removes credentials and the owner tag from an `extra_data` object.
pub fn clean_extra_data(extra: &mut Value) {
    if let Value::Object(m) = extra {
        m.retain(|k, _| k != OWNER_TAG && !is_sensitive_key(k));
    }
}

/// Removes `NS/` and absolute paths into ComfyUI's folders from a message.
pub fn redact(text: &str, ns: &str) -> String {
    let without_ns = strip_ns(text, ns).replace(ns, "");
    let mut out = String::with_capacity(without_ns.len());
    for (i, piece) in without_ns.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(&redact_word(piece));
    }
    out
}

/// An absolute path (at the start of a word, possibly after quotes or brackets) becomes its part
/// after `/input/`, `/output/`, `/temp/`, or `<path>` when it points elsewhere. Relative paths
/// a user typed (`pasted/x.png`) are left alone.
fn redact_word(w: &str) -> String {
    let lead_len = w
        .find(|c: char| !matches!(c, '\'' | '"' | '[' | '(' | '{'))
        .unwrap_or(w.len());
    let (lead, path_part) = w.split_at(lead_len);
    if !path_part.starts_with('/') {
        return w.to_owned();
    }
    let end = path_part
        .find(['\'', '"', ',', ')', ']', '}'])
        .unwrap_or(path_part.len());
    let (path, tail) = path_part.split_at(end);
    let shown = ["/input/", "/output/", "/temp/"]
        .iter()
        .filter_map(|m| path.rfind(m).map(|i| &path[i + m.len()..]))
        .next()
        .unwrap_or("<path>");
    format!("{lead}{shown}{tail}")
}

/// Redacts every string in `v` (error objects, tracebacks, node_errors).
pub fn redact_all(v: &mut Value, ns: &str) {
    match v {
        Value::String(s) if s.contains('/') || s.contains(ns) => *s = redact(s, ns),
        Value::Array(a) => a.iter_mut().for_each(|x| redact_all(x, ns)),
        Value::Object(m) => m.iter_mut().for_each(|(_, x)| redact_all(x, ns)),
        _ => {}
    }
}

/// `value_not_in_list` errors list combo values (other users' folder names): drop the lists.
pub fn scrub_node_errors(node_errors: &mut Value, ns: &str) {
    if let Value::Object(nodes) = node_errors {
        for (_, n) in nodes.iter_mut() {
            if let Some(Value::Array(errs)) = n.get_mut("errors") {
                for e in errs.iter_mut() {
                    if let Some(extra) = e.get_mut("extra_info").and_then(Value::as_object_mut) {
                        extra.remove("input_config");
                    }
                    if e.get("type").and_then(Value::as_str) == Some("value_not_in_list")
                        && let Some(m) = e.as_object_mut()
                    {
                        m.insert("details".into(), Value::String(String::new()));
                    }
                }
            }
        }
    }
    redact_all(node_errors, ns);
}

/// An empty JSON object.
pub fn empty_object() -> Value {
    Value::Object(Map::new())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn locators_are_mapped_and_foreign_ones_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(dir.path());
        let mut v = json!({"3": {"images": [{"filename": "x_00001_.png", "subfolder": "u_alice/sub", "type": "output"}]},
                           "4": {"images": [{"filename": "ComfyUI_temp_ab_00001_.png", "subfolder": "", "type": "temp", "fullpath": "/srv/x"}]}});
        outputs_to_client(&mut v, "u_alice", "alice", &ledger);
        assert_eq!(v["3"]["images"][0]["subfolder"], "sub");
        assert_eq!(v["4"]["images"][0]["subfolder"], "");
        assert!(v["4"]["images"][0].get("fullpath").is_none());
        assert_eq!(
            ledger
                .file_owner(Kind::Temp, "", "ComfyUI_temp_ab_00001_.png")
                .as_deref(),
            Some("alice")
        );
    }

    #[test]
    fn only_produced_files_outside_namespaces_are_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(dir.path());
        let claim =
            |name: &str, sub: &str| json!({"filename": name, "subfolder": sub, "type": "temp"});
        // Preview3D's result echoes its inputs (camera_info is any dict the client sent).
        let mut v = json!({"5": {"result": ["3d/x.glb", claim("ComfyUI_temp_zzzzz_00001_.png", "")],
                                 "camera_info": claim("ComfyUI_temp_yyyyy_00001_.png", ""),
                                 "images": [claim("other_00001_.png", "u_alice"),
                                            claim("deep_00001_.png", "x/u_alice"),
                                            claim("dots_00001_.png", "a/../b"),
                                            claim("mine_00001_.png", "")]}});
        outputs_to_client(&mut v, "u_bob", "bob", &ledger);
        for (name, sub) in [
            ("ComfyUI_temp_zzzzz_00001_.png", ""),
            ("ComfyUI_temp_yyyyy_00001_.png", ""),
            ("other_00001_.png", "u_alice"),
            ("deep_00001_.png", "x/u_alice"),
            ("dots_00001_.png", "a/../b"),
        ] {
            assert_eq!(
                ledger.file_owner(Kind::Temp, sub, name),
                None,
                "{sub}/{name}"
            );
        }
        assert_eq!(
            ledger
                .file_owner(Kind::Temp, "", "mine_00001_.png")
                .as_deref(),
            Some("bob")
        );
        // One node's output (a WebSocket `executed` event) is read the same way.
        let mut out =
            json!({"gifs": [claim("anim_00001_.webp", "")], "text": [claim("t.png", "")]});
        node_output_to_client(&mut out, "u_bob", "bob", &ledger);
        assert_eq!(
            ledger
                .file_owner(Kind::Temp, "", "anim_00001_.webp")
                .as_deref(),
            Some("bob")
        );
        assert_eq!(ledger.file_owner(Kind::Temp, "", "t.png"), None);
    }

    #[test]
    fn sensitive_keys() {
        let mut e = json!({"api_key_comfy_org": "k", "auth_token_comfy_org": "t", "client_id": "c", "comfy_warden_owner": "u_a", "extra_pnginfo": {}});
        clean_extra_data(&mut e);
        assert_eq!(e, json!({"client_id": "c", "extra_pnginfo": {}}));
    }

    #[test]
    fn redaction() {
        let r = redact(
            "Invalid image file: /srv/comfy/input/u_alice/pasted/x.png",
            "u_alice",
        );
        assert_eq!(r, "Invalid image file: pasted/x.png");
        let r = redact("No such file: '/etc/secret/thing.png'", "u_alice");
        assert_eq!(r, "No such file: '<path>'");
        assert_eq!(redact("plain words", "u_a"), "plain words");
        assert_eq!(
            redact("image - Invalid image file: u_bob/pasted/nope.png", "u_bob"),
            "image - Invalid image file: pasted/nope.png"
        );
        assert_eq!(
            redact("{'image': ['u_alice/bad/bad.png']}", "u_alice"),
            "{'image': ['bad/bad.png']}"
        );
        assert_eq!(
            redact("{'image': ['/srv/c/input/u_alice/x.png']}", "u_alice"),
            "{'image': ['x.png']}"
        );
    }
}
