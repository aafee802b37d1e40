//! Shared information routes with what must not leak removed: `/system_stats` without
//! ComfyUI's command line, `/experiment/models` without absolute folders, model previews with a
//! validated path, and `GET /users` answered locally so the stock frontend shows no user picker.
use super::ctx::{Ctx, private_json};
use crate::body::{self, Body};
use crate::proxy::upstream::UpstreamError;
use crate::reject::Reject;
use crate::tenancy::paths;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::{Value, json};

/// `GET /users`: single-user shape, so the frontend skips its user picker; ComfyUI's real list
/// (every user's id) is never shown.
pub fn users_get() -> Response<Body> {
    private_json(
        StatusCode::OK,
        &json!({"storage": "server", "migrated": true}),
    )
}

async fn filtered_json(
    ctx: &Ctx<'_>,
    req: &Request<Incoming>,
    edit: impl FnOnce(&mut Value),
) -> Result<Response<Body>, Reject> {
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let (status, _, bytes) = ctx.call(Method::GET, path, None).await?;
    passed_on(status, path, bytes, edit)
}

/// ComfyUI's answer to a route comfy-warden filters: a successful JSON answer edited; a 4xx
/// (ComfyUI's own "no such folder") as it came; a server error, or a success that is not JSON,
/// refused, so nothing unfiltered is ever passed on.
pub fn passed_on(
    status: http::StatusCode,
    path: &str,
    bytes: bytes::Bytes,
    edit: impl FnOnce(&mut Value),
) -> Result<Response<Body>, Reject> {
    if status.is_server_error() || status.is_informational() || status.is_redirection() {
        return Err(UpstreamError::status(status, path).into());
    }
    if status.is_client_error() {
        let mut r = Response::new(body::full(bytes));
        *r.status_mut() = status;
        return Ok(r);
    }
    let mut v =
        serde_json::from_slice::<Value>(&bytes).map_err(|e| UpstreamError::malformed(path, e))?;
    edit(&mut v);
    Ok(private_json(status, &v))
}

pub async fn system_stats(
    ctx: &Ctx<'_>,
    req: &Request<Incoming>,
) -> Result<Response<Body>, Reject> {
    let admin = ctx.sees_all();
    filtered_json(ctx, req, |v| {
        if !admin && let Some(sys) = v.get_mut("system").and_then(Value::as_object_mut) {
            sys.remove("argv");
        }
    })
    .await
}

pub async fn experiment_models(
    ctx: &Ctx<'_>,
    req: &Request<Incoming>,
) -> Result<Response<Body>, Reject> {
    let admin = ctx.sees_all();
    filtered_json(ctx, req, |v| {
        if !admin && let Some(list) = v.as_array_mut() {
            for m in list.iter_mut().filter_map(Value::as_object_mut) {
                m.remove("folders");
            }
        }
    })
    .await
}

/// `/experiment/models/preview/{folder}/{path_index}/{filename}`: ComfyUI reads any image on
/// the host here, so the path is fully decoded and validated first.
pub fn model_preview_ok(path: &str) -> bool {
    let rest = path.strip_prefix("/api").unwrap_or(path);
    let Some(rest) = rest.strip_prefix("/experiment/models/preview/") else {
        return false;
    };
    let mut it = rest.splitn(3, '/');
    let (Some(folder), Some(index), Some(file)) = (it.next(), it.next(), it.next()) else {
        return false;
    };
    paths::clean_decoded(folder).is_ok_and(|f| !f.is_empty() && !f.contains('/'))
        && !index.is_empty()
        && index.len() <= 3
        && index.bytes().all(|b| b.is_ascii_digit())
        && paths::clean_decoded(file).is_ok_and(|f| !f.is_empty())
}

pub async fn model_preview(
    ctx: &Ctx<'_>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Reject> {
    if !model_preview_ok(req.uri().path()) {
        return Err(Reject::BadRequest("not a valid model preview path".into()));
    }
    ctx.forward(req).await
}

/// `/userdata/{file}` and `/userdata/{file}/move/{dest}`: every segment is cleaned as a path
/// is (decoded, twice if need be; no `..`, no absolute path), since ComfyUI decodes the file
/// names again. Other user data routes carry no path segment and pass.
pub fn userdata_path_ok(path: &str) -> bool {
    let rest = path.strip_prefix("/api").unwrap_or(path);
    let Some(rest) = rest.strip_prefix("/userdata/") else {
        return true;
    };
    rest.split('/')
        .all(|seg| paths::clean_decoded(seg).is_ok_and(|s| !s.is_empty()))
}

/// `/settings*`, `/userdata*`, `/v2/userdata`: the user's own ComfyUI data, never cached by
/// shared caches, active content as attachment.
pub async fn user_data(ctx: &Ctx<'_>, req: Request<Incoming>) -> Result<Response<Body>, Reject> {
    if !userdata_path_ok(req.uri().path()) {
        return Err(Reject::BadRequest("not a valid user data path".into()));
    }
    let mut r = ctx.forward(req).await?;
    super::files::harden_file_response(&mut r);
    if r.headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"))
    {
        r.headers_mut().remove(http::header::CONTENT_DISPOSITION);
        r.headers_mut()
            .remove(http::header::CONTENT_SECURITY_POLICY);
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::{model_preview_ok, userdata_path_ok};

    #[test]
    fn userdata_paths() {
        for ok in [
            "/userdata/workflows%2Fa.json",
            "/api/userdata/a.json/move/workflows%2Fb.json",
            "/settings/Comfy.Locale",
            "/v2/userdata",
        ] {
            assert!(userdata_path_ok(ok), "{ok}");
        }
        for bad in [
            "/userdata/a.json/move/%252E%252E%252Fusers.json",
            "/userdata/..%2Fusers.json",
            "/api/userdata/%2Fetc%2Fpasswd/move/x.json",
            "/userdata/a.json/move/",
        ] {
            assert!(!userdata_path_ok(bad), "{bad}");
        }
    }

    #[test]
    fn preview_paths() {
        assert!(model_preview_ok(
            "/experiment/models/preview/checkpoints/0/sd15.safetensors"
        ));
        assert!(model_preview_ok(
            "/api/experiment/models/preview/loras/1/sub%2Fx.safetensors"
        ));
        for bad in [
            "/experiment/models/preview/checkpoints/0/..%2F..%2F..%2Fdata%2Foutput%2Falice%2Ftest_00001_.x",
            "/experiment/models/preview/checkpoints/0/%2Fetc%2Fpasswd",
            "/experiment/models/preview/checkpoints/x/a.safetensors",
            "/experiment/models/preview/..%2F/0/a",
            "/experiment/models/preview/checkpoints/0/",
            "/experiment/models/preview/checkpoints/0/%252E%252E%252Fx",
        ] {
            assert!(!model_preview_ok(bad), "{bad}");
        }
    }
}
