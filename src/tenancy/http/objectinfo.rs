//! `/object_info[/{class}]` for one user: file combos (LoadImage's images, Load3D's models, the
//! folder lists of folder loaders) list only the user's own files, namespaces stripped; custom
//! and API node classes the configuration does not allow, and denied classes, are hidden.
//!
//! ComfyUI lists only the top level of `input/` in LoadImage-style combos, so the files inside a
//! user's namespace never appear there: comfy-warden adds the user's own input files from the
//! ledger (everything they uploaded), sorted like ComfyUI does.
use super::ctx::{Ctx, private_json};
use crate::body::Body;
use crate::proxy::upstream::UpstreamError;
use crate::reject::Reject;
use crate::tenancy::paths::{self, Kind};
use http::{Method, Request, Response};
use hyper::body::Incoming;
use serde_json::Value;

fn hidden(ctx: &Ctx<'_>, class: &str, info: &Value) -> bool {
    let rules = &ctx.snap.tenancy.node_rules;
    if rules.get(class).is_some_and(|r| r.denied) {
        return true;
    }
    let module = info
        .get("python_module")
        .and_then(Value::as_str)
        .unwrap_or("");
    let api = info
        .get("api_node")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let foreign =
        module.starts_with("custom_nodes.") || module.starts_with("comfy_api_nodes") || api;
    foreign && !rules.configured(class)
}

/// The list of values of a combo input spec (`[[v…], {…}]` or `["COMBO", {"options": [v…]}]`).
fn combo_values(spec: &mut Value) -> Option<&mut Vec<Value>> {
    let arr = spec.as_array_mut()?;
    if arr.first().is_some_and(Value::is_array) {
        return arr.get_mut(0)?.as_array_mut();
    }
    if arr.first().and_then(Value::as_str) == Some("COMBO") {
        return arr.get_mut(1)?.get_mut("options")?.as_array_mut();
    }
    None
}

enum Mapping {
    File,
    Folder,
}

fn filter_combo(spec: &mut Value, ns: &str, mapping: &Mapping, own_files: &[String]) {
    let Some(values) = combo_values(spec) else {
        return;
    };
    let mut mapped: Vec<String> = values
        .iter()
        .filter_map(Value::as_str)
        .filter_map(|v| match mapping {
            Mapping::File => paths::path_from_upstream(ns, Kind::Input, v),
            Mapping::Folder => paths::from_upstream(ns, Kind::Input, v).filter(|s| !s.is_empty()),
        })
        .collect();
    mapped.extend(own_files.iter().cloned());
    mapped.sort();
    mapped.dedup();
    *values = mapped.into_iter().map(Value::String).collect();
}

/// The user's input files (client-relative paths, outside `3d/`) known to the ledger.
fn own_input_files(ctx: &Ctx<'_>) -> Vec<String> {
    ctx.app
        .tenancy
        .ledger
        .all_files_of(ctx.owner(), Kind::Input)
        .into_iter()
        .filter_map(|(sub, name)| {
            paths::path_from_upstream(ctx.ns(), Kind::Input, &format!("{sub}/{name}"))
        })
        .filter(|p| !p.starts_with("3d/"))
        .collect()
}

/// Filters one class entry in place for `ctx`'s user.
fn filter_class(ctx: &Ctx<'_>, class: &str, info: &mut Value, own_files: &[String]) {
    let Some(rule) = ctx.snap.tenancy.node_rules.get(class) else {
        return;
    };
    let none: &[String] = &[];
    let lists: [(&Vec<String>, Mapping, &[String]); 3] = [
        (&rule.file_inputs, Mapping::File, own_files),
        (&rule.model3d_inputs, Mapping::File, none),
        (&rule.folder_inputs, Mapping::Folder, none),
    ];
    for section in ["required", "optional"] {
        let Some(inputs) = info
            .get_mut("input")
            .and_then(|i| i.get_mut(section))
            .and_then(Value::as_object_mut)
        else {
            continue;
        };
        for (names, mapping, own) in &lists {
            for name in names.iter() {
                if let Some(spec) = inputs.get_mut(name) {
                    filter_combo(spec, ctx.ns(), mapping, own);
                }
            }
        }
    }
}

/// Filters a whole `{class: info}` map for `ctx`'s user.
pub fn filter_all(ctx: &Ctx<'_>, v: &mut Value, own: &[String]) {
    let Some(map) = v.as_object_mut() else { return };
    map.retain(|class, info| !hidden(ctx, class, info));
    for (class, info) in map.iter_mut() {
        filter_class(ctx, class, info, own);
    }
}

fn fingerprint(upstream: &[u8], own: &[String], generation: u64) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    upstream.hash(&mut h);
    own.hash(&mut h);
    generation.hash(&mut h);
    h.finish()
}

pub async fn object_info(ctx: &Ctx<'_>, req: &Request<Incoming>) -> Result<Response<Body>, Reject> {
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/object_info");
    let full = matches!(req.uri().path(), "/object_info" | "/api/object_info");
    let (status, _, bytes) = ctx.call(Method::GET, path, None).await?;
    if !status.is_success() {
        // ComfyUI's own 4xx passes; a server error is refused (see `info::passed_on`).
        return super::info::passed_on(status, path, bytes, |_| {});
    }
    // ComfyUI answers by path alone (the query is ignored, `/api` is the same route): so is
    // the cache keyed, or one user could fill it with `?1`, `?2`, ….
    let route = req.uri().path();
    let route = route.strip_prefix("/api").unwrap_or(route);
    let cache_key = (ctx.ns().to_owned(), route.to_owned());
    let own = if ctx.sees_all() {
        Vec::new()
    } else {
        own_input_files(ctx)
    };
    let fp = (!ctx.sees_all() && status.is_success()).then(|| {
        // The snapshot the filter below uses, not whatever is in force by now.
        fingerprint(&bytes, &own, ctx.snap.generation)
    });
    if let Some(b) = fp.and_then(|fp| ctx.app.tenancy.filtered.get(&cache_key, fp)) {
        return Ok(super::ctx::private_json_bytes(status, b));
    }
    let mut v =
        serde_json::from_slice::<Value>(&bytes).map_err(|e| UpstreamError::malformed(path, e))?;
    if full && status.is_success() {
        ctx.app.tenancy.catalog.update(&v).await;
    }
    if ctx.sees_all() {
        return Ok(private_json(status, &v));
    }
    filter_all(ctx, &mut v, &own);
    let out = bytes::Bytes::from(serde_json::to_vec(&v).unwrap_or_default());
    if let Some(fp) = fp {
        ctx.app.tenancy.filtered.put(cache_key, fp, out.clone());
    }
    Ok(super::ctx::private_json_bytes(status, out))
}
