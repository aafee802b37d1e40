//! `GET /extensions`: ComfyUI's list of frontend extension scripts with comfy-warden's own
//! script (`server::extension`) added, so the stock frontend loads the user badge and logout.
use super::ctx::Ctx;
use crate::body::{self, Body};
use crate::proxy::upstream::UpstreamError;
use crate::reject::Reject;
use crate::server::extension::with_own_script;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;

pub async fn extensions(ctx: &Ctx<'_>, req: &Request<Incoming>) -> Result<Response<Body>, Reject> {
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/extensions");
    let (status, headers, bytes) = ctx.call(Method::GET, path, None).await?;
    if status.is_server_error() {
        return Err(UpstreamError::status(status, path).into());
    }
    if status == StatusCode::OK
        && let Some(list) = with_own_script(&bytes)
    {
        let mut r = Response::new(body::full(list));
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        return Ok(r);
    }
    // Not the list ComfyUI normally sends (an error page, a newer shape): passed on as it came.
    tracing::debug!(%status, "ComfyUI's /extensions answer is not a JSON list; left alone");
    let mut r = Response::new(body::full(bytes));
    *r.status_mut() = status;
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        r.headers_mut().insert(header::CONTENT_TYPE, ct.clone());
    }
    Ok(r)
}
