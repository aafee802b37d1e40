//! The multipart upload rewriter of `POST /upload/image` and `/upload/mask`: the client's body,
//! cut into chunks where the fuzzer says, streamed through the rebuild that ComfyUI receives.
//! Input: first byte: bit 0 mask, bit 1 admin, bits 2.. the chunk size; the rest is the body.
//! A body whose first line is `--BOUNDARY` uses that boundary (the seeds are real uploads).
//! Asserts: no panic; what ComfyUI would receive is valid multipart with exactly one file part
//! whose name is a plain file name and, for a plain user, a subfolder inside their namespace and
//! type input or temp.
#![no_main]
use bytes::Bytes;
use comfy_warden::fuzz_api::{self, Kind};
use comfy_warden_fuzz::{ALICE_NS, runtime, tenant};
use libfuzzer_sys::fuzz_target;

/// The boundary of the rebuilt body.
const OUT: &str = "comfywardenfuzz";

fuzz_target!(|data: &[u8]| {
    let Some((&flags, body)) = data.split_first() else {
        return;
    };
    let mask = flags & 1 != 0;
    let admin = flags & 2 != 0;
    let chunk = 1 + (flags >> 2) as usize * 7;
    let boundary = body
        .strip_prefix(b"--")
        .and_then(|b| b.split(|c| *c == b'\r' || *c == b'\n').next())
        .and_then(|b| std::str::from_utf8(b).ok())
        .filter(|b| !b.is_empty())
        .unwrap_or("X");
    let content_type = format!("multipart/form-data; boundary={boundary}");
    let chunks: Vec<Bytes> = body.chunks(chunk).map(Bytes::copy_from_slice).collect();
    let t = tenant(admin);
    let out = runtime().block_on(fuzz_api::rebuild_upload(
        OUT,
        &content_type,
        chunks,
        &t,
        mask,
    ));
    // A file that contains the outgoing boundary cannot be read back here; comfy-warden's real
    // boundary is random per upload, so a client cannot do that.
    let Ok(out) = out else {
        return;
    };
    if body.windows(OUT.len()).any(|w| w == OUT.as_bytes()) {
        return;
    }
    // Read back what ComfyUI would receive.
    let parts = runtime().block_on(async {
        let stream =
            futures_util::stream::once(async move { Ok::<_, std::io::Error>(Bytes::from(out)) });
        let mut mp = multer::Multipart::new(stream, OUT);
        let mut parts = Vec::new();
        while let Some(f) = mp
            .next_field()
            .await
            .expect("the rebuilt body is valid multipart")
        {
            let name = f.name().unwrap_or("").to_owned();
            let file = f.file_name().map(str::to_owned);
            let text = if file.is_none() {
                Some(f.text().await.expect("a field is text"))
            } else {
                f.bytes().await.expect("the file part reads");
                None
            };
            parts.push((name, file, text));
        }
        parts
    });
    let files: Vec<_> = parts.iter().filter(|p| p.1.is_some()).collect();
    assert_eq!(files.len(), 1, "exactly one file part: {parts:?}");
    let file = files[0].1.as_deref().unwrap_or_default();
    assert!(
        !file.is_empty() && !file.contains(['/', '\\', '"']) && file != "." && file != "..",
        "file name {file:?}"
    );
    let field = |n: &str| {
        parts
            .iter()
            .find(|p| p.0 == n)
            .and_then(|p| p.2.clone())
            .unwrap_or_else(|| panic!("no {n} field: {parts:?}"))
    };
    let kind = field("type");
    let sub = field("subfolder");
    if !admin {
        let kind = match kind.as_str() {
            "input" => Kind::Input,
            "temp" => Kind::Temp,
            other => panic!("a plain user uploads into {other:?}"),
        };
        assert!(
            fuzz_api::path_from_upstream(ALICE_NS, kind, &format!("{sub}/{file}")).is_some()
                && !sub
                    .split('/')
                    .any(|s| s == ".." || s == "." || s.is_empty())
                && !sub.contains(['\\', ':']),
            "subfolder {sub:?} outside {ALICE_NS}"
        );
    }
});
