//! File contents: small ones in memory, large ones spilled to a temporary file, and
//! "pattern" files (byte i = i % 251) generated on the fly. Writers hash while they go.

use std::io;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use futures_util::stream::{self, BoxStream, StreamExt};
use sha2::{Digest, Sha256};
use tempfile::TempPath;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

/// Contents up to this size stay in memory (and are reported in `StoredFile::bytes`).
pub const MEM_LIMIT: u64 = 8 * 1024 * 1024;
/// Streaming chunk size.
pub const CHUNK: u64 = 64 * 1024;

#[derive(Clone)]
pub struct Blob {
    len: u64,
    sha: Arc<OnceLock<String>>,
    content: Content,
}

#[derive(Clone)]
enum Content {
    Mem(Bytes),
    Disk(Arc<TempPath>),
    Pattern,
}

fn known_sha(sha: String) -> Arc<OnceLock<String>> {
    let cell = OnceLock::new();
    let _ = cell.set(sha);
    Arc::new(cell)
}

/// `n` bytes of the pattern file starting at `off`.
pub fn pattern_chunk(off: u64, n: u64) -> Bytes {
    let mut v = Vec::with_capacity(n as usize);
    let mut x = (off % 251) as u8;
    for _ in 0..n {
        v.push(x);
        x = if x == 250 { 0 } else { x + 1 };
    }
    Bytes::from(v)
}

impl Blob {
    pub fn from_bytes(b: impl Into<Bytes>) -> Blob {
        let b: Bytes = b.into();
        let sha = hex::encode(Sha256::digest(&b));
        Blob {
            len: b.len() as u64,
            sha: known_sha(sha),
            content: Content::Mem(b),
        }
    }

    pub fn pattern(len: u64) -> Blob {
        Blob {
            len,
            sha: Arc::new(OnceLock::new()),
            content: Content::Pattern,
        }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    /// Hex SHA-256 of the contents (computed lazily for pattern files).
    pub fn sha256(&self) -> String {
        self.sha
            .get_or_init(|| {
                let mut h = Sha256::new();
                let mut off = 0;
                while off < self.len {
                    let n = CHUNK.min(self.len - off);
                    h.update(pattern_chunk(off, n));
                    off += n;
                }
                hex::encode(h.finalize())
            })
            .clone()
    }

    /// The whole contents when they are at most [`MEM_LIMIT`] bytes.
    pub fn small_bytes(&self) -> Option<Bytes> {
        if self.len > MEM_LIMIT {
            return None;
        }
        match &self.content {
            Content::Mem(b) => Some(b.clone()),
            Content::Pattern => Some(pattern_chunk(0, self.len)),
            Content::Disk(p) => std::fs::read(p.as_ref() as &std::path::Path)
                .ok()
                .map(Bytes::from),
        }
    }

    /// Contents `[start, end)` as a stream of chunks of at most [`CHUNK`] bytes.
    pub fn stream(&self, start: u64, end: u64) -> BoxStream<'static, io::Result<Bytes>> {
        let end = end.min(self.len);
        let start = start.min(end);
        match &self.content {
            Content::Mem(b) => {
                let b = b.slice(start as usize..end as usize);
                let chunks: Vec<io::Result<Bytes>> = (0..b.len())
                    .step_by(CHUNK as usize)
                    .map(|i| Ok(b.slice(i..(i + CHUNK as usize).min(b.len()))))
                    .collect();
                stream::iter(chunks).boxed()
            }
            Content::Pattern => stream::unfold(start, move |off| async move {
                if off >= end {
                    return None;
                }
                let n = CHUNK.min(end - off);
                Some((Ok(pattern_chunk(off, n)), off + n))
            })
            .boxed(),
            Content::Disk(p) => {
                let p = p.clone();
                stream::unfold(
                    (None::<tokio::fs::File>, start, p),
                    move |(file, off, p)| async move {
                        if off >= end {
                            return None;
                        }
                        let mut f = match file {
                            Some(f) => f,
                            None => {
                                let opened = async {
                                    let mut f =
                                        tokio::fs::File::open(p.as_ref() as &std::path::Path)
                                            .await?;
                                    f.seek(io::SeekFrom::Start(off)).await?;
                                    Ok::<_, io::Error>(f)
                                };
                                match opened.await {
                                    Ok(f) => f,
                                    Err(e) => return Some((Err(e), (None, end, p))),
                                }
                            }
                        };
                        let n = CHUNK.min(end - off);
                        let mut buf = vec![0u8; n as usize];
                        match f.read_exact(&mut buf).await {
                            Ok(_) => Some((Ok(Bytes::from(buf)), (Some(f), off + n, p))),
                            Err(e) => Some((Err(e), (None, end, p))),
                        }
                    },
                )
                .boxed()
            }
        }
    }

    /// The whole contents (used for small JSON bodies and the like).
    pub async fn read_all(&self) -> io::Result<Bytes> {
        match &self.content {
            Content::Mem(b) => Ok(b.clone()),
            Content::Pattern => Ok(pattern_chunk(0, self.len)),
            Content::Disk(p) => Ok(Bytes::from(
                tokio::fs::read(p.as_ref() as &std::path::Path).await?,
            )),
        }
    }
}

/// Accumulates a stream of bytes into a [`Blob`], hashing as it goes and spilling to a
/// temporary file past [`MEM_LIMIT`].
pub struct BlobWriter {
    hasher: Sha256,
    len: u64,
    mem: Vec<u8>,
    disk: Option<(tokio::fs::File, TempPath)>,
}

impl Default for BlobWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl BlobWriter {
    pub fn new() -> BlobWriter {
        BlobWriter {
            hasher: Sha256::new(),
            len: 0,
            mem: Vec::new(),
            disk: None,
        }
    }

    pub async fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.hasher.update(data);
        self.len += data.len() as u64;
        if self.disk.is_none() && self.len > MEM_LIMIT {
            let tmp = tempfile::Builder::new()
                .prefix("comfy-double-")
                .tempfile()?;
            let (file, path) = tmp.into_parts();
            let mut file = tokio::fs::File::from_std(file);
            file.write_all(&self.mem).await?;
            self.mem = Vec::new();
            self.disk = Some((file, path));
        }
        match &mut self.disk {
            Some((file, _)) => file.write_all(data).await?,
            None => self.mem.extend_from_slice(data),
        }
        Ok(())
    }

    pub async fn finish(self) -> io::Result<Blob> {
        let sha = known_sha(hex::encode(self.hasher.finalize()));
        let content = match self.disk {
            Some((mut file, path)) => {
                file.flush().await?;
                Content::Disk(Arc::new(path))
            }
            None => Content::Mem(Bytes::from(self.mem)),
        };
        Ok(Blob {
            len: self.len,
            sha,
            content,
        })
    }
}
