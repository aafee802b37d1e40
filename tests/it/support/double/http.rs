//! aiohttp-shaped HTTP plumbing: the response type and its conversion to hyper, headers
//! (`Server`, `Content-Length`, aiohttp texts for errors), `FileResponse` (ETag, ranges),
//! the `cache_control` and `origin_only` middlewares, query parsing and HTTP dates.

use std::io;

use bytes::Bytes;
use futures_util::stream::{BoxStream, StreamExt};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::Frame;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Response, StatusCode};
use serde_json::Value;

use super::files::FileEntry;
use super::pyjson;

pub type Body = UnsyncBoxBody<Bytes, io::Error>;

pub const SERVER: &str = "Python/3.11 aiohttp/3.14.5";
pub const JSON_CT: &str = "application/json; charset=utf-8";
pub const TEXT_CT: &str = "text/plain; charset=utf-8";

pub enum RBody {
    Empty,
    Full(Bytes),
    Stream(BoxStream<'static, io::Result<Bytes>>, u64),
}

pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: RBody,
    /// Raised as an `HTTPException` in aiohttp (the cache middleware does not see it).
    pub raised: bool,
    pub reason: Option<String>,
}

impl Resp {
    pub fn new(status: u16) -> Resp {
        Resp {
            status,
            headers: Vec::new(),
            body: RBody::Empty,
            raised: false,
            reason: None,
        }
    }

    pub fn header(mut self, k: &str, v: impl Into<String>) -> Resp {
        self.headers.push((k.to_string(), v.into()));
        self
    }

    pub fn body_bytes(mut self, b: impl Into<Bytes>) -> Resp {
        self.body = RBody::Full(b.into());
        self
    }

    /// `web.json_response(v)`.
    pub fn json(v: &Value) -> Resp {
        Resp::json_text(200, pyjson::dumps(v))
    }

    pub fn json_status(status: u16, v: &Value) -> Resp {
        Resp::json_text(status, pyjson::dumps(v))
    }

    pub fn json_text(status: u16, text: String) -> Resp {
        Resp::new(status)
            .header("Content-Type", JSON_CT)
            .body_bytes(text)
    }

    /// `web.Response(status=.., text=..)`.
    pub fn text(status: u16, text: &str) -> Resp {
        Resp::new(status)
            .header("Content-Type", TEXT_CT)
            .body_bytes(text.to_string())
    }

    /// `web.Response(status=..)`: no body, no Content-Type.
    pub fn empty(status: u16) -> Resp {
        Resp::new(status)
    }

    /// A raised `web.HTTPException` with its default text `"<status>: <reason>"`.
    pub fn raised(status: u16) -> Resp {
        let reason = StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("Error");
        let mut r = Resp::text(status, &format!("{status}: {reason}"));
        r.raised = true;
        r
    }

    /// A raised `web.HTTPException` with a custom text.
    pub fn raised_text(status: u16, text: &str) -> Resp {
        let mut r = Resp::text(status, text);
        r.raised = true;
        r
    }

    pub fn not_found() -> Resp {
        Resp::raised(404)
    }

    /// An uncaught Python exception in a handler.
    pub fn server_error() -> Resp {
        let mut r = Resp::text(
            500,
            "500 Internal Server Error\n\nServer got itself in trouble",
        )
        .header("Connection", "close");
        r.raised = true;
        r
    }

    /// aiohttp's `HTTPRequestEntityTooLarge`.
    pub fn too_large(actual: u64) -> Resp {
        Resp::raised_text(
            413,
            &format!(
                "Maximum request body size {} exceeded, actual body size {actual}",
                super::state::MAX_UPLOAD
            ),
        )
    }

    pub fn has_header(&self, k: &str) -> bool {
        self.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(k))
    }

    pub fn into_hyper(self) -> Response<Body> {
        let mut builder = Response::builder().status(self.status);
        let (len, body): (u64, Body) = match self.body {
            RBody::Empty => (
                0,
                Empty::new().map_err(|never| match never {}).boxed_unsync(),
            ),
            RBody::Full(b) => (
                b.len() as u64,
                Full::new(b).map_err(|never| match never {}).boxed_unsync(),
            ),
            RBody::Stream(s, n) => (
                n,
                StreamBody::new(s.map(|r| r.map(Frame::data))).boxed_unsync(),
            ),
        };
        let no_length = matches!(self.status, 101 | 204 | 304);
        let mut headers = HeaderMap::new();
        for (k, v) in &self.headers {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_bytes(v.as_bytes()),
            ) {
                headers.append(name, value);
            }
        }
        if !no_length && !headers.contains_key("content-length") {
            headers.insert("content-length", HeaderValue::from(len));
        }
        headers.insert("server", HeaderValue::from_static(SERVER));
        if let Some(h) = builder.headers_mut() {
            *h = headers;
        }
        if let Some(reason) = self.reason {
            if let Ok(r) = hyper::ext::ReasonPhrase::try_from(reason.into_bytes()) {
                builder = builder.extension(r);
            }
        }
        builder.body(body).unwrap_or_else(|_| {
            let mut r = Response::new(Empty::new().map_err(|never| match never {}).boxed_unsync());
            *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            r
        })
    }
}

/// `cache_middleware.cache_control` (only for responses a handler returned).
pub fn apply_cache_control(path: &str, resp: &mut Resp) {
    if resp.raised || resp.has_header("Cache-Control") {
        return;
    }
    let filename = path.rsplit('/').next().unwrap_or("");
    let entry_point = filename.starts_with("index") && filename.ends_with(".json");
    if path.ends_with(".js") || path.ends_with(".css") || entry_point {
        resp.headers
            .push(("Cache-Control".into(), "no-cache".into()));
        return;
    }
    const IMG: &[&str] = &[
        ".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp",
    ];
    let lower = path.to_ascii_lowercase();
    if IMG.iter().any(|e| lower.ends_with(e)) {
        match resp.status {
            200 => resp
                .headers
                .push(("Cache-Control".into(), "public, max-age=86400".into())),
            404 => resp
                .headers
                .push(("Cache-Control".into(), "public, max-age=3600".into())),
            _ => {}
        }
    }
}

/// `(hostname, port)` of a netloc the way `urllib.parse` reports them.
fn split_netloc(netloc: &str) -> (Option<String>, Option<u16>) {
    let hostport = netloc.rsplit_once('@').map(|(_, h)| h).unwrap_or(netloc);
    let (host, port) = if let Some(rest) = hostport.strip_prefix('[') {
        match rest.split_once(']') {
            Some((h, p)) => (h.to_string(), p.strip_prefix(':').unwrap_or("")),
            None => (rest.to_string(), ""),
        }
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p),
            None => (hostport.to_string(), ""),
        }
    };
    let host = host.to_ascii_lowercase();
    let port = if port.is_empty() {
        None
    } else {
        port.parse().ok()
    };
    ((!host.is_empty()).then_some(host), port)
}

fn is_loopback(host: &str) -> bool {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return ip.is_loopback();
    }
    host == "localhost"
}

/// `origin_only_middleware`: loopback Host with a different Origin host:port → 403.
pub fn origin_forbidden(headers: &HeaderMap) -> bool {
    let (Some(host), Some(origin)) = (headers.get("host"), headers.get("origin")) else {
        return false;
    };
    let host = String::from_utf8_lossy(host.as_bytes()).to_ascii_lowercase();
    let origin = String::from_utf8_lossy(origin.as_bytes()).to_string();
    let origin_netloc = match origin.split_once("//") {
        Some((_, rest)) => rest.split(['/', '?', '#']).next().unwrap_or("").to_string(),
        None => String::new(),
    };
    let (o_host, o_port) = split_netloc(&origin_netloc);
    let (h_host, h_port) = split_netloc(&host);
    let loopback = h_host.as_deref().is_some_and(is_loopback);
    let mut host_domain = Some(host.clone());
    let mut origin_domain = Some(origin_netloc.to_ascii_lowercase());
    if o_port.is_none() {
        host_domain = h_host.clone();
    }
    if h_port.is_none() {
        origin_domain = o_host.clone();
    }
    match (host_domain, origin_domain) {
        (Some(h), Some(o)) if loopback && !h.is_empty() && !o.is_empty() => h != o,
        _ => false,
    }
}

/// First value of a query parameter (aiohttp `MultiDict.get`).
pub fn query_first(query: Option<&str>, key: &str) -> Option<String> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

pub fn query_has(query: Option<&str>, key: &str) -> bool {
    form_urlencoded::parse(query.unwrap_or("").as_bytes()).any(|(k, _)| k == key)
}

pub fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// RFC 7231 date, e.g. `Tue, 24 Nov 2026 08:05:49 GMT`.
pub fn http_date(secs: i64) -> String {
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400);
    let (y, m, d) = civil_from_days(days);
    const WD: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MO: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        WD[(days + 4).rem_euclid(7) as usize],
        d,
        MO[(m - 1) as usize],
        y,
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 → (year, month, day).
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// aiohttp `web.FileResponse`: Content-Type, Accept-Ranges, Etag, Last-Modified, single
/// byte ranges and `If-None-Match`.
pub fn file_response(entry: &FileEntry, content_type: &str, req_headers: &HeaderMap) -> Resp {
    let size = entry.blob.len();
    let etag = format!("\"{:x}-{:x}\"", entry.mtime_ns, size);
    let last_modified = http_date(entry.mtime as i64);
    let base = |status: u16| {
        Resp::new(status)
            .header("Content-Type", content_type)
            .header("Accept-Ranges", "bytes")
            .header("Etag", etag.clone())
            .header("Last-Modified", last_modified.clone())
    };
    if let Some(inm) = req_headers
        .get("if-none-match")
        .and_then(|v| v.to_str().ok())
    {
        if inm.split(',').any(|t| t.trim() == etag || t.trim() == "*") {
            return base(304);
        }
    }
    if let Some(range) = req_headers.get("range").and_then(|v| v.to_str().ok()) {
        if let Some(spec) = range.trim().strip_prefix("bytes=") {
            if !spec.contains(',') {
                let parsed = match spec.split_once('-') {
                    Some(("", suffix)) => suffix
                        .parse::<u64>()
                        .ok()
                        .map(|n| (size.saturating_sub(n), size)),
                    Some((a, "")) => a.parse::<u64>().ok().map(|a| (a, size)),
                    Some((a, b)) => match (a.parse::<u64>(), b.parse::<u64>()) {
                        (Ok(a), Ok(b)) if b >= a => Some((a, (b + 1).min(size))),
                        _ => None,
                    },
                    None => None,
                };
                match parsed {
                    Some((start, end)) if start < end => {
                        let mut r = base(206).header(
                            "Content-Range",
                            format!("bytes {}-{}/{}", start, end - 1, size),
                        );
                        r.body = RBody::Stream(entry.blob.stream(start, end), end - start);
                        return r;
                    }
                    _ => {
                        let mut r =
                            Resp::new(416).header("Content-Range", format!("bytes */{size}"));
                        r.raised = true;
                        return r;
                    }
                }
            }
        }
    }
    let mut r = base(200);
    r.body = RBody::Stream(entry.blob.stream(0, size), size);
    r
}
