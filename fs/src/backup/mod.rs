//! Backups of guests to another repository (issue 26): `backup`, `backups`,
//! `restore`. Layer: operations, over the object store seam only (the
//! target's objects are reached through [`ObjectStore`], so an object-store
//! target is another store, not another algorithm).
//!
//! At the target, guest `G`'s backup is:
//! - its checkpoints as image refs `backup/G:N` (the checkpoint's record:
//!   root, message, time, parent), so the target's gc, verify and stats keep
//!   and check them like any image;
//! - a `meta` entry `backup-guest\0G` → [`BackupGuest`] (the image the guest
//!   was created from, volume or not).
//!
//! Invariants: objects are copied children first and flushed before any ref
//! naming them is written; every new ref and the meta entry go in one synced
//! batch. So an interrupted backup leaves the old backup set (and unnamed
//! objects gc may reclaim), never a ref to a missing object, and run again it
//! sends only what did not land. A checkpoint number already backed up is
//! never overwritten: the same root is skipped, another root is refused.

mod copy;
mod forget;
mod restore;

pub use copy::{copy_closure, CopyStats};
pub use forget::{forget, plan as keep_plan, ForgetReport, KeepPolicy};
pub use restore::restore;

use std::sync::Arc;

use rocksdb::{WriteBatch, WriteOptions};

use crate::error::{Error, Result};
use crate::guest::GuestHandle;
use crate::object::ObjectStore;
use crate::repo::{ImageRecord, Repository, CF_META, CF_REFS};

/// Image-ref name prefix of backed-up checkpoints.
pub const BACKUP_PREFIX: &str = "backup/";

/// What a target records about a backed-up guest.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BackupGuest {
    pub name: String,
    /// The image the guest was created from, `NAME:VERSION`.
    pub image: String,
    #[serde(default)]
    pub volume: bool,
}

/// One backed-up checkpoint, as `backups` lists it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BackupEntry {
    pub guest: String,
    pub checkpoint: u32,
    pub root: crate::digest::ImageId,
    pub created: i64,
    pub message: String,
    pub image: Option<String>,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct BackupReport {
    pub guest: String,
    /// Checkpoints newly recorded at the target, and those it already had.
    pub checkpoints_sent: Vec<u32>,
    pub checkpoints_present: Vec<u32>,
    pub copied: CopyStats,
}

pub(crate) fn meta_key(guest: &str) -> Vec<u8> {
    let mut k = b"backup-guest\0".to_vec();
    k.extend_from_slice(guest.as_bytes());
    k
}

fn ref_name(guest: &str) -> String {
    format!("{BACKUP_PREFIX}{guest}")
}

/// The backup record of guest `guest` at `target`, if it has one.
pub fn guest_meta(target: &Repository, guest: &str) -> Result<Option<BackupGuest>> {
    match target.db().get_cf(target.cf(CF_META)?, meta_key(guest))? {
        Some(b) => Ok(Some(serde_json::from_slice(&b).map_err(|_| Error::Decode { what: "backup record", why: "invalid JSON" })?)),
        None => Ok(None),
    }
}

/// The backed-up checkpoints of `guest` at `target`, oldest first.
pub fn checkpoints(target: &Repository, guest: &str) -> Result<Vec<ImageRecord>> {
    let name = ref_name(guest);
    Ok(target.images()?.into_iter().filter(|i| i.name == name).collect())
}

/// Every backed-up checkpoint at `target` (of `guest` only, if given).
pub fn list(target: &Repository, guest: Option<&str>) -> Result<Vec<BackupEntry>> {
    let mut out = Vec::new();
    for i in target.images()? {
        let Some(g) = i.name.strip_prefix(BACKUP_PREFIX) else { continue };
        if guest.is_some_and(|want| want != g) {
            continue;
        }
        let image = guest_meta(target, g)?.map(|m| m.image);
        out.push(BackupEntry { guest: g.to_string(), checkpoint: i.version, root: i.root, created: i.created, message: i.message, image });
    }
    Ok(out)
}

/// Copy guest `g`'s checkpoints (read through its layered store over
/// `shared`) to `target` (opened writable), sending only the objects the
/// target lacks, then record them there.
pub fn backup(g: &GuestHandle, shared: Arc<dyn ObjectStore>, target: &Repository) -> Result<BackupReport> {
    target.writable()?;
    let name = g.rec.name.clone();
    let meta = BackupGuest { name: name.clone(), image: g.rec.image.clone(), volume: g.rec.volume };
    let held = held_for(target, &meta)?;
    let src = g.store(shared);
    let mut report = BackupReport { guest: name.clone(), ..Default::default() };
    let mut new = Vec::new();
    for cp in g.checkpoints()? {
        match already_held(&held, &meta, &cp)? {
            true => report.checkpoints_present.push(cp.version),
            false => {
                let mut s = CopyStats::default();
                copy_closure(&*src, target.objects(), &cp.root_tree(), &mut s)?;
                tracing::info!(guest = %name, checkpoint = cp.version, objects = s.objects, bytes = s.bytes, "checkpoint copied");
                report.copied.add(s);
                report.checkpoints_sent.push(cp.version);
                new.push(backup_ref(&name, cp));
            }
        }
    }
    target.objects().flush()?;
    crate::gc::failpoint("backup-before-publish");
    publish(target, &meta, &new)?;
    Ok(report)
}

/// The checkpoints `target` holds of guest `meta.name`; refused if they are
/// another guest's (created from another image).
pub(crate) fn held_for(target: &Repository, meta: &BackupGuest) -> Result<Vec<ImageRecord>> {
    if let Some(m) = guest_meta(target, &meta.name)? {
        if m.image != meta.image {
            return Err(Error::BackupConflict { guest: meta.name.clone(), why: format!("the target holds a guest of that name created from {}, this one is from {}", m.image, meta.image) });
        }
    }
    checkpoints(target, &meta.name)
}

/// Whether checkpoint `cp` is already in `held`; a number held with another
/// root is refused (never overwritten).
pub(crate) fn already_held(held: &[ImageRecord], meta: &BackupGuest, cp: &ImageRecord) -> Result<bool> {
    match held.iter().find(|h| h.version == cp.version) {
        Some(h) if h.root == cp.root => Ok(true),
        Some(_) => Err(Error::BackupConflict { guest: meta.name.clone(), why: format!("checkpoint {} at the target has another root (a different guest of the same name?)", cp.version) }),
        None => Ok(false),
    }
}

/// The ref name a backed-up checkpoint of `guest` has.
pub(crate) fn backup_ref(guest: &str, cp: ImageRecord) -> ImageRecord {
    ImageRecord { name: ref_name(guest), ..cp }
}

/// Write the refs of `recs` and the guest's meta entry in one synced batch.
pub(crate) fn publish(target: &Repository, meta: &BackupGuest, recs: &[ImageRecord]) -> Result<()> {
    let unencodable = |_| Error::Decode { what: "backup record", why: "unencodable" };
    let meta_json = serde_json::to_vec(meta).map_err(unencodable)?;
    // A remote target: the bucket's refs are the backup (docs/remote.md).
    if let Some(r) = target.remote() {
        crate::remote::publish::publish_backup(target, r, &meta.name, &meta_json, recs)?;
    }
    let mut b = WriteBatch::default();
    b.put_cf(target.cf(CF_META)?, meta_key(&meta.name), meta_json);
    for r in recs {
        b.put_cf(target.cf(CF_REFS)?, crate::repo::refs::key(&r.name, r.version), serde_json::to_vec(r).map_err(unencodable)?);
    }
    let mut wo = WriteOptions::default();
    wo.set_sync(true);
    target.db().write_opt(b, &wo)?;
    Ok(())
}
