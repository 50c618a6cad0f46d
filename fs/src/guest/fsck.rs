//! `lvrepo guest fsck`: check a guest's own files (STATE, its overlay
//! generations, the current overlay's database and data, the guest store)
//! and, with `repair`, salvage what is sound. Runs under the guest's lock
//! (not while mounted).
//!
//! Repairs, in order: a STATE that does not decode or names a generation
//! that is not there is pointed at the newest generation whose overlay
//! opens (its base read from that overlay's database); a lost `FORMAT` is
//! written again; a database that refuses to open is handed to RocksDB's
//! repair (records in damaged files are lost); then the overlay check's own
//! repairs (see [`crate::overlay::check`]).

use std::sync::Arc;

use super::ops::{generations, read_state};
use super::{write_atomic, GuestState};
use crate::error::{Error, Result};
use crate::object::{Layered, ObjectStore};
use crate::overlay::check::{recorded_root, repair_database, CheckReport, Problem};
use crate::overlay::Overlay;
use crate::repo::Repository;

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct FsckReport {
    pub guest: String,
    pub generation: Option<u64>,
    /// Problems with the guest's own files and the overlay's, in order found.
    pub problems: Vec<Problem>,
    pub overlay: Option<CheckReport>,
}

impl FsckReport {
    /// Damage found (exit 4), repaired or not.
    pub fn damaged(&self) -> usize {
        self.problems.iter().filter(|p| p.damage).count() + self.overlay.as_ref().map_or(0, CheckReport::damaged)
    }
}

fn problem(file: &std::path::Path, what: String, repaired: Option<String>) -> Problem {
    Problem { path: "-".into(), file: file.display().to_string(), range: None, what, damage: true, repaired }
}

/// Check guest `name` of repository `shared` (see the module docs).
pub fn fsck(repo: &Repository, name: &str, repair: bool) -> Result<FsckReport> {
    let (rec, _lock, state) = super::GuestHandle::open_for_check(repo.path(), name)?;
    let mut report = FsckReport { guest: name.to_string(), ..Default::default() };
    let state = match state {
        Ok(s) => s,
        Err(e @ Error::OverlayDamaged { .. }) => {
            let sp = rec.dir.join("STATE");
            let fixed = if repair { repoint_state(&rec.dir, repo)? } else { None };
            let repaired = fixed.as_ref().map(|s| format!("STATE now names generation {} over {}", s.generation, s.base.0));
            report.problems.push(problem(&sp, e.to_string(), repaired));
            match fixed {
                Some(s) => s,
                None => return Ok(report),
            }
        }
        Err(e) => return Err(e),
    };
    report.generation = Some(state.generation);
    let gd = rec.dir.join(format!("gen-{:08}", state.generation));
    if !gd.exists() {
        // Never opened (made by an lvrepo that created it on first use):
        // nothing written yet.
        return Ok(report);
    }
    // The generation's database records the root it sits on; STATE must agree.
    let mut state = state;
    if let Ok(root) = recorded_root(&gd) {
        if root != state.base {
            let sp = rec.dir.join("STATE");
            let what = format!("names base {} but generation {} sits on {}", state.base.0, state.generation, root.0);
            let repaired = if repair {
                state.base = root;
                let json = serde_json::to_vec_pretty(&state).map_err(|_| Error::Decode { what: "guest state", why: "unencodable" })?;
                write_atomic(&sp, &json)?;
                Some(format!("STATE now names base {}", root.0))
            } else {
                None
            };
            report.problems.push(problem(&sp, what, repaired));
            if !repair {
                return Ok(report);
            }
        }
    }
    let local = Repository::open(&rec.dir.join("store"), repair)?;
    let store: Arc<dyn ObjectStore> = Arc::new(Layered::new(local.shared_store(), repo.shared_store()));
    let ov = match super::ops::open_generation(&gd, store.clone(), state.base) {
        Ok(ov) => ov,
        Err(e @ Error::OverlayDamaged { .. }) if repair => {
            let what = e.to_string();
            let how = salvage_database(&gd)?;
            report.problems.push(problem(&gd, what, Some(how)));
            Overlay::open_existing(&gd, store, state.base)?
        }
        Err(e @ Error::OverlayDamaged { .. }) => {
            report.problems.push(problem(&gd, e.to_string(), None));
            return Ok(report);
        }
        Err(e) => return Err(e),
    }
    .for_guest(name);
    report.overlay = Some(ov.check(repair)?);
    // The guest store: every object it holds reads back as its id.
    let packs = local.packs();
    for (id, e) in packs.entries()? {
        let bad = match packs.read_entry(&id, &e) {
            Ok(bytes) => e.kind.hash(&bytes) != id,
            Err(_) => true,
        };
        if bad {
            report.problems.push(problem(&rec.dir.join("store"), format!("{} {id} does not match its id", e.kind.name()), None));
        }
    }
    Ok(report)
}

/// A lost FORMAT is written again (the current format, or 2 if the database lacks
/// the `sums` column family: the next open upgrades it); a database that
/// still refuses goes through RocksDB's repair.
fn salvage_database(gd: &std::path::Path) -> Result<String> {
    let fmt = gd.join("FORMAT");
    let mut done = Vec::new();
    if !fmt.exists() && gd.join("meta").is_dir() {
        let has_sums = rocksdb::DB::list_cf(&rocksdb::Options::default(), gd.join("meta")).is_ok_and(|c| c.iter().any(|n| n == "sums"));
        let n = if has_sums { crate::overlay::OVERLAY_FORMAT } else { 2 };
        write_atomic(&fmt, format!("lvrepo overlay\nformat {n}\n").as_bytes())?;
        done.push(format!("FORMAT written (format {n})"));
    }
    if recorded_root(gd).is_err() {
        repair_database(gd)?;
        done.push("database salvaged by RocksDB's repair (records in its damaged files are lost)".to_string());
    }
    Ok(done.join("; "))
}

/// Point STATE at the newest generation whose overlay database opens;
/// `None` if there is none (STATE is left as it is).
fn repoint_state(dir: &std::path::Path, _repo: &Repository) -> Result<Option<GuestState>> {
    for g in generations(dir).into_iter().rev() {
        let gd = dir.join(format!("gen-{g:08}"));
        if !gd.join("FORMAT").is_file() {
            continue;
        }
        let Ok(base) = recorded_root(&gd) else { continue };
        let s = GuestState { base, generation: g };
        let json = serde_json::to_vec_pretty(&s).map_err(|_| Error::Decode { what: "guest state", why: "unencodable" })?;
        write_atomic(&dir.join("STATE"), &json)?;
        tracing::warn!(path = %dir.join("STATE").display(), generation = g, "guest STATE repointed");
        return Ok(Some(s));
    }
    Ok(None)
}

/// Whether guest `rec`'s STATE is sound (for `verify --overlays`).
pub fn state_of(rec: &super::GuestRecord) -> Result<GuestState> {
    read_state(rec)
}
