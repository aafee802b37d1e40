//! The token parsers: comfy-warden's own HS256 session and API tokens, and identity-provider
//! JWTs checked against `[auth.external_jwt]` (the JWKS of `tests/fixtures/idp`).
//! Input: first byte 0 → arbitrary bytes as a token for both verifiers; first byte 1 → a token
//! comfy-warden really issued, with the fuzzer's edits (offset, byte) applied to it.
//! Asserts: no panic; random bytes never verify as our token; an edited token that still
//! verifies carries exactly the claims that were issued (nothing can be forged by editing).
#![no_main]
use comfy_warden::fuzz_api::{self, TokenKind};
use comfy_warden_fuzz::app;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn keys() -> &'static fuzz_api::Keys {
    static K: OnceLock<fuzz_api::Keys> = OnceLock::new();
    K.get_or_init(|| fuzz_api::keys(&[42; 32]))
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let snap = app().config.get();
    if mode % 2 == 0 {
        let Ok(token) = std::str::from_utf8(rest) else {
            return;
        };
        assert!(
            fuzz_api::verify_own_token(keys(), token).is_none(),
            "random bytes verified: {token:?}"
        );
        let _ = fuzz_api::verify_external_token(&snap, token);
        return;
    }
    let kind = if mode & 2 == 0 {
        TokenKind::Session
    } else {
        TokenKind::Api
    };
    let Some(token) = fuzz_api::issue_own_token(keys(), "alice", kind) else {
        return;
    };
    let original = fuzz_api::verify_own_token(keys(), &token).expect("a fresh token verifies");
    let mut bytes = token.clone().into_bytes();
    for edit in rest.chunks(3) {
        let [hi, lo, b] = edit else { break };
        let at = u16::from_be_bytes([*hi, *lo]) as usize;
        if bytes.is_empty() {
            break;
        }
        match b {
            // Delete, insert, or replace one byte.
            0 => {
                bytes.remove(at % bytes.len());
            }
            1..=31 => bytes.insert(at % (bytes.len() + 1), b'A' + b),
            _ => {
                let n = bytes.len();
                bytes[at % n] = *b;
            }
        }
    }
    let Ok(edited) = String::from_utf8(bytes) else {
        return;
    };
    if let Some(c) = fuzz_api::verify_own_token(keys(), &edited) {
        assert_eq!(
            (c.sub.as_str(), c.jti.as_str(), c.exp, c.ver),
            (
                original.sub.as_str(),
                original.jti.as_str(),
                original.exp,
                original.ver
            ),
            "an edited token verified with other claims: {edited:?}"
        );
    }
    let _ = fuzz_api::verify_external_token(&snap, &edited);
});
