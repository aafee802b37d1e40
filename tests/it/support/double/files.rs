//! The in-memory file system behind input/output/temp, the model folders and the user
//! directory (absolute POSIX paths under `/opt/comfyui`), plus `mimetypes.guess_type`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{SystemTime, UNIX_EPOCH};

use super::blob::Blob;
use super::paths::{self, abspath};

/// 1x1 PNG written by SaveImage/PreviewImage and sent as preview frames.
pub const PNG_RESULT: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0xda, 0x63, 0x38, 0x91, 0x62, 0xf4,
    0x1f, 0x00, 0x05, 0xb4, 0x02, 0x5e, 0xc0, 0x64, 0xe9, 0xdb, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45,
    0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

/// 1x1 PNG shipped as `input/example.png` (ComfyUI ships one too).
pub const PNG_EXAMPLE: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0xda, 0x63, 0xe0, 0x12, 0x91, 0xfb,
    0x0f, 0x00, 0x01, 0xa4, 0x01, 0x3c, 0x4c, 0xd5, 0x1c, 0xa7, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45,
    0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

/// Model folder name → directories (as `folder_paths.folder_names_and_paths`, with the
/// `output/<type>` extras that `main.py` adds).
pub const MODEL_FOLDERS: &[(&str, &[&str])] = &[
    (
        "checkpoints",
        &[
            "/opt/comfyui/models/checkpoints",
            "/opt/comfyui/output/checkpoints",
        ],
    ),
    ("configs", &["/opt/comfyui/models/configs"]),
    (
        "loras",
        &["/opt/comfyui/models/loras", "/opt/comfyui/output/loras"],
    ),
    (
        "vae",
        &["/opt/comfyui/models/vae", "/opt/comfyui/output/vae"],
    ),
    (
        "text_encoders",
        &[
            "/opt/comfyui/models/text_encoders",
            "/opt/comfyui/models/clip",
            "/opt/comfyui/output/clip",
        ],
    ),
    (
        "diffusion_models",
        &[
            "/opt/comfyui/models/unet",
            "/opt/comfyui/models/diffusion_models",
            "/opt/comfyui/output/diffusion_models",
        ],
    ),
    ("clip_vision", &["/opt/comfyui/models/clip_vision"]),
    ("style_models", &["/opt/comfyui/models/style_models"]),
    ("embeddings", &["/opt/comfyui/models/embeddings"]),
    ("diffusers", &["/opt/comfyui/models/diffusers"]),
    ("vae_approx", &["/opt/comfyui/models/vae_approx"]),
    (
        "controlnet",
        &[
            "/opt/comfyui/models/controlnet",
            "/opt/comfyui/models/t2i_adapter",
        ],
    ),
    ("gligen", &["/opt/comfyui/models/gligen"]),
    ("upscale_models", &["/opt/comfyui/models/upscale_models"]),
    ("custom_nodes", &["/opt/comfyui/custom_nodes"]),
    ("hypernetworks", &["/opt/comfyui/models/hypernetworks"]),
    ("photomaker", &["/opt/comfyui/models/photomaker"]),
    ("classifiers", &["/opt/comfyui/models/classifiers"]),
    ("model_patches", &["/opt/comfyui/models/model_patches"]),
    ("audio_encoders", &["/opt/comfyui/models/audio_encoders"]),
];

pub const MODEL_EXTENSIONS: &[&str] = &[
    ".ckpt",
    ".pt",
    ".pt2",
    ".bin",
    ".pth",
    ".safetensors",
    ".pkl",
    ".sft",
];

pub fn model_folder(name: &str) -> Option<&'static [&'static str]> {
    MODEL_FOLDERS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, d)| *d)
}

pub fn model_extensions(folder: &str) -> &'static [&'static str] {
    match folder {
        "configs" => &[".yaml"],
        "custom_nodes" => &[],
        _ => MODEL_EXTENSIONS,
    }
}

#[derive(Clone)]
pub struct FileEntry {
    pub blob: Blob,
    pub mtime: f64,
    pub ctime: f64,
    pub mtime_ns: u128,
    pub seq: u64,
}

#[derive(Debug, PartialEq, Eq)]
pub enum VfsError {
    NotFound,
    IsDir,
    NotDir,
}

pub struct Vfs {
    files: BTreeMap<String, FileEntry>,
    dirs: BTreeSet<String>,
    seq: u64,
}

fn now() -> (f64, u128) {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_secs_f64(), d.as_nanos())
}

impl Default for Vfs {
    fn default() -> Self {
        Self::new()
    }
}

impl Vfs {
    pub fn new() -> Vfs {
        let mut v = Vfs {
            files: BTreeMap::new(),
            dirs: BTreeSet::new(),
            seq: 0,
        };
        for d in [
            paths::INPUT,
            paths::OUTPUT,
            paths::TEMP,
            paths::USER,
            "/opt/comfyui/custom_nodes",
        ] {
            let _ = v.makedirs(d);
        }
        for (_, dirs) in MODEL_FOLDERS {
            for d in dirs.iter() {
                let _ = v.makedirs(d);
            }
        }
        v.put(
            &format!("{}/example.png", paths::INPUT),
            Blob::from_bytes(PNG_EXAMPLE),
        );
        v
    }

    pub fn is_file(&self, p: &str) -> bool {
        self.files.contains_key(&abspath(p))
    }

    pub fn is_dir(&self, p: &str) -> bool {
        let p = abspath(p);
        p == "/" || self.dirs.contains(&p)
    }

    pub fn exists(&self, p: &str) -> bool {
        self.is_file(p) || self.is_dir(p)
    }

    pub fn get(&self, p: &str) -> Option<&FileEntry> {
        self.files.get(&abspath(p))
    }

    /// `os.makedirs(p, exist_ok=True)`.
    pub fn makedirs(&mut self, p: &str) -> Result<(), VfsError> {
        let p = abspath(p);
        let mut cur = String::new();
        for comp in p.split('/').filter(|c| !c.is_empty()) {
            cur.push('/');
            cur.push_str(comp);
            if self.files.contains_key(&cur) {
                return Err(VfsError::NotDir);
            }
            self.dirs.insert(cur.clone());
        }
        Ok(())
    }

    /// `open(p, "wb").write(...)`: the parent must be a directory.
    pub fn write(&mut self, p: &str, blob: Blob) -> Result<(), VfsError> {
        let p = abspath(p);
        if self.is_dir(&p) {
            return Err(VfsError::IsDir);
        }
        let parent = paths::dirname(&p);
        if !self.is_dir(&parent) {
            return Err(if self.is_file(&parent) {
                VfsError::NotDir
            } else {
                VfsError::NotFound
            });
        }
        let (mtime, mtime_ns) = now();
        self.seq += 1;
        let ctime = self.files.get(&p).map(|e| e.ctime).unwrap_or(mtime);
        self.files.insert(
            p,
            FileEntry {
                blob,
                mtime,
                ctime,
                mtime_ns,
                seq: self.seq,
            },
        );
        Ok(())
    }

    /// Write, creating parent directories first.
    pub fn put(&mut self, p: &str, blob: Blob) {
        let p = abspath(p);
        let _ = self.makedirs(&paths::dirname(&p));
        let _ = self.write(&p, blob);
    }

    pub fn remove_file(&mut self, p: &str) -> bool {
        self.files.remove(&abspath(p)).is_some()
    }

    /// `shutil.move(src, dst)` for a file or a directory tree (dst must not exist).
    pub fn rename(&mut self, src: &str, dst: &str) -> Result<(), VfsError> {
        let src = abspath(src);
        let dst = abspath(dst);
        if let Some(e) = self.files.remove(&src) {
            let parent = paths::dirname(&dst);
            if !self.is_dir(&parent) {
                self.files.insert(src, e);
                return Err(VfsError::NotFound);
            }
            self.files.insert(dst, e);
            return Ok(());
        }
        if !self.dirs.contains(&src) {
            return Err(VfsError::NotFound);
        }
        let prefix = format!("{src}/");
        let moved_files: Vec<String> = self
            .files
            .keys()
            .filter(|k| k.starts_with(&prefix))
            .cloned()
            .collect();
        let moved_dirs: Vec<String> = self
            .dirs
            .iter()
            .filter(|k| k.starts_with(&prefix) || **k == src)
            .cloned()
            .collect();
        for d in moved_dirs {
            self.dirs.remove(&d);
            self.dirs.insert(format!("{}{}", dst, &d[src.len()..]));
        }
        for f in moved_files {
            if let Some(e) = self.files.remove(&f) {
                self.files.insert(format!("{}{}", dst, &f[src.len()..]), e);
            }
        }
        Ok(())
    }

    /// Immediate children of a directory: (file names, directory names), sorted.
    pub fn children(&self, dir: &str) -> (Vec<String>, Vec<String>) {
        let dir = abspath(dir);
        let prefix = if dir == "/" {
            "/".to_string()
        } else {
            format!("{dir}/")
        };
        let files = self
            .files
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter_map(|(k, _)| {
                let rest = &k[prefix.len()..];
                (!rest.contains('/')).then(|| rest.to_string())
            })
            .collect();
        let dirs = self
            .dirs
            .range(prefix.clone()..)
            .take_while(|k| k.starts_with(&prefix))
            .filter_map(|k| {
                let rest = &k[prefix.len()..];
                (!rest.contains('/')).then(|| rest.to_string())
            })
            .collect();
        (files, dirs)
    }

    /// Every file below a directory (full paths, sorted).
    pub fn files_under(&self, dir: &str) -> Vec<String> {
        let dir = abspath(dir);
        let prefix = if dir == "/" {
            "/".to_string()
        } else {
            format!("{dir}/")
        };
        self.files
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Every directory below a directory (full paths, sorted).
    pub fn dirs_under(&self, dir: &str) -> Vec<String> {
        let dir = abspath(dir);
        let prefix = if dir == "/" {
            "/".to_string()
        } else {
            format!("{dir}/")
        };
        self.dirs
            .range(prefix.clone()..)
            .take_while(|k| k.starts_with(&prefix))
            .cloned()
            .collect()
    }

    /// Top-level image files of a directory, sorted (the LoadImage combo).
    pub fn image_files(&self, dir: &str) -> Vec<String> {
        let (mut files, _) = self.children(dir);
        files.retain(|f| content_class(f) == Some("image"));
        files.sort();
        files
    }
}

/// `mimetypes.guess_type(name)[0]` (with ComfyUI's `.js` override).
pub fn guess_mime(name: &str) -> Option<&'static str> {
    let (_, ext) = paths::splitext(name);
    let ext = ext.to_ascii_lowercase();
    Some(match ext.as_str() {
        ".png" => "image/png",
        ".jpg" | ".jpeg" | ".jpe" => "image/jpeg",
        ".gif" => "image/gif",
        ".webp" => "image/webp",
        ".bmp" => "image/bmp",
        ".svg" => "image/svg+xml",
        ".ico" => "image/vnd.microsoft.icon",
        ".tif" | ".tiff" => "image/tiff",
        ".avif" => "image/avif",
        ".json" => "application/json",
        ".js" => "application/javascript; charset=utf-8",
        ".mjs" => "text/javascript",
        ".css" => "text/css",
        ".html" | ".htm" => "text/html",
        ".xhtml" => "application/xhtml+xml",
        ".xml" => "text/xml",
        ".txt" => "text/plain",
        ".csv" => "text/csv",
        ".md" => "text/markdown",
        ".pdf" => "application/pdf",
        ".zip" => "application/zip",
        ".wasm" => "application/wasm",
        ".mp4" => "video/mp4",
        ".webm" => "video/webm",
        ".mov" => "video/quicktime",
        ".avi" => "video/x-msvideo",
        ".mp3" => "audio/mpeg",
        ".wav" => "audio/x-wav",
        ".flac" => "audio/flac",
        ".ogg" => "audio/ogg",
        ".woff" => "font/woff",
        ".woff2" => "font/woff2",
        ".ttf" => "font/ttf",
        ".otf" => "font/otf",
        ".gltf" => "model/gltf+json",
        ".glb" => "model/gltf-binary",
        ".obj" => "model/obj",
        ".yaml" | ".yml" => "application/yaml",
        _ => return None,
    })
}

/// `folder_paths.filter_files_content_types` class of a file name ("image", "video", ...).
pub fn content_class(name: &str) -> Option<&'static str> {
    let ext = name.rsplit('.').next().unwrap_or("");
    match ext {
        "webp" => return Some("image"),
        "fbx" => return Some("model"),
        _ => {}
    }
    guess_mime(name).and_then(|m| m.split('/').next())
}
