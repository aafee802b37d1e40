//! Serving a real ComfyUI frontend (the `static` directory of the PyPI package
//! `comfyui-frontend-package`) like ComfyUI's `web.static('/', web_root)` and its `/` handler:
//! files read from that directory with their content types, `..` refused, directories 403.

use std::path::{Component, Path, PathBuf};

use super::files::guess_mime;
use super::http::Resp;

/// `GET /`: `index.html` with ComfyUI's no-cache headers.
pub async fn index(root: &Path) -> Resp {
    match tokio::fs::read(root.join("index.html")).await {
        Ok(bytes) => Resp::new(200)
            .header("Content-Type", "text/html")
            .header("Cache-Control", "no-cache")
            .header("Pragma", "no-cache")
            .header("Expires", "0")
            .body_bytes(bytes),
        Err(_) => Resp::not_found(),
    }
}

/// The file below `root` that a decoded request path names, if it is a plain relative path.
fn resolve(root: &Path, segs: &[String]) -> Option<PathBuf> {
    let rel: PathBuf = segs.iter().collect();
    if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return None;
    }
    Some(root.join(rel))
}

/// A static file of the frontend (aiohttp `StaticResource`).
pub async fn static_file(root: &Path, segs: &[String]) -> Resp {
    if segs.iter().any(|s| s.is_empty() || s.contains('\\')) {
        return Resp::not_found();
    }
    let Some(path) = resolve(root, segs) else {
        return Resp::raised(403);
    };
    match tokio::fs::metadata(&path).await {
        Ok(m) if m.is_dir() => return Resp::raised(403),
        Ok(_) => {}
        Err(_) => return Resp::not_found(),
    }
    let Ok(bytes) = tokio::fs::read(&path).await else {
        return Resp::not_found();
    };
    let name = segs.last().map(String::as_str).unwrap_or("");
    let ct = if name.ends_with(".map") {
        "application/json"
    } else {
        guess_mime(name).unwrap_or("application/octet-stream")
    };
    Resp::new(200)
        .header("Content-Type", ct)
        .header("Accept-Ranges", "bytes")
        .body_bytes(bytes)
}
