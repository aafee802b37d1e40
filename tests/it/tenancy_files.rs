//! Cross-tenant tests for files: uploads, /view, the mask editor's original_ref,
//! /internal/files and /object_info file lists. Bob tries to read, list, overwrite or infer
//! Alice's files and fails; Alice's own use works; the double shows what was forwarded.
use crate::support;
use crate::support::tenants::{self, PNG};
use serde_json::json;

#[tokio::test]
async fn uploads_land_in_the_uploaders_namespace() {
    let t = tenants::start().await;
    let r = t
        .upload(
            &t.alice,
            "/upload/image",
            &[("subfolder", "pasted"), ("type", "input")],
            "cat.png",
            PNG,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({"name": "cat.png", "subfolder": "pasted", "type": "input"}),
        "no namespace in the answer"
    );
    assert!(
        t.d.stored_file("input", "u_alice/pasted", "cat.png")
            .is_some()
    );
    let got = &t.d.received_path("/upload/image")[0];
    assert_eq!(got.header_all("comfy-user").len(), 1);

    // Bob uploads the same name: it lands in his own folder, Alice's file is untouched.
    let r = t
        .upload(
            &t.bob,
            "/api/upload/image",
            &[("subfolder", "pasted"), ("overwrite", "true")],
            "cat.png",
            b"bob's bytes",
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        t.d.stored_file("input", "u_alice/pasted", "cat.png")
            .unwrap()
            .bytes
            .unwrap(),
        PNG
    );
    assert_eq!(
        t.d.stored_file("input", "u_bob/pasted", "cat.png")
            .unwrap()
            .bytes
            .unwrap(),
        b"bob's bytes"
    );
}

#[tokio::test]
async fn upload_traversal_and_output_uploads_are_refused() {
    let t = tenants::start().await;
    for (fields, name) in [
        (vec![("subfolder", "../u_alice")], "evil.png"),
        (vec![("subfolder", "/abs")], "evil.png"),
        (
            vec![("type", "output"), ("subfolder", "loras")],
            "evil.safetensors",
        ),
        (vec![("type", "bogus")], "x.png"),
        (vec![], ".."),
    ] {
        let r = t.upload(&t.bob, "/upload/image", &fields, name, b"x").await;
        assert_eq!(r.status, 400, "{fields:?} {name}: {}", r.text());
    }
    // A traversing multipart file name keeps only its base name, inside bob's namespace.
    for name in ["../u_alice/evil.png", "..\\..\\evil.png"] {
        let r = t.upload(&t.bob, "/upload/image", &[], name, b"x").await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert!(t.d.stored_file("input", "u_alice", "evil.png").is_none());
    assert!(t.d.stored_file("input", "", "evil.png").is_none());
    assert!(t.d.stored_file("input", "u_bob", "evil.png").is_some());
    assert!(
        t.d.list_files("output").is_empty(),
        "nothing was written to output"
    );
}

#[tokio::test]
async fn guests_cannot_upload() {
    let d = support::double::Double::start().await;
    let w =
        support::harness::Warden::start(&support::config::TestConfig::new(&d.url()).users(vec![
            support::config::TestUser::new("gail", "gail-pw", &["guest"]),
        ]));
    let guest =
        support::http::cookie_header(&support::http::login(&w.url(""), "gail", "gail-pw").await);
    let boundary = "b";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"x.png\"\r\n\r\nx\r\n--{boundary}--\r\n"
    );
    let r = support::http::post(
        &w.url("/upload/image"),
        &[
            ("cookie", &guest),
            ("content-type", "multipart/form-data; boundary=b"),
        ],
        body,
    )
    .await;
    assert_eq!(r.status, 403);
    assert!(r.text().contains("upload"), "{}", r.text());
    assert!(d.received_path("/upload/image").is_empty());
}

#[tokio::test]
async fn view_is_confined_to_the_namespace() {
    let t = tenants::start().await;
    t.d.put_file("output", "u_alice", "secret_00001_.png", PNG.to_vec());
    t.d.put_file("output", "", "root_00001_.png", PNG.to_vec());

    let own = t
        .get(
            &t.alice,
            "/view?filename=secret_00001_.png&type=output&subfolder=",
        )
        .await;
    assert_eq!(own.status, 200);
    assert_eq!(&own.body[..], PNG);
    assert_eq!(
        own.header("x-content-type-options").as_deref(),
        Some("nosniff")
    );
    assert!(own.header("cache-control").unwrap().contains("private"));
    t.d.clear_received();

    for attempt in [
        "/view?filename=secret_00001_.png&type=output&subfolder=",
        "/view?filename=secret_00001_.png&type=output&subfolder=u_alice",
        "/view?filename=secret_00001_.png&type=output&subfolder=../u_alice",
        "/view?filename=secret_00001_.png%20%5Boutput%5D&type=input&subfolder=..%2Fu_alice",
        "/view?filename=../u_alice/secret_00001_.png&type=output",
        "/view?filename=u_alice/secret_00001_.png&type=output",
        "/view?filename=%2Fsrv%2Fsecret.png&type=output",
        "/api/view?filename=root_00001_.png&type=output",
        "/view?filename=blake3:abcdef&type=output",
    ] {
        let r = t.get(&t.bob, attempt).await;
        assert_ne!(r.status, 200, "bob must not read {attempt}");
        assert_ne!(&r.body[..], PNG, "{attempt}");
    }
    // Whatever bob asked for went up inside his own namespace.
    let views: Vec<_> =
        t.d.received()
            .into_iter()
            .filter(|r| r.path.ends_with("/view"))
            .collect();
    assert!(!views.is_empty());
    for v in views {
        let q = v.query.unwrap_or_default();
        let sub = form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "subfolder")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        assert!(
            sub == "u_bob" || sub.starts_with("u_bob/"),
            "bob's view went to {q}"
        );
    }
}

#[tokio::test]
async fn active_content_is_served_as_attachment() {
    let t = tenants::start().await;
    t.d.put_file(
        "output",
        "u_alice",
        "x.svg",
        b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>".to_vec(),
    );
    let r = t.get(&t.alice, "/view?filename=x.svg&type=output").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-disposition").as_deref(),
        Some("attachment")
    );
    assert!(
        r.header("content-security-policy")
            .unwrap()
            .contains("sandbox")
    );
}

#[tokio::test]
async fn mask_original_ref_cannot_read_another_users_file() {
    let t = tenants::start().await;
    t.d.put_file("output", "u_alice", "test_00001_.png", PNG.to_vec());
    let original_ref =
        json!({"filename": "test_00001_.png", "subfolder": "../u_alice", "type": "output"})
            .to_string();
    let r = t
        .upload(
            &t.bob,
            "/upload/mask",
            &[
                ("original_ref", &original_ref),
                ("type", "input"),
                ("subfolder", "clipspace"),
            ],
            "mask.png",
            PNG,
        )
        .await;
    assert_eq!(
        r.status,
        400,
        "a traversing subfolder is refused: {}",
        r.text()
    );

    let original_ref =
        json!({"filename": "test_00001_.png", "subfolder": "", "type": "output"}).to_string();
    let r = t
        .upload(
            &t.bob,
            "/upload/mask",
            &[
                ("original_ref", &original_ref),
                ("type", "input"),
                ("subfolder", "clipspace"),
            ],
            "mask.png",
            PNG,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let sent = t.d.received_path("/upload/mask");
    let body = String::from_utf8_lossy(&sent.last().unwrap().body).to_string();
    assert!(
        body.contains(r#""subfolder":"u_bob""#),
        "original_ref mapped into bob's namespace: {body}"
    );
    assert!(!body.contains("u_alice"), "{body}");
}

#[tokio::test]
async fn internal_files_list_only_own_files() {
    let t = tenants::start().await;
    t.upload(&t.alice, "/upload/image", &[], "alice.png", PNG)
        .await;
    t.upload(&t.bob, "/upload/image", &[], "bob.png", PNG).await;
    assert_eq!(
        t.get(&t.alice, "/internal/files/input").await.json(),
        json!(["alice.png"])
    );
    assert_eq!(
        t.get(&t.bob, "/internal/files/input").await.json(),
        json!(["bob.png"])
    );
    assert_eq!(
        t.get(&t.bob, "/internal/files/output").await.json(),
        json!([])
    );
    assert!(
        t.d.received_path("/internal/files/input").is_empty(),
        "answered by comfy-warden"
    );
}

#[tokio::test]
async fn object_info_lists_only_own_files() {
    let t = tenants::start().await;
    t.upload(
        &t.alice,
        "/upload/image",
        &[("subfolder", "pasted")],
        "alice.png",
        PNG,
    )
    .await;
    t.upload(&t.bob, "/upload/image", &[], "bob.png", PNG).await;
    t.d.put_file("input", "", "example.png", PNG.to_vec());

    let info = t.get(&t.alice, "/api/object_info").await.json();
    assert_eq!(
        info["LoadImage"]["input"]["required"]["image"][0],
        json!(["pasted/alice.png"])
    );
    let one = t.get(&t.bob, "/object_info/LoadImage").await.json();
    assert_eq!(
        one["LoadImage"]["input"]["required"]["image"][0],
        json!(["bob.png"])
    );
    assert!(
        one.to_string().find("u_bob").is_none(),
        "no namespace in the answer"
    );

    let info = t.get(&t.bob, "/object_info").await.json();
    assert!(
        !info.to_string().contains("example.png"),
        "shared top-level inputs are not listed to users"
    );
    let admin = t.get(&t.root, "/object_info/LoadImage").await.json();
    assert_eq!(
        admin["LoadImage"]["input"]["required"]["image"][0],
        json!(["example.png"]),
        "admins see ComfyUI unfiltered"
    );
}

#[tokio::test]
async fn a_mask_comfyui_did_not_write_is_not_listed() {
    let t = tenants::start().await;
    // The original does not exist: ComfyUI answers 200 and writes nothing.
    let original_ref =
        json!({"filename": "missing.png", "subfolder": "", "type": "output"}).to_string();
    let r = t
        .upload(
            &t.bob,
            "/upload/mask",
            &[
                ("original_ref", &original_ref),
                ("type", "input"),
                ("subfolder", "clipspace"),
            ],
            "mask.png",
            PNG,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        t.d.stored_file("input", "u_bob/clipspace", "mask.png")
            .is_none(),
        "the double wrote nothing, like ComfyUI"
    );
    let info = t.get(&t.bob, "/object_info/LoadImage").await.json();
    assert_eq!(
        info["LoadImage"]["input"]["required"]["image"][0],
        json!([]),
        "no phantom file: {info}"
    );

    // With an existing original, the mask is written and listed.
    t.d.put_file("output", "u_bob", "orig.png", PNG.to_vec());
    let original_ref =
        json!({"filename": "orig.png", "subfolder": "", "type": "output"}).to_string();
    let r = t
        .upload(
            &t.bob,
            "/upload/mask",
            &[
                ("original_ref", &original_ref),
                ("type", "input"),
                ("subfolder", "clipspace"),
            ],
            "mask2.png",
            PNG,
        )
        .await;
    assert_eq!(r.status, 200);
    let info = t.get(&t.bob, "/object_info/LoadImage").await.json();
    assert_eq!(
        info["LoadImage"]["input"]["required"]["image"][0],
        json!(["clipspace/mask2.png"])
    );
}

#[tokio::test]
async fn repeated_object_info_answers_follow_new_files() {
    let t = tenants::start().await;
    t.upload(&t.alice, "/upload/image", &[], "one.png", PNG)
        .await;
    let first = t.get(&t.alice, "/object_info").await;
    let again = t.get(&t.alice, "/object_info").await;
    assert_eq!(
        first.body, again.body,
        "the same answer while nothing changed"
    );
    assert_eq!(
        again.json()["LoadImage"]["input"]["required"]["image"][0],
        json!(["one.png"])
    );
    t.upload(&t.alice, "/upload/image", &[], "two.png", PNG)
        .await;
    let after = t.get(&t.alice, "/object_info").await.json();
    assert_eq!(
        after["LoadImage"]["input"]["required"]["image"][0],
        json!(["one.png", "two.png"]),
        "a new upload is listed at once"
    );
    let bob = t.get(&t.bob, "/object_info").await.json();
    assert_eq!(
        bob["LoadImage"]["input"]["required"]["image"][0],
        json!([]),
        "never another user's cached answer"
    );
    t.d.put_file("input", "", "shared.png", PNG.to_vec());
    let changed = t.get(&t.alice, "/object_info").await;
    assert_eq!(
        changed.json()["LoadImage"]["input"]["required"]["image"][0],
        json!(["one.png", "two.png"])
    );

    // A reload that changes the rules changes the answer at once (the cache is keyed by the
    // configuration it was filtered under).
    assert!(changed.json().get("ImageInvert").is_some());
    let toml = std::fs::read_to_string(t.w.path("warden.toml")).unwrap();
    let mark = t.w.log_len();
    t.w.replace_file(
        "warden.toml",
        &format!("{toml}\n[tenancy.nodes.ImageInvert]\ndenied = true\n"),
    );
    assert!(
        t.w.wait_log("configuration reloaded", mark),
        "{}",
        t.w.log()
    );
    let denied = t.get(&t.alice, "/object_info").await.json();
    assert!(
        denied.get("ImageInvert").is_none(),
        "a denied class is gone"
    );
    assert_eq!(
        denied["LoadImage"]["input"]["required"]["image"][0],
        json!(["one.png", "two.png"])
    );
}

/// A query or the `/api` twin is the same route to ComfyUI and to the cache: both give the
/// same filtered answer (and cannot be used to fill the cache with copies).
#[tokio::test]
async fn object_info_query_and_api_twin_give_the_same_answer() {
    let t = tenants::start().await;
    t.upload(&t.alice, "/upload/image", &[], "one.png", PNG)
        .await;
    let plain = t.get(&t.alice, "/object_info").await;
    for variant in [
        "/object_info?x=1",
        "/api/object_info",
        "/api/object_info?y=2",
    ] {
        let r = t.get(&t.alice, variant).await;
        assert_eq!(r.status, 200, "{variant}");
        assert_eq!(r.body, plain.body, "{variant}");
    }
    let bob = t.get(&t.bob, "/api/object_info?x=1").await.json();
    assert_eq!(
        bob["LoadImage"]["input"]["required"]["image"][0],
        json!([]),
        "never alice's cached answer"
    );
}
