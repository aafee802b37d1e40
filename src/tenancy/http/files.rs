//! Files: `GET /view`, `POST /upload/image`, `POST /upload/mask` and `/internal/files/{type}`.
//!
//! Every client path is interpreted inside the caller's namespace, except an exact file the
//! ledger says the caller owns (temp-root previews). Uploads are rebuilt, never forwarded raw:
//! the multipart body is parsed with `multer` and re-emitted as it streams (file part first, the
//! validated fields after it), so a 50 MB upload is never held in memory. Users with `view_all`
//! work on ComfyUI's real paths.
use super::ctx::{Ctx, private_json};
use crate::body::{self, Body, BoxError};
use crate::proxy::forward;
use crate::proxy::upstream::UpstreamError;
use crate::reject::Reject;
use crate::tenancy::paths::{self, Kind};
use crate::tenancy::tenant::{Tenant, bad};
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use serde_json::{Value, json};

/// Content types served as attachments with a sandbox policy: they could run script on
/// comfy-warden's origin if shown inline.
pub fn is_active_content(ct: &str) -> bool {
    let ct = ct.to_ascii_lowercase();
    [
        "svg",
        "html",
        "xml",
        "javascript",
        "ecmascript",
        "xhtml",
        "x-shockwave",
    ]
    .iter()
    .any(|a| ct.contains(a))
        || ct.is_empty()
}

/// Private caching, no sniffing, and active content as a sandboxed attachment.
pub fn harden_file_response(resp: &mut Response<Body>) {
    let h = resp.headers_mut();
    let ct = h
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if is_active_content(&ct) && resp.status().is_success() {
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_DISPOSITION,
            HeaderValue::from_static("attachment"),
        );
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("sandbox; default-src 'none'"),
        );
    }
}

pub(crate) fn first_params(query: Option<&str>) -> std::collections::HashMap<String, String> {
    let mut m = std::collections::HashMap::new();
    if let Some(q) = query {
        for (k, v) in form_urlencoded::parse(q.as_bytes()) {
            m.entry(k.into_owned()).or_insert_with(|| v.into_owned());
        }
    }
    m
}

impl Tenant {
    /// Upload targets: input or temp (and output for `view_all`).
    fn upload_kind(&self, t: Option<&str>) -> Result<Kind, Reject> {
        match t.unwrap_or("input") {
            "input" => Ok(Kind::Input),
            "temp" => Ok(Kind::Temp),
            "output" if self.sees_all => Ok(Kind::Output),
            "output" => Err(Reject::BadRequest(
                "uploads go to input or temp; outputs come only from your prompts".into(),
            )),
            other => Err(bad(format!("type must be input or temp, not {other:?}"))),
        }
    }

    /// The mask editor's `original_ref` `{filename, subfolder, type}`, mapped like `/view`.
    fn map_original_ref(&self, raw: &str) -> Result<String, Reject> {
        let v: Value =
            serde_json::from_str(raw).map_err(|_| bad("original_ref must be JSON".into()))?;
        if self.sees_all {
            return Ok(v.to_string());
        }
        let filename = v
            .get("filename")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("original_ref needs a filename".into()))?;
        let subfolder = v.get("subfolder").and_then(Value::as_str).unwrap_or("");
        let (kind, up_sub, name) = self.map_locator(
            filename,
            subfolder,
            Kind::Output,
            v.get("type").and_then(Value::as_str),
        )?;
        Ok(json!({"filename": name, "subfolder": up_sub, "type": kind.as_str()}).to_string())
    }
}

pub async fn view(ctx: &Ctx<'_>, req: Request<Incoming>) -> Result<Response<Body>, Reject> {
    let params = first_params(req.uri().query());
    let Some(filename) = params.get("filename") else {
        return Err(Reject::BadRequest("filename is required".into()));
    };
    let query = {
        let mut q = form_urlencoded::Serializer::new(String::new());
        if ctx.sees_all() {
            if filename.starts_with("blake3:") {
                return Err(Reject::BadRequest(
                    "content-addressed names are not served".into(),
                ));
            }
            for (k, v) in &params {
                q.append_pair(k, v);
            }
        } else {
            let (kind, up_sub, name) = ctx.tenant().map_locator(
                filename,
                params.get("subfolder").map(String::as_str).unwrap_or(""),
                Kind::Output,
                params.get("type").map(String::as_str),
            )?;
            q.append_pair("filename", &name)
                .append_pair("type", kind.as_str())
                .append_pair("subfolder", &up_sub);
            if let Some(p) = params.get("preview").filter(|p| {
                p.len() <= 16 && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b';')
            }) {
                q.append_pair("preview", p);
            }
            if let Some(c) = params
                .get("channel")
                .filter(|c| matches!(c.as_str(), "rgba" | "rgb" | "a"))
            {
                q.append_pair("channel", c);
            }
        }
        q.finish()
    };
    let path = format!("{}?{query}", req.uri().path());
    let (mut parts, _) = req.into_parts();
    ctx.upstream_parts(&mut parts, &path)?;
    let mut r = forward::stream_back(forward::send(ctx.snap, parts, body::empty()).await?);
    harden_file_response(&mut r);
    Ok(r)
}

/// `/internal/files/{input|output|temp}`: the caller's own top-level files, newest first.
pub fn internal_files(ctx: &Ctx<'_>, kind_name: &str) -> Result<Response<Body>, Reject> {
    let Some(kind) = Kind::parse(kind_name) else {
        return Err(Reject::BadRequest(
            "type must be input, output or temp".into(),
        ));
    };
    let ledger = &ctx.app.tenancy.ledger;
    let mut names = ledger.files_of(ctx.owner(), kind, &paths::to_upstream(ctx.ns(), kind, ""));
    for n in ledger.files_of(ctx.owner(), kind, "") {
        if !names.contains(&n) {
            names.push(n);
        }
    }
    Ok(private_json(StatusCode::OK, &json!(names)))
}

// ---------------------------------------------------------------- uploads

const MAX_FIELD: u64 = 16 * 1024;

#[derive(Default)]
struct Fields {
    overwrite: Option<String>,
    kind: Option<String>,
    subfolder: Option<String>,
    original_ref: Option<String>,
}

pub(crate) struct Uploaded {
    kind: Kind,
}

fn upload_name(raw: &str) -> Result<String, Reject> {
    let base = raw.rsplit(['/', '\\']).next().unwrap_or("");
    if base.contains('"') {
        return Err(bad("the file name may not contain quotes".into()));
    }
    paths::clean_name(base).map_err(|e| bad(format!("file name: {e}")))
}

fn field_part(boundary: &str, name: &str, value: &str) -> Bytes {
    Bytes::from(format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
    ))
}

pub(crate) type Tx = tokio::sync::mpsc::Sender<Result<Frame<Bytes>, BoxError>>;

/// Fails when ComfyUI stopped reading the upload (it answered, or the connection broke): the
/// request's own answer then says what ComfyUI did.
async fn emit(tx: &Tx, b: Bytes) -> Result<(), Reject> {
    tx.send(Ok(Frame::data(b)))
        .await
        .map_err(|_| Reject::UpstreamUnreachable)
}

/// The size limits of the small fields of an upload (the file itself is bounded by
/// `server.max_upload_bytes`).
pub(crate) fn upload_constraints() -> multer::Constraints {
    multer::Constraints::new().size_limit(
        multer::SizeLimit::new()
            .for_field("overwrite", MAX_FIELD)
            .for_field("type", MAX_FIELD)
            .for_field("subfolder", MAX_FIELD)
            .for_field("original_ref", MAX_FIELD),
    )
}

/// Reads the client's multipart stream and writes the rebuilt one into `tx`: the file part as
/// it arrives, then the validated fields, then the closing boundary.
pub(crate) async fn pump(
    mut mp: multer::Multipart<'static>,
    tx: &Tx,
    boundary: &str,
    tenant: &Tenant,
    mask: bool,
) -> Result<Uploaded, Reject> {
    let mut fields = Fields::default();
    let mut image = false;
    loop {
        let mut field = match mp.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return Err(bad(format!("the upload is not valid multipart data: {e}"))),
        };
        let name = field.name().unwrap_or("").to_owned();
        if name == "image" && field.file_name().is_some() && !image {
            image = true;
            if fields.kind.is_some() {
                tenant.upload_kind(fields.kind.as_deref())?;
            }
            let file_name = upload_name(field.file_name().unwrap_or(""))?;
            let ct: String = field
                .content_type()
                .map(|m| m.to_string())
                .unwrap_or_else(|| "application/octet-stream".into());
            let ct: String = ct.chars().filter(|c| !c.is_control()).collect();
            let head = format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{file_name}\"\r\nContent-Type: {ct}\r\n\r\n"
            );
            emit(tx, Bytes::from(head)).await?;
            loop {
                match field.chunk().await {
                    Ok(Some(c)) => emit(tx, c).await?,
                    Ok(None) => break,
                    Err(e) => return Err(bad(format!("the upload broke off: {e}"))),
                }
            }
            emit(tx, Bytes::from_static(b"\r\n")).await?;
            continue;
        }
        let slot = match name.as_str() {
            "overwrite" => &mut fields.overwrite,
            "type" => &mut fields.kind,
            "subfolder" => &mut fields.subfolder,
            "original_ref" if mask => &mut fields.original_ref,
            _ => {
                while let Ok(Some(_)) = field.chunk().await {}
                continue;
            }
        };
        let text = field
            .text()
            .await
            .map_err(|e| bad(format!("field {name}: {e}")))?;
        if slot.is_none() {
            *slot = Some(text);
        }
    }
    if !image {
        return Err(bad(
            "no image was uploaded (a file in the field \"image\")".into()
        ));
    }
    let kind = tenant.upload_kind(fields.kind.as_deref())?;
    let sub = paths::clean(fields.subfolder.as_deref().unwrap_or(""))
        .map_err(|e| bad(format!("subfolder: {e}")))?;
    let up_sub = if tenant.sees_all {
        sub
    } else {
        paths::to_upstream(&tenant.ns, kind, &sub)
    };
    emit(tx, field_part(boundary, "type", kind.as_str())).await?;
    emit(tx, field_part(boundary, "subfolder", &up_sub)).await?;
    if matches!(fields.overwrite.as_deref(), Some("true" | "1")) {
        emit(tx, field_part(boundary, "overwrite", "true")).await?;
    }
    if mask {
        let r = fields
            .original_ref
            .ok_or_else(|| bad("original_ref is required for a mask".into()))?;
        emit(
            tx,
            field_part(boundary, "original_ref", &tenant.map_original_ref(&r)?),
        )
        .await?;
    }
    emit(tx, Bytes::from(format!("--{boundary}--\r\n"))).await?;
    Ok(Uploaded { kind })
}

/// 413 for an upload over `server.max_upload_bytes`, logged once.
fn too_large(ctx: &Ctx<'_>, limit: u64) -> Reject {
    tracing::info!(target: "audit", event = "upload_refused", user = %ctx.owner(), client_ip = %ctx.client_ip, reason = "larger than server.max_upload_bytes", limit, "upload refused");
    Reject::UploadTooLarge { limit }
}

/// Does ComfyUI serve this file? (`HEAD /view`, answered like GET.)
async fn stored_upstream(ctx: &Ctx<'_>, kind: Kind, subfolder: &str, name: &str) -> bool {
    let q: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("filename", name)
        .append_pair("type", kind.as_str())
        .append_pair("subfolder", subfolder)
        .finish();
    matches!(ctx.call(http::Method::HEAD, &format!("/view?{q}"), None).await, Ok((s, _, _)) if s.is_success())
}

pub async fn upload(
    ctx: &Ctx<'_>,
    req: Request<Incoming>,
    mask: bool,
) -> Result<Response<Body>, Reject> {
    let limit = ctx.snap.server.max_upload_bytes;
    if body::content_length(req.headers()).is_some_and(|n| n > limit) {
        return Err(too_large(ctx, limit));
    }
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Ok(boundary) = multer::parse_boundary(ct) else {
        return Err(Reject::BadRequest("send multipart/form-data".into()));
    };
    let path = req.uri().path().to_owned();
    let (mut parts, incoming) = req.into_parts();
    let constraints = upload_constraints();
    let over = body::Overflow::default();
    let mp = multer::Multipart::with_constraints(
        body::bounded_stream(incoming, limit, over.clone()),
        boundary,
        constraints,
    );
    let out_boundary = format!("comfywarden{}", uuid::Uuid::new_v4().simple());
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(8);
    let upstream_body =
        StreamBody::new(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))).boxed();

    let tenant = ctx.tenant();
    let boundary_for_pump = out_boundary.clone();
    let pump_task = tokio::spawn(async move {
        let r = pump(mp, &tx, &boundary_for_pump, &tenant, mask).await;
        if let Err(m) = &r {
            // Abort the upstream body so ComfyUI stores nothing.
            let _ = tx.send(Err(m.message().into_owned().into())).await;
        }
        r
    });

    parts.headers.remove(header::CONTENT_LENGTH);
    if let Ok(v) = HeaderValue::from_str(&format!("multipart/form-data; boundary={out_boundary}")) {
        parts.headers.insert(header::CONTENT_TYPE, v);
    }
    ctx.upstream_parts(&mut parts, &path)?;
    let sent = forward::send(ctx.snap, parts, upstream_body).await;
    let uploaded = match pump_task.await {
        Ok(Ok(u)) => u,
        Ok(Err(_)) if over.load(std::sync::atomic::Ordering::Relaxed) => {
            return Err(too_large(ctx, limit));
        }
        // ComfyUI stopped reading: its answer (or the failed send) says why.
        Ok(Err(Reject::UpstreamUnreachable)) => {
            return Err(UpstreamError::status(sent?.status(), &path).into());
        }
        Ok(Err(reason)) => {
            tracing::info!(target: "audit", event = "upload_refused", user = %ctx.owner(), client_ip = %ctx.client_ip, reason = %reason.message(), "upload refused");
            return Err(reason);
        }
        Err(_) => {
            return Err(Reject::Internal("the upload could not be processed".into()));
        }
    };
    let (parts, bytes) = forward::read_body(sent?).await?;
    if parts.status.is_server_error() {
        return Err(UpstreamError::status(parts.status, &path).into());
    }
    if !parts.status.is_success() {
        // ComfyUI's own refusal of the upload (a 400 naming what is missing).
        let mut r = Response::new(body::full(bytes));
        *r.status_mut() = parts.status;
        return Ok(r);
    }
    let mut v: Value =
        serde_json::from_slice(&bytes).map_err(|e| UpstreamError::malformed(&path, e))?;
    let name = v
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let up_sub = v
        .get("subfolder")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    // ComfyUI answers 200 to a mask whose original it cannot open, having written nothing:
    // record (and so list) a mask only once ComfyUI serves it.
    let exists = !mask || stored_upstream(ctx, uploaded.kind, &up_sub, &name).await;
    if !name.is_empty() && exists {
        ctx.app
            .tenancy
            .ledger
            .record_file(uploaded.kind, &up_sub, &name, ctx.owner());
    }
    if !ctx.sees_all()
        && let Some(client_sub) = paths::from_upstream(ctx.ns(), uploaded.kind, &up_sub)
        && let Some(m) = v.as_object_mut()
    {
        m.insert("subfolder".into(), Value::String(client_sub));
    }
    Ok(private_json(StatusCode::OK, &v))
}
