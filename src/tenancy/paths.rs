//! The one traversal-proof normaliser for client-sent paths, ComfyUI's annotated file names
//! (`name.png [output]`), and the mapping between what a client sees and where a user's files
//! live upstream (`input/NS/…`, `output/NS/…`, `temp/NS/…`, and `input/3d/NS/…` for 3D).
//!
//! Clients never see `NS`: every path they send is interpreted inside their own namespace, and
//! every path ComfyUI answers with is mapped back (or hidden when it lies outside).
use std::fmt;

pub const MAX_PATH: usize = 1024;
pub const MAX_SEGMENT: usize = 255;

/// ComfyUI's three file roots.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Input,
    Output,
    Temp,
}

impl Kind {
    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "input" => Some(Kind::Input),
            "output" => Some(Kind::Output),
            "temp" => Some(Kind::Temp),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Input => "input",
            Kind::Output => "output",
            Kind::Temp => "temp",
        }
    }

    pub fn annotation(self) -> &'static str {
        match self {
            Kind::Input => " [input]",
            Kind::Output => " [output]",
            Kind::Temp => " [temp]",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path is empty")]
    Empty,
    #[error("the path is too long")]
    TooLong,
    #[error("the path contains a forbidden character (NUL, control character, backslash or colon)")]
    BadChar,
    #[error("absolute paths are not allowed")]
    Absolute,
    #[error("'..' is not allowed in paths")]
    Parent,
    #[error("content-addressed names (blake3:) are not allowed")]
    Hash,
    #[error("a file name may not contain '/'")]
    Slash,
}

/// Validates a relative path fragment and returns its canonical form: segments joined by `/`,
/// `.` and empty segments collapsed. `""` stays `""` (the root of the namespace).
/// Refused: NUL and control characters, `\`, `:`, a leading `/` or `~`, any `..` segment, a
/// leading `blake3:`, over-long paths or segments.
pub fn clean(p: &str) -> Result<String, PathError> {
    if p.len() > MAX_PATH {
        return Err(PathError::TooLong);
    }
    if p.starts_with("blake3:") {
        return Err(PathError::Hash);
    }
    if p.chars().any(|c| c.is_control() || c == '\\' || c == ':') {
        return Err(PathError::BadChar);
    }
    if p.starts_with('/') || p.starts_with('~') {
        return Err(PathError::Absolute);
    }
    let mut out: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => continue,
            ".." => return Err(PathError::Parent),
            s if s.len() > MAX_SEGMENT => return Err(PathError::TooLong),
            s => out.push(s),
        }
    }
    if out.first().is_some_and(|s| s.starts_with('~')) {
        // `./~/x` collapses to `~/x`: refused like the raw form.
        return Err(PathError::Absolute);
    }
    Ok(out.join("/"))
}

/// Percent-decodes (once, fully) and then [`clean`]s — for paths taken from a URL path.
pub fn clean_decoded(p: &str) -> Result<String, PathError> {
    let decoded = percent_encoding::percent_decode_str(p)
        .decode_utf8()
        .map_err(|_| PathError::BadChar)?;
    if decoded.contains('%') {
        // A second layer of encoding: upstream code that decodes again could see `..`.
        let twice = percent_encoding::percent_decode_str(&decoded)
            .decode_utf8()
            .map_err(|_| PathError::BadChar)?;
        clean(&twice)?;
    }
    clean(&decoded)
}

/// A single file name: [`clean`], non-empty, and without `/`.
pub fn clean_name(name: &str) -> Result<String, PathError> {
    let c = clean(name)?;
    if c.is_empty() {
        return Err(PathError::Empty);
    }
    if c.contains('/') || name.contains('/') {
        return Err(PathError::Slash);
    }
    Ok(c)
}

/// Request paths ComfyUI would resolve differently from how comfy-warden routes them: a `.` or
/// `..` segment (also percent-encoded, also inside a segment's encoded slashes), or an empty
/// segment (`//`) anywhere but at the end. ComfyUI's URL library normalises those, so
/// `/assets/../queue` — a static file to a naive router — would reach `/queue` unfiltered.
pub fn is_ambiguous_request_path(path: &str) -> bool {
    let rest = path.strip_prefix('/').unwrap_or(path);
    let segments: Vec<&str> = rest.split('/').collect();
    let last = segments.len().saturating_sub(1);
    segments.iter().enumerate().any(|(i, seg)| {
        if seg.is_empty() {
            return i != last;
        }
        let decoded = percent_encoding::percent_decode_str(seg).decode_utf8_lossy();
        decoded
            .split(['/', '\\'])
            .any(|part| part == "." || part == "..")
    })
}

/// Does the request path percent-encode an unreserved character (a letter, a digit, `-`, `.`,
/// `_`, `~`)? ComfyUI's URL library decodes those before routing, so `/%70rompt` is `/prompt`
/// to ComfyUI while a router matching the raw path would not know it. No browser or HTTP
/// library encodes them (RFC 3986 §2.3), so such paths are refused rather than decoded.
pub fn has_encoded_unreserved(path: &str) -> bool {
    let b = path.as_bytes();
    b.windows(3).any(|w| {
        let [b'%', hex @ ..] = w else { return false };
        std::str::from_utf8(hex)
            .ok()
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~'))
    })
}

/// Splits ComfyUI's annotation suffix: `"a/b.png [output]"` → `("a/b.png", Some(Output))`.
pub fn split_annotation(s: &str) -> (&str, Option<Kind>) {
    for k in [Kind::Output, Kind::Input, Kind::Temp] {
        if let Some(rest) = s.strip_suffix(k.annotation()) {
            return (rest, Some(k));
        }
    }
    (s, None)
}

/// Where the client's `(kind, subfolder)` lives upstream for namespace `ns`.
/// `""` → `NS`; `sub` → `NS/sub`; for input, `3d` and `3d/rest` → `3d/NS` and `3d/NS/rest`
/// (ComfyUI's Load3D lists `input/3d/**` and insists on the `3d/` prefix).
pub fn to_upstream(ns: &str, kind: Kind, sub: &str) -> String {
    if kind == Kind::Input {
        if sub == "3d" {
            return format!("3d/{ns}");
        }
        if let Some(rest) = sub.strip_prefix("3d/") {
            return format!("3d/{ns}/{rest}");
        }
    }
    if sub.is_empty() {
        ns.to_owned()
    } else {
        format!("{ns}/{sub}")
    }
}

/// The inverse of [`to_upstream`]: the client-relative subfolder, or `None` when the upstream
/// subfolder lies outside the namespace.
pub fn from_upstream(ns: &str, kind: Kind, up: &str) -> Option<String> {
    let up = up.trim_matches('/');
    if kind == Kind::Input
        && let Some(rest) = up.strip_prefix("3d/")
    {
        if rest == ns {
            return Some("3d".into());
        }
        if let Some(r) = rest.strip_prefix(ns).and_then(|r| r.strip_prefix('/')) {
            return Some(format!("3d/{r}"));
        }
    }
    if up == ns {
        return Some(String::new());
    }
    up.strip_prefix(ns)
        .and_then(|r| r.strip_prefix('/'))
        .map(str::to_owned)
}

/// Maps a client file reference `sub/dir/name.png` (no annotation) into the namespace:
/// `NS/sub/dir/name.png` (or `3d/NS/…`).
pub fn path_to_upstream(ns: &str, kind: Kind, path: &str) -> String {
    match path.rsplit_once('/') {
        Some((dir, name)) => format!("{}/{name}", to_upstream(ns, kind, dir)),
        None => format!("{}/{path}", to_upstream(ns, kind, "")),
    }
}

/// The inverse of [`path_to_upstream`].
pub fn path_from_upstream(ns: &str, kind: Kind, up: &str) -> Option<String> {
    let (dir, name) = up.rsplit_once('/')?;
    let sub = from_upstream(ns, kind, dir)?;
    Some(if sub.is_empty() {
        name.to_owned()
    } else {
        format!("{sub}/{name}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_accepts_and_canonicalises() {
        assert_eq!(clean("").unwrap(), "");
        assert_eq!(clean("a/./b//c").unwrap(), "a/b/c");
        assert_eq!(clean("pasted/x.png").unwrap(), "pasted/x.png");
        assert_eq!(
            clean("%2e%2e").unwrap(),
            "%2e%2e",
            "no decoding here: upstream takes it literally"
        );
    }

    #[test]
    fn clean_refuses_a_home_path_hidden_behind_dot_segments() {
        // Found by the routes fuzz target: the leading `~` was checked before `.` and empty
        // segments were collapsed, so `./~/x` came out as `~/x`, which clean itself refuses.
        for bad in ["./~/x", ".//~", "//~user/x"] {
            assert_eq!(clean(bad), Err(PathError::Absolute), "{bad:?}");
        }
        assert_eq!(clean("a/~/x").unwrap(), "a/~/x");
    }

    #[test]
    fn clean_refuses_escapes() {
        for bad in [
            "../x",
            "a/../../b",
            "/etc/passwd",
            "~root",
            "a\\b",
            "c:x",
            "a\0b",
            "blake3:abcd",
            "a/..",
            "x\n",
        ] {
            assert!(clean(bad).is_err(), "{bad:?}");
        }
        assert_eq!(clean(&"a".repeat(300)), Err(PathError::TooLong));
    }

    #[test]
    fn decoded_variants() {
        assert_eq!(clean_decoded("a%2Fb").unwrap(), "a/b");
        for bad in [
            "..%2Fx",
            "%2E%2E/x",
            "%252E%252E%252Fx",
            "%2Fetc",
            "a%5Cb",
            "a%00b",
        ] {
            assert!(clean_decoded(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn encoded_unreserved_characters() {
        for p in [
            "/%70rompt",
            "/experiment/models/%70review/x",
            "/a%2Eb",
            "/x%5f",
            "/%7E",
            "/%30",
        ] {
            assert!(has_encoded_unreserved(p), "{p}");
        }
        for p in [
            "/prompt",
            "/userdata/a%2Fb%20c.json",
            "/a%25b",
            "/%",
            "/%7",
            "/%zz",
            "/%2F",
        ] {
            assert!(!has_encoded_unreserved(p), "{p}");
        }
    }

    #[test]
    fn ambiguous_request_paths() {
        for bad in [
            "/assets/../queue",
            "/assets/%2e%2e/queue",
            "/a/%2E/b",
            "/api//queue",
            "/x/.",
            "/u/workflows%2F..%2Fx",
            "/a/..%5Cb",
        ] {
            assert!(is_ambiguous_request_path(bad), "{bad}");
        }
        for good in [
            "/",
            "/api/",
            "/assets/index.js",
            "/userdata/workflows%2Fa.json",
            "/view",
            "/a/.hidden",
            "/a/b..c",
        ] {
            assert!(!is_ambiguous_request_path(good), "{good}");
        }
    }

    #[test]
    fn names() {
        assert_eq!(clean_name("x.png").unwrap(), "x.png");
        assert_eq!(clean_name("a/b.png"), Err(PathError::Slash));
        assert_eq!(clean_name(""), Err(PathError::Empty));
        assert_eq!(clean_name("."), Err(PathError::Empty));
    }

    #[test]
    fn annotations() {
        assert_eq!(
            split_annotation("a.png [output]"),
            ("a.png", Some(Kind::Output))
        );
        assert_eq!(
            split_annotation("w/a.png [temp]"),
            ("w/a.png", Some(Kind::Temp))
        );
        assert_eq!(
            split_annotation("a.png [input]"),
            ("a.png", Some(Kind::Input))
        );
        assert_eq!(split_annotation("a.png"), ("a.png", None));
        assert_eq!(split_annotation("a.png [bogus]"), ("a.png [bogus]", None));
    }

    #[test]
    fn mapping_round_trips() {
        let ns = "u_alice";
        for (kind, sub, up) in [
            (Kind::Input, "", "u_alice"),
            (Kind::Input, "pasted", "u_alice/pasted"),
            (Kind::Input, "3d", "3d/u_alice"),
            (Kind::Input, "3d/scene", "3d/u_alice/scene"),
            (Kind::Output, "3d", "u_alice/3d"),
            (Kind::Temp, "webcam", "u_alice/webcam"),
        ] {
            assert_eq!(to_upstream(ns, kind, sub), up);
            assert_eq!(from_upstream(ns, kind, up).as_deref(), Some(sub));
        }
        assert_eq!(from_upstream(ns, Kind::Output, "u_bob/x"), None);
        assert_eq!(from_upstream(ns, Kind::Output, "u_alicex"), None);
        assert_eq!(from_upstream(ns, Kind::Output, ""), None);
        assert_eq!(from_upstream(ns, Kind::Input, "3d/u_bob"), None);
        assert_eq!(
            path_to_upstream(ns, Kind::Input, "pasted/x.png"),
            "u_alice/pasted/x.png"
        );
        assert_eq!(path_to_upstream(ns, Kind::Input, "x.png"), "u_alice/x.png");
        assert_eq!(
            path_from_upstream(ns, Kind::Input, "u_alice/pasted/x.png").as_deref(),
            Some("pasted/x.png")
        );
        assert_eq!(path_from_upstream(ns, Kind::Input, "u_bob/x.png"), None);
        assert_eq!(path_from_upstream(ns, Kind::Input, "x.png"), None);
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    /// Strings biased towards the characters that matter for traversal.
    fn nasty() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![
                Just("..".to_string()),
                Just("/".to_string()),
                Just(".".to_string()),
                Just("%2e".to_string()),
                Just("%2F".to_string()),
                Just("%252e".to_string()),
                Just("\\".to_string()),
                Just(":".to_string()),
                Just("~".to_string()),
                Just("\0".to_string()),
                Just(" [temp]".to_string()),
                Just("u_bob".to_string()),
                Just("3d".to_string()),
                Just("blake3:".to_string()),
                "[a-zA-Z0-9_ -]{1,6}",
                "\\PC{1,3}",
            ],
            0..10,
        )
        .prop_map(|v| v.concat())
    }

    fn confined(up: &str, ns: &str) -> bool {
        let segs: Vec<&str> = up.split('/').collect();
        !up.starts_with('/')
            && !segs.iter().any(|s| *s == ".." || s.is_empty() || *s == ".")
            && (segs.first() == Some(&ns)
                || (segs.first() == Some(&"3d") && segs.get(1) == Some(&ns)))
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 2048,
            rng_seed: proptest::test_runner::RngSeed::Fixed(0x5eed_0001),
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn cleaned_paths_stay_inside_the_namespace(p in nasty(), kind in 0u8..3) {
            let kind = [Kind::Input, Kind::Output, Kind::Temp][kind as usize];
            for cleaned in [clean(&p), clean_decoded(&p)].into_iter().flatten() {
                prop_assert!(!cleaned.contains('\\') && !cleaned.contains('\0') && !cleaned.contains(':'));
                let up = to_upstream("u_alice", kind, &cleaned);
                prop_assert!(confined(&up, "u_alice"), "{p:?} → {up:?}");
                prop_assert_eq!(from_upstream("u_alice", kind, &up), Some(cleaned.clone()));
                if !cleaned.is_empty() {
                    let file = path_to_upstream("u_alice", kind, &cleaned);
                    prop_assert!(confined(&file, "u_alice"), "{p:?} → {file:?}");
                }
            }
        }

        #[test]
        fn names_never_contain_separators(p in nasty()) {
            if let Ok(n) = clean_name(&p) {
                prop_assert!(!n.is_empty() && !n.contains('/') && n != "." && n != "..");
            }
        }
    }
}
