//! The on-disk store: crash-safe, bounded by size with least-recently-used eviction, a memory
//! tier for hot small objects, and collapsed forwarding of concurrent misses.
//!
//! An object is one file, `objects/<sha256 of the URL>`: a magic number, the metadata length,
//! the body length, the metadata (URL and cache policy) as JSON, then the body. A new object is
//! written under `tmp/`, synced, and renamed into `objects/` only once its body is complete
//! (and as long as the origin said it would be), so a crash or a cut download leaves at most a
//! file under `tmp/`, which the next start removes. Opening the store checks every object's
//! header, metadata and length and drops what does not match; nothing half-written is served.
//!
//! A revalidation (upstream answered 304) changes only the policy: it is written to a sidecar
//! file, `objects/<key>.policy`, the same way (written under `tmp/`, synced, renamed), naming
//! the object it belongs to by the SHA-256 of the object's own metadata. Opening the store
//! applies a sidecar only to that object, so a sidecar left over from an older object of the
//! same URL is ignored (and removed); a revalidated object is still fresh after a restart.
//!
//! Concurrent misses for one URL share one [`Fetch`]: the first caller fetches, the body goes
//! to the temporary file, and every caller (the first included) streams from that file as it
//! grows, so followers start at once and objects larger than memory stream through.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use http_cache_semantics::CachePolicy;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::error::StoreError;
use crate::policy::FreshHit;

const MAGIC: &[u8; 8] = b"MAASPX01";
const PREFIX: u64 = 20;
/// The suffix of a policy sidecar's file name.
const SIDECAR: &str = ".policy";

/// Store configuration (serde).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StoreConfig {
    /// The cache directory (created if missing).
    pub dir: PathBuf,
    /// The most bytes kept on disk; least recently used objects go first.
    pub max_bytes: u64,
    /// The most bytes of small objects also kept in memory.
    pub memory_bytes: u64,
    /// Objects up to this size are eligible for the memory tier.
    pub memory_object_max: u64,
    /// Objects larger than this are passed through, not stored.
    pub object_max: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("cache"),
            max_bytes: 10 << 30,
            memory_bytes: 256 << 20,
            memory_object_max: 1 << 20,
            object_max: 4 << 30,
        }
    }
}

/// What the store keeps about an object besides its body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Meta {
    /// The absolute URL.
    pub url: String,
    /// The cache policy (request and response heads, response time).
    pub policy: CachePolicy,
}

/// A stored object: its metadata, and its body in memory or in its file.
#[derive(Debug, Clone)]
pub struct Object {
    /// The metadata.
    pub meta: Arc<Meta>,
    /// The body length.
    pub body_len: u64,
    /// Where the body starts in the file.
    pub body_offset: u64,
    /// The body, when it is in the memory tier.
    pub memory: Option<Bytes>,
    /// The object's file.
    pub path: Arc<Path>,
    /// The remembered answer of the last fresh hit, if any (see [`FreshHit`]).
    pub hit: Option<Arc<FreshHit>>,
}

#[derive(Debug)]
struct Entry {
    key: String,
    path: Arc<Path>,
    meta: Arc<Meta>,
    /// SHA-256 of the object file's metadata bytes: what a policy sidecar names.
    meta_digest: String,
    body_len: u64,
    body_offset: u64,
    file_len: u64,
    tick: u64,
    hit: Option<Arc<FreshHit>>,
}

/// The index, keyed by URL (the file names are derived once, on insertion).
#[derive(Debug, Default)]
struct Index {
    entries: HashMap<String, Entry>,
    total: u64,
    memory: HashMap<String, (Bytes, u64)>,
    memory_total: u64,
    tick: u64,
    inflight: HashMap<String, Arc<Fetch>>,
}

/// A policy sidecar: the policy after a revalidation, for the object whose metadata has
/// `object` as SHA-256.
#[derive(Debug, Serialize, Deserialize)]
struct Sidecar {
    object: String,
    meta: Meta,
}

/// The store. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Store {
    config: StoreConfig,
    index: Mutex<Index>,
    tmp_seq: AtomicU64,
}

/// How a caller takes part in a fetch of a URL.
#[derive(Debug)]
pub enum Role {
    /// This caller must run the upstream request and feed the [`Fetch`].
    Leader(Arc<Fetch>),
    /// Another caller is fetching; stream from its [`Fetch`].
    Follower(Arc<Fetch>),
}

/// The state of a fetch, as its readers see it.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// The response head, once upstream answered.
    pub head: Option<Arc<http::response::Parts>>,
    /// Whether the response is being stored, so followers may share it; if not they fetch
    /// on their own.
    pub shareable: bool,
    /// Upstream answered 304 to a revalidation: serve the stored object with `head`.
    pub not_modified: bool,
    /// Where the body starts in the file.
    pub body_offset: u64,
    /// Body bytes written so far.
    pub written: u64,
    /// `Some(true)`: the body is complete; `Some(false)`: the fetch failed.
    pub done: Option<bool>,
}

/// One upstream fetch shared by every concurrent miss for its URL.
#[derive(Debug)]
pub struct Fetch {
    key: String,
    url: String,
    tmp: PathBuf,
    file: File,
    stored: Mutex<bool>,
    progress: watch::Sender<Progress>,
}

impl Fetch {
    /// A receiver of the fetch's progress.
    pub fn subscribe(&self) -> watch::Receiver<Progress> {
        self.progress.subscribe()
    }

    /// The file the body goes to (readable with `read_at` while it grows).
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The URL being fetched.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Publishes the response head. With `meta` the response is stored (and shared with
    /// followers): the metadata is written ahead of the body.
    pub fn set_head(
        &self,
        head: http::response::Parts,
        meta: Option<&Meta>,
    ) -> std::io::Result<()> {
        let mut offset = 0;
        if let Some(meta) = meta {
            let json = serde_json::to_vec(meta).map_err(std::io::Error::other)?;
            let json_len = u32::try_from(json.len()).map_err(std::io::Error::other)?;
            let mut prefix = Vec::with_capacity(PREFIX as usize + json.len());
            prefix.extend_from_slice(MAGIC);
            prefix.extend_from_slice(&json_len.to_le_bytes());
            prefix.extend_from_slice(&u64::MAX.to_le_bytes());
            prefix.extend_from_slice(&json);
            self.file.write_all_at(&prefix, 0)?;
            offset = prefix.len() as u64;
            *lock(&self.stored) = true;
        }
        self.progress.send_modify(|p| {
            p.head = Some(Arc::new(head));
            p.shareable = meta.is_some();
            p.body_offset = offset;
        });
        Ok(())
    }

    /// Upstream answered 304: readers serve the stored object with `head`.
    pub fn set_not_modified(&self, head: http::response::Parts) {
        self.progress.send_modify(|p| {
            p.head = Some(Arc::new(head));
            p.shareable = true;
            p.not_modified = true;
        });
    }

    /// Appends body bytes (a write to the page cache; durability comes at [`Store::finish`]).
    pub fn write(&self, data: &[u8]) -> std::io::Result<()> {
        let (offset, written) = {
            let p = self.progress.borrow();
            (p.body_offset, p.written)
        };
        self.file.write_all_at(data, offset + written)?;
        self.progress
            .send_modify(|p| p.written += data.len() as u64);
        Ok(())
    }
}

impl Store {
    /// Opens (or creates) the store in `config.dir`: removes leftovers of interrupted writes,
    /// and indexes every object whose header, metadata and length check out (others are
    /// deleted).
    pub fn open(config: StoreConfig) -> Result<Self, StoreError> {
        let objects = config.dir.join("objects");
        let tmp = config.dir.join("tmp");
        fs::create_dir_all(&objects).map_err(io_err(&objects))?;
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
        let mut index = Index::default();
        let mut found = Vec::new();
        let mut sidecars = Vec::new();
        for entry in fs::read_dir(&objects).map_err(io_err(&objects))? {
            let entry = entry.map_err(io_err(&objects))?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(key) = name.strip_suffix(SIDECAR) {
                sidecars.push((key.to_string(), path));
                continue;
            }
            match read_meta(&path) {
                Ok(read) if key_of(&read.meta.url) == name => {
                    let mtime = entry.metadata().and_then(|m| m.modified()).ok();
                    found.push((mtime, name, path, read));
                }
                _ => {
                    let _ = fs::remove_file(&path);
                }
            }
        }
        // Oldest first, so eviction after a restart keeps the newest.
        found.sort_by_key(|a| a.0);
        let mut by_key = HashMap::new();
        for (_, name, path, read) in found {
            index.tick += 1;
            index.total += read.body_offset + read.body_len;
            let tick = index.tick;
            let url = read.meta.url.clone();
            by_key.insert(name.clone(), url.clone());
            index.entries.insert(
                url,
                Entry {
                    key: name,
                    path: Arc::from(path),
                    meta: Arc::new(read.meta),
                    meta_digest: read.digest,
                    body_len: read.body_len,
                    body_offset: read.body_offset,
                    file_len: read.body_offset + read.body_len,
                    tick,
                    hit: None,
                },
            );
        }
        for (key, path) in sidecars {
            let sidecar = fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<Sidecar>(&b).ok());
            let entry = by_key.get(&key).and_then(|url| index.entries.get_mut(url));
            match (sidecar, entry) {
                (Some(side), Some(e))
                    if side.object == e.meta_digest && side.meta.url == e.meta.url =>
                {
                    e.meta = Arc::new(side.meta);
                }
                _ => {
                    let _ = fs::remove_file(&path);
                }
            }
        }
        let store = Self {
            config,
            index: Mutex::new(index),
            tmp_seq: AtomicU64::new(0),
        };
        store.evict(&mut store.lock(), None);
        Ok(store)
    }

    /// The configuration.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// Bytes on disk, and number of objects.
    pub fn usage(&self) -> (u64, usize) {
        let index = self.lock();
        (index.total, index.entries.len())
    }

    /// The stored object for `url`, marking it recently used.
    pub fn get(&self, url: &str) -> Option<Object> {
        let mut index = self.lock();
        index.tick += 1;
        let tick = index.tick;
        let entry = index.entries.get_mut(url)?;
        entry.tick = tick;
        let mut obj = Object {
            meta: Arc::clone(&entry.meta),
            body_len: entry.body_len,
            body_offset: entry.body_offset,
            memory: None,
            path: Arc::clone(&entry.path),
            hit: entry.hit.clone(),
        };
        obj.memory = index.memory.get_mut(url).map(|(b, t)| {
            *t = tick;
            b.clone()
        });
        Some(obj)
    }

    /// Remembers a fresh hit's answer for `url`, as long as its policy is still `meta`.
    pub fn remember_hit(&self, url: &str, meta: &Arc<Meta>, hit: FreshHit) {
        let mut index = self.lock();
        if let Some(e) = index.entries.get_mut(url)
            && Arc::ptr_eq(&e.meta, meta)
        {
            e.hit = Some(Arc::new(hit));
        }
    }

    /// Puts a small object's body in the memory tier (after it was read from disk).
    pub fn promote(&self, url: &str, body: Bytes) {
        if body.len() as u64 > self.config.memory_object_max {
            return;
        }
        let mut index = self.lock();
        if index
            .entries
            .get(url)
            .is_some_and(|e| e.body_len == body.len() as u64)
        {
            self.put_memory(&mut index, url.to_string(), body);
        }
    }

    /// Replaces the policy of a stored object after a 304: in memory at once, and on disk in
    /// the object's policy sidecar (written crash-safe), so the object is still fresh after a
    /// restart. Blocking: call from a blocking context.
    pub fn update_policy(&self, url: &str, policy: CachePolicy) -> Result<(), StoreError> {
        let meta = Meta {
            url: url.to_string(),
            policy,
        };
        let (key, digest) = {
            let mut index = self.lock();
            let Some(e) = index.entries.get_mut(url) else {
                return Ok(());
            };
            e.meta = Arc::new(meta.clone());
            e.hit = None;
            (e.key.clone(), e.meta_digest.clone())
        };
        let side = Sidecar {
            object: digest.clone(),
            meta,
        };
        let json = serde_json::to_vec(&side).map_err(|e| StoreError::Io {
            path: self.sidecar_path(&key),
            source: std::io::Error::other(e),
        })?;
        let seq = self.tmp_seq.fetch_add(1, Ordering::Relaxed);
        let tmp = self
            .config
            .dir
            .join("tmp")
            .join(format!("{key}{SIDECAR}.{}.{seq}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)?;
            f.write_all_at(&json, 0)?;
            f.sync_all()
        };
        if let Err(e) = write() {
            let _ = fs::remove_file(&tmp);
            return Err(io_err(&tmp)(e));
        }
        // Rename under the lock, and only while the object is the one the sidecar names (a
        // new object may have been committed meanwhile).
        let index = self.lock();
        let dest = self.sidecar_path(&key);
        if index
            .entries
            .get(url)
            .is_some_and(|e| e.meta_digest == digest)
        {
            fs::rename(&tmp, &dest).map_err(io_err(&dest))?;
            drop(index);
            self.sync_objects_dir();
        } else {
            drop(index);
            let _ = fs::remove_file(&tmp);
        }
        Ok(())
    }

    /// Removes the object for `url`.
    pub fn remove(&self, url: &str) {
        let mut index = self.lock();
        self.remove_key(&mut index, url);
    }

    /// Joins or starts the fetch of `url`.
    pub fn begin(&self, url: &str) -> Result<Role, StoreError> {
        let mut index = self.lock();
        if let Some(f) = index.inflight.get(url) {
            return Ok(Role::Follower(Arc::clone(f)));
        }
        let key = key_of(url);
        let seq = self.tmp_seq.fetch_add(1, Ordering::Relaxed);
        let tmp = self
            .config
            .dir
            .join("tmp")
            .join(format!("{key}.{}.{seq}", std::process::id()));
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(io_err(&tmp))?;
        let fetch = Arc::new(Fetch {
            key: key.clone(),
            url: url.to_string(),
            tmp,
            file,
            stored: Mutex::new(false),
            progress: watch::Sender::new(Progress::default()),
        });
        index.inflight.insert(url.to_string(), Arc::clone(&fetch));
        Ok(Role::Leader(fetch))
    }

    /// Ends a fetch. When `complete` and the response is being stored, the body length is
    /// written into the header, the file synced and renamed into place; otherwise the file is
    /// dropped. Readers are told either way. Blocking: call from a blocking context.
    pub fn finish(&self, fetch: &Fetch, complete: bool) -> Result<(), StoreError> {
        let stored = *lock(&fetch.stored);
        let result = if complete && stored {
            self.commit(fetch)
        } else {
            Ok(())
        };
        let _ = fs::remove_file(&fetch.tmp);
        self.lock().inflight.remove(&fetch.url);
        fetch.progress.send_modify(|p| p.done = Some(complete));
        result
    }

    fn commit(&self, fetch: &Fetch) -> Result<(), StoreError> {
        let (body_offset, body_len) = {
            let p = fetch.progress.borrow();
            (p.body_offset, p.written)
        };
        if body_len > self.config.object_max {
            return Ok(());
        }
        fetch
            .file
            .write_all_at(&body_len.to_le_bytes(), 12)
            .map_err(io_err(&fetch.tmp))?;
        fetch.file.sync_all().map_err(io_err(&fetch.tmp))?;
        let read = read_meta(&fetch.tmp)?;
        let dest = self.object_path(&fetch.key);
        // Replace the index entry under the lock, so no reader sees the new file with old
        // lengths. The old object's sidecar goes first: it never names the new object.
        let mut index = self.lock();
        self.remove_key(&mut index, &fetch.url);
        fs::rename(&fetch.tmp, &dest).map_err(io_err(&dest))?;
        self.sync_objects_dir();
        index.tick += 1;
        let tick = index.tick;
        let file_len = body_offset + body_len;
        index.total += file_len;
        index.entries.insert(
            fetch.url.clone(),
            Entry {
                key: fetch.key.clone(),
                path: Arc::from(dest),
                meta: Arc::new(read.meta),
                meta_digest: read.digest,
                body_len,
                body_offset,
                file_len,
                tick,
                hit: None,
            },
        );
        if body_len <= self.config.memory_object_max {
            let mut b = vec![0u8; usize::try_from(body_len).unwrap_or(0)];
            if fetch.file.read_exact_at(&mut b, body_offset).is_ok() {
                self.put_memory(&mut index, fetch.url.clone(), Bytes::from(b));
            }
        }
        self.evict(&mut index, Some(&fetch.url));
        Ok(())
    }

    fn put_memory(&self, index: &mut Index, key: String, body: Bytes) {
        index.tick += 1;
        let tick = index.tick;
        let len = body.len() as u64;
        if let Some((old, _)) = index.memory.insert(key, (body, tick)) {
            index.memory_total -= old.len() as u64;
        }
        index.memory_total += len;
        while index.memory_total > self.config.memory_bytes {
            let Some(oldest) = index
                .memory
                .iter()
                .min_by_key(|(_, (_, t))| *t)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some((b, _)) = index.memory.remove(&oldest) {
                index.memory_total -= b.len() as u64;
            }
        }
    }

    fn evict(&self, index: &mut Index, keep: Option<&str>) {
        while index.total > self.config.max_bytes {
            let victim = index
                .entries
                .iter()
                .filter(|(k, _)| Some(k.as_str()) != keep)
                .min_by_key(|(_, e)| e.tick)
                .map(|(k, _)| k.clone())
                .or_else(|| keep.map(str::to_string));
            match victim {
                Some(k) => self.remove_key(index, &k),
                None => break,
            }
        }
    }

    fn remove_key(&self, index: &mut Index, url: &str) {
        if let Some(e) = index.entries.remove(url) {
            index.total -= e.file_len;
            let _ = fs::remove_file(self.sidecar_path(&e.key));
            let _ = fs::remove_file(&e.path);
        }
        if let Some((b, _)) = index.memory.remove(url) {
            index.memory_total -= b.len() as u64;
        }
    }

    fn object_path(&self, key: &str) -> PathBuf {
        self.config.dir.join("objects").join(key)
    }

    fn sidecar_path(&self, key: &str) -> PathBuf {
        self.config
            .dir
            .join("objects")
            .join(format!("{key}{SIDECAR}"))
    }

    fn sync_objects_dir(&self) {
        if let Ok(dir) = File::open(self.config.dir.join("objects")) {
            let _ = dir.sync_all();
        }
    }

    fn lock(&self) -> MutexGuard<'_, Index> {
        lock(&self.index)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + use<> {
    let path = path.to_path_buf();
    move |source| StoreError::Io { path, source }
}

/// The file name of `url`'s object: the hex SHA-256 of the URL.
pub fn key_of(url: &str) -> String {
    hex_sha256(url.as_bytes())
}

fn hex_sha256(data: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(64);
    for b in Sha256::digest(data) {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 15)]));
    }
    out
}

/// An object file's checked header.
struct ReadMeta {
    meta: Meta,
    digest: String,
    body_offset: u64,
    body_len: u64,
}

/// Reads and checks an object file's header.
fn read_meta(path: &Path) -> Result<ReadMeta, StoreError> {
    let corrupt = || StoreError::Corrupt(path.to_path_buf());
    let mut f = File::open(path).map_err(|_| corrupt())?;
    let file_len = f.metadata().map_err(|_| corrupt())?.len();
    let mut prefix = [0u8; PREFIX as usize];
    f.read_exact(&mut prefix).map_err(|_| corrupt())?;
    if &prefix[..8] != MAGIC {
        return Err(corrupt());
    }
    let json_len = u64::from(u32::from_le_bytes([
        prefix[8], prefix[9], prefix[10], prefix[11],
    ]));
    let mut body_len = [0u8; 8];
    body_len.copy_from_slice(&prefix[12..20]);
    let body_len = u64::from_le_bytes(body_len);
    let body_offset = PREFIX + json_len;
    if body_offset.checked_add(body_len) != Some(file_len) {
        return Err(corrupt());
    }
    let mut json = vec![0u8; usize::try_from(json_len).map_err(|_| corrupt())?];
    f.read_exact(&mut json).map_err(|_| corrupt())?;
    let meta: Meta = serde_json::from_slice(&json).map_err(|_| corrupt())?;
    Ok(ReadMeta {
        meta,
        digest: hex_sha256(&json),
        body_offset,
        body_len,
    })
}

#[cfg(test)]
mod tests;
