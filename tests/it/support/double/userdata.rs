//! `--multi-user` user manager: `/users`, `/userdata*`, `/v2/userdata`, `/settings*`, keyed by
//! the first `comfy-user` header value, with per-user files under `/opt/comfyui/user/<id>`
//! (settings live in `<id>/comfy.settings.json`, as in ComfyUI).

use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::blob::Blob;
use super::files::{FileEntry, guess_mime};
use super::http::{Resp, percent_decode};
use super::paths::{self, abspath, basename, confined, join, relpath};
use super::pyjson;
use super::server::Req;
use super::state::{Inner, Shared};

struct UnknownUser;

/// `UserManager.get_request_user_id`.
fn user_id(g: &Inner, req: &Req) -> Result<String, UnknownUser> {
    let user = req.header("comfy-user").unwrap_or_else(|| "default".into());
    if g.user_known(&user) {
        Ok(user)
    } else {
        Err(UnknownUser)
    }
}

/// `UserManager.get_request_user_filepath`: `Ok(None)` where ComfyUI returns `None`.
fn user_filepath(
    g: &mut Inner,
    req: &Req,
    file: Option<&str>,
    create_dir: bool,
) -> Result<Option<String>, UnknownUser> {
    let user = user_id(g, req)?;
    let user_root = abspath(&join(paths::USER, &user));
    if !confined(paths::USER, &user_root) {
        return Ok(None);
    }
    let mut path = user_root.clone();
    if let Some(file) = file {
        let file = if file.contains('%') {
            percent_decode(file)
        } else {
            file.to_string()
        };
        path = abspath(&join(&user_root, &file));
        if !confined(&user_root, &path) {
            return Ok(None);
        }
    }
    let parent = paths::split(&path).0;
    if create_dir && !g.vfs.exists(&parent) {
        let _ = g.vfs.makedirs(&parent);
    }
    Ok(Some(path))
}

/// `get_user_data_path` of the routes: the path or the early response.
fn user_data_path(
    g: &mut Inner,
    req: &Req,
    file: &str,
    check_exists: bool,
) -> Result<String, Resp> {
    if file.is_empty() {
        return Err(Resp::empty(400));
    }
    match user_filepath(g, req, Some(file), true) {
        Err(UnknownUser) => Err(Resp::server_error()),
        Ok(None) => Err(Resp::empty(403)),
        Ok(Some(p)) => {
            if check_exists && !g.vfs.exists(&p) {
                Err(Resp::empty(404))
            } else {
                Ok(p)
            }
        }
    }
}

fn file_info(g: &Inner, path: &str, relative_to: &str) -> Value {
    let (size, mtime, ctime) = match g.vfs.get(path) {
        Some(e) => (e.blob.len(), e.mtime, e.ctime),
        None => (4096, 0.0, 0.0),
    };
    json!({
        "path": relpath(path, relative_to),
        "size": size,
        "modified": mtime,
        "created": ctime,
    })
}

pub async fn post_users(shared: &Arc<Shared>, req: &Req) -> Resp {
    let body = match req.json().await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Some(username) = body.get("username") else {
        return Resp::server_error();
    };
    if let Some(name) = username.as_str() {
        shared.pass_gate(&format!("POST /users {name}")).await;
    }
    let mut g = shared.lock();
    if g.users
        .iter()
        .any(|(_, name)| Value::String(name.clone()) == *username)
    {
        return Resp::json_status(400, &json!({"error": "Duplicate username."}));
    }
    let Some(name) = username.as_str() else {
        return Resp::server_error();
    };
    match g.add_user(name) {
        Ok(id) => Resp::json(&Value::String(id)),
        Err(e) => Resp::json_status(400, &json!({"error": e})),
    }
}

pub fn list(shared: &Arc<Shared>, req: &Req) -> Resp {
    let dir = req.q("dir").unwrap_or_default();
    if dir.is_empty() {
        return Resp::text(400, "Directory not provided");
    }
    let mut g = shared.lock();
    let path = match user_filepath(&mut g, req, Some(&dir), true) {
        Err(UnknownUser) => return Resp::server_error(),
        Ok(None) => return Resp::text(403, "Invalid directory"),
        Ok(Some(p)) => p,
    };
    if !g.vfs.exists(&path) {
        return Resp::text(404, "Directory not found");
    }
    let recurse = req.q("recurse").unwrap_or_default().to_lowercase() == "true";
    let full_info = req.q("full_info").unwrap_or_default().to_lowercase() == "true";
    let split = req.q("split").unwrap_or_default().to_lowercase() == "true";
    let mut found: Vec<String> = if !g.vfs.is_dir(&path) {
        Vec::new()
    } else if recurse {
        g.vfs.files_under(&path)
    } else {
        g.vfs
            .children(&path)
            .0
            .into_iter()
            .map(|n| join(&path, &n))
            .collect()
    };
    // glob's `*` and `**` do not match names starting with a dot.
    found.retain(|f| !relpath(f, &path).split('/').any(|c| c.starts_with('.')));
    let results: Vec<Value> = found
        .iter()
        .map(|f| {
            if full_info {
                return file_info(&g, f, &path);
            }
            let rel = relpath(f, &path);
            if split {
                let mut parts = vec![Value::String(rel.clone())];
                parts.extend(rel.split('/').map(|s| Value::String(s.to_string())));
                Value::Array(parts)
            } else {
                Value::String(rel)
            }
        })
        .collect();
    Resp::json(&Value::Array(results))
}

pub fn list_v2(shared: &Arc<Shared>, req: &Req) -> Resp {
    let requested = percent_decode(&req.q("path").unwrap_or_default());
    let mut g = shared.lock();
    let base = match user_filepath(&mut g, req, None, false) {
        Err(UnknownUser) => return Resp::text(403, "Invalid user specified in request"),
        Ok(p) => p,
    };
    let target = if requested.is_empty() {
        base.clone()
    } else {
        match user_filepath(&mut g, req, Some(&requested), false) {
            Err(UnknownUser) => return Resp::text(403, "Invalid user specified in request"),
            Ok(p) => p,
        }
    };
    let (Some(base), Some(target)) = (base, target) else {
        return Resp::text(400, "Invalid path requested");
    };
    if !g.vfs.exists(&target) {
        if target == base {
            return Resp::json(&json!([]));
        }
        return Resp::text(404, "Requested path not found");
    }
    if !g.vfs.is_dir(&target) {
        return Resp::text(400, "Requested path is not a directory");
    }
    let mut results: Vec<(bool, String, Value)> = Vec::new();
    for d in g.vfs.dirs_under(&target) {
        let name = basename(&d);
        results.push((
            false,
            name.to_lowercase(),
            json!({"name": name, "path": relpath(&d, &base), "type": "directory"}),
        ));
    }
    for f in g.vfs.files_under(&target) {
        let name = basename(&f);
        let mut entry = json!({"name": name, "path": relpath(&f, &base), "type": "file"});
        if let Some(e) = g.vfs.get(&f) {
            entry["size"] = json!(e.blob.len());
            entry["modified"] = json!(e.mtime);
        }
        results.push((true, name.to_lowercase(), entry));
    }
    results.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    Resp::json(&Value::Array(
        results.into_iter().map(|(_, _, v)| v).collect(),
    ))
}

pub fn get_file(shared: &Arc<Shared>, req: &Req, file: &str) -> Resp {
    let mut g = shared.lock();
    let path = match user_data_path(&mut g, req, file, true) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let Some(entry): Option<FileEntry> = g.vfs.get(&path).cloned() else {
        return Resp::raised(403);
    };
    drop(g);
    let ct = guess_mime(&path).unwrap_or("application/octet-stream");
    super::routes::serve_entry(&entry, ct, req)
}

pub async fn post_file(shared: &Arc<Shared>, req: &Req, file: &str) -> Resp {
    {
        let mut g = shared.lock();
        let path = match user_data_path(&mut g, req, file, false) {
            Ok(p) => p,
            Err(r) => return r,
        };
        let overwrite = req.q("overwrite").unwrap_or_else(|| "true".into()) != "false";
        if !overwrite && g.vfs.exists(&path) {
            return Resp::text(409, "File already exists");
        }
    }
    if let Some(r) = req.too_large() {
        return r;
    }
    let mut g = shared.lock();
    let path = match user_data_path(&mut g, req, file, false) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let full_info = req
        .q("full_info")
        .unwrap_or_else(|| "false".into())
        .to_lowercase()
        == "true";
    if g.vfs.write(&path, req.body.clone()).is_err() {
        let mut r = Resp::empty(400);
        r.reason =
            Some("Invalid filename. Please avoid special characters like :\\/*?\"<>|".into());
        return r;
    }
    let user_path = match user_filepath(&mut g, req, None, true) {
        Ok(Some(p)) => p,
        _ => return Resp::server_error(),
    };
    if full_info {
        Resp::json(&file_info(&g, &path, &user_path))
    } else {
        Resp::json(&Value::String(relpath(&path, &user_path)))
    }
}

pub fn delete_file(shared: &Arc<Shared>, req: &Req, file: &str) -> Resp {
    let mut g = shared.lock();
    let path = match user_data_path(&mut g, req, file, true) {
        Ok(p) => p,
        Err(r) => return r,
    };
    if !g.vfs.remove_file(&path) {
        return Resp::server_error();
    }
    Resp::empty(204)
}

pub fn move_file(shared: &Arc<Shared>, req: &Req, file: &str, dest: &str) -> Resp {
    let mut g = shared.lock();
    let source = match user_data_path(&mut g, req, file, true) {
        Ok(p) => p,
        Err(r) => return r,
    };
    // 0.3.64 checks `source` twice instead of `dest`: a refused dest ends in a TypeError.
    let Ok(dest) = user_data_path(&mut g, req, dest, false) else {
        return Resp::server_error();
    };
    let overwrite = req.q("overwrite").unwrap_or_else(|| "true".into()) != "false";
    let full_info = req
        .q("full_info")
        .unwrap_or_else(|| "false".into())
        .to_lowercase()
        == "true";
    if !overwrite && g.vfs.exists(&dest) {
        return Resp::text(409, "File already exists");
    }
    let mut target = dest.clone();
    if g.vfs.is_dir(&dest) {
        target = join(&dest, &basename(&source));
        if g.vfs.exists(&target) {
            return Resp::server_error();
        }
    } else if g.vfs.is_file(&dest) {
        g.vfs.remove_file(&dest);
    }
    if g.vfs.rename(&source, &target).is_err() {
        return Resp::server_error();
    }
    let user_path = match user_filepath(&mut g, req, None, true) {
        Ok(Some(p)) => p,
        _ => return Resp::server_error(),
    };
    if full_info {
        Resp::json(&file_info(&g, &dest, &user_path))
    } else {
        Resp::json(&Value::String(relpath(&dest, &user_path)))
    }
}

// ----- settings ------------------------------------------------------------------------------

const SETTINGS_FILE: &str = "comfy.settings.json";

/// `AppSettings.get_settings`: `Err` is the raised 401.
fn get_settings(g: &mut Inner, req: &Req) -> Result<(String, Value), Resp> {
    let path = match user_filepath(g, req, Some(SETTINGS_FILE), true) {
        Err(UnknownUser) => return Err(Resp::raised(401)),
        Ok(None) => return Err(Resp::server_error()),
        Ok(Some(p)) => p,
    };
    let value = g
        .vfs
        .get(&path)
        .and_then(|e| e.blob.small_bytes())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_else(|| json!({}));
    Ok((path, value))
}

fn save_settings(g: &mut Inner, path: &str, settings: &Value) -> Result<(), Resp> {
    let text = pyjson::dumps_indent(settings, 4);
    g.vfs
        .write(path, Blob::from_bytes(text))
        .map_err(|_| Resp::server_error())
}

pub fn get_settings_route(shared: &Arc<Shared>, req: &Req) -> Resp {
    let mut g = shared.lock();
    match get_settings(&mut g, req) {
        Ok((_, v)) => Resp::json(&v),
        Err(r) => r,
    }
}

pub fn get_setting(shared: &Arc<Shared>, req: &Req, id: &str) -> Resp {
    let mut g = shared.lock();
    match get_settings(&mut g, req) {
        Ok((_, v)) => Resp::json(v.get(id).unwrap_or(&Value::Null)),
        Err(r) => r,
    }
}

pub async fn post_settings(shared: &Arc<Shared>, req: &Req) -> Resp {
    if let Err(r) = get_settings(&mut shared.lock(), req) {
        return r;
    }
    let new = match req.json().await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let mut g = shared.lock();
    let (path, current) = match get_settings(&mut g, req) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let (Value::Object(mut merged), Value::Object(new)) = (current, new) else {
        return Resp::server_error();
    };
    for (k, v) in new {
        merged.insert(k, v);
    }
    match save_settings(&mut g, &path, &Value::Object(merged)) {
        Ok(()) => Resp::empty(200),
        Err(r) => r,
    }
}

pub async fn post_setting(shared: &Arc<Shared>, req: &Req, id: &str) -> Resp {
    if let Err(r) = get_settings(&mut shared.lock(), req) {
        return r;
    }
    let value = match req.json().await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let mut g = shared.lock();
    let (path, current) = match get_settings(&mut g, req) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let mut settings: Map<String, Value> = match current {
        Value::Object(m) => m,
        _ => return Resp::server_error(),
    };
    settings.insert(id.to_string(), value);
    match save_settings(&mut g, &path, &Value::Object(settings)) {
        Ok(()) => Resp::empty(200),
        Err(r) => r,
    }
}
