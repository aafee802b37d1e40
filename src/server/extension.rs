//! comfy-warden's own ComfyUI frontend extension (`ext/comfy-warden.js`): the script itself,
//! served without an identity at [`SCRIPT_PATH`] (it holds no user data), and the one function
//! that adds it to ComfyUI's `GET /extensions` list. What the script does is in docs/browser.md.
use crate::body::{self, Body};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

/// Where the script is served, and the entry added to `/extensions`.
pub const SCRIPT_PATH: &str = "/warden/ext/comfy-warden.js";

const SCRIPT: &str = include_str!("ext/comfy-warden.js");

/// A strong validator of the compiled-in script, so browsers revalidate cheaply.
fn etag() -> &'static str {
    static ETAG: OnceLock<String> = OnceLock::new();
    ETAG.get_or_init(|| {
        let digest = Sha256::digest(SCRIPT.as_bytes());
        format!("\"{}\"", hex::encode(digest.get(..12).unwrap_or_default()))
    })
}

/// `GET`/`HEAD` of the script: `no-cache` plus an ETag, so a new daemon's script is picked up
/// at the next page load while an unchanged one costs a 304.
pub fn script(
    method: &Method,
    headers: &HeaderMap,
) -> Result<Response<Body>, crate::reject::Reject> {
    if !super::own_routes::is_get(method) {
        return Err(crate::reject::Reject::MethodNotAllowed { allow: "GET, HEAD" });
    }
    let tag = etag();
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
    let mut r = if fresh {
        let mut r = Response::new(body::empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        Response::new(body::full(SCRIPT))
    };
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/javascript; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    if let Ok(v) = HeaderValue::from_str(tag) {
        h.insert(header::ETAG, v);
    }
    Ok(r)
}

/// ComfyUI's `/extensions` answer (a JSON list of script URLs) with comfy-warden's script
/// appended once. `None` when the body is not such a list: the caller then passes ComfyUI's
/// answer on unchanged rather than inventing one.
pub fn with_own_script(upstream: &[u8]) -> Option<Vec<u8>> {
    let mut list = match serde_json::from_slice::<Value>(upstream).ok()? {
        Value::Array(list) => list,
        _ => return None,
    };
    if !list.iter().any(|v| v.as_str() == Some(SCRIPT_PATH)) {
        list.push(Value::from(SCRIPT_PATH));
    }
    serde_json::to_vec(&Value::Array(list)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_once() {
        let out = with_own_script(br#"["/extensions/core/a.js","/extensions/x/b.js"]"#).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            serde_json::json!(["/extensions/core/a.js", "/extensions/x/b.js", SCRIPT_PATH])
        );
        let again: Value = serde_json::from_slice(&with_own_script(&out).unwrap()).unwrap();
        assert_eq!(again, v);
    }

    #[test]
    fn other_shapes_are_left_alone() {
        assert!(with_own_script(b"{\"a\":1}").is_none());
        assert!(with_own_script(b"500: Internal Server Error").is_none());
        assert_eq!(
            serde_json::from_slice::<Value>(&with_own_script(b"[]").unwrap()).unwrap(),
            serde_json::json!([SCRIPT_PATH])
        );
    }

    #[test]
    fn revalidation() {
        let mut h = HeaderMap::new();
        let r = script(&Method::GET, &h).unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let tag = r.headers().get(header::ETAG).unwrap().clone();
        h.insert(header::IF_NONE_MATCH, tag);
        assert_eq!(
            script(&Method::GET, &h).unwrap().status(),
            StatusCode::NOT_MODIFIED
        );
        assert_eq!(
            script(&Method::POST, &HeaderMap::new()).unwrap_err(),
            crate::reject::Reject::MethodNotAllowed { allow: "GET, HEAD" }
        );
    }
}
