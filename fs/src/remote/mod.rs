//! The repository on an object store (S3 or any `object_store` backend): the
//! bucket is the source of truth, and each host keeps a cache directory that
//! is a local repository in today's format plus a link (`REMOTE`) to it.
//! Every command works on the cache unchanged; this layer only keeps it in
//! step with the bucket (docs/remote.md):
//!
//! - [`sync`]: on open, new packs' indexes and the refs are mirrored into the
//!   cache's index (O(new packs + refs)); a remote pack's local file is sparse.
//! - [`fetch`]: a read of a record not present locally (a hole: no record
//!   magic at its offset) fetches that record with a ranged GET, checks its
//!   hash (once more on mismatch, then damage), and writes it into the
//!   cache, payload before header (magic present ⇒ bytes present). Reads
//!   that walk a pack in order get a growing read-ahead of the records
//!   after it, each checked the same way; random reads fetch one record.
//! - [`publish`]: before a ref is written, every local pack not yet uploaded
//!   is sealed and uploaded (`packs/<b3>.pack`, then `.idx`), then the ref
//!   with a create-only put: concurrent publishers never lose an update.
//! - [`gc`]: mark, then sweep after a grace period, whole packs only; what
//!   refs reach and what any host's guests stand on ([`lease`]) is live.
//!
//! Invariants: objects in the bucket are immutable and named by their
//! content (packs) or created once (refs); a pack without its `.idx` is
//! invisible; the local cache holds either nothing or the exact bytes of a
//! remote record at its offset.

pub mod check;
mod evict;
mod fetch;
pub mod gc;
mod idx;
pub mod lease;
pub(crate) mod publish;
pub(crate) mod sync;
#[cfg(test)]
mod tests;
pub mod url;

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use object_store::path::Path as ObjPath;
use object_store::ObjectStore as Bucket;

use crate::error::{Error, Result};

pub use evict::punch;
pub use url::RemoteUrl;

/// The file in a cache directory naming its bucket (one line: the URL).
pub const LINK_FILE: &str = "REMOTE";
/// The bucket's format marker, written create-only by `init`.
const FORMAT_OBJECT: &str = "FORMAT";

/// Bytes and requests fetched from buckets by this process (all handles).
static FETCHED_BYTES: AtomicU64 = AtomicU64::new(0);
static REQUESTS: AtomicU64 = AtomicU64::new(0);

/// Log what this process fetched: called at a command's or daemon's exit.
pub fn report() {
    let (b, n) = (FETCHED_BYTES.load(Ordering::Relaxed), REQUESTS.load(Ordering::Relaxed));
    if n > 0 {
        tracing::info!(bytes = b, requests = n, "remote: fetched {b} bytes in {n} requests");
    }
}

/// A handle on one bucket (and prefix): the object store, the runtime that
/// drives it, and which local packs are copies of which remote packs.
pub struct Remote {
    url: String,
    bucket: Arc<dyn Bucket>,
    prefix: ObjPath,
    rt: tokio::runtime::Runtime,
    /// Local pack number → remote pack name (hex BLAKE3 of its bytes).
    packs: RwLock<HashMap<u32, String>>,
    /// The cache's bound in bytes (0: not known yet), bytes filled since
    /// the last look at it, and the eviction in progress (evict.rs).
    limit: AtomicU64,
    since_evict: AtomicU64,
    evicting: Mutex<()>,
    /// Per remote pack: where its last fetch ended and the read-ahead
    /// window a fetch starting there gets (fetch.rs).
    ahead: Mutex<HashMap<String, fetch::Ahead>>,
    /// Bytes and requests fetched through this handle.
    fetched: AtomicU64,
    requests: AtomicU64,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote").field("url", &self.url).finish()
    }
}

impl Remote {
    /// Connect to `url` (configured from the environment, see [`url`]).
    pub fn connect(url: &RemoteUrl) -> Result<Arc<Remote>> {
        let bucket = url.store()?;
        Remote::with_store(&url.to_string(), bucket, url.prefix())
    }

    /// A handle on `bucket` below `prefix` (tests use an in-memory store).
    pub fn with_store(url: &str, bucket: Arc<dyn Bucket>, prefix: &str) -> Result<Arc<Remote>> {
        // Worker threads drive the HTTP requests; callers (FUSE threads,
        // commands) block on them from outside, never from inside.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("lvrepo-remote")
            .enable_all()
            .build()
            .map_err(|e| Error::io("starting the remote runtime for", url, e))?;
        Ok(Arc::new(Remote {
            url: url.to_string(),
            bucket,
            prefix: ObjPath::from(prefix),
            rt,
            packs: RwLock::default(),
            limit: AtomicU64::new(0),
            since_evict: AtomicU64::new(0),
            evicting: Mutex::new(()),
            ahead: Mutex::default(),
            fetched: AtomicU64::new(0),
            requests: AtomicU64::new(0),
        }))
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Run `f` on the runtime and wait for it (from synchronous code only).
    pub(crate) fn block<F: Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// The object `rel` (slash-separated) below the prefix.
    pub(crate) fn path(&self, rel: &str) -> ObjPath {
        let mut p = self.prefix.clone();
        for part in rel.split('/').filter(|s| !s.is_empty()) {
            p = p.clone().join(part);
        }
        p
    }

    pub(crate) fn bucket(&self) -> &dyn Bucket {
        &*self.bucket
    }

    /// The error for a failed request on `rel`.
    pub(crate) fn err(&self, op: &'static str, rel: &str, source: object_store::Error) -> Error {
        Error::Remote { op, object: format!("{}/{rel}", self.url.trim_end_matches('/')), source: Box::new(source) }
    }

    pub(crate) fn count(&self, bytes: u64) {
        FETCHED_BYTES.fetch_add(bytes, Ordering::Relaxed);
        REQUESTS.fetch_add(1, Ordering::Relaxed);
        self.fetched.fetch_add(bytes, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Bytes and requests fetched through this handle so far.
    pub fn fetched(&self) -> (u64, u64) {
        (self.fetched.load(Ordering::Relaxed), self.requests.load(Ordering::Relaxed))
    }

    /// The remote pack name of local pack `pack`, if it is a copy of one.
    pub(crate) fn pack_name(&self, pack: u32) -> Option<String> {
        self.packs.read().unwrap_or_else(|e| e.into_inner()).get(&pack).cloned()
    }

    pub(crate) fn set_pack(&self, pack: u32, name: String) {
        self.packs.write().unwrap_or_else(|e| e.into_inner()).insert(pack, name);
    }

    pub(crate) fn forget_pack(&self, pack: u32) {
        self.packs.write().unwrap_or_else(|e| e.into_inner()).remove(&pack);
    }

    pub(crate) fn known_packs(&self) -> HashMap<u32, String> {
        self.packs.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether the bucket holds a repository (its `FORMAT` object).
    pub fn check_format(&self) -> Result<()> {
        let p = self.path(FORMAT_OBJECT);
        match self.block(async { object_store::ObjectStoreExt::get(self.bucket(), &p).await?.bytes().await }) {
            Ok(b) => {
                self.count(b.len() as u64);
                check_format_text(&b, &self.url)
            }
            Err(object_store::Error::NotFound { .. }) => Err(Error::NotARepository(self.url.clone().into())),
            Err(e) => Err(self.err("reading", FORMAT_OBJECT, e)),
        }
    }

    /// Create the repository in the bucket: `FORMAT`, create-only (an
    /// existing repository there is [`Error::DestinationNotEmpty`]).
    pub fn init_bucket(&self) -> Result<()> {
        let text = format!("lvrepo repository\nformat {}\n", crate::repo::FORMAT_VERSION);
        let p = self.path(FORMAT_OBJECT);
        let opts = object_store::PutOptions::from(object_store::PutMode::Create);
        match self.block(self.bucket().put_opts(&p, text.into_bytes().into(), opts)) {
            Ok(_) => Ok(()),
            Err(object_store::Error::AlreadyExists { .. }) => Err(Error::DestinationNotEmpty(self.url.clone().into())),
            Err(e) => Err(self.err("creating", FORMAT_OBJECT, e)),
        }
    }
}

fn check_format_text(b: &[u8], url: &str) -> Result<()> {
    let text = String::from_utf8_lossy(b);
    let mut lines = text.lines();
    let found = match (lines.next(), lines.next().and_then(|l| l.strip_prefix("format ")).and_then(|v| v.trim().parse::<u32>().ok())) {
        (Some("lvrepo repository"), Some(v)) => v,
        _ => return Err(Error::NotARepository(url.into())),
    };
    if found != crate::repo::FORMAT_VERSION {
        return Err(Error::Format { path: url.into(), found, supported: crate::repo::FORMAT_VERSION, hint: " (in the bucket)" });
    }
    Ok(())
}

/// The URL a cache directory is linked to, if it is one.
pub fn link_of(cache: &Path) -> Result<Option<RemoteUrl>> {
    let p = cache.join(LINK_FILE);
    match std::fs::read_to_string(&p) {
        Ok(t) => Ok(Some(t.trim().parse()?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(crate::perms::open_error("reading", &p, e)),
    }
}

/// Make `cache` a cache of `remote`: a new local repository linked to the
/// bucket (which must hold a repository unless `create`, which creates it).
/// An existing cache of the same URL is kept; of another, refused.
pub fn prepare_cache(cache: &Path, url: &RemoteUrl, remote: &Remote, create: bool) -> Result<()> {
    if create {
        remote.init_bucket()?;
    } else {
        remote.check_format()?;
    }
    match link_of(cache) {
        Ok(Some(u)) if u == *url => return Ok(()),
        Ok(Some(u)) => return Err(Error::CacheOfOther { cache: cache.to_path_buf(), url: u.to_string() }),
        Ok(None) => {}
        Err(e) => return Err(e),
    }
    if cache.exists() {
        if half_made(cache) {
            // A cache left half-made (no link yet, nothing stored): again.
            std::fs::remove_dir_all(cache).map_err(|e| Error::io("removing the unfinished cache", cache, e))?;
        } else if cache.join("FORMAT").exists() {
            return Err(Error::CacheOfOther { cache: cache.to_path_buf(), url: "a local repository".into() });
        }
    }
    drop(crate::repo::Repository::init(cache)?);
    // The link last: a directory without it is no cache (made again above).
    let tmp = cache.join("REMOTE.tmp");
    std::fs::write(&tmp, format!("{url}\n"))
        .and_then(|_| std::fs::rename(&tmp, cache.join(LINK_FILE)))
        .map_err(|e| Error::io("writing", cache.join(LINK_FILE), e))?;
    tracing::info!(cache = %cache.display(), remote = %url, "created the cache of a remote repository");
    Ok(())
}

/// Whether `cache` is what an interrupted [`prepare_cache`] leaves: only a
/// new repository's files, no pack in it, no link. Anything else there is
/// never removed (an empty directory is used as it is).
fn half_made(cache: &Path) -> bool {
    const OURS: [&str; 8] = ["FORMAT", "FORMAT.tmp", "REMOTE.tmp", "packs", "index", "lock", "readers", "gc.lock"];
    let Ok(rd) = std::fs::read_dir(cache) else { return false };
    let names: Vec<_> = rd.flatten().map(|e| e.file_name()).collect();
    let no_packs = std::fs::read_dir(cache.join("packs")).map_or(true, |mut d| d.next().is_none());
    !names.is_empty() && no_packs && names.iter().all(|n| OURS.iter().any(|o| n.as_os_str() == *o))
}
