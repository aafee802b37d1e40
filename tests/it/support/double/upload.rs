//! `/upload/image`, `/upload/mask` (multipart via `multer`, first value wins, uploads streamed
//! into blobs) and `/view` (annotations, traversal rules, FileResponse headers).

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Value, json};

use super::blob::{Blob, BlobWriter};
use super::files::guess_mime;
use super::http::Resp;
use super::paths::{
    self, abspath, annotated_filepath, basename, confined, join, normpath, splitext,
};
use super::server::Req;
use super::state::Shared;

enum FormVal {
    Text(String),
    File { filename: String, blob: Blob },
}

/// `await request.post()`: `Err` is a response aiohttp would produce.
async fn read_form(req: &Req) -> Result<HashMap<String, FormVal>, Resp> {
    let mut out: HashMap<String, FormVal> = HashMap::new();
    if let Some(r) = req.too_large() {
        return Err(r);
    }
    let ct = req.header("content-type").unwrap_or_default();
    let lower = ct.to_ascii_lowercase();
    if lower.starts_with("multipart/form-data") {
        let boundary = multer::parse_boundary(&ct).map_err(|_| Resp::server_error())?;
        let stream = req.body.stream(0, req.body.len());
        let mut mp = multer::Multipart::new(stream, boundary);
        loop {
            let field = match mp.next_field().await {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(_) => return Err(Resp::server_error()),
            };
            let name = field.name().unwrap_or("").to_string();
            let filename = field.file_name().map(str::to_string);
            let keep = !out.contains_key(&name);
            match filename {
                Some(filename) => {
                    let mut field = field;
                    let mut w = BlobWriter::new();
                    loop {
                        match field.chunk().await {
                            Ok(Some(chunk)) => {
                                if keep {
                                    w.write(&chunk).await.map_err(|_| Resp::server_error())?;
                                }
                            }
                            Ok(None) => break,
                            Err(_) => return Err(Resp::server_error()),
                        }
                    }
                    if keep {
                        let blob = w.finish().await.map_err(|_| Resp::server_error())?;
                        out.insert(name, FormVal::File { filename, blob });
                    }
                }
                None => {
                    let text = field.text().await.map_err(|_| Resp::server_error())?;
                    if keep {
                        out.insert(name, FormVal::Text(text));
                    }
                }
            }
        }
    } else if lower.starts_with("application/x-www-form-urlencoded") {
        let bytes = req
            .body
            .read_all()
            .await
            .map_err(|_| Resp::server_error())?;
        for (k, v) in form_urlencoded::parse(&bytes) {
            out.entry(k.into_owned())
                .or_insert(FormVal::Text(v.into_owned()));
        }
    }
    Ok(out)
}

fn text_field<'a>(form: &'a HashMap<String, FormVal>, key: &str) -> Result<Option<&'a str>, Resp> {
    match form.get(key) {
        None => Ok(None),
        Some(FormVal::Text(t)) => Ok(Some(t)),
        Some(FormVal::File { .. }) => Err(Resp::server_error()),
    }
}

pub async fn upload(shared: &Arc<Shared>, req: &Req, mask: bool) -> Resp {
    let form = match read_form(req).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let (kind, upload_dir) = match text_field(&form, "type") {
        Err(r) => return r,
        Ok(None) => ("input".to_string(), paths::INPUT),
        Ok(Some(t)) => match paths::dir_for_kind(t) {
            Some(d) => (t.to_string(), d),
            None => return Resp::server_error(),
        },
    };
    let (mut filename, blob) = match form.get("image") {
        Some(FormVal::File { filename, blob }) => (filename.clone(), blob.clone()),
        Some(FormVal::Text(_)) => return Resp::server_error(),
        None => return Resp::empty(400),
    };
    if filename.is_empty() {
        return Resp::empty(400);
    }
    let subfolder = match text_field(&form, "subfolder") {
        Ok(s) => s.unwrap_or("").to_string(),
        Err(r) => return r,
    };
    let overwrite = match text_field(&form, "overwrite") {
        Ok(o) => matches!(o, Some("true") | Some("1")),
        Err(r) => return r,
    };
    let original_ref = match text_field(&form, "original_ref") {
        Ok(o) => o.map(str::to_string),
        Err(r) => return r,
    };

    let full_output_folder = join(upload_dir, &normpath(&subfolder));
    let mut filepath = abspath(&join(&full_output_folder, &filename));
    if !confined(upload_dir, &filepath) {
        return Resp::empty(400);
    }
    let mut g = shared.lock();
    if !g.vfs.exists(&full_output_folder) && g.vfs.makedirs(&full_output_folder).is_err() {
        return Resp::server_error();
    }
    let (stem, ext) = splitext(&filename);
    let mut duplicate = false;
    if !overwrite {
        let mut i = 1;
        while g.vfs.exists(&filepath) {
            match g.vfs.get(&filepath) {
                None => return Resp::server_error(),
                Some(e) if e.blob.sha256() == blob.sha256() => {
                    duplicate = true;
                    break;
                }
                Some(_) => {}
            }
            filename = format!("{stem} ({i}){ext}");
            filepath = join(&full_output_folder, &filename);
            i += 1;
        }
    }
    if !duplicate {
        if mask {
            let Some(original_ref) = original_ref else {
                return Resp::server_error();
            };
            let Ok(Value::Object(oref)) = serde_json::from_str::<Value>(&original_ref) else {
                return Resp::server_error();
            };
            let Some(Value::String(ref_name)) = oref.get("filename") else {
                return Resp::server_error();
            };
            if let Some(original) = resolve_original(&oref, ref_name) {
                // ComfyUI re-encodes the original with the mask's alpha; the double copies the
                // original's bytes, which is what matters for cross-user read tests.
                if let Some(e) = g.vfs.get(&original).cloned() {
                    if g.vfs.write(&filepath, e.blob).is_err() {
                        return Resp::server_error();
                    }
                }
            }
        } else if g.vfs.write(&filepath, blob).is_err() {
            return Resp::server_error();
        }
    }
    Resp::json(&json!({"name": filename, "subfolder": subfolder, "type": kind}))
}

/// The `original_ref` checks of `/upload/mask` (any refusal means "write nothing").
fn resolve_original(oref: &serde_json::Map<String, Value>, ref_name: &str) -> Option<String> {
    let (name, dir) = annotated_filepath(ref_name);
    if name.is_empty() || name.starts_with('/') || name.contains("..") {
        return None;
    }
    let mut output_dir = match dir {
        Some(d) => d.to_string(),
        None => {
            let kind = oref.get("type").and_then(Value::as_str).unwrap_or("output");
            paths::dir_for_kind(kind)?.to_string()
        }
    };
    let sub = oref.get("subfolder").and_then(Value::as_str).unwrap_or("");
    if !sub.is_empty() {
        let full = join(&output_dir, sub);
        if !confined(&output_dir, &abspath(&full)) {
            return None;
        }
        output_dir = full;
    }
    Some(abspath(&join(&output_dir, &name)))
}

pub fn view(shared: &Arc<Shared>, req: &Req) -> Resp {
    let Some(raw) = req.q("filename") else {
        return Resp::empty(404);
    };
    let (filename, dir) = annotated_filepath(&raw);
    if filename.is_empty() {
        return Resp::server_error();
    }
    if filename.starts_with('/') || filename.contains("..") {
        return Resp::empty(400);
    }
    let mut output_dir = match dir {
        Some(d) => d.to_string(),
        None => match paths::dir_for_kind(&req.q("type").unwrap_or_else(|| "output".into())) {
            Some(d) => d.to_string(),
            None => return Resp::empty(400),
        },
    };
    if req.has_q("subfolder") {
        let full = join(&output_dir, &req.q("subfolder").unwrap_or_default());
        if !confined(&output_dir, &abspath(&full)) {
            return Resp::empty(403);
        }
        output_dir = full;
    }
    let name = basename(&filename);
    let file = join(&output_dir, &name);
    let entry = {
        let g = shared.lock();
        g.vfs.get(&file).cloned()
    };
    let Some(entry) = entry else {
        return Resp::empty(404);
    };
    let disposition = format!("filename=\"{name}\"");
    if let Some(preview) = req.q("preview") {
        let parts: Vec<&str> = preview.split(';').collect();
        let mut format = parts[0].to_string();
        if !(format == "webp" || format == "jpeg")
            || req.q("channel").unwrap_or_default().contains('a')
        {
            format = "webp".into();
        }
        let body = entry.blob.small_bytes().unwrap_or_default();
        return Resp::new(200)
            .header("Content-Type", format!("image/{format}"))
            .header(
                "Content-Disposition",
                format!("filename=\"{}\"", name.replace("png", &format)),
            )
            .body_bytes(body);
    }
    let channel = req.q("channel").unwrap_or_else(|| "rgba".into());
    if channel == "rgb" || channel == "a" {
        let body = entry.blob.small_bytes().unwrap_or_default();
        return Resp::new(200)
            .header("Content-Type", "image/png")
            .header("Content-Disposition", disposition)
            .body_bytes(body);
    }
    let mut ct = guess_mime(&name).unwrap_or("application/octet-stream");
    if matches!(
        ct,
        "text/html"
            | "text/html-sandboxed"
            | "application/xhtml+xml"
            | "text/javascript"
            | "text/css"
    ) {
        ct = "application/octet-stream";
    }
    let mut resp = super::routes::serve_entry(&entry, ct, req);
    resp.headers
        .push(("Content-Disposition".into(), disposition));
    resp
}
