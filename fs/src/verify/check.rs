//! The checking engine under verify: the state of each object in each store
//! (read, decoded, hashed once), whether a subtree is sound, and the paths
//! that reference what is not.
//!
//! Stores are numbered; store 0 is the shared repository and a guest's store
//! is read over it (a *view*: the guest's store first, then store 0, as
//! [`crate::object::Layered`] reads). Traversals use explicit stacks: a tree
//! can be as deep as a user makes it. A subtree that lives in store 0 is
//! judged in store 0's view, so the image's subtrees are judged once however
//! many guests use them (a guest copy shadowing a shared object is still
//! checked by the scan of the guest's store, but not named by guest paths).

use std::collections::{BTreeMap, HashMap};

use crate::digest::{Digest, ObjectKind};
pub(crate) use crate::error::chain;
use crate::error::Error;
use crate::object::{IndexEntry, PackStore};
use crate::tree::file::{FileIndex, Target};
use crate::tree::{Content, Tree};

use super::Damage;

#[derive(Clone, Debug)]
pub(crate) struct Bad {
    kind: ObjectKind,
    problem: String,
    location: String,
}

fn bad(kind: ObjectKind, problem: String, location: String) -> State {
    State::Bad(Box::new(Bad { kind, problem, location }))
}

/// What one store holds under an id.
#[derive(Clone, Debug)]
pub(crate) enum State {
    Sound,
    /// Boxed: most objects are sound, and a state is kept for each.
    Bad(Box<Bad>),
    Absent,
}

pub(crate) struct Store<'a> {
    pub name: String,
    pub packs: &'a PackStore,
    states: HashMap<Digest, State>,
}

/// An object a tree or file index references; `name` is the entry name
/// (trees) or `None` (a file index's extents belong to the file's path).
struct Child {
    name: Option<Vec<u8>>,
    kind: ObjectKind,
    id: Digest,
}

pub(crate) struct Verifier<'a> {
    pub stores: Vec<Store<'a>>,
    /// `(view, id)` of a tree or file index: whether all it reaches is sound.
    sound: HashMap<(usize, Digest), bool>,
    /// `(store, id)` of each damaged or missing object.
    pub damage: BTreeMap<(usize, Digest), Damage>,
    /// Judge store 0's objects by their index entry only (presence), for
    /// checks whose cost must stay proportional to a guest's own objects.
    shallow_lower: bool,
}

impl<'a> Verifier<'a> {
    pub fn new(shallow_lower: bool) -> Self {
        Verifier { stores: Vec::new(), sound: HashMap::new(), damage: BTreeMap::new(), shallow_lower }
    }

    pub fn add_store(&mut self, name: String, packs: &'a PackStore) -> usize {
        self.stores.push(Store { name, packs, states: HashMap::new() });
        self.stores.len() - 1
    }

    /// Read, decode and hash one indexed object; remember the outcome.
    pub fn check_entry(&mut self, s: usize, id: &Digest, e: &IndexEntry) -> bool {
        let packs = self.stores[s].packs;
        let problem = match packs.read_entry(id, e) {
            Ok(bytes) if e.kind.hash(&bytes) == *id => None,
            Ok(_) => Some(crate::error::DamageKind::HashMismatch.to_string()),
            Err(Error::Damaged { why, .. }) => Some(why.to_string()),
            Err(other) => Some(chain(&other)),
        };
        let state = match problem {
            None => State::Sound,
            Some(problem) => {
                let location = format!("{} at offset {}", packs.pack_path(e.pack).display(), e.offset);
                tracing::error!(chunk = %id, kind = e.kind.name(), %problem, path = %location, "damaged object");
                bad(e.kind, problem, location)
            }
        };
        let ok = matches!(state, State::Sound);
        self.stores[s].states.insert(*id, state);
        ok
    }

    /// The state of `id` in store `s` (looked up and checked on first use).
    fn state(&mut self, s: usize, kind: ObjectKind, id: &Digest) -> State {
        if let Some(st) = self.stores[s].states.get(id) {
            return st.clone();
        }
        let packs = self.stores[s].packs;
        match packs.entry(id) {
            Ok(None) => State::Absent,
            Ok(Some(_)) if s == 0 && self.shallow_lower => State::Sound,
            Ok(Some(e)) if e.kind != kind => bad(kind, format!("indexed as a {}", e.kind.name()), packs.index_path().display().to_string()),
            Ok(Some(e)) => {
                self.check_entry(s, id, &e);
                self.stores[s].states.get(id).cloned().unwrap_or(State::Absent)
            }
            Err(e) => {
                let st = bad(kind, format!("index lookup failed: {}", chain(&e)), packs.index_path().display().to_string());
                self.stores[s].states.insert(*id, st.clone());
                st
            }
        }
    }

    /// Where `view` reads `id` from and whether it is sound there (`None`:
    /// no store of the view holds it).
    fn resolve(&mut self, view: usize, kind: ObjectKind, id: &Digest) -> (Option<usize>, bool) {
        for s in [view, 0] {
            match self.state(s, kind, id) {
                State::Absent if s != 0 => continue,
                State::Absent => return (None, false),
                State::Sound => return (Some(s), true),
                State::Bad(_) => return (Some(s), false),
            }
        }
        (None, false)
    }

    /// The objects a tree or file index in store `s` references. A tree
    /// that hashes right but does not decode is recorded as damaged.
    fn children(&mut self, s: usize, kind: ObjectKind, id: &Digest) -> Option<Vec<Child>> {
        let packs = self.stores[s].packs;
        let entry = match packs.entry(id) {
            Ok(Some(e)) => e,
            Ok(None) => return None,
            Err(e) => {
                let location = packs.index_path().display().to_string();
                self.stores[s].states.insert(*id, bad(kind, chain(&e), location));
                return None;
            }
        };
        match packs.read_entry(id, &entry).and_then(|bytes| decode_children(kind, &bytes)) {
            Ok(c) => Some(c),
            Err(e) => {
                let location = format!("{} at offset {}", packs.pack_path(entry.pack).display(), entry.offset);
                self.stores[s].states.insert(*id, bad(kind, chain(&e), location));
                None
            }
        }
    }

    /// Enter a node while judging soundness: a known answer, or its children.
    fn enter(&mut self, view: usize, kind: ObjectKind, id: &Digest) -> Result<bool, Vec<Child>> {
        if let Some(&ok) = self.sound.get(&(view, *id)) {
            return Ok(ok);
        }
        let (at, ok) = self.resolve(view, kind, id);
        let Some(at) = at.filter(|_| ok) else {
            self.sound.insert((view, *id), false);
            return Ok(false);
        };
        if kind == ObjectKind::Chunk {
            return Ok(true);
        }
        if at != view {
            return Ok(self.shallow_lower || self.sound(at, kind, id));
        }
        match self.children(at, kind, id) {
            Some(c) => Err(c),
            None => {
                self.sound.insert((view, *id), false);
                Ok(false)
            }
        }
    }

    /// Whether everything `id` reaches in `view` is present and sound.
    pub fn sound(&mut self, view: usize, kind: ObjectKind, id: &Digest) -> bool {
        struct Frame {
            id: Digest,
            children: Vec<Child>,
            next: usize,
            ok: bool,
        }
        let mut stack = match self.enter(view, kind, id) {
            Ok(ok) => return ok,
            Err(children) => vec![Frame { id: *id, children, next: 0, ok: true }],
        };
        while let Some(top) = stack.last_mut() {
            if let Some(c) = top.children.get(top.next) {
                let (kind, cid) = (c.kind, c.id);
                top.next += 1;
                match self.enter(view, kind, &cid) {
                    Ok(true) => {}
                    Ok(false) => top.ok = false,
                    Err(children) => stack.push(Frame { id: cid, children, next: 0, ok: true }),
                }
            } else {
                let (fid, ok) = (top.id, top.ok);
                stack.pop();
                self.sound.insert((view, fid), ok);
                match stack.last_mut() {
                    Some(parent) => parent.ok &= ok,
                    None => return ok,
                }
            }
        }
        false
    }

    /// Name `label:PATH` for every damaged or missing object below root
    /// tree `root` in `view`, descending only into unsound subtrees.
    pub fn name_refs(&mut self, view: usize, root: &Digest, label: &str) {
        struct Frame {
            children: Vec<Child>,
            next: usize,
            path_len: usize,
        }
        let mut path: Vec<u8> = Vec::new();
        let mut stack = Vec::new();
        if let Some(children) = self.name_enter(view, ObjectKind::Tree, root, label, &path) {
            stack.push(Frame { children, next: 0, path_len: 0 });
        }
        while let Some(top) = stack.last_mut() {
            let Some(c) = top.children.get(top.next) else {
                stack.pop();
                continue;
            };
            top.next += 1;
            path.truncate(top.path_len);
            if let Some(name) = c.name.as_ref().filter(|n| !n.is_empty()) {
                path.push(b'/');
                path.extend_from_slice(name);
            }
            let (kind, id) = (c.kind, c.id);
            if let Some(children) = self.name_enter(view, kind, &id, label, &path) {
                stack.push(Frame { children, next: 0, path_len: path.len() });
            }
        }
    }

    fn name_enter(&mut self, view: usize, kind: ObjectKind, id: &Digest, label: &str, path: &[u8]) -> Option<Vec<Child>> {
        let (at, ok) = self.resolve(view, kind, id);
        let Some(at) = at.filter(|_| ok) else {
            self.reference(view, at, kind, id, label, path);
            return None;
        };
        if kind == ObjectKind::Chunk || (at != view && self.shallow_lower) || self.sound.get(&(at, *id)) == Some(&true) {
            return None;
        }
        let children = self.children(at, kind, id);
        if children.is_none() {
            self.reference(view, Some(at), kind, id, label, path);
        }
        children
    }

    /// Record that `label:path` uses damaged (`at` holds it) or missing `id`.
    fn reference(&mut self, view: usize, at: Option<usize>, kind: ObjectKind, id: &Digest, label: &str, path: &[u8]) {
        let shown = format!("{label}:{}", crate::walk::escape_path(if path.is_empty() { b"/" } else { path }));
        let s = at.unwrap_or(view);
        let d = self.damage.entry((s, *id)).or_insert_with(|| Damage::new(*id, kind, &self.stores[s].name));
        if at.is_none() {
            d.problem = "missing".into();
        }
        if d.referenced_by.last() != Some(&shown) {
            d.referenced_by.push(shown);
        }
    }

    /// Add every damaged object found (referenced or not) to `damage`, with
    /// its problem and where it lies.
    pub fn collect(&mut self) {
        for (s, store) in self.stores.iter().enumerate() {
            for (id, st) in &store.states {
                if let State::Bad(b) = st {
                    let d = self.damage.entry((s, *id)).or_insert_with(|| Damage::new(*id, b.kind, &store.name));
                    d.problem.clone_from(&b.problem);
                    d.location = Some(b.location.clone());
                }
            }
        }
    }
}

fn decode_children(kind: ObjectKind, bytes: &[u8]) -> crate::error::Result<Vec<Child>> {
    if kind == ObjectKind::Tree {
        let entries = Tree::decode(bytes)?.entries;
        Ok(entries
            .into_iter()
            .filter_map(|e| {
                let (kind, id) = match e.content {
                    Content::None => return None,
                    Content::Tree(t) => (ObjectKind::Tree, t.0),
                    Content::Chunk(c) => (ObjectKind::Chunk, c.0),
                    Content::File(f) => (ObjectKind::FileIndex, f.0),
                };
                Some(Child { name: Some(e.name), kind, id })
            })
            .collect())
    } else {
        let child = |x: crate::tree::file::Extent| match x.target {
            Target::Chunk(c) => Child { name: None, kind: ObjectKind::Chunk, id: c.0 },
            Target::Index(f) => Child { name: None, kind: ObjectKind::FileIndex, id: f.0 },
        };
        Ok(FileIndex::decode(bytes)?.extents.into_iter().map(child).collect())
    }
}
