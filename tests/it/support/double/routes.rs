//! The route table (every core route at `/X` and `/api/X`, `/internal/*` only un-prefixed,
//! HEAD for every GET, 405/404 like aiohttp's router with its static catch-all), the
//! origin check, and the small read-only endpoints (index, static files, system stats,
//! models, object_info, internal routes).

use std::sync::Arc;

use hyper::Method;
use serde_json::{Value, json};

use super::files::{self, guess_mime};
use super::http::{Resp, file_response, origin_forbidden};
use super::paths::{self, abspath, join, splitext};
use super::server::Req;
use super::state::Shared;
use super::{fixtures, frontend, prompt, upload, userdata, ws};

#[derive(Clone, Debug)]
enum R {
    Ws,
    Index,
    Embeddings,
    Models,
    ModelsFolder(String),
    Extensions,
    UploadImage,
    UploadMask,
    View,
    ViewMetadata(String),
    SystemStats,
    Features,
    PromptGet,
    PromptPost,
    ObjectInfo,
    ObjectInfoNode(String),
    HistoryGet,
    HistoryId(String),
    HistoryPost,
    QueueGet,
    QueuePost,
    Interrupt,
    Free,
    UsersGet,
    UsersPost,
    UserdataList,
    V2Userdata,
    UserdataGet(String),
    UserdataPost(String),
    UserdataDelete(String),
    UserdataMove(String, String),
    SettingsGet,
    SettingsPost,
    SettingGet(String),
    SettingPost(String),
    ExpModels,
    ExpModelsFolder(String),
    ExpPreview(String, String, String),
    WorkflowTemplates,
    I18n,
    InternalLogs,
    InternalLogsRaw,
    InternalLogsSubscribe,
    InternalFolderPaths,
    InternalFiles(String),
}

fn p(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

/// Core routes (registered at `/X` and `/api/X`) for one path: `(method, route)`.
fn core_routes(s: &[&str]) -> Vec<(&'static str, R)> {
    match s {
        [""] => vec![("GET", R::Index)],
        ["ws"] => vec![("GET", R::Ws)],
        ["embeddings"] => vec![("GET", R::Embeddings)],
        ["models"] => vec![("GET", R::Models)],
        ["models", f] => p(f)
            .map(|f| vec![("GET", R::ModelsFolder(f))])
            .unwrap_or_default(),
        ["extensions"] => vec![("GET", R::Extensions)],
        ["upload", "image"] => vec![("POST", R::UploadImage)],
        ["upload", "mask"] => vec![("POST", R::UploadMask)],
        ["view"] => vec![("GET", R::View)],
        ["view_metadata", f] => p(f)
            .map(|f| vec![("GET", R::ViewMetadata(f))])
            .unwrap_or_default(),
        ["system_stats"] => vec![("GET", R::SystemStats)],
        ["features"] => vec![("GET", R::Features)],
        ["prompt"] => vec![("GET", R::PromptGet), ("POST", R::PromptPost)],
        ["object_info"] => vec![("GET", R::ObjectInfo)],
        ["object_info", c] => p(c)
            .map(|c| vec![("GET", R::ObjectInfoNode(c))])
            .unwrap_or_default(),
        ["history"] => vec![("GET", R::HistoryGet), ("POST", R::HistoryPost)],
        ["history", id] => p(id)
            .map(|id| vec![("GET", R::HistoryId(id))])
            .unwrap_or_default(),
        ["queue"] => vec![("GET", R::QueueGet), ("POST", R::QueuePost)],
        ["interrupt"] => vec![("POST", R::Interrupt)],
        ["free"] => vec![("POST", R::Free)],
        ["users"] => vec![("GET", R::UsersGet), ("POST", R::UsersPost)],
        ["userdata"] => vec![("GET", R::UserdataList)],
        ["v2", "userdata"] => vec![("GET", R::V2Userdata)],
        ["userdata", f] => p(f)
            .map(|f| {
                vec![
                    ("GET", R::UserdataGet(f.clone())),
                    ("POST", R::UserdataPost(f.clone())),
                    ("DELETE", R::UserdataDelete(f)),
                ]
            })
            .unwrap_or_default(),
        ["userdata", f, "move", d] => match (p(f), p(d)) {
            (Some(f), Some(d)) => vec![("POST", R::UserdataMove(f, d))],
            _ => vec![],
        },
        ["settings"] => vec![("GET", R::SettingsGet), ("POST", R::SettingsPost)],
        ["settings", id] => p(id)
            .map(|id| {
                vec![
                    ("GET", R::SettingGet(id.clone())),
                    ("POST", R::SettingPost(id)),
                ]
            })
            .unwrap_or_default(),
        ["experiment", "models"] => vec![("GET", R::ExpModels)],
        ["experiment", "models", f] => p(f)
            .map(|f| vec![("GET", R::ExpModelsFolder(f))])
            .unwrap_or_default(),
        ["experiment", "models", "preview", f, i, rest @ ..] if !rest.is_empty() => {
            match (p(f), p(i)) {
                (Some(f), Some(i)) => vec![("GET", R::ExpPreview(f, i, rest.join("/")))],
                _ => vec![],
            }
        }
        ["workflow_templates"] => vec![("GET", R::WorkflowTemplates)],
        ["i18n"] => vec![("GET", R::I18n)],
        _ => vec![],
    }
}

/// The `/internal` sub-application (not duplicated under `/api`).
fn internal_routes(s: &[&str]) -> Vec<(&'static str, R)> {
    match s {
        ["internal", "logs"] => vec![("GET", R::InternalLogs)],
        ["internal", "logs", "raw"] => vec![("GET", R::InternalLogsRaw)],
        ["internal", "logs", "subscribe"] => vec![("PATCH", R::InternalLogsSubscribe)],
        ["internal", "folder_paths"] => vec![("GET", R::InternalFolderPaths)],
        ["internal", "files", t] => p(t)
            .map(|t| vec![("GET", R::InternalFiles(t))])
            .unwrap_or_default(),
        _ => vec![],
    }
}

fn find_routes(segs: &[String]) -> Vec<(&'static str, R)> {
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let mut found = internal_routes(&s);
    if found.is_empty() {
        found = core_routes(&s);
    }
    if found.is_empty() && s.first() == Some(&"api") {
        found = core_routes(&s[1..]);
    }
    found
}

pub async fn dispatch(shared: &Arc<Shared>, req: Req) -> Resp {
    if origin_forbidden(&req.headers) {
        return Resp::empty(403);
    }
    if req.method == Method::OPTIONS {
        return Resp::empty(200);
    }
    let found = find_routes(&req.segs);
    let want = if req.method == Method::HEAD {
        "GET"
    } else {
        req.method.as_str()
    };
    if let Some((_, route)) = found.iter().find(|(m, _)| *m == want) {
        return handle(shared, req, route.clone()).await;
    }
    if want == "GET" {
        if let Some(root) = shared.frontend.get() {
            return frontend::static_file(root, &req.segs).await;
        }
        return static_file(&req);
    }
    let mut allowed: Vec<&str> = vec!["GET", "HEAD"];
    for (m, _) in &found {
        if !allowed.contains(m) {
            allowed.push(m);
        }
    }
    allowed.sort_unstable();
    let mut r = Resp::raised(405);
    r.headers.push(("Allow".into(), allowed.join(",")));
    r
}

async fn handle(shared: &Arc<Shared>, req: Req, route: R) -> Resp {
    match route {
        R::Ws => ws::upgrade(shared, req),
        R::Index => match shared.frontend.get() {
            Some(root) => frontend::index(root).await,
            None => index(),
        },
        R::Embeddings => embeddings(shared),
        R::Models => Resp::json(&Value::from(
            files::MODEL_FOLDERS
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>(),
        )),
        R::ModelsFolder(f) => models_folder(shared, &f),
        R::Extensions => Resp::json(fixtures::extensions()),
        R::UploadImage => upload::upload(shared, &req, false).await,
        R::UploadMask => upload::upload(shared, &req, true).await,
        R::View => upload::view(shared, &req),
        R::ViewMetadata(f) => view_metadata(shared, &req, &f).await,
        R::SystemStats => Resp::json(fixtures::system_stats()),
        R::Features => Resp::json(&features()),
        R::PromptGet => Resp::json(&shared.lock().queue_info()),
        R::PromptPost => prompt::post_prompt(shared, &req).await,
        R::ObjectInfo => Resp::json(&Value::Object(object_info(shared))),
        R::ObjectInfoNode(c) => {
            let all = object_info(shared);
            let mut out = serde_json::Map::new();
            if let Some(v) = all.get(&c) {
                out.insert(c, v.clone());
            }
            Resp::json(&Value::Object(out))
        }
        R::HistoryGet => {
            shared.pass_gate("GET /history").await;
            prompt::get_history(shared, &req)
        }
        R::HistoryId(id) => prompt::get_history_id(shared, &id),
        R::HistoryPost => prompt::post_history(shared, &req).await,
        R::QueueGet => {
            let delay = shared.lock().queue_delay;
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            Resp::json(&shared.lock().queue_json())
        }
        R::QueuePost => prompt::post_queue(shared, &req).await,
        R::Interrupt => prompt::post_interrupt(shared, &req).await,
        R::Free => prompt::post_free(shared, &req).await,
        R::UsersGet => Resp::json_text(200, shared.lock().users_json()),
        R::UsersPost => userdata::post_users(shared, &req).await,
        R::UserdataList => userdata::list(shared, &req),
        R::V2Userdata => userdata::list_v2(shared, &req),
        R::UserdataGet(f) => userdata::get_file(shared, &req, &f),
        R::UserdataPost(f) => userdata::post_file(shared, &req, &f).await,
        R::UserdataDelete(f) => userdata::delete_file(shared, &req, &f),
        R::UserdataMove(f, d) => userdata::move_file(shared, &req, &f, &d),
        R::SettingsGet => userdata::get_settings_route(shared, &req),
        R::SettingsPost => userdata::post_settings(shared, &req).await,
        R::SettingGet(id) => userdata::get_setting(shared, &req, &id),
        R::SettingPost(id) => userdata::post_setting(shared, &req, &id).await,
        R::ExpModels => exp_models(),
        R::ExpModelsFolder(f) => exp_models_folder(shared, &f),
        R::ExpPreview(f, i, name) => exp_preview(shared, &f, &i, &name),
        R::WorkflowTemplates => Resp::json(&json!({})),
        R::I18n => Resp::json(&json!({})),
        R::InternalLogs => Resp::json(fixtures::internal_logs()),
        R::InternalLogsRaw => internal_logs_raw(),
        R::InternalLogsSubscribe => match req.json().await {
            Ok(_) => Resp::empty(200),
            Err(r) => r,
        },
        R::InternalFolderPaths => {
            let m: serde_json::Map<String, Value> = files::MODEL_FOLDERS
                .iter()
                .map(|(n, d)| (n.to_string(), Value::from(d.to_vec())))
                .collect();
            Resp::json(&Value::Object(m))
        }
        R::InternalFiles(t) => internal_files(shared, &t),
    }
}

pub fn features() -> Value {
    json!({"supports_preview_metadata": true, "max_upload_size": super::state::MAX_UPLOAD})
}

const INDEX_HTML: &str = "<!doctype html>\n<html lang=\"en\">\n  <head>\n    <meta charset=\"UTF-8\">\n    <title>ComfyUI</title>\n    <meta name=\"viewport\" content=\"width=device-width, initial-scale=1.0, maximum-scale=1.0, user-scalable=no\">\n    <link rel=\"stylesheet\" type=\"text/css\" href=\"user.css\" />\n    <link rel=\"stylesheet\" type=\"text/css\" href=\"api/userdata/user.css\" />\n    <script type=\"module\" crossorigin src=\"./assets/index-double.js\"></script>\n    <link rel=\"stylesheet\" crossorigin href=\"./assets/index-double.css\">\n  </head>\n  <body class=\"litegraph grid\">\n    <div id=\"vue-app\"></div>\n  </body>\n</html>\n";

fn index() -> Resp {
    Resp::new(200)
        .header("Content-Type", "text/html")
        .header("Cache-Control", "no-cache")
        .header("Pragma", "no-cache")
        .header("Expires", "0")
        .body_bytes(INDEX_HTML)
}

/// The frontend bundle (aiohttp `web.static('/', web_root)`), synthesised.
fn static_file(req: &Req) -> Resp {
    let path = req.segs.join("/");
    let served = path == "index.html"
        || path == "user.css"
        || [
            "assets/",
            "scripts/",
            "extensions/core/",
            "fonts/",
            "cursor/",
        ]
        .iter()
        .any(|pre| path.starts_with(pre) && path.len() > pre.len() && !path.ends_with('/'));
    if !served || path.split('/').any(|s| s == "..") {
        return Resp::not_found();
    }
    let ct = guess_mime(&path).unwrap_or("application/octet-stream");
    let body = if path == "index.html" {
        INDEX_HTML.to_string()
    } else if path.ends_with(".js") {
        format!("// ComfyUI test double: /{path}\nexport default {{}};\n")
    } else if path.ends_with(".css") {
        format!("/* ComfyUI test double: /{path} */\nbody {{ margin: 0; }}\n")
    } else {
        format!("ComfyUI test double: /{path}\n")
    };
    Resp::new(200)
        .header("Content-Type", ct)
        .header("Accept-Ranges", "bytes")
        .body_bytes(body)
}

fn model_files(
    shared: &Arc<Shared>,
    folder: &str,
) -> Option<Vec<(String, usize, files::FileEntry)>> {
    let dirs = files::model_folder(folder)?;
    let exts = files::model_extensions(folder);
    let g = shared.lock();
    let mut out = Vec::new();
    for (i, d) in dirs.iter().enumerate() {
        for f in g.vfs.files_under(d) {
            let rel = paths::relpath(&f, d);
            if rel.split('/').any(|c| c.starts_with('.')) {
                continue;
            }
            let ext = splitext(&f).1.to_ascii_lowercase();
            if exts.is_empty() || exts.contains(&ext.as_str()) {
                if let Some(e) = g.vfs.get(&f) {
                    out.push((rel, i, e.clone()));
                }
            }
        }
    }
    Some(out)
}

fn embeddings(shared: &Arc<Shared>) -> Resp {
    let names: Vec<String> = model_files(shared, "embeddings")
        .unwrap_or_default()
        .into_iter()
        .map(|(rel, _, _)| splitext(&rel).0)
        .collect();
    Resp::json(&Value::from(names))
}

fn models_folder(shared: &Arc<Shared>, folder: &str) -> Resp {
    match model_files(shared, folder) {
        None => Resp::empty(404),
        Some(list) => {
            let mut names: Vec<String> = list.into_iter().map(|(rel, _, _)| rel).collect();
            names.sort();
            names.dedup();
            Resp::json(&Value::from(names))
        }
    }
}

fn exp_models() -> Resp {
    let out: Vec<Value> = files::MODEL_FOLDERS
        .iter()
        .filter(|(n, _)| *n != "configs" && *n != "custom_nodes")
        .map(|(n, d)| json!({"name": n, "folders": d}))
        .collect();
    Resp::json(&Value::from(out))
}

fn exp_models_folder(shared: &Arc<Shared>, folder: &str) -> Resp {
    match model_files(shared, folder) {
        None => Resp::empty(404),
        Some(list) => {
            let out: Vec<Value> = list
                .into_iter()
                .map(|(rel, i, e)| {
                    json!({
                        "name": rel,
                        "pathIndex": i,
                        "modified": e.mtime,
                        "created": e.ctime,
                        "size": e.blob.len(),
                    })
                })
                .collect();
            Resp::json(&Value::from(out))
        }
    }
}

/// `/experiment/models/preview/{folder}/{path_index}/{filename:.*}`: no traversal check,
/// like 0.3.64 (returns the image bytes labelled `image/webp`).
fn exp_preview(shared: &Arc<Shared>, folder: &str, index: &str, filename: &str) -> Resp {
    let Some(dirs) = files::model_folder(folder) else {
        return Resp::empty(404);
    };
    let Ok(i) = index.trim().parse::<usize>() else {
        return Resp::server_error();
    };
    let Some(dir) = dirs.get(i) else {
        return Resp::server_error();
    };
    let full = abspath(&join(dir, filename));
    let base = splitext(&full).0;
    let g = shared.lock();
    if !g.vfs.is_dir(&paths::dirname(&full)) {
        return Resp::empty(404);
    }
    let (names, _) = g.vfs.children(&paths::dirname(&full));
    for name in names {
        let cand = join(&paths::dirname(&full), &name);
        let cbase = splitext(&cand).0;
        if files::content_class(&name) == Some("image")
            && (cbase == base || cbase == format!("{base}.preview"))
        {
            if let Some(bytes) = g.vfs.get(&cand).and_then(|e| e.blob.small_bytes()) {
                return Resp::new(200)
                    .header("Content-Type", "image/webp")
                    .body_bytes(bytes);
            }
        }
    }
    Resp::empty(404)
}

async fn view_metadata(shared: &Arc<Shared>, req: &Req, folder: &str) -> Resp {
    let Some(filename) = req.q("filename") else {
        return Resp::empty(404);
    };
    if !filename.ends_with(".safetensors") {
        return Resp::empty(404);
    }
    let Some(dirs) = files::model_folder(folder) else {
        return Resp::empty(404);
    };
    let rel = paths::relpath(&join("/", &filename), "/");
    let blob = {
        let g = shared.lock();
        dirs.iter()
            .find_map(|d| g.vfs.get(&join(d, &rel)).map(|e| e.blob.clone()))
    };
    let Some(blob) = blob else {
        return Resp::empty(404);
    };
    let Ok(bytes) = blob.read_all().await else {
        return Resp::empty(404);
    };
    if bytes.len() < 8 {
        return Resp::empty(404);
    }
    let mut n = [0u8; 8];
    n.copy_from_slice(&bytes[..8]);
    let n = u64::from_le_bytes(n) as usize;
    let Some(header) = bytes.get(8..8usize.saturating_add(n)) else {
        return Resp::empty(404);
    };
    match serde_json::from_slice::<Value>(header)
        .ok()
        .and_then(|v| v.get("__metadata__").cloned())
    {
        Some(meta) => Resp::json(&meta),
        None => Resp::empty(404),
    }
}

/// `/object_info` with the LoadImage-family `image` combos listing the input directory.
fn object_info(shared: &Arc<Shared>) -> serde_json::Map<String, Value> {
    let (images, progress_node) = {
        let g = shared.lock();
        (g.vfs.image_files(paths::INPUT), g.progress_node)
    };
    let mut all = fixtures::object_info().clone();
    if !progress_node {
        all.remove(fixtures::PROGRESS_NODE);
    }
    for class in ["LoadImage", "LoadImageMask"] {
        if let Some(combo) = all
            .get_mut(class)
            .and_then(|c| c.pointer_mut("/input/required/image/0"))
        {
            *combo = Value::from(images.clone());
        }
    }
    all
}

fn internal_logs_raw() -> Resp {
    let text = fixtures::internal_logs().as_str().unwrap_or("");
    let entries: Vec<Value> = text
        .split_inclusive('\n')
        .filter_map(|line| {
            let (t, m) = line.split_once(" - ")?;
            Some(json!({"t": t, "m": m}))
        })
        .collect();
    Resp::json(&json!({"entries": entries, "size": {"cols": 80, "rows": 24}}))
}

fn internal_files(shared: &Arc<Shared>, kind: &str) -> Resp {
    let Some(dir) = paths::dir_for_kind(kind) else {
        return Resp::json_status(400, &json!({"error": "Invalid directory type"}));
    };
    let g = shared.lock();
    let (names, _) = g.vfs.children(dir);
    let mut entries: Vec<(u64, String)> = names
        .into_iter()
        .filter(|n| !n.starts_with('.'))
        .filter_map(|n| g.vfs.get(&join(dir, &n)).map(|e| (e.seq, n)))
        .collect();
    entries.sort_by_key(|e| std::cmp::Reverse(e.0));
    Resp::json(&Value::from(
        entries.into_iter().map(|(_, n)| n).collect::<Vec<_>>(),
    ))
}

/// `/view` and `/userdata/{file}` share this: serve a stored file as `web.FileResponse`.
pub fn serve_entry(entry: &files::FileEntry, content_type: &str, req: &Req) -> Resp {
    file_response(entry, content_type, &req.headers)
}
