//! Repair: give damaged and missing objects their bytes back from a good
//! source, and write them into the store that lacks them.
//!
//! The source is another lvrepo repository (objects copied by id, each
//! verified), or a directory or tar stream that is imported into a scratch
//! store which keeps only the wanted ids (so the tree's chunks, file indexes
//! and, where metadata matches, trees are learnt without storing anything
//! else). Each object found is appended as a new record and its index entry
//! repointed at the flush, under the store's writer lock; the damaged record
//! becomes dead bytes for gc. Its damage mark is cleared after the flush.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::{Damage, StoreInfo, VerifyReport};
use crate::digest::{Digest, ObjectKind};
use crate::error::{Error, Result};
use crate::import::Progress;
use crate::object::ObjectStore;
use crate::repo::Repository;

/// Where good bytes come from.
#[derive(Clone, Debug)]
pub enum Source {
    Repository(PathBuf),
    Dir(PathBuf),
    Tar(PathBuf),
    Stdin,
}

impl Source {
    /// `-` is a tar stream on stdin; a directory holding an lvrepo `FORMAT`
    /// file is a repository; any other directory a tree; anything else tar.
    pub fn from_arg(p: &Path) -> Source {
        if p.as_os_str() == "-" {
            return Source::Stdin;
        }
        let is_repo = std::fs::read_to_string(p.join("FORMAT")).is_ok_and(|t| t.starts_with("lvrepo repository\n"));
        match (is_repo, p.is_dir()) {
            (true, _) => Source::Repository(p.to_path_buf()),
            (false, true) => Source::Dir(p.to_path_buf()),
            (false, false) => Source::Tar(p.to_path_buf()),
        }
    }
}

/// Good bytes found for wanted ids.
pub type Found = HashMap<Digest, (ObjectKind, Vec<u8>)>;

/// A scratch store for an import: keeps the wanted objects, drops the rest.
struct Harvest<'a> {
    wanted: &'a HashMap<Digest, ObjectKind>,
    got: Mutex<Found>,
}

impl ObjectStore for Harvest<'_> {
    fn get(&self, kind: ObjectKind, id: &Digest) -> Result<Option<Vec<u8>>> {
        let got = self.got.lock().unwrap_or_else(|e| e.into_inner());
        Ok(got.get(id).filter(|(k, _)| *k == kind).map(|(_, b)| b.clone()))
    }
    fn contains(&self, _id: &Digest) -> Result<bool> {
        Ok(false)
    }
    fn put(&self, kind: ObjectKind, id: &Digest, bytes: &[u8]) -> Result<bool> {
        if self.wanted.get(id) == Some(&kind) {
            self.got.lock().unwrap_or_else(|e| e.into_inner()).entry(*id).or_insert_with(|| (kind, bytes.to_vec()));
        }
        Ok(true)
    }
    fn flush(&self) -> Result<()> {
        Ok(())
    }
}

/// Find good bytes for `wanted` in `src`.
pub fn harvest(src: &Source, wanted: &HashMap<Digest, ObjectKind>, progress: &dyn Progress) -> Result<Found> {
    if let Source::Repository(p) = src {
        let other = Repository::open(p, false)?;
        let mut got = Found::new();
        for (id, kind) in wanted {
            match other.objects().get(*kind, id) {
                Ok(Some(bytes)) => {
                    got.insert(*id, (*kind, bytes));
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(chunk = %id, error = %e, "the repair source's copy is damaged too"),
            }
        }
        return Ok(got);
    }
    let h = Harvest { wanted, got: Mutex::new(Found::new()) };
    match src {
        Source::Dir(p) => {
            crate::import::dir::store_dir(&h, p, progress)?;
        }
        Source::Tar(p) => {
            let f = std::fs::File::open(p).map_err(|e| Error::io("opening", p, e))?;
            crate::import::tar::store_tar(&h, std::io::BufReader::new(f), progress)?;
        }
        Source::Stdin => {
            crate::import::tar::store_tar(&h, std::io::stdin().lock(), progress)?;
        }
        Source::Repository(_) => {}
    }
    Ok(h.got.into_inner().unwrap_or_else(|e| e.into_inner()))
}

/// The objects to look for: every damaged or missing one, by kind.
pub fn wanted(report: &VerifyReport) -> HashMap<Digest, ObjectKind> {
    report.damaged.iter().filter_map(|d| Some((d.object, d.object_kind()?))).collect()
}

/// Write each found object into the store its damage is in (one writer
/// open and one flush per store). Returns the `(store, id)`s written, and
/// the stores that could not be written (busy: a mounted guest, a running
/// import) with why; the others are still repaired.
pub fn rewrite(report: &VerifyReport, found: &Found) -> (Vec<(String, Digest)>, Vec<(String, Error)>) {
    let (mut written, mut failed) = (Vec::new(), Vec::new());
    for st in &report.stores {
        let here: Vec<&Damage> = report.damaged.iter().filter(|d| d.store == st.name && found.contains_key(&d.object)).collect();
        if here.is_empty() {
            continue;
        }
        match rewrite_store(st, &here, found) {
            Ok(done) => written.extend(done),
            Err(e) => failed.push((st.name.clone(), e)),
        }
    }
    (written, failed)
}

fn rewrite_store(st: &StoreInfo, damaged: &[&Damage], found: &Found) -> Result<Vec<(String, Digest)>> {
    let repo = Repository::open(&st.path, true)?;
    let packs = repo.packs();
    let mut done = Vec::new();
    for d in damaged {
        let Some((kind, bytes)) = found.get(&d.object) else { continue };
        if kind.hash(bytes) != d.object {
            continue;
        }
        packs.rewrite(*kind, &d.object, bytes)?;
        tracing::info!(chunk = %d.object, kind = kind.name(), store = %st.name, "rewrote damaged object");
        done.push((st.name.clone(), d.object));
    }
    repo.objects().flush()?;
    // After the flush: a mark cleared earlier could let an import dedup
    // against a copy whose new index entry was not yet durable.
    let fixed: HashSet<Digest> = done.iter().map(|(_, id)| *id).collect();
    let keep: HashSet<Digest> = packs.damaged_marks()?.into_iter().filter(|id| !fixed.contains(id)).collect();
    packs.set_damaged_marks(&keep)?;
    Ok(done)
}
