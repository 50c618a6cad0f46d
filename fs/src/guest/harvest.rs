//! Harvest: publish a guest's state (a root tree: a checkpoint) as a new
//! image of the shared repository.
//!
//! The image's root is the guest's own root tree: nothing is rebuilt. What
//! the root reaches in the guest's store and the repository lacks (the
//! guest's own chunks and trees) is copied into the repository, children
//! before parents, and flushed before the image ref is written; what the
//! repository holds is neither read nor copied (the copy does not descend
//! into a subtree the repository has). So the image stands on the
//! repository alone: removing the guest afterwards takes nothing from it,
//! and an interrupted harvest leaves no image (only garbage for gc).

use crate::backup::{copy_closure, CopyStats};
use crate::digest::{ImageId, TreeId};
use crate::error::{Error, Result};
use crate::repo::{ImageRecord, ImageRef, Repository};
use crate::tree::Kind;

use super::GuestHandle;

#[derive(Clone, Debug, serde::Serialize)]
pub struct Harvested {
    pub image: ImageRecord,
    /// Objects copied from the guest's store into the repository.
    pub copied: CopyStats,
}

/// Publish root tree `root` of guest `g` as image `target` in `repo`
/// (opened writable). Without a version, the image's next one. The image
/// records the guest's image as its parent.
pub fn harvest(repo: &Repository, g: &GuestHandle, root: TreeId, target: &ImageRef, message: &str) -> Result<Harvested> {
    repo.writable()?;
    if let Some(v) = target.version {
        if let Ok(rec) = repo.resolve(&ImageRef { name: target.name.clone(), version: Some(v) }) {
            return Err(Error::ImageExists(rec.label()));
        }
    }
    let mut copied = CopyStats::default();
    copy_closure(&*g.store(repo.shared_store()), repo.objects(), &root, &mut copied)?;
    let (files, logical_bytes) = count(repo, &root)?;
    repo.objects().flush()?;
    let version = match target.version {
        Some(v) => v,
        None => repo.next_version(&target.name)?,
    };
    let parent = g.rec.image.parse::<ImageRef>().ok().and_then(|r| repo.resolve(&r).ok()).map(|i| i.label());
    let created = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let image = ImageRecord { name: target.name.clone(), version, root: ImageId(root), parent, created, message: message.to_string(), files, logical_bytes, volume: g.rec.volume };
    repo.publish(&image)?;
    tracing::info!(guest = %g.rec.name, image = %image.label(), objects = copied.objects, bytes = copied.bytes, "harvested guest");
    Ok(Harvested { image, copied })
}

/// Entries (the root included) and the sum of file sizes, each hardlink set
/// once, as an import counts them. Reads the tree's listings (not its data).
fn count(repo: &Repository, root: &TreeId) -> Result<(u64, u64)> {
    let (mut files, mut bytes) = (0u64, 0u64);
    let mut links = std::collections::HashSet::new();
    crate::walk::walk(repo.objects(), root, &mut |_, e| {
        files += 1;
        if e.kind == Kind::File && (e.link == 0 || links.insert(e.link)) {
            bytes += e.size;
        }
        Ok(())
    })?;
    Ok((files, bytes))
}
