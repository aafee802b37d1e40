//! Self-test of the ComfyUI 0.3.64 double: talks to it over real sockets (hyper client,
//! tokio-tungstenite) and compares answers with the recordings in
//! `tests/fixtures/comfyui-0.3.64/`.

use std::time::Duration;

use crate::support::double::Double;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderMap, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const WAIT: Duration = Duration::from_secs(10);

// ----- HTTP helpers ------------------------------------------------------------------------------

struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

async fn send(
    d: &Double,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Resp {
    let mut req = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).unwrap())
        .uri(format!("{}{}", d.url(), path))
        .body(Full::new(body.into()))
        .unwrap();
    for (k, v) in headers {
        req.headers_mut().append(
            hyper::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    let resp = tokio::time::timeout(WAIT, client().request(req))
        .await
        .expect("request timed out")
        .expect("request failed");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Resp {
        status,
        headers,
        body,
    }
}

async fn get(d: &Double, path: &str) -> Resp {
    send(d, "GET", path, &[], Bytes::new()).await
}

async fn get_as(d: &Double, path: &str, user: &str) -> Resp {
    send(d, "GET", path, &[("comfy-user", user)], Bytes::new()).await
}

async fn post_json(d: &Double, path: &str, body: &Value) -> Resp {
    send(
        d,
        "POST",
        path,
        &[("content-type", "application/json")],
        body.to_string(),
    )
    .await
}

/// Status, JSON body and the recorded headers must match a recording.
fn assert_like_recording(resp: &Resp, name: &str) {
    let rec = Double::recording(name);
    assert_eq!(
        resp.status.as_u16() as u64,
        rec["status"].as_u64().unwrap(),
        "{name}: status"
    );
    let rec_headers = rec["headers"].as_object().unwrap();
    for h in ["Content-Type", "Server", "Content-Length"] {
        // That recording's Content-Length does not match its own body (the log grew).
        if h == "Content-Length" && name == "internal_logs.json" {
            continue;
        }
        if let Some(v) = rec_headers.get(h) {
            assert_eq!(resp.header(h), v.as_str(), "{name}: header {h}");
        } else if h == "Content-Type" {
            assert_eq!(resp.header(h), None, "{name}: no Content-Type expected");
        }
    }
    assert!(resp.header("date").is_some(), "{name}: Date header");
    match &rec["body"] {
        Value::Object(m) if m.contains_key("_non_json_bytes") => {
            assert_eq!(resp.text(), m["_head"].as_str().unwrap(), "{name}: body")
        }
        body => assert_eq!(&resp.json(), body, "{name}: body"),
    }
}

fn multipart(fields: &[(&str, Option<&str>, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "----doubleBoundary7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    for (name, filename, data) in fields {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match filename {
            Some(f) => body.extend_from_slice(
                format!(
                    "Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: image/png\r\n\r\n"
                )
                .as_bytes(),
            ),
            None => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
            ),
        }
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn upload(
    d: &Double,
    path: &str,
    filename: &str,
    data: &[u8],
    extra: &[(&str, &str)],
) -> Resp {
    let mut fields: Vec<(&str, Option<&str>, &[u8])> = vec![("image", Some(filename), data)];
    for (k, v) in extra {
        fields.push((k, None, v.as_bytes()));
    }
    let (ct, body) = multipart(&fields);
    send(d, "POST", path, &[("content-type", &ct)], body).await
}

const PNG: &[u8] = b"\x89PNG\r\n\x1a\nfake cat png bytes for the double self test";

/// The graph of `prompt_post.json` (LoadImage alice/cat.png → invert → save, plus preview).
fn recorded_prompt(client_id: Option<&str>) -> Value {
    let rec = Double::recording("prompt_post.json");
    let mut body = rec["request"]["json"].clone();
    match client_id {
        Some(c) => body["client_id"] = json!(c),
        None => {
            body.as_object_mut().unwrap().remove("client_id");
        }
    }
    body
}

/// The recorded prompt with the test node `ZZProgress` between ImageInvert and SaveImage, so
/// the run reports progress (previews and text frames) like a sampler would.
fn progress_prompt(client_id: Option<&str>) -> Value {
    let mut body = recorded_prompt(client_id);
    body["prompt"]["5"] = json!({"class_type": "ZZProgress", "inputs": {"image": ["2", 0]}});
    body["prompt"]["3"]["inputs"]["images"] = json!(["5", 0]);
    body
}

async fn wait_history(d: &Double, prompt_id: &str) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let encoded =
            percent_encoding::utf8_percent_encode(prompt_id, percent_encoding::NON_ALPHANUMERIC);
        let h = get(d, &format!("/history/{encoded}")).await.json();
        if let Some(entry) = h.get(prompt_id) {
            return entry.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "prompt {prompt_id} never reached history"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_running(d: &Double, prompt_id: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let q = d.queue_snapshot();
        if q["queue_running"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i[1] == prompt_id)
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "prompt {prompt_id} never ran"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ----- WebSocket helpers -------------------------------------------------------------------------

type Ws = WebSocketStream<TcpStream>;

async fn ws_connect(d: &Double, path: &str, headers: &[(&str, &str)]) -> Result<Ws, StatusCode> {
    let mut req = format!("ws://{}{}", d.addr(), path)
        .into_client_request()
        .unwrap();
    for (k, v) in headers {
        req.headers_mut().insert(
            hyper::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    let tcp = TcpStream::connect(d.addr()).await.unwrap();
    match tokio_tungstenite::client_async(req, tcp).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Err(r.status()),
        Err(e) => panic!("ws connect: {e}"),
    }
}

#[derive(Debug)]
enum Frame {
    Text(Value),
    Bin(Vec<u8>),
}

impl Frame {
    fn kind(&self) -> String {
        match self {
            Frame::Text(v) => v["type"].as_str().unwrap_or("?").to_string(),
            Frame::Bin(b) => format!("bin{}", u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
        }
    }
}

async fn next_frame(ws: &mut Ws) -> Frame {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("no WebSocket frame in time")
            .expect("socket closed")
            .expect("socket error");
        match msg {
            Message::Text(t) => return Frame::Text(serde_json::from_str(t.as_str()).unwrap()),
            Message::Binary(b) => return Frame::Bin(b.to_vec()),
            _ => continue,
        }
    }
}

/// Frames up to and including `executing` with `node: null` for this prompt.
async fn frames_until_done(ws: &mut Ws, prompt_id: &str) -> Vec<Frame> {
    let mut out = Vec::new();
    loop {
        let f = next_frame(ws).await;
        let done = matches!(&f, Frame::Text(v) if v["type"] == "executing"
            && v["data"]["node"].is_null() && v["data"]["prompt_id"] == prompt_id);
        out.push(f);
        if done {
            return out;
        }
    }
}

// ----- tests -----------------------------------------------------------------------------------

#[tokio::test]
async fn users_match_recordings() {
    let d = Double::start().await;
    let r = get(&d, "/users").await;
    assert_eq!(r.json(), json!({"storage": "server", "users": {}}));

    let r = post_json(&d, "/users", &json!({"username": "alice"})).await;
    assert_eq!(r.status, 200);
    let alice = r.json().as_str().unwrap().to_string();
    assert!(
        alice.starts_with("alice_") && alice.len() == "alice_".len() + 36,
        "{alice}"
    );

    let r = post_json(&d, "/users", &json!({"username": "alice"})).await;
    assert_like_recording(&r, "users_post_duplicate.json");

    let bob = post_json(&d, "/api/users", &json!({"username": "bob"}))
        .await
        .json();
    let r = get(&d, "/users").await;
    let rec = Double::recording("users_get.json");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        rec["headers"]["Content-Type"].as_str()
    );
    assert_eq!(
        r.header("content-length"),
        rec["headers"]["Content-Length"].as_str()
    );
    assert_eq!(
        r.json(),
        json!({"storage": "server", "users": {alice.clone(): "alice", bob.as_str().unwrap(): "bob"}})
    );
    // Insertion order, like Python's dict.
    assert!(r.text().find(&alice).unwrap() < r.text().find(bob.as_str().unwrap()).unwrap());

    let odd = post_json(&d, "/users", &json!({"username": "bob smith/../x"}))
        .await
        .json();
    assert!(odd.as_str().unwrap().starts_with("bob-smith-x_"), "{odd}");

    let r = post_json(&d, "/users", &json!({"name": "nobody"})).await;
    assert_eq!(r.status, 500);
    assert_eq!(
        r.text(),
        "500 Internal Server Error\n\nServer got itself in trouble"
    );

    assert_eq!(d.add_user("carol"), d.add_user("carol"));
}

#[tokio::test]
async fn settings_follow_the_first_comfy_user_header() {
    let d = Double::start().await;
    let alice = d.add_user("alice");
    let bob = d.add_user("bob");

    let r = get_as(&d, "/settings", &alice).await;
    assert_like_recording(&r, "settings_alice.json");

    let r = send(
        &d,
        "POST",
        "/settings",
        &[("comfy-user", &alice)],
        r#"{"Comfy.Locale": "en"}"#,
    )
    .await;
    assert_like_recording(&r, "settings_post_alice.json");

    assert_eq!(
        get_as(&d, "/api/settings", &alice).await.json(),
        json!({"Comfy.Locale": "en"})
    );
    assert_eq!(
        get_as(&d, "/settings/Comfy.Locale", &alice).await.json(),
        json!("en")
    );
    assert_eq!(
        get_as(&d, "/settings/Missing", &alice).await.json(),
        Value::Null
    );
    let r = send(
        &d,
        "POST",
        "/settings/Comfy.X",
        &[("comfy-user", &alice)],
        "[1, 2]",
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        get_as(&d, "/settings/Comfy.X", &alice).await.json(),
        json!([1, 2])
    );

    // Settings live in the user's directory, pretty-printed like json.dumps(indent=4).
    let file = d.userdata_file(&alice, "comfy.settings.json").unwrap();
    let text = String::from_utf8(file.bytes.unwrap()).unwrap();
    assert!(text.starts_with("{\n    \""), "{text}");

    let r = get(&d, "/settings").await;
    assert_eq!(r.status, 401);
    assert_eq!(r.text(), "401: Unauthorized");
    assert_eq!(get_as(&d, "/settings", "mallory").await.status, 401);

    // Duplicate header: the first value wins.
    let r = send(
        &d,
        "GET",
        "/settings",
        &[("comfy-user", &bob), ("comfy-user", &alice)],
        Bytes::new(),
    )
    .await;
    assert_eq!(r.json(), json!({}));
    let r = send(
        &d,
        "GET",
        "/settings",
        &[("comfy-user", &alice), ("comfy-user", &bob)],
        Bytes::new(),
    )
    .await;
    assert_eq!(r.json()["Comfy.Locale"], "en");
    let seen = d.received_path("/settings");
    assert_eq!(
        seen.last().unwrap().header_all("comfy-user"),
        vec![alice.as_str(), bob.as_str()]
    );
}

#[tokio::test]
async fn userdata_matches_recordings() {
    let d = Double::start().await;
    let alice = d.add_user("alice");
    let bob = d.add_user("bob");
    let list = "/userdata?dir=workflows&recurse=true&split=false&full_info=true";

    assert_like_recording(&get_as(&d, list, &alice).await, "userdata_list_alice.json");
    assert_like_recording(
        &get(&d, "/userdata?dir=workflows").await,
        "userdata_no_header.json",
    );
    assert_eq!(
        get(&d, "/userdata?dir=workflows")
            .await
            .header("connection"),
        Some("close")
    );

    let r = send(
        &d,
        "POST",
        "/userdata/workflows%2Fmine.json?overwrite=true&full_info=true",
        &[("comfy-user", &alice)],
        r#"{"nodes": []}"#,
    )
    .await;
    let rec = Double::recording("userdata_post_alice.json");
    assert_eq!(r.status, 200);
    let body = r.json();
    assert_eq!(body["path"], rec["body"]["path"]);
    assert_eq!(body["size"], rec["body"]["size"]);
    assert!(body["modified"].is_f64() && body["created"].is_f64());
    assert_eq!(
        r.header("content-type"),
        rec["headers"]["Content-Type"].as_str()
    );

    let r = get_as(&d, list, &alice).await;
    let rec = Double::recording("userdata_list_alice_after.json");
    assert_eq!(r.status, 200);
    let keys = |v: &Value| {
        let mut k = v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        k.sort();
        k
    };
    assert_eq!(keys(&r.json()[0]), keys(&rec["body"][0]));
    assert_eq!(r.json()[0]["path"], "mine.json");
    assert_eq!(r.json()[0]["size"], 13);

    let r = get_as(&d, "/api/userdata/workflows%2Fmine.json", &alice).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({"nodes": []}));
    let rec = Double::recording("userdata_get_file_alice.json");
    for h in ["Content-Type", "Accept-Ranges", "Content-Length"] {
        assert_eq!(r.header(h), rec["headers"][h].as_str(), "{h}");
    }
    assert!(r.header("etag").is_some() && r.header("last-modified").is_some());

    assert_like_recording(
        &get_as(&d, "/userdata/workflows%2Fmine.json", &bob).await,
        "userdata_get_file_bob.json",
    );

    let r = get_as(&d, "/v2/userdata?path=workflows", &alice).await;
    let rec = Double::recording("v2_userdata_alice.json");
    assert_eq!(r.status, 200);
    assert_eq!(keys(&r.json()[0]), keys(&rec["body"][0]));
    assert_eq!(r.json()[0]["path"], rec["body"][0]["path"]);
    assert_eq!(r.json()[0]["name"], rec["body"][0]["name"]);
    assert_eq!(get(&d, "/v2/userdata?path=workflows").await.status, 403);

    // Traversal out of the user root.
    let other = format!("/userdata/..%2F{bob}%2Fx.json");
    assert_eq!(get_as(&d, &other, &alice).await.status, 403);
    assert_eq!(
        get_as(&d, "/userdata/%2E%2E%2Fusers.json", &alice)
            .await
            .status,
        403
    );

    // Move, overwrite=false, delete.
    let r = send(
        &d,
        "POST",
        "/userdata/workflows%2Fmine.json/move/workflows%2Fnew.json",
        &[("comfy-user", &alice)],
        Bytes::new(),
    )
    .await;
    assert_eq!(r.json(), json!("workflows/new.json"));
    let r = send(
        &d,
        "POST",
        "/userdata/workflows%2Fnew.json/move/..%2F..%2Fx.json",
        &[("comfy-user", &alice)],
        Bytes::new(),
    )
    .await;
    assert_eq!(r.status, 500);
    let r = send(
        &d,
        "POST",
        "/userdata/workflows%2Fnew.json?overwrite=false",
        &[("comfy-user", &alice)],
        "{}",
    )
    .await;
    assert_eq!(r.status, 409);
    let r = send(
        &d,
        "DELETE",
        "/userdata/workflows%2Fnew.json",
        &[("comfy-user", &alice)],
        Bytes::new(),
    )
    .await;
    assert_eq!(r.status, 204);
    assert_eq!(get_as(&d, list, &alice).await.json(), json!([]));

    // An image path gets aiohttp's cache header.
    send(
        &d,
        "POST",
        "/api/userdata/y.png",
        &[("comfy-user", &alice)],
        PNG,
    )
    .await;
    let r = get_as(&d, "/api/userdata/y.png", &alice).await;
    assert_eq!(r.header("cache-control"), Some("public, max-age=86400"));
    assert_eq!(r.header("content-type"), Some("image/png"));
}

#[tokio::test]
async fn upload_and_view_match_recordings() {
    let d = Double::start().await;
    let r = upload(
        &d,
        "/upload/image",
        "cat.png",
        PNG,
        &[
            ("overwrite", "true"),
            ("subfolder", "alice"),
            ("type", "input"),
        ],
    )
    .await;
    assert_like_recording(&r, "upload_image.json");
    let stored = d.stored_file("input", "alice", "cat.png").unwrap();
    assert_eq!(stored.bytes.as_deref(), Some(PNG));
    assert_eq!(stored.sha256, hex::encode(Sha256::digest(PNG)));

    // Same name, same content → same name; different content → "(1)".
    let r = upload(
        &d,
        "/api/upload/image",
        "cat.png",
        PNG,
        &[("subfolder", "alice")],
    )
    .await;
    assert_eq!(
        r.json(),
        json!({"name": "cat.png", "subfolder": "alice", "type": "input"})
    );
    let r = upload(
        &d,
        "/upload/image",
        "cat.png",
        b"other",
        &[("subfolder", "alice"), ("subfolder", "ignored")],
    )
    .await;
    assert_eq!(
        r.json(),
        json!({"name": "cat (1).png", "subfolder": "alice", "type": "input"})
    );
    assert_eq!(
        upload(&d, "/upload/image", "x.png", PNG, &[("type", "bogus")])
            .await
            .status,
        500
    );
    assert_eq!(
        upload(&d, "/upload/image", "../../escape.png", PNG, &[])
            .await
            .status,
        400
    );

    // Only the final path is confined: ../bob/evil.png under subfolder alice lands in input/bob.
    upload(
        &d,
        "/upload/image",
        "seed.png",
        PNG,
        &[("subfolder", "bob")],
    )
    .await;
    let r = upload(
        &d,
        "/upload/image",
        "../bob/evil.png",
        PNG,
        &[("subfolder", "alice")],
    )
    .await;
    assert_eq!(r.json()["name"], "../bob/evil.png");
    assert!(d.stored_file("input", "bob", "evil.png").is_some());

    // Mask upload copies the referenced original.
    d.put_file("output", "alice", "orig.png", b"original pixels".to_vec());
    let r = upload(
        &d,
        "/upload/mask",
        "mask.png",
        PNG,
        &[
            ("subfolder", "clipspace"),
            (
                "original_ref",
                r#"{"filename":"orig.png","subfolder":"alice","type":"output"}"#,
            ),
        ],
    )
    .await;
    assert_eq!(
        r.json(),
        json!({"name": "mask.png", "subfolder": "clipspace", "type": "input"})
    );
    assert_eq!(
        d.stored_file("input", "clipspace", "mask.png")
            .unwrap()
            .bytes
            .unwrap(),
        b"original pixels"
    );

    let r = get(&d, "/view?filename=cat.png&type=input&subfolder=alice").await;
    let rec = Double::recording("view_ok.json");
    assert_eq!(r.status, 200);
    for h in [
        "Accept-Ranges",
        "Content-Disposition",
        "Content-Type",
        "Server",
    ] {
        assert_eq!(r.header(h), rec["headers"][h].as_str(), "{h}");
    }
    assert_eq!(
        r.header("content-length"),
        Some(PNG.len().to_string().as_str())
    );
    assert!(r.header("etag").is_some() && r.header("last-modified").is_some());
    assert_eq!(&r.body[..], PNG);

    assert_like_recording(
        &get(&d, "/view?filename=../../etc/passwd&type=input").await,
        "view_traversal.json",
    );
    assert_eq!(
        get(&d, "/view?filename=cat.png&type=bogus").await.status,
        400
    );
    assert_eq!(
        get(
            &d,
            "/api/view?filename=cat.png&subfolder=alice&type=bogus%20"
        )
        .await
        .status,
        400
    );
    let r = get(
        &d,
        "/view?filename=cat.png%20%5Binput%5D&type=bogus&subfolder=alice",
    )
    .await;
    assert_eq!(r.status, 200, "annotation overrides type");
    assert_eq!(
        get(&d, "/view?filename=cat.png&type=input&subfolder=../output")
            .await
            .status,
        403
    );
    assert_eq!(
        get(&d, "/view?filename=alice/cat.png&type=input")
            .await
            .status,
        404,
        "basename only"
    );
    assert_eq!(
        get(&d, "/view?filename=nope.png&type=input").await.status,
        404
    );
    let r = get(
        &d,
        "/view?filename=orig.png&type=output&subfolder=%2Fopt%2Fcomfyui%2Foutput%2Falice",
    )
    .await;
    assert_eq!(r.status, 200, "absolute subfolder inside the base");

    // Content types by extension.
    d.put_file("output", "", "x.svg", b"<svg/>".to_vec());
    d.put_file("output", "", "x.html", b"<html/>".to_vec());
    assert_eq!(
        get(&d, "/view?filename=x.svg").await.header("content-type"),
        Some("image/svg+xml")
    );
    assert_eq!(
        get(&d, "/view?filename=x.html")
            .await
            .header("content-type"),
        Some("application/octet-stream")
    );
}

#[tokio::test]
async fn large_bodies_are_streamed() {
    let d = Double::start().await;
    let size: u64 = 20 * 1024 * 1024 + 17;
    d.put_large_file("output", "big", "big.bin", size);
    let r = get(&d, "/view?filename=big.bin&subfolder=big").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len() as u64, size);
    assert!(
        r.body
            .iter()
            .enumerate()
            .take(1000)
            .all(|(i, b)| *b == (i % 251) as u8)
    );
    assert_eq!(r.body[size as usize - 1], ((size - 1) % 251) as u8);
    let head = send(
        &d,
        "HEAD",
        "/view?filename=big.bin&subfolder=big",
        &[],
        Bytes::new(),
    )
    .await;
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-length"),
        Some(size.to_string().as_str())
    );
    assert!(head.body.is_empty());
    let etag = r.header("etag").unwrap().to_string();
    let again = send(
        &d,
        "GET",
        "/view?filename=big.bin&subfolder=big",
        &[("if-none-match", &etag)],
        Bytes::new(),
    )
    .await;
    assert_eq!(again.status, 304);
    let stored = d.stored_file("output", "big", "big.bin").unwrap();
    assert_eq!(stored.sha256, hex::encode(Sha256::digest(&r.body)));
    assert!(stored.bytes.is_none());

    let r = send(
        &d,
        "GET",
        "/view?filename=big.bin&subfolder=big",
        &[("range", "bytes=251-501")],
        Bytes::new(),
    )
    .await;
    assert_eq!(r.status, 206);
    assert_eq!(r.body.len(), 251);
    assert_eq!(r.body[0], 0);

    // A 12 MiB upload is hashed while it streams and spilled to disk.
    let data: Vec<u8> = (0..12 * 1024 * 1024u32).map(|i| (i % 253) as u8).collect();
    let r = upload(&d, "/upload/image", "large.png", &data, &[]).await;
    assert_eq!(r.status, 200);
    let stored = d.stored_file("input", "", "large.png").unwrap();
    assert_eq!(stored.len, data.len() as u64);
    assert_eq!(stored.sha256, hex::encode(Sha256::digest(&data)));
    let rec = d.received_path("/upload/image").pop().unwrap();
    assert_eq!(rec.body.len(), 1024 * 1024);
    assert!(rec.body_len > data.len() as u64);
    let r = get(&d, "/view?filename=large.png&type=input").await;
    assert_eq!(hex::encode(Sha256::digest(&r.body)), stored.sha256);
}

#[tokio::test]
async fn prompt_runs_into_history_like_the_recording() {
    let d = Double::start().await;
    assert_like_recording(&get(&d, "/prompt").await, "prompt_get.json");
    upload(
        &d,
        "/upload/image",
        "cat.png",
        PNG,
        &[("subfolder", "alice"), ("overwrite", "true")],
    )
    .await;

    // The recorded invalid and unknown-node prompts give the recorded 400 bodies.
    let rec = Double::recording("prompt_post_invalid.json");
    let r = post_json(&d, "/prompt", &rec["request"]["json"]).await;
    assert_like_recording(&r, "prompt_post_invalid.json");
    let rec = Double::recording("prompt_post_unknown_node.json");
    let r = post_json(&d, "/prompt", &rec["request"]["json"]).await;
    assert_like_recording(&r, "prompt_post_unknown_node.json");
    let r = post_json(&d, "/prompt", &json!({"client_id": "x"})).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["type"], "no_prompt");

    // Body parsed as JSON whatever the Content-Type.
    let body = recorded_prompt(Some("3949c082-7209-4957-841c-852043a978e3"));
    let r = send(
        &d,
        "POST",
        "/api/prompt",
        &[("content-type", "text/plain")],
        body.to_string(),
    )
    .await;
    let rec = Double::recording("prompt_post.json");
    assert_eq!(r.status, 200);
    let out = r.json();
    assert_eq!(
        out["number"], 3,
        "three earlier posts consumed numbers 0..2"
    );
    assert_eq!(out["node_errors"], json!({}));
    assert_eq!(
        r.header("content-type"),
        rec["headers"]["Content-Type"].as_str()
    );
    let id = out["prompt_id"].as_str().unwrap().to_string();
    assert_eq!(
        r.header("content-length"),
        rec["headers"]["Content-Length"].as_str()
    );

    let entry = wait_history(&d, &id).await;
    let rec = Double::recording("history_one.json");
    let rec_entry = rec["body"]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap()
        .clone();
    assert_eq!(entry["meta"], rec_entry["meta"]);
    assert_eq!(entry["outputs"]["3"], rec_entry["outputs"]["3"]);
    let preview = entry["outputs"]["4"]["images"][0].clone();
    let name = preview["filename"].as_str().unwrap();
    assert!(
        name.starts_with("ComfyUI_temp_") && name.ends_with("_00001_.png") && name.len() == 29,
        "{name}"
    );
    assert_eq!(preview["subfolder"], "");
    assert_eq!(preview["type"], "temp");
    assert_eq!(entry["prompt"][0], 3);
    assert_eq!(entry["prompt"][1], id);
    assert_eq!(entry["prompt"][2], rec_entry["prompt"][2]);
    assert_eq!(entry["prompt"][3], rec_entry["prompt"][3]);
    assert_eq!(entry["prompt"][4], rec_entry["prompt"][4]);
    assert_eq!(entry["status"]["status_str"], "success");
    assert_eq!(entry["status"]["completed"], true);
    let events: Vec<&str> = entry["status"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m[0].as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        ["execution_start", "execution_cached", "execution_success"]
    );
    assert!(
        d.stored_file("output", "alice", "inverted_00001_.png")
            .is_some()
    );
    assert!(d.stored_file("temp", "", name).is_some());
    assert_eq!(
        get(&d, &format!("/view?filename={name}&type=temp"))
            .await
            .status,
        200
    );

    // Client prompt ids are taken as they are, and a second identical graph is cached.
    let mut body = recorded_prompt(None);
    body["prompt_id"] = json!("../../etc");
    body["number"] = json!(-5);
    let r = post_json(&d, "/prompt", &body).await;
    assert_eq!(r.json()["prompt_id"], "../../etc");
    assert!(r.text().contains("\"number\": -5.0"), "{}", r.text());
    let entry = wait_history(&d, "../../etc").await;
    assert_eq!(
        entry["status"]["messages"][1][1]["nodes"],
        json!(["1", "2", "3", "4"])
    );
    assert_eq!(
        entry["outputs"]["4"]["images"][0]["filename"], name,
        "cached preview reuses the temp file"
    );
    assert_eq!(get(&d, "/history/nope").await.json(), json!({}));

    // A changed prefix runs SaveImage again, with the next counter.
    let mut body = recorded_prompt(None);
    body["prompt"]["3"]["inputs"]["filename_prefix"] = json!("alice/../alice/inverted");
    body["prompt"]["3"]["inputs"]["__owner"] = json!("x");
    let id3 = post_json(&d, "/prompt", &body).await.json()["prompt_id"]
        .as_str()
        .unwrap()
        .to_string();
    let entry = wait_history(&d, &id3).await;
    assert_eq!(
        entry["outputs"]["3"]["images"][0],
        json!({"filename": "inverted_00002_.png", "subfolder": "alice", "type": "output"})
    );

    // Escaping prefixes fail at run time with an absolute path in the message.
    let mut body = recorded_prompt(None);
    body["prompt"]["3"]["inputs"]["filename_prefix"] = json!("../x");
    let id4 = post_json(&d, "/prompt", &body).await.json()["prompt_id"]
        .as_str()
        .unwrap()
        .to_string();
    let entry = wait_history(&d, &id4).await;
    assert_eq!(entry["status"]["status_str"], "error");
    let last = entry["status"]["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last[0], "execution_error");
    assert!(
        last[1]["exception_message"]
            .as_str()
            .unwrap()
            .contains("/opt/comfyui/output"),
        "{last}"
    );

    // History pagination: insertion order, max_items without offset = last N.
    let all = get(&d, "/history").await;
    let ids: Vec<String> = d.history_ids();
    assert_eq!(ids.len(), 4);
    let text = all.text();
    let positions: Vec<usize> = ids
        .iter()
        .map(|i| text.find(&format!("\"{i}\": {{")).unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "insertion order");
    let last2 = get(&d, "/history?max_items=2").await.json();
    assert_eq!(last2.as_object().unwrap().len(), 2);
    assert!(last2.get(&ids[3]).is_some() && last2.get(&ids[2]).is_some());
    let page = get(&d, "/history?max_items=1&offset=1").await.json();
    assert!(page.get(&ids[1]).is_some());

    let r = post_json(&d, "/history", &json!({"delete": ["not-a-real-id"]})).await;
    assert_like_recording(&r, "history_delete.json");
    post_json(&d, "/history", &json!({"delete": [id4]})).await;
    assert_eq!(d.history_ids().len(), 3);
    post_json(&d, "/history", &json!({"clear": true})).await;
    assert_eq!(get(&d, "/history").await.json(), json!({}));
}

#[tokio::test]
async fn queue_hold_release_and_interrupt() {
    let d = Double::start().await;
    assert_like_recording(&get(&d, "/queue").await, "queue_idle.json");
    assert_like_recording(&get(&d, "/api/queue").await, "api_prefix_queue.json");
    upload(
        &d,
        "/upload/image",
        "cat.png",
        PNG,
        &[("subfolder", "alice")],
    )
    .await;

    d.set_hold(true);
    let mut body = recorded_prompt(Some("someone"));
    body["extra_data"]["api_key_comfy_org"] = json!("secret-key");
    let first = post_json(&d, "/prompt", &body).await.json()["prompt_id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_running(&d, &first).await;
    let mut body2 = recorded_prompt(None);
    body2["prompt"]["3"]["inputs"]["filename_prefix"] = json!("second");
    let second = post_json(&d, "/prompt", &body2).await.json()["prompt_id"]
        .as_str()
        .unwrap()
        .to_string();

    let q = get(&d, "/queue").await.json();
    assert_eq!(q, d.queue_snapshot());
    let running = &q["queue_running"][0];
    assert_eq!(running[0], 0);
    assert_eq!(running[1], first);
    assert_eq!(running[3]["api_key_comfy_org"], "secret-key");
    assert_eq!(running[3]["client_id"], "someone");
    assert_eq!(running[4], json!(["4", "3"]));
    assert_eq!(q["queue_pending"][0][1], second);
    assert_eq!(
        get(&d, "/prompt").await.json(),
        json!({"exec_info": {"queue_remaining": 2}})
    );

    // Deleting a running id or interrupting a pending one changes nothing.
    post_json(&d, "/queue", &json!({"delete": [first]})).await;
    post_json(&d, "/interrupt", &json!({"prompt_id": second})).await;
    assert_eq!(d.queue_snapshot()["queue_running"][0][1], first);
    let r = post_json(&d, "/queue", &json!({"delete": [second]})).await;
    assert_eq!(r.status, 200);
    assert_eq!(d.queue_snapshot()["queue_pending"], json!([]));

    d.release();
    let entry = wait_history(&d, &first).await;
    assert_eq!(entry["status"]["status_str"], "success");
    assert!(
        entry["prompt"][3].get("api_key_comfy_org").is_none(),
        "history drops api keys"
    );

    // Targeted interrupt of a running prompt.
    let mut body = recorded_prompt(None);
    body["prompt"]["3"]["inputs"]["filename_prefix"] = json!("third");
    let third = post_json(&d, "/prompt", &body).await.json()["prompt_id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_running(&d, &third).await;
    let r = post_json(&d, "/interrupt", &json!({"prompt_id": third})).await;
    assert_like_recording(&r, "interrupt.json");
    let entry = wait_history(&d, &third).await;
    assert_eq!(entry["status"]["status_str"], "error");
    let events: Vec<&str> = entry["status"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m[0].as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        [
            "execution_start",
            "execution_cached",
            "execution_interrupted"
        ]
    );

    // An empty body interrupts whatever runs.
    let mut body = recorded_prompt(None);
    body["prompt"]["3"]["inputs"]["filename_prefix"] = json!("fourth");
    let fourth = post_json(&d, "/prompt", &body).await.json()["prompt_id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_running(&d, &fourth).await;
    send(&d, "POST", "/interrupt", &[], Bytes::new()).await;
    assert_eq!(
        wait_history(&d, &fourth).await["status"]["status_str"],
        "error"
    );

    // Clear wipes pending items.
    let a = post_json(&d, "/prompt", &recorded_prompt(None))
        .await
        .json()["prompt_id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_running(&d, &a).await;
    post_json(&d, "/prompt", &recorded_prompt(None)).await;
    assert_eq!(
        d.queue_snapshot()["queue_pending"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let r = post_json(&d, "/queue", &json!({"clear": true})).await;
    assert_like_recording(&r, "queue_delete.json");
    assert_eq!(d.queue_snapshot()["queue_pending"], json!([]));
    d.set_hold(false);
    wait_history(&d, &a).await;
    assert_eq!(
        get(&d, "/queue").await.json(),
        Double::recording("queue_idle.json")["body"]
    );
}

#[tokio::test]
async fn routes_prefixes_and_static_answers() {
    let d = Double::start().await;
    assert_like_recording(&get(&d, "/internal/logs").await, "internal_logs.json");
    let r = get(&d, "/api/internal/logs").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.text(), "404: Not Found");
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(get(&d, "/no/such/route").await.status, 404);
    let r = send(&d, "POST", "/system_stats", &[], Bytes::new()).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET,HEAD"));

    assert_like_recording(&get(&d, "/system_stats").await, "system_stats.json");
    assert_like_recording(&get(&d, "/embeddings").await, "embeddings.json");
    assert_like_recording(&get(&d, "/models").await, "models.json");
    assert_like_recording(&get(&d, "/extensions").await, "extensions.json");
    assert_like_recording(
        &get(&d, "/internal/files/input").await,
        "internal_files_input.json",
    );
    assert_like_recording(
        &get(&d, "/object_info/LoadImage").await,
        "object_info_LoadImage.json",
    );
    assert_like_recording(&get(&d, "/api/object_info").await, "object_info.json");
    assert_eq!(get(&d, "/object_info/NoSuchNode").await.json(), json!({}));
    assert_eq!(
        get(&d, "/features").await.json(),
        json!({"supports_preview_metadata": true, "max_upload_size": 104857600})
    );
    assert_eq!(get(&d, "/api/internal/folder_paths").await.status, 404);
    assert!(get(&d, "/internal/folder_paths").await.json()["checkpoints"].is_array());

    // Subfolder uploads are not in the LoadImage combo (top level only, as recorded).
    upload(
        &d,
        "/upload/image",
        "cat.png",
        PNG,
        &[("subfolder", "alice")],
    )
    .await;
    assert_like_recording(
        &get(&d, "/object_info/LoadImage").await,
        "object_info_LoadImage_after_upload.json",
    );
    upload(&d, "/upload/image", "a.png", PNG, &[]).await;
    let r = get(&d, "/object_info/LoadImage").await.json();
    assert_eq!(
        r["LoadImage"]["input"]["required"]["image"][0],
        json!(["a.png", "example.png"])
    );
    assert_eq!(
        get(&d, "/internal/files/input").await.json(),
        json!(["a.png", "example.png"])
    );

    // HEAD answers every GET without a body.
    let r = send(&d, "HEAD", "/queue", &[], Bytes::new()).await;
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    assert_eq!(r.header("content-length"), Some("42"));

    let r = get(&d, "/").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/html"));
    assert_eq!(r.header("cache-control"), Some("no-cache"));
    let r = get(&d, "/assets/index-abc.js").await;
    assert_eq!(
        r.header("content-type"),
        Some("application/javascript; charset=utf-8")
    );
    assert_eq!(r.header("cache-control"), Some("no-cache"));
    assert_eq!(get(&d, "/scripts/app.js").await.status, 200);
    assert_eq!(get(&d, "/extensions/core/clipspace.js").await.status, 200);
    assert_eq!(
        get(&d, "/assets/index.css").await.header("content-type"),
        Some("text/css")
    );

    // Output model folders feed /models for everyone.
    upload(
        &d,
        "/upload/image",
        "evil.safetensors",
        b"x",
        &[("type", "output"), ("subfolder", "loras")],
    )
    .await;
    assert_eq!(
        get(&d, "/models/loras").await.json(),
        json!(["evil.safetensors"])
    );
    assert_eq!(get(&d, "/models/nope").await.status, 404);

    // The model preview route has no traversal check in 0.3.64.
    d.put_file("output", "alice", "test_00001_.png", PNG.to_vec());
    let r = get(
        &d,
        "/experiment/models/preview/checkpoints/0/..%2F..%2Foutput%2Falice%2Ftest_00001_.x",
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("image/webp"));
    assert_eq!(&r.body[..], PNG);
    let r = get(&d, "/experiment/models").await.json();
    assert_eq!(r[0]["name"], "checkpoints");
    assert_eq!(
        get(&d, "/experiment/models/loras").await.json()[0]["name"],
        "evil.safetensors"
    );

    let rec = d.received();
    assert!(rec.iter().any(|r| r.method == "HEAD" && r.path == "/queue"));
    assert!(d.received_path("/view").is_empty());
    d.clear_received();
    assert!(d.received().is_empty());
}

#[tokio::test]
async fn origin_check_like_comfyui() {
    let d = Double::start().await;
    let host = d.addr().to_string();
    let r = send(
        &d,
        "GET",
        "/queue",
        &[("origin", "http://evil.example")],
        Bytes::new(),
    )
    .await;
    assert_eq!(r.status, 403);
    assert!(r.body.is_empty());
    let r = send(
        &d,
        "POST",
        "/prompt",
        &[("origin", "http://localhost:1")],
        "{}",
    )
    .await;
    assert_eq!(r.status, 403);
    let same = format!("http://{host}");
    assert_eq!(
        send(&d, "GET", "/queue", &[("origin", &same)], Bytes::new())
            .await
            .status,
        200
    );
    // A non-loopback Host is not checked.
    let r = send(
        &d,
        "GET",
        "/queue",
        &[("host", "comfy.example"), ("origin", "http://evil.example")],
        Bytes::new(),
    )
    .await;
    assert_eq!(r.status, 200);

    assert_eq!(
        ws_connect(&d, "/ws", &[("origin", "http://evil.example")])
            .await
            .err(),
        Some(StatusCode::FORBIDDEN)
    );
    assert!(ws_connect(&d, "/ws", &[("origin", &same)]).await.is_ok());
    let seen = d.received_path("/ws");
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].header("origin"), Some("http://evil.example"));
}

#[tokio::test]
async fn websocket_run_matches_the_transcript() {
    let d = Double::start().await;
    upload(
        &d,
        "/upload/image",
        "cat.png",
        PNG,
        &[("subfolder", "alice")],
    )
    .await;
    let transcript = Double::recording("ws_transcript.json");
    let sid = transcript["client_id"].as_str().unwrap().to_string();

    // A fresh run (nothing cached) on a socket that negotiated preview metadata.
    let mut ws = ws_connect(&d, &format!("/ws?clientId={sid}"), &[])
        .await
        .unwrap();
    let Frame::Text(hello) = next_frame(&mut ws).await else {
        panic!("expected status")
    };
    assert_eq!(hello, transcript["messages"][0]["data"]);
    let clients = d.ws_clients();
    assert_eq!(clients.len(), 1);
    assert_eq!(clients[0].sid, sid);
    assert_eq!(clients[0].query, format!("clientId={sid}"));
    ws.send(Message::text(
        r#"{"type":"feature_flags","data":{"supports_preview_metadata":true}}"#,
    ))
    .await
    .unwrap();
    let Frame::Text(flags) = next_frame(&mut ws).await else {
        panic!("expected feature_flags")
    };
    assert_eq!(
        flags,
        json!({"type": "feature_flags", "data": {"supports_preview_metadata": true, "max_upload_size": 104857600}})
    );

    // A second socket without flags and without a clientId.
    let mut other = ws_connect(&d, "/api/ws", &[]).await.unwrap();
    let Frame::Text(hello2) = next_frame(&mut other).await else {
        panic!("expected status")
    };
    let other_sid = hello2["data"]["sid"].as_str().unwrap().to_string();
    assert_eq!(other_sid.len(), 32);

    let id = post_json(&d, "/prompt", &recorded_prompt(Some(&sid)))
        .await
        .json()["prompt_id"]
        .as_str()
        .unwrap()
        .to_string();
    let frames = frames_until_done(&mut ws, &id).await;
    let kinds: Vec<String> = frames.iter().map(Frame::kind).collect();
    assert_eq!(
        kinds[..5],
        [
            "status",
            "status",
            "execution_start",
            "execution_cached",
            "progress_state"
        ],
        "{kinds:?}"
    );
    assert!(
        !kinds.iter().any(|k| k.starts_with("bin")),
        "core nodes send no preview or text frames: {kinds:?}"
    );

    assert_eq!(kinds.iter().filter(|k| *k == "executed").count(), 2);
    assert_eq!(
        kinds[kinds.len() - 3..],
        ["execution_success", "status", "executing"]
    );
    let executing: Vec<&Value> = frames
        .iter()
        .filter_map(|f| match f {
            Frame::Text(v) if v["type"] == "executing" => Some(&v["data"]["node"]),
            _ => None,
        })
        .collect();
    assert_eq!(
        executing,
        [
            &json!("1"),
            &json!("4"),
            &json!("2"),
            &json!("3"),
            &Value::Null
        ]
    );
    for f in &frames {
        if let Frame::Bin(b) = f {
            if b[3] == 4 {
                let n = u32::from_be_bytes([b[4], b[5], b[6], b[7]]) as usize;
                let meta: Value = serde_json::from_slice(&b[8..8 + n]).unwrap();
                assert_eq!(meta["prompt_id"], id);
                assert_eq!(meta["image_type"], "image/png");
                assert_eq!(&b[8 + n..8 + n + 8], b"\x89PNG\r\n\x1a\n");
            }
        }
    }
    // The other socket sees only the status broadcasts (core nodes send no text frames).
    let mut other_kinds = Vec::new();
    loop {
        let f = next_frame(&mut other).await;
        other_kinds.push(f.kind());
        if other_kinds.iter().filter(|k| *k == "status").count() == 3 {
            break;
        }
    }
    assert_eq!(other_kinds, ["status", "status", "status"]);

    // The same graph again is fully cached: exactly the recorded text-frame sequence.
    drop(ws);
    let wait_gone = tokio::time::Instant::now() + WAIT;
    while d.ws_clients().iter().any(|c| c.sid == sid) {
        assert!(
            tokio::time::Instant::now() < wait_gone,
            "socket never left the map"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut ws = ws_connect(&d, &format!("/ws?clientId={sid}"), &[])
        .await
        .unwrap();
    let mut frames = vec![next_frame(&mut ws).await];
    let id2 = post_json(&d, "/prompt", &recorded_prompt(Some(&sid)))
        .await
        .json()["prompt_id"]
        .as_str()
        .unwrap()
        .to_string();
    frames.extend(frames_until_done(&mut ws, &id2).await);
    let got: Vec<String> = frames.iter().map(Frame::kind).collect();
    let want: Vec<String> = transcript["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["data"]["type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, want);
    for (f, m) in frames
        .iter()
        .zip(transcript["messages"].as_array().unwrap())
    {
        let Frame::Text(v) = f else { unreachable!() };
        let mut v = v.clone();
        let mut rec = m["data"].clone();
        for x in [&mut v, &mut rec] {
            if let Some(data) = x["data"].as_object_mut() {
                data.remove("timestamp");
                data.remove("prompt_id");
                if let Some(nodes) = data.get_mut("nodes").and_then(Value::as_object_mut) {
                    for n in nodes.values_mut() {
                        n.as_object_mut().unwrap().remove("prompt_id");
                    }
                }
                if let Some(images) = data.get_mut("output").and_then(|o| o.get_mut("images")) {
                    images[0].as_object_mut().unwrap().remove("filename");
                }
            }
        }
        assert_eq!(v, rec);
    }

    // broadcast_ws_text reaches every socket; a reused clientId replaces the old socket.
    d.broadcast_ws_text(json!({"type": "custom", "data": {"x": 1}}))
        .await;
    let Frame::Text(v) = next_frame(&mut ws).await else {
        panic!()
    };
    assert_eq!(v, json!({"type": "custom", "data": {"x": 1}}));
    // The other socket still has the second run's broadcasts queued before it.
    let mut skipped = Vec::new();
    loop {
        let f = next_frame(&mut other).await;
        if f.kind() == "custom" {
            break;
        }
        skipped.push(f.kind());
    }
    assert_eq!(
        skipped,
        ["status", "status", "status"],
        "a fully cached run sends no bin3"
    );
    // A node that reports progress: legacy previews (type 1: this reconnected socket announced
    // no preview metadata) to the client, and the text frame (type 3) broadcast to every socket.
    let pid = post_json(&d, "/prompt", &progress_prompt(Some(&sid)))
        .await
        .json()["prompt_id"]
        .as_str()
        .unwrap()
        .to_string();
    let pkinds: Vec<String> = frames_until_done(&mut ws, &pid)
        .await
        .iter()
        .map(Frame::kind)
        .collect();
    assert!(
        pkinds.iter().any(|k| k == "bin1") && pkinds.iter().any(|k| k == "bin3"),
        "{pkinds:?}"
    );
    assert!(!pkinds.iter().any(|k| k == "bin4"));
    let mut other_kinds = Vec::new();
    while !other_kinds.iter().any(|k| k == "bin3") {
        other_kinds.push(next_frame(&mut other).await.kind());
    }
    let mut thief = ws_connect(&d, &format!("/ws?clientId={sid}"), &[])
        .await
        .unwrap();
    next_frame(&mut thief).await;
    assert_eq!(d.ws_clients().iter().filter(|c| c.sid == sid).count(), 1);
    assert_eq!(d.ws_clients().len(), 2);
}

#[tokio::test]
async fn previews_without_client_id_are_broadcast() {
    let d = Double::start().await;
    upload(
        &d,
        "/upload/image",
        "cat.png",
        PNG,
        &[("subfolder", "alice")],
    )
    .await;
    let mut a = ws_connect(&d, "/ws?clientId=aaa", &[]).await.unwrap();
    next_frame(&mut a).await;
    let id = post_json(&d, "/prompt", &progress_prompt(None))
        .await
        .json()["prompt_id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut kinds = Vec::new();
    loop {
        let f = next_frame(&mut a).await;
        kinds.push(f.kind());
        if kinds.iter().filter(|k| *k == "status").count() == 3 {
            break;
        }
    }
    assert!(!kinds.iter().any(|k| k.starts_with("execut")), "{kinds:?}");
    assert!(kinds.iter().any(|k| k == "progress"), "{kinds:?}");
    assert!(kinds.iter().any(|k| k == "progress_state"), "{kinds:?}");
    assert!(
        kinds.iter().any(|k| k == "bin1") && kinds.iter().any(|k| k == "bin3"),
        "{kinds:?}"
    );
    assert_eq!(
        wait_history(&d, &id).await["status"]["status_str"],
        "success"
    );
}

#[tokio::test]
async fn missing_image_at_run_time_is_an_execution_error() {
    let d = Double::start().await;
    upload(
        &d,
        "/upload/image",
        "cat.png",
        PNG,
        &[("subfolder", "alice")],
    )
    .await;
    let mut ws = ws_connect(&d, "/ws?clientId=c1", &[]).await.unwrap();
    next_frame(&mut ws).await;

    // Hold a first prompt, queue a second one that validates, then delete its input.
    d.set_hold(true);
    let mut filler = recorded_prompt(None);
    filler["prompt"]["3"]["inputs"]["filename_prefix"] = json!("filler");
    let first = post_json(&d, "/prompt", &filler).await.json()["prompt_id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_running(&d, &first).await;
    let id = post_json(&d, "/prompt", &recorded_prompt(Some("c1")))
        .await
        .json()["prompt_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(d.remove_file("input", "alice", "cat.png"));
    d.set_hold(false);
    let frames = frames_until_done(&mut ws, &id).await;
    let error = frames
        .iter()
        .find_map(|f| match f {
            Frame::Text(v) if v["type"] == "execution_error" => Some(v["data"].clone()),
            _ => None,
        })
        .expect("execution_error frame");
    assert_eq!(error["node_id"], "1");
    assert_eq!(error["node_type"], "LoadImage");
    assert_eq!(error["exception_type"], "FileNotFoundError");
    assert_eq!(
        error["exception_message"],
        "[Errno 2] No such file or directory: '/opt/comfyui/input/alice/cat.png'\n"
    );
    assert_eq!(error["current_inputs"], json!({"image": ["alice/cat.png"]}));
    let entry = wait_history(&d, &id).await;
    assert_eq!(entry["status"]["status_str"], "error");
    assert_eq!(entry["status"]["completed"], false);

    // Validation refuses it now, exactly like the recording's nope.png case.
    let r = post_json(&d, "/prompt", &recorded_prompt(Some("c1"))).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["node_errors"]["1"]["errors"][0]["details"],
        "image - Invalid image file: alice/cat.png"
    );
}

#[tokio::test]
async fn stop_refuses_new_connections() {
    let d = Double::start().await;
    let mut ws = ws_connect(&d, "/ws", &[]).await.unwrap();
    next_frame(&mut ws).await;
    assert_eq!(get(&d, "/prompt").await.status, 200);
    d.stop();
    assert!(TcpStream::connect(d.addr()).await.is_err());
    let closed = tokio::time::timeout(WAIT, async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => continue,
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "open sockets end when the double stops");
}
