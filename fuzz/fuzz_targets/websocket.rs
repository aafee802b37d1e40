//! The WebSocket frame filter of one downstream socket: frames from ComfyUI (text events and
//! binary previews) and from the client, in order, through `SocketFilter`.
//! Input: first byte: bit 0 the socket is an admin's; then one frame per line:
//! `t<text>` a text frame from ComfyUI, `c<text>` a text frame from the client,
//! `b<digit><payload>` a binary frame from ComfyUI of that type (for type 4 the payload is
//! `<metadata JSON>\0<image bytes>`, framed as ComfyUI does). The seeds are the recorded run.
//! The recorded prompt belongs to alice (the socket's user), `p-bob` to bob.
//! Asserts: no panic; for a plain user, a forwarded text frame is JSON of a type the filter lets
//! through, and an event naming a prompt names one of the user's; a forwarded binary frame is a
//! preview (1, 3) or a type-4 frame of one of the user's prompts.
#![no_main]
use bytes::Bytes;
use comfy_warden::fuzz_api::{self, Message, SocketFilter, Upstream};
use comfy_warden_fuzz::{app, runtime, tenant};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use std::sync::Once;

const ALICE_PROMPT: &str = "d5b745fa-a8b7-4161-bf61-97ed1b64ab10";
const PASSING: [&str; 12] = [
    "status",
    "feature_flags",
    "display_component",
    "execution_start",
    "execution_cached",
    "executing",
    "progress",
    "progress_state",
    "executed",
    "execution_success",
    "execution_error",
    "execution_interrupted",
];

fn binary(ty: u8, payload: &[u8]) -> Bytes {
    let ty = u32::from(ty.wrapping_sub(b'0'));
    let mut f = ty.to_be_bytes().to_vec();
    if ty == 4 {
        let (meta, image) = match payload.iter().position(|b| *b == 0) {
            Some(i) => (&payload[..i], &payload[i + 1..]),
            None => (payload, &[][..]),
        };
        f.extend_from_slice(&(meta.len() as u32).to_be_bytes());
        f.extend_from_slice(meta);
        f.extend_from_slice(image);
    } else {
        f.extend_from_slice(payload);
    }
    Bytes::from(f)
}

/// The frame the client gets, if any.
async fn forwarded(filter: &mut SocketFilter, msg: Message) -> Option<Message> {
    match filter.upstream_frame(msg).await {
        Upstream::Forward(out) => Some(out),
        Upstream::Drop(..) => None,
    }
}

fn type4_prompt(b: &[u8]) -> Option<String> {
    let len = u32::from_be_bytes(b.get(4..8)?.try_into().ok()?) as usize;
    let meta: Value = serde_json::from_slice(b.get(8..8usize.checked_add(len)?)?).ok()?;
    meta.get("prompt_id")?.as_str().map(str::to_owned)
}

fuzz_target!(|data: &[u8]| {
    static LEDGER: Once = Once::new();
    LEDGER.call_once(|| {
        fuzz_api::record_prompt(app(), ALICE_PROMPT, "alice");
        fuzz_api::record_prompt(app(), "p-bob", "bob");
    });
    let Some((&flags, frames)) = data.split_first() else {
        return;
    };
    let admin = flags & 1 != 0;
    let t = tenant(admin);
    // A fresh filter per input: it follows only the events of its own stream.
    let mut filter = SocketFilter::new(t.clone(), app().config.clone());
    runtime().block_on(async {
        for line in frames.split(|b| *b == b'\n') {
            let Some((&kind, rest)) = line.split_first() else {
                continue;
            };
            match kind {
                b'c' => {
                    if let Ok(s) = std::str::from_utf8(rest) {
                        let _ = filter.client_frame(&Message::Text(s.into()));
                    }
                }
                b't' => {
                    let Ok(s) = std::str::from_utf8(rest) else {
                        continue;
                    };
                    let out = forwarded(&mut filter, Message::Text(s.into())).await;
                    if admin {
                        continue;
                    }
                    let Some(out) = out else { continue };
                    let Message::Text(text) = out else {
                        panic!("a text frame came out as {out:?}");
                    };
                    let v: Value = serde_json::from_str(&text).expect("forwarded text is JSON");
                    let ty = v.get("type").and_then(Value::as_str).unwrap_or("");
                    assert!(PASSING.contains(&ty), "a {ty:?} frame passed: {text}");
                    // `status` and `feature_flags` are about the socket, never a prompt (ComfyUI
                    // puts no prompt id in them); every other event is about its prompt.
                    if !matches!(ty, "status" | "feature_flags")
                        && let Some(p) = v.pointer("/data/prompt_id").and_then(Value::as_str)
                    {
                        assert!(t.owns_prompt(p), "another user's prompt {p}: {text}");
                    }
                }
                b'b' => {
                    let Some((&ty, payload)) = rest.split_first() else {
                        continue;
                    };
                    let frame = binary(ty, payload);
                    let out = forwarded(&mut filter, Message::Binary(frame.clone())).await;
                    if admin || out.is_none() {
                        continue;
                    }
                    match u32::from_be_bytes(frame[..4].try_into().expect("4 bytes")) {
                        1 | 3 => {}
                        4 => {
                            let p =
                                type4_prompt(&frame).expect("a forwarded type 4 names a prompt");
                            assert!(t.owns_prompt(&p), "another user's preview {p}");
                        }
                        other => panic!("a binary frame of type {other} passed"),
                    }
                }
                _ => {}
            }
        }
    });
});
