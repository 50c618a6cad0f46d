//! Verify: read every stored object and check it against its id, then walk
//! every image and name the paths that reference damaged or missing objects.

use std::collections::HashMap;

use crate::digest::{Digest, ObjectKind, TreeId};
use crate::error::{Error, Result};
use crate::import::Progress;
use crate::object::ObjectStore;
use crate::repo::Repository;
use crate::tree::file::FileIndex;
use crate::tree::{Content, Entry, Tree};

#[derive(Clone, Debug, serde::Serialize)]
pub struct Damage {
    pub object: Digest,
    pub kind: String,
    pub problem: String,
    /// `IMAGE:PATH` of every entry whose data depends on this object.
    pub referenced_by: Vec<String>,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct VerifyReport {
    pub objects: u64,
    pub stored_bytes: u64,
    pub images: u64,
    pub damaged: Vec<Damage>,
}

pub fn verify(repo: &Repository, progress: &dyn Progress) -> Result<VerifyReport> {
    let packs = repo.packs();
    let entries = packs.entries()?;
    progress.set_total(entries.iter().map(|(_, e)| u64::from(e.stored_len)).sum());
    let mut report = VerifyReport::default();
    let mut bad: HashMap<Digest, Damage> = HashMap::new();
    for (id, e) in &entries {
        let problem = match packs.read_entry(id, e) {
            Ok(bytes) if e.kind.hash(&bytes) == *id => None,
            Ok(_) => Some(crate::error::DamageKind::HashMismatch.to_string()),
            Err(Error::Damaged { why, .. }) => Some(why.to_string()),
            Err(other) => Some(other.to_string()),
        };
        if let Some(problem) = problem {
            tracing::error!(chunk = %id, kind = e.kind.name(), %problem, "damaged object");
            bad.insert(*id, Damage { object: *id, kind: e.kind.name().into(), problem, referenced_by: Vec::new() });
        }
        report.objects += 1;
        report.stored_bytes += u64::from(e.stored_len);
        progress.advance(u64::from(e.stored_len));
    }
    let present: std::collections::HashSet<Digest> = entries.iter().map(|(d, _)| *d).collect();
    for img in repo.images()? {
        report.images += 1;
        let mut c = Checker { store: repo.objects(), present: &present, bad: &mut bad, label: img.label() };
        c.tree(&img.root_tree(), b"")?;
    }
    report.damaged = bad.into_values().collect();
    report.damaged.sort_by(|a, b| a.object.cmp(&b.object));
    Ok(report)
}

struct Checker<'a> {
    store: &'a dyn ObjectStore,
    present: &'a std::collections::HashSet<Digest>,
    bad: &'a mut HashMap<Digest, Damage>,
    label: String,
}

impl Checker<'_> {
    /// Record a problem with `id` referenced at `path`; true if it is usable.
    fn ok(&mut self, kind: ObjectKind, id: &Digest, path: &[u8]) -> bool {
        let shown = format!("{}:{}", self.label, crate::walk::escape_path(if path.is_empty() { b"/" } else { path }));
        if let Some(d) = self.bad.get_mut(id) {
            d.referenced_by.push(shown);
            return false;
        }
        if !self.present.contains(id) {
            self.bad.insert(*id, Damage { object: *id, kind: kind.name().into(), problem: "missing".into(), referenced_by: vec![shown] });
            return false;
        }
        true
    }

    fn tree(&mut self, id: &TreeId, path: &[u8]) -> Result<()> {
        if !self.ok(ObjectKind::Tree, &id.0, path) {
            return Ok(());
        }
        let tree = Tree::load(self.store, id)?;
        for e in &tree.entries {
            let mut p = path.to_vec();
            if !e.name.is_empty() {
                p.push(b'/');
                p.extend_from_slice(&e.name);
            }
            self.entry(e, &p)?;
        }
        Ok(())
    }

    fn entry(&mut self, e: &Entry, path: &[u8]) -> Result<()> {
        match &e.content {
            Content::None => Ok(()),
            Content::Tree(t) => self.tree(t, path),
            Content::Chunk(c) => {
                self.ok(ObjectKind::Chunk, &c.0, path);
                Ok(())
            }
            Content::File(f) => self.index(&f.0, path, 0),
        }
    }

    fn index(&mut self, id: &Digest, path: &[u8], depth: u32) -> Result<()> {
        if depth > 8 || !self.ok(ObjectKind::FileIndex, id, path) {
            return Ok(());
        }
        let idx = FileIndex::decode(&crate::object::get_required(self.store, ObjectKind::FileIndex, id)?)?;
        for x in idx.extents {
            match x.target {
                crate::tree::file::Target::Chunk(c) => {
                    self.ok(ObjectKind::Chunk, &c.0, path);
                }
                crate::tree::file::Target::Index(f) => self.index(&f.0, path, depth + 1)?,
            }
        }
        Ok(())
    }
}
