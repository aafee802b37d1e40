//! The request target as hyper hands it over (path and query), through the checks that decide
//! routing: the ambiguity refusal and the route table, the path normalisers, and the `/view`-style
//! query decoding into a file locator of the caller's namespace.
//! Asserts: no panic; a cleaned path is canonical (no `.`/`..`/empty segment, not absolute, no
//! control character or backslash, cleaning it again changes nothing); a mapped locator of a
//! plain user lies in that user's namespace.
#![no_main]
use comfy_warden::fuzz_api::{self, Kind};
use comfy_warden_fuzz::{ALICE_NS, tenant};
use http::Method;
use libfuzzer_sys::fuzz_target;

const METHODS: [Method; 6] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::DELETE,
    Method::PUT,
    Method::OPTIONS,
];

fn canonical(c: &str) {
    assert!(
        !c.starts_with('/') && !c.starts_with('~'),
        "absolute: {c:?}"
    );
    assert!(
        !c.chars()
            .any(|ch| ch.is_control() || ch == '\\' || ch == ':'),
        "bad char: {c:?}"
    );
    for seg in c.split('/') {
        if !c.is_empty() {
            assert!(
                !seg.is_empty() && seg != "." && seg != "..",
                "segment in {c:?}"
            );
        }
    }
    assert_eq!(
        fuzz_api::clean_path(c).as_deref(),
        Some(c),
        "not idempotent"
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&m, target)) = data.split_first() else {
        return;
    };
    let method = &METHODS[m as usize % METHODS.len()];
    // What hyper accepts as a request target (origin, absolute, authority or asterisk form).
    if let Ok(uri) = http::Uri::try_from(target) {
        let _ = fuzz_api::route(method, uri.path());
        let params = fuzz_api::view_params(uri.query());
        if let Some(f) = params.get("filename")
            && let Ok((k, up, name)) = tenant(false).map_locator(
                f,
                params.get("subfolder").map(String::as_str).unwrap_or(""),
                Kind::Output,
                params.get("type").map(String::as_str),
            )
        {
            assert!(
                fuzz_api::path_from_upstream(ALICE_NS, k, &format!("{up}/{name}")).is_some(),
                "locator {f:?} {params:?} mapped outside the namespace: {up:?} {name:?}"
            );
            assert!(!name.contains('/') && name != ".." && name != ".");
            canonical(&up);
        }
    }
    if let Ok(s) = std::str::from_utf8(target) {
        let _ = fuzz_api::route(method, s);
        if let Some(c) = fuzz_api::clean_path(s) {
            canonical(&c);
        }
        if let Some(c) = fuzz_api::clean_url_path(s) {
            canonical(&c);
        }
        if let Some(c) = fuzz_api::clean_file_name(s) {
            assert!(!c.is_empty() && !c.contains('/'));
            canonical(&c);
        }
    }
});
