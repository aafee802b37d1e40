//! POSIX path arithmetic exactly as Python's `os.path` does it (join, normpath, abspath,
//! commonpath, relpath, splitext), ComfyUI's directory layout, and `annotated_filepath`.

pub const BASE: &str = "/opt/comfyui";
pub const INPUT: &str = "/opt/comfyui/input";
pub const OUTPUT: &str = "/opt/comfyui/output";
pub const TEMP: &str = "/opt/comfyui/temp";
pub const USER: &str = "/opt/comfyui/user";

/// `folder_paths.get_directory_by_type`.
pub fn dir_for_kind(kind: &str) -> Option<&'static str> {
    match kind {
        "input" => Some(INPUT),
        "output" => Some(OUTPUT),
        "temp" => Some(TEMP),
        _ => None,
    }
}

pub fn isabs(p: &str) -> bool {
    p.starts_with('/')
}

/// `os.path.join(a, b)`.
pub fn join(a: &str, b: &str) -> String {
    if b.starts_with('/') {
        b.to_string()
    } else if a.is_empty() || a.ends_with('/') {
        format!("{a}{b}")
    } else {
        format!("{a}/{b}")
    }
}

/// `os.path.normpath`.
pub fn normpath(p: &str) -> String {
    if p.is_empty() {
        return ".".into();
    }
    let mut initial = usize::from(p.starts_with('/'));
    if p.starts_with("//") && !p.starts_with("///") {
        initial = 2;
    }
    let mut comps: Vec<&str> = Vec::new();
    for comp in p.split('/') {
        if comp.is_empty() || comp == "." {
            continue;
        }
        if comp != ".." || (initial == 0 && comps.is_empty()) || comps.last() == Some(&"..") {
            comps.push(comp);
        } else if !comps.is_empty() {
            comps.pop();
        }
    }
    let joined = comps.join("/");
    let out = format!("{}{}", "/".repeat(initial), joined);
    if out.is_empty() { ".".into() } else { out }
}

/// `os.path.abspath` with the working directory at the ComfyUI base.
pub fn abspath(p: &str) -> String {
    if isabs(p) {
        normpath(p)
    } else {
        normpath(&join(BASE, p))
    }
}

/// `os.path.commonpath((a, b))`; `None` where Python raises (absolute mixed with relative).
pub fn commonpath(a: &str, b: &str) -> Option<String> {
    if isabs(a) != isabs(b) {
        return None;
    }
    let ca: Vec<&str> = a
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    let cb: Vec<&str> = b
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    let n = ca.iter().zip(cb.iter()).take_while(|(x, y)| x == y).count();
    let prefix = if isabs(a) { "/" } else { "" };
    Some(format!("{}{}", prefix, ca[..n].join("/")))
}

/// `commonpath((base, path)) == base`.
pub fn confined(base: &str, path: &str) -> bool {
    commonpath(base, path).as_deref() == Some(base)
}

/// `os.path.split`.
pub fn split(p: &str) -> (String, String) {
    let i = p.rfind('/').map(|i| i + 1).unwrap_or(0);
    let (head, tail) = p.split_at(i);
    let head = if !head.is_empty() && head.chars().any(|c| c != '/') {
        head.trim_end_matches('/')
    } else {
        head
    };
    (head.to_string(), tail.to_string())
}

pub fn dirname(p: &str) -> String {
    split(p).0
}

pub fn basename(p: &str) -> String {
    split(p).1
}

/// `os.path.splitext`.
pub fn splitext(p: &str) -> (String, String) {
    let sep = p.rfind('/').map(|i| i as isize).unwrap_or(-1);
    if let Some(dot) = p.rfind('.') {
        if dot as isize > sep {
            let start = (sep + 1) as usize;
            if p[start..dot].chars().any(|c| c != '.') {
                return (p[..dot].to_string(), p[dot..].to_string());
            }
        }
    }
    (p.to_string(), String::new())
}

/// `os.path.relpath(path, start)`.
pub fn relpath(path: &str, start: &str) -> String {
    let a = abspath(start);
    let b = abspath(path);
    let sl: Vec<&str> = a.split('/').filter(|c| !c.is_empty()).collect();
    let pl: Vec<&str> = b.split('/').filter(|c| !c.is_empty()).collect();
    let i = sl.iter().zip(pl.iter()).take_while(|(x, y)| x == y).count();
    let mut rel: Vec<&str> = vec![".."; sl.len() - i];
    rel.extend_from_slice(&pl[i..]);
    if rel.is_empty() {
        ".".into()
    } else {
        rel.join("/")
    }
}

/// `folder_paths.annotated_filepath`: strips `[output]`/`[input]`/`[temp]` (by slicing off
/// 9/8/7 characters, as ComfyUI does) and returns the directory it names.
pub fn annotated_filepath(name: &str) -> (String, Option<&'static str>) {
    let (n, dir) = if name.ends_with("[output]") {
        (9, OUTPUT)
    } else if name.ends_with("[input]") {
        (8, INPUT)
    } else if name.ends_with("[temp]") {
        (7, TEMP)
    } else {
        return (name.to_string(), None);
    };
    let count = name.chars().count();
    let keep = count.saturating_sub(n);
    (name.chars().take(keep).collect(), Some(dir))
}
