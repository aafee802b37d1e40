//! Who owns what: prompt_id → user, and file → user for files that ComfyUI names outside the
//! user's namespace (temp-root previews, API node outputs). Kept in memory, snapshotted
//! atomically to `ledger.json` in the state directory, restored at start, and rebuilt from the
//! owner tag comfy-warden writes into every prompt's `extra_data` when an entry is missing.
use super::paths::Kind;
use crate::clock::now_secs;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

pub const FILE_NAME: &str = "ledger.json";
/// The key comfy-warden adds to `extra_data` of every prompt; its value is the owner's namespace.
pub const OWNER_TAG: &str = "comfy_warden_owner";
const MAX_PROMPTS: usize = 200_000;
const MAX_FILES: usize = 200_000;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PromptEntry {
    pub owner: String,
    pub at: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileEntry {
    pub kind: Kind,
    pub subfolder: String,
    pub filename: String,
    pub owner: String,
    pub at: u64,
}

#[derive(Default, Serialize, Deserialize)]
struct Saved {
    prompts: HashMap<String, PromptEntry>,
    files: Vec<FileEntry>,
}

#[derive(Default)]
struct Inner {
    prompts: HashMap<String, PromptEntry>,
    files: HashMap<(Kind, String, String), FileEntry>,
}

pub struct Ledger {
    path: PathBuf,
    inner: Mutex<Inner>,
    dirty: AtomicBool,
}

impl Ledger {
    /// Restores the ledger from the state directory (or starts empty).
    pub fn open(state_dir: &Path) -> Ledger {
        let path = state_dir.join(FILE_NAME);
        let saved: Saved = crate::ops::snapshot::read(&path).unwrap_or_default();
        let files = saved
            .files
            .into_iter()
            .map(|f| ((f.kind, f.subfolder.clone(), f.filename.clone()), f))
            .collect();
        Ledger {
            path,
            inner: Mutex::new(Inner {
                prompts: saved.prompts,
                files,
            }),
            dirty: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn record_prompt(&self, prompt_id: &str, owner: &str) {
        let mut i = self.lock();
        if i.prompts.len() >= MAX_PROMPTS {
            prune_oldest(&mut i.prompts, |e| e.at);
        }
        i.prompts.insert(
            prompt_id.to_owned(),
            PromptEntry {
                owner: owner.to_owned(),
                at: now_secs(),
            },
        );
        self.dirty.store(true, Ordering::Relaxed);
    }

    /// Is `owner` the owner of `prompt_id`?
    pub fn owns_prompt(&self, prompt_id: &str, owner: &str) -> bool {
        self.lock()
            .prompts
            .get(prompt_id)
            .is_some_and(|e| e.owner == owner)
    }

    /// Does `owner` (namespace `ns`) own the queue/history tuple `[number, prompt_id, prompt,
    /// extra_data, …]`? A prompt unknown to the ledger but carrying `ns` as its owner tag is
    /// recorded as theirs (the rebuild after a lost snapshot).
    pub fn owns_item(&self, item: &serde_json::Value, owner: &str, ns: &str) -> bool {
        let Some(id) = item.get(1).and_then(serde_json::Value::as_str) else {
            return false;
        };
        self.owns_tagged(id, || tagged_owner(item).map(str::to_owned), owner, ns)
    }

    /// [`Ledger::owns_item`] for a tuple read in pieces: its prompt id, and its owner tag
    /// (asked for only when the ledger does not know the id, and outside the ledger's lock).
    pub fn owns_tagged(
        &self,
        id: &str,
        tag: impl FnOnce() -> Option<String>,
        owner: &str,
        ns: &str,
    ) -> bool {
        if let Some(e) = self.lock().prompts.get(id) {
            return e.owner == owner;
        }
        if tag().as_deref() != Some(ns) {
            return false;
        }
        let mut i = self.lock();
        // Someone may have recorded it meanwhile: the first owner stays.
        let e = i.prompts.entry(id.to_owned()).or_insert_with(|| {
            self.dirty.store(true, Ordering::Relaxed);
            PromptEntry {
                owner: owner.to_owned(),
                at: now_secs(),
            }
        });
        e.owner == owner
    }

    pub fn knows_prompt(&self, prompt_id: &str) -> bool {
        self.lock().prompts.contains_key(prompt_id)
    }

    /// Records that `owner` owns the upstream file `(kind, subfolder, filename)`. The first
    /// owner stays: a file name is never handed over to someone else.
    pub fn record_file(&self, kind: Kind, subfolder: &str, filename: &str, owner: &str) {
        let mut i = self.lock();
        let key = (kind, subfolder.to_owned(), filename.to_owned());
        if i.files.contains_key(&key) {
            return;
        }
        if i.files.len() >= MAX_FILES {
            prune_oldest(&mut i.files, |e| e.at);
        }
        i.files.insert(
            key,
            FileEntry {
                kind,
                subfolder: subfolder.to_owned(),
                filename: filename.to_owned(),
                owner: owner.to_owned(),
                at: now_secs(),
            },
        );
        self.dirty.store(true, Ordering::Relaxed);
    }

    pub fn file_owner(&self, kind: Kind, subfolder: &str, filename: &str) -> Option<String> {
        self.lock()
            .files
            .get(&(kind, subfolder.to_owned(), filename.to_owned()))
            .map(|e| e.owner.clone())
    }

    /// Files of `owner` recorded in `kind` at `subfolder`, newest first.
    pub fn files_of(&self, owner: &str, kind: Kind, subfolder: &str) -> Vec<String> {
        let i = self.lock();
        let mut v: Vec<&FileEntry> = i
            .files
            .values()
            .filter(|f| f.owner == owner && f.kind == kind && f.subfolder == subfolder)
            .collect();
        v.sort_by(|a, b| b.at.cmp(&a.at).then_with(|| a.filename.cmp(&b.filename)));
        v.into_iter().map(|f| f.filename.clone()).collect()
    }

    /// Every file of `owner` in `kind` as `(upstream subfolder, filename)`, newest first.
    pub fn all_files_of(&self, owner: &str, kind: Kind) -> Vec<(String, String)> {
        let i = self.lock();
        let mut v: Vec<&FileEntry> = i
            .files
            .values()
            .filter(|f| f.owner == owner && f.kind == kind)
            .collect();
        v.sort_by(|a, b| b.at.cmp(&a.at).then_with(|| a.filename.cmp(&b.filename)));
        v.into_iter()
            .map(|f| (f.subfolder.clone(), f.filename.clone()))
            .collect()
    }

    /// Writes the snapshot if anything changed since the last one.
    pub fn save_if_dirty(&self) -> std::io::Result<()> {
        if !self.dirty.swap(false, Ordering::Relaxed) {
            return Ok(());
        }
        let saved = {
            let i = self.lock();
            Saved {
                prompts: i.prompts.clone(),
                files: i.files.values().cloned().collect(),
            }
        };
        crate::ops::snapshot::write(&self.path, &saved)
            .inspect_err(|_| self.dirty.store(true, Ordering::Relaxed))
    }
}

/// The namespace named by a queue/history tuple's owner tag in `extra_data`, if any.
pub fn tagged_owner(item: &serde_json::Value) -> Option<&str> {
    item.get(3)?.get(OWNER_TAG)?.as_str()
}

fn prune_oldest<K: Clone + Eq + std::hash::Hash, V>(
    map: &mut HashMap<K, V>,
    at: impl Fn(&V) -> u64,
) {
    let mut ages: Vec<u64> = map.values().map(&at).collect();
    ages.sort_unstable();
    let cutoff = ages.get(ages.len() / 10).copied().unwrap_or(0);
    map.retain(|_, v| at(v) > cutoff);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::open(dir.path());
        l.record_prompt("p1", "alice");
        l.record_file(Kind::Temp, "", "ComfyUI_temp_abcde_00001_.png", "alice");
        l.record_file(Kind::Temp, "", "ComfyUI_temp_abcde_00001_.png", "bob");
        l.save_if_dirty().unwrap();
        let l2 = Ledger::open(dir.path());
        assert!(l2.owns_prompt("p1", "alice") && !l2.owns_prompt("p1", "bob"));
        assert_eq!(
            l2.file_owner(Kind::Temp, "", "ComfyUI_temp_abcde_00001_.png")
                .as_deref(),
            Some("alice"),
            "first owner stays"
        );
        assert_eq!(
            l2.files_of("alice", Kind::Temp, ""),
            vec!["ComfyUI_temp_abcde_00001_.png".to_string()]
        );
        assert!(l2.files_of("bob", Kind::Temp, "").is_empty());
    }
}
