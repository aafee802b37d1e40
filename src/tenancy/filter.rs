//! Response filtering: what ComfyUI says about files, prompts and errors, rewritten for one user.
//! File locators (`{filename, subfolder, type}`) inside the user's namespace get their
//! client-relative subfolder; those outside (temp-root previews) are recorded in the ledger as the
//! owner's and left as they are. Sensitive `extra_data` keys and comfy-warden's owner tag are
//! removed; namespaces and absolute paths are cut out of error texts.
use super::ledger::{Ledger, OWNER_TAG};
use super::paths::{self, Kind};
use serde_json::{Map, Value};

/// Rewrites every file locator inside `v` for the user `owner` with namespace `ns`.
pub fn outputs_to_client(v: &mut Value, ns: &str, owner: &str, ledger: &Ledger) {
    match v {
        Value::Object(map) => {
            map.remove("fullpath");
            let locator = match (map.get("filename"), map.get("subfolder"), map.get("type")) {
                (Some(Value::String(f)), Some(Value::String(s)), Some(Value::String(t))) => {
                    Kind::parse(t).map(|k| (k, s.clone(), f.clone()))
                }
                _ => None,
            };
            if let Some((kind, sub, name)) = locator {
                ledger.record_file(kind, &sub, &name, owner);
                if let Some(client) = paths::from_upstream(ns, kind, &sub) {
                    map.insert("subfolder".into(), Value::String(client));
                }
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
                outputs_to_client(child, ns, owner, ledger);
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|i| outputs_to_client(i, ns, owner, ledger)),
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
