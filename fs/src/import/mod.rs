//! Import: turn a directory or a tar stream into stored objects and publish an
//! image. Objects are written and flushed first; the image ref is written last,
//! so an interrupted or failed import leaves no visible image (its objects are
//! garbage that `gc` reclaims) and never damages existing images.

pub(crate) mod dir;
mod filter;
pub(crate) mod tar;
mod volume;
mod walk;

pub use self::dir::{import_dir, import_dir_filtered};
pub use self::filter::{ImportFilter, Pattern};
pub use self::tar::{import_tar, import_tar_filtered};
pub use self::volume::{import_volume, store_volume};

use crate::digest::{ImageId, TreeId};
use crate::error::Result;
use crate::repo::{ImageRecord, ImageRef, Repository};

/// Progress reporting for long work; the CLI draws a bar with it. All methods
/// have no-op defaults so a library caller can pass [`NoProgress`].
pub trait Progress: Sync {
    /// Total bytes expected, when known.
    fn set_total(&self, _bytes: u64) {}
    /// `bytes` more processed.
    fn advance(&self, _bytes: u64) {}
    /// What is being worked on now.
    fn note(&self, _what: &str) {}
}

pub struct NoProgress;
impl Progress for NoProgress {}

/// Counters of an import.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ImportStats {
    /// Entries of every kind, the root included.
    pub entries: u64,
    /// Sum of regular file sizes (each hardlink set counted once).
    pub logical_bytes: u64,
    /// Chunk bytes that were not already in the repository.
    pub new_bytes: u64,
}

/// What to publish once the tree is stored.
pub struct ImportTarget {
    pub image: ImageRef,
    pub message: String,
    pub parent: Option<String>,
}

/// Flush objects, then publish the image ref (the commit point of an import).
pub(crate) fn publish(repo: &Repository, target: &ImportTarget, root: TreeId, stats: &ImportStats) -> Result<ImageRecord> {
    publish_kind(repo, target, root, stats, false)
}

/// [`publish`], for a filesystem image or a block volume.
pub(crate) fn publish_kind(repo: &Repository, target: &ImportTarget, root: TreeId, stats: &ImportStats, volume: bool) -> Result<ImageRecord> {
    repo.objects().flush()?;
    let version = match target.image.version {
        Some(v) => v,
        None => repo.next_version(&target.image.name)?,
    };
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    // Without an explicit parent, a new version derives from the previous one.
    let parent = match &target.parent {
        Some(p) => Some(repo.resolve(&p.parse()?)?.label()),
        None => repo.images()?.into_iter().filter(|i| i.name == target.image.name && i.version < version).max_by_key(|i| i.version).map(|i| i.label()),
    };
    let rec = ImageRecord {
        name: target.image.name.clone(),
        version,
        root: ImageId(root),
        parent,
        created,
        message: target.message.clone(),
        files: stats.entries,
        logical_bytes: stats.logical_bytes,
        volume,
    };
    repo.publish(&rec)?;
    Ok(rec)
}

/// Refuse to start an import whose explicit version already exists, before any
/// work is done.
pub(crate) fn precheck(repo: &Repository, target: &ImportTarget) -> Result<()> {
    repo.writable()?;
    if target.image.version.is_some() {
        match repo.resolve(&target.image) {
            Ok(rec) => return Err(crate::error::Error::ImageExists(rec.label())),
            Err(crate::error::Error::ImageNotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Stable non-zero label of a hardlink set: a hash of its smallest path.
pub(crate) fn link_label(smallest_path: &[u8]) -> u64 {
    let h = blake3::hash(smallest_path);
    let mut b = [0u8; 8];
    b.copy_from_slice(&h.as_bytes()[..8]);
    u64::from_le_bytes(b) | 1
}
