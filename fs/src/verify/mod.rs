//! Verify: check the shared repository and every registered guest's store.
//!
//! 1. Every indexed object of every store is read (record header, decode)
//!    and hashed; an unreadable index (iteration error, undecodable entry,
//!    a table file the index lost track of) is a problem of its store.
//! 2. Every image, every guest checkpoint and every guest base is walked
//!    (a guest's through its store over the repository, as the guest reads):
//!    a subtree is judged sound once, and only unsound ones are walked again
//!    to name each `IMAGE:PATH` / `guest NAME checkpoint N:PATH` that uses a
//!    damaged or missing object.
//!
//! Nothing stops it early: every problem is collected. Damage marks (ids
//! `PackStore::put` must write again rather than deduplicate against) are
//! recorded by [`record_marks`]; repair is in [`repair`].

mod check;
pub mod repair;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::digest::{Digest, ObjectKind, TreeId};
use crate::error::Result;
use crate::guest::{GuestHandle, GuestRecord};
use crate::import::Progress;
use crate::object::PackStore;
use crate::repo::Repository;

use check::{chain, Verifier};

#[derive(Clone, Debug, serde::Serialize)]
pub struct Damage {
    pub object: Digest,
    pub kind: String,
    pub problem: String,
    /// `repository` or `guest NAME`: the store holding the damaged copy
    /// (for a missing object, the store whose reads lack it).
    pub store: String,
    /// The pack file and offset of the damaged record, or the index.
    pub location: Option<String>,
    /// `IMAGE:PATH` or `guest NAME checkpoint N:PATH` (`… base:PATH`) of
    /// every entry whose data depends on this object.
    pub referenced_by: Vec<String>,
}

impl Damage {
    fn new(object: Digest, kind: ObjectKind, store: &str) -> Self {
        Damage { object, kind: kind.name().into(), problem: String::new(), store: store.into(), location: None, referenced_by: Vec::new() }
    }

    pub fn object_kind(&self) -> Option<ObjectKind> {
        [ObjectKind::Chunk, ObjectKind::Tree, ObjectKind::FileIndex].into_iter().find(|k| k.name() == self.kind)
    }
}

/// A problem that is not one object: an index that cannot be read, a guest
/// that cannot be opened, a registry entry that does not parse.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Problem {
    pub store: String,
    pub path: String,
    pub problem: String,
}

/// One store verify read: its name in the report and its repository path.
#[derive(Clone, Debug)]
pub struct StoreInfo {
    pub name: String,
    pub path: PathBuf,
    /// Damage marks found in it.
    pub marks: Vec<Digest>,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct VerifyReport {
    pub objects: u64,
    pub stored_bytes: u64,
    pub images: u64,
    pub guests: u64,
    pub checkpoints: u64,
    pub damaged: Vec<Damage>,
    pub problems: Vec<Problem>,
    /// Guests whose directory is not present on this host (a partition not
    /// attached, as for a guest booted elsewhere): not checked, not damage.
    pub absent: Vec<String>,
    #[serde(skip)]
    pub stores: Vec<StoreInfo>,
}

impl VerifyReport {
    pub fn clean(&self) -> bool {
        self.damaged.is_empty() && self.problems.is_empty()
    }
}

const REPOSITORY: &str = "repository";

pub fn verify(repo: &Repository, progress: &dyn Progress) -> Result<VerifyReport> {
    let mut report = VerifyReport::default();
    let (records, mut problems) = registered_guests(repo.path());
    let mut guests: Vec<GuestHandle> = Vec::new();
    for rec in records {
        if !rec.dir.exists() {
            tracing::warn!(guest = %rec.name, dir = %rec.dir.display(), "guest directory not present (partition not attached?): not checked");
            report.absent.push(rec.name.clone());
            continue;
        }
        match GuestHandle::open(repo.path(), &rec.name, false) {
            Ok(h) => guests.push(h),
            Err(e) => problems.push(Problem { store: format!("guest {}", rec.name), path: rec.dir.display().to_string(), problem: chain(&e) }),
        }
    }
    // A remote repository: the bucket's packs themselves (docs/remote.md).
    if let Some(r) = repo.remote() {
        match crate::remote::check::damaged_packs(r) {
            Ok(bad) => problems.extend(bad.into_iter().map(|(path, problem)| Problem { store: "bucket".into(), path, problem })),
            Err(e) => problems.push(Problem { store: "bucket".into(), path: r.url().to_string(), problem: chain(&e) }),
        }
    }
    let mut v = Verifier::new(false);
    let mut stores: Vec<(usize, &Path, &PackStore)> = vec![(v.add_store(REPOSITORY.into(), repo.packs()), repo.path(), repo.packs())];
    for g in &guests {
        let packs = g.local().packs();
        stores.push((v.add_store(format!("guest {}", g.rec.name), packs), g.local().path(), packs));
    }

    // 1. Every indexed object of every store.
    let mut scans = Vec::new();
    for &(s, path, packs) in &stores {
        let (entries, errors) = packs.scan();
        let name = v.stores[s].name.clone();
        for (id, e) in errors {
            let problem = match id {
                Some(id) => format!("index entry of {id}: {}", chain(&e)),
                None => chain(&e),
            };
            problems.push(Problem { store: name.clone(), path: packs.index_path().display().to_string(), problem });
        }
        for f in unreferenced_index_files(path, packs) {
            let problem = "index file not listed in the index's MANIFEST (the MANIFEST is damaged or cut)".to_string();
            problems.push(Problem { store: name.clone(), path: f.display().to_string(), problem });
        }
        let marks = packs.damaged_marks().unwrap_or_default();
        report.stores.push(StoreInfo { name, path: path.to_path_buf(), marks });
        scans.push((s, entries));
    }
    progress.set_total(scans.iter().flat_map(|(_, e)| e.iter()).map(|(_, e)| u64::from(e.stored_len)).sum());
    for (s, entries) in &scans {
        for (id, e) in entries {
            v.check_entry(*s, id, e);
            report.objects += 1;
            report.stored_bytes += u64::from(e.stored_len);
            progress.advance(u64::from(e.stored_len));
        }
    }
    drop(scans);

    // 2. Every root, read as its users read it.
    match repo.images() {
        Ok(images) => {
            for img in images {
                report.images += 1;
                walk_root(&mut v, 0, &img.root_tree(), &img.label());
            }
        }
        Err(e) => problems.push(Problem { store: REPOSITORY.into(), path: repo.packs().index_path().display().to_string(), problem: format!("reading image refs: {}", chain(&e)) }),
    }
    for (i, g) in guests.iter().enumerate() {
        let s = stores[i + 1].0;
        report.guests += 1;
        let name = &g.rec.name;
        let mut roots: HashSet<TreeId> = HashSet::new();
        match g.checkpoints() {
            Ok(cps) => {
                for cp in cps {
                    report.checkpoints += 1;
                    roots.insert(cp.root_tree());
                    walk_root(&mut v, s, &cp.root_tree(), &format!("guest {name} checkpoint {}", cp.version));
                }
            }
            Err(e) => problems.push(Problem { store: format!("guest {name}"), path: g.local().packs().index_path().display().to_string(), problem: format!("reading checkpoints: {}", chain(&e)) }),
        }
        if !roots.contains(&g.state.base) {
            walk_root(&mut v, s, &g.state.base, &format!("guest {name} base"));
        }
    }
    v.collect();
    report.damaged = std::mem::take(&mut v.damage).into_values().collect();
    report.problems = problems;
    Ok(report)
}

fn walk_root(v: &mut Verifier, view: usize, root: &TreeId, label: &str) {
    if !v.sound(view, ObjectKind::Tree, &root.0) {
        v.name_refs(view, &root.0, label);
    }
}

/// Check what rolling back to (or checkpointing over) `roots` would reuse
/// from a guest's own store: every object of that store reachable from them
/// is read and hashed, and every object they reference in the repository
/// must be indexed there. Cost: the guest's own objects, not the image's.
/// Returns the damage these roots use (damage elsewhere is not theirs).
pub fn check_own(guest: &GuestHandle, repo: &Repository, roots: &[(TreeId, String)]) -> Vec<Damage> {
    let mut v = Verifier::new(true);
    v.add_store(REPOSITORY.into(), repo.packs());
    let s = v.add_store(format!("guest {}", guest.rec.name), guest.local().packs());
    for (root, label) in roots {
        walk_root(&mut v, s, root, label);
    }
    v.collect();
    v.damage.into_values().filter(|d| !d.referenced_by.is_empty()).collect()
}

/// [`check_own`] as a refusal: `Err(Unsound)` naming the first problem.
pub fn refuse_unsound(guest: &GuestHandle, repo: &Repository, roots: &[(TreeId, String)], op: &'static str) -> Result<()> {
    let bad = check_own(guest, repo, roots);
    let Some(d) = bad.first() else { return Ok(()) };
    for d in &bad {
        tracing::error!(guest = %guest.rec.name, chunk = %d.object, problem = %d.problem, used_by = ?d.referenced_by, "{op} refused: damaged object");
    }
    let what = roots.iter().map(|(_, l)| l.as_str()).collect::<Vec<_>>().join(" and ");
    let more = if d.referenced_by.len() > 3 { ", …" } else { "" };
    let first = format!("{} {} ({}) in {}, used by {}{more}", d.kind, d.object, d.problem, d.store, d.referenced_by[..d.referenced_by.len().min(3)].join(", "));
    Err(crate::error::Error::Unsound { what, op, count: bad.len(), first })
}

/// The registry's guest records, and a problem for each that does not parse.
fn registered_guests(repo: &Path) -> (Vec<GuestRecord>, Vec<Problem>) {
    let dir = repo.join("guests");
    let (mut out, mut problems) = (Vec::new(), Vec::new());
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (out, problems),
        Err(e) => {
            problems.push(Problem { store: "guest registry".into(), path: dir.display().to_string(), problem: e.to_string() });
            return (out, problems);
        }
    };
    let mut paths: Vec<PathBuf> = rd.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "json")).collect();
    paths.sort();
    for p in paths {
        match std::fs::read(&p).map_err(|e| e.to_string()).and_then(|t| serde_json::from_slice::<GuestRecord>(&t).map_err(|e| format!("invalid guest record: {e}"))) {
            Ok(rec) => out.push(rec),
            Err(problem) => problems.push(Problem { store: "guest registry".into(), path: p.display().to_string(), problem }),
        }
    }
    (out, problems)
}

/// Index table files the index does not use, seen twice: a writer
/// committing a new table between our open and our listing shows it in a
/// second open.
fn unreferenced_index_files(path: &Path, packs: &PackStore) -> Vec<PathBuf> {
    let first = match packs.unreferenced_index_files() {
        Ok(f) if !f.is_empty() => f,
        _ => return Vec::new(),
    };
    match Repository::open(path, false).and_then(|r| r.packs().unreferenced_index_files()) {
        Ok(again) => first.into_iter().filter(|f| again.contains(f)).collect(),
        Err(_) => first,
    }
}

/// Make each store's damage marks exactly its damaged ids (so an import or
/// checkpoint bringing their bytes writes them again). Needs each store's
/// writer lock; a busy store is skipped. Returns a note per store not done.
pub fn record_marks(report: &VerifyReport) -> Vec<String> {
    let mut notes = Vec::new();
    for st in &report.stores {
        let want: HashSet<Digest> = report.damaged.iter().filter(|d| d.store == st.name && d.problem != "missing").map(|d| d.object).collect();
        if want == st.marks.iter().copied().collect() {
            continue;
        }
        let done = Repository::open(&st.path, true).and_then(|r| r.packs().set_damaged_marks(&want));
        if let Err(e) = done {
            notes.push(format!("damage marks of {} not recorded ({}): writes may deduplicate against its damaged objects until verify runs again", st.name, chain(&e)));
        }
    }
    notes
}

#[cfg(test)]
mod tests;
