//! Guest operations: create, open, checkpoint, rollback, log, prune, diff.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{check_guest_name, find, lock, register, write_atomic, GuestLock, GuestRecord, GuestState};
use crate::diff::{diff_trees, DiffEntry};
use crate::digest::{ImageId, TreeId};
use crate::error::{Error, Result};
use crate::object::{Layered, MemStore, ObjectStore};
use crate::overlay::Overlay;
use crate::repo::{ImageRecord, ImageRef, Repository};

/// A checkpoint as listed by `lvrepo log`.
pub type Checkpoint = ImageRecord;

pub const CHECKPOINT: &str = "checkpoint";

/// An open guest. Writable handles hold the guest's lock.
pub struct GuestHandle {
    pub rec: GuestRecord,
    pub state: GuestState,
    local: Repository,
    _lock: Option<GuestLock>,
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

impl GuestHandle {
    /// Create guest `name` from `image` with its directory at `dir` (absent or
    /// empty). Instant: an empty overlay and a registry entry, no copying.
    pub fn create(repo: &Repository, name: &str, image: &ImageRecord, dir: &Path) -> Result<GuestHandle> {
        Self::create_filled(repo, name, image, dir, |_| Ok(()))
    }

    /// [`Self::create`], with `fill` run on the new guest-local store before
    /// the guest is registered (restore puts its checkpoints there). If it
    /// fails, the directory is left as it was, as for any failed create.
    pub fn create_filled(repo: &Repository, name: &str, image: &ImageRecord, dir: &Path, fill: impl FnOnce(&Repository) -> Result<()>) -> Result<GuestHandle> {
        Self::create_inner(repo, name, image, dir, (Vec::new(), None), fill)
    }

    /// [`Self::create`], recording personalisation values `KEY=VALUE` (a
    /// rebase writes their files again: [`super::personal_files`]).
    pub fn create_personal(repo: &Repository, name: &str, image: &ImageRecord, dir: &Path, personal: Vec<(String, String)>) -> Result<GuestHandle> {
        Self::create_owned(repo, name, image, dir, personal, None)
    }

    /// [`Self::create_personal`], recording the uid of the user the guest
    /// belongs to (in the registry record, with the rest of it).
    pub fn create_owned(repo: &Repository, name: &str, image: &ImageRecord, dir: &Path, personal: Vec<(String, String)>, owner: Option<u32>) -> Result<GuestHandle> {
        Self::create_inner(repo, name, image, dir, (personal, owner), |_| Ok(()))
    }

    fn create_inner(repo: &Repository, name: &str, image: &ImageRecord, dir: &Path, (personal, owner): (Vec<(String, String)>, Option<u32>), fill: impl FnOnce(&Repository) -> Result<()>) -> Result<GuestHandle> {
        check_guest_name(name)?;
        if find(repo.path(), name).is_ok() {
            return Err(Error::GuestExists(name.to_string()));
        }
        if std::fs::read_dir(dir).is_ok_and(|mut rd| rd.next().is_some()) {
            return Err(Error::DestinationNotEmpty(dir.to_path_buf()));
        }
        let existed = dir.exists();
        crate::perms::create_private_dir(dir)?;
        let dir = std::fs::canonicalize(dir).map_err(|e| Error::io("resolving", dir, e))?;
        let guard = lock(&dir, name)?;
        let made = (|| {
            let local = Repository::init(&dir.join("store"))?;
            fill(&local)?;
            let state = GuestState { base: image.root_tree(), generation: 1 };
            let rec = GuestRecord { name: name.to_string(), image: image.label(), dir: dir.clone(), created: now(), volume: image.volume, personal, rebases: Vec::new(), owner };
            let g = GuestHandle { rec, state, local, _lock: Some(guard) };
            // The first generation exists before the STATE that names it, as
            // an unborn directory: its database is made at first use
            // ([`open_generation`]), so create writes no database.
            make_unborn(&g.overlay_dir())?;
            g.write_state()?;
            Ok(g)
        })();
        let g = match made.and_then(|g| register(repo, &g.rec).map(|()| g)) {
            Ok(g) => g,
            Err(e) => {
                // Not registered: leave the directory as it was (absent or
                // empty), so the create can be run again (a full partition).
                let _ = if existed { clear_dir(&dir) } else { std::fs::remove_dir_all(&dir) };
                return Err(e);
            }
        };
        tracing::info!(guest = name, image = %image.label(), "created guest");
        Ok(g)
    }

    /// Open a registered guest; `writable` takes its lock.
    pub fn open(repo: &Path, name: &str, writable: bool) -> Result<GuestHandle> {
        let rec = find(repo, name)?;
        let guard = if writable { Some(lock(&rec.dir, name)?) } else { None };
        // Checked before anything is touched: a STATE that names no sound
        // generation must never let `remove_stale_generations` delete the
        // generations that are there.
        let state = read_state(&rec)?;
        if writable {
            // A full partition must not keep the guest from opening.
            crate::overlay::make_room(&gen_dir(&rec.dir, state.generation));
        }
        let local = Repository::open(&rec.dir.join("store"), writable)?;
        let g = GuestHandle { rec, state, local, _lock: guard };
        if writable {
            // Holding the lock: nobody uses any generation but the current one.
            g.remove_stale_generations();
        }
        Ok(g)
    }

    /// Open a guest whose STATE may be damaged, holding its lock, without
    /// touching anything (for `guest fsck`): the state is `None` if it does
    /// not read or names a generation that is not there.
    pub fn open_for_check(repo: &Path, name: &str) -> Result<(GuestRecord, GuestLock, Result<GuestState>)> {
        let rec = find(repo, name)?;
        let guard = lock(&rec.dir, name)?;
        let state = read_state(&rec);
        Ok((rec, guard, state))
    }

    pub fn dir(&self) -> &Path {
        &self.rec.dir
    }

    pub fn overlay_dir(&self) -> PathBuf {
        self.gen_dir(self.state.generation)
    }

    fn gen_dir(&self, g: u64) -> PathBuf {
        gen_dir(&self.rec.dir, g)
    }

    fn write_state(&self) -> Result<()> {
        let json = serde_json::to_vec_pretty(&self.state).map_err(|_| Error::Decode { what: "guest state", why: "unencodable" })?;
        write_atomic(&self.rec.dir.join("STATE"), &json)
    }

    /// The guest's object store: its own objects over the shared repository's.
    pub fn store(&self, shared: Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> {
        Arc::new(Layered::new(self.local.shared_store(), shared))
    }

    /// The overlay of the current generation.
    pub fn overlay(&self, store: Arc<dyn ObjectStore>) -> Result<Overlay> {
        let d = self.overlay_dir();
        // Making an unborn generation writes it: only under the guest's lock
        // (a handle opened read-only takes it for that; busy is exit 6).
        let _making = if self._lock.is_none() && d.join(UNBORN).exists() { Some(lock(&self.rec.dir, &self.rec.name)?) } else { None };
        let ov = if never_opened(&self.rec.dir, &self.state) { Overlay::open(&d, store, self.state.base)? } else { open_generation(&d, store, self.state.base)? };
        Ok(ov.for_guest(&self.rec.name))
    }

    pub fn checkpoints(&self) -> Result<Vec<Checkpoint>> {
        Ok(self.local.images()?.into_iter().filter(|i| i.name == CHECKPOINT).collect())
    }

    /// A checkpoint by number (`3`) or root id prefix (`b3:1a2b…`).
    pub fn checkpoint(&self, which: &str) -> Result<Checkpoint> {
        let all = self.checkpoints()?;
        let found = match which.parse::<u32>() {
            Ok(n) => all.into_iter().find(|c| c.version == n),
            Err(_) => all.into_iter().find(|c| c.root.0.to_string().starts_with(which)),
        };
        found.ok_or_else(|| Error::CheckpointNotFound { guest: self.rec.name.clone(), checkpoint: which.to_string() })
    }

    /// Record `root` (a fold of the live state) as the next checkpoint.
    pub fn record_checkpoint(&self, root: TreeId, message: &str) -> Result<Checkpoint> {
        self.local.objects().flush()?;
        let prev = self.checkpoints()?.into_iter().max_by_key(|c| c.version);
        let rec = ImageRecord {
            name: CHECKPOINT.into(),
            version: prev.as_ref().map_or(1, |p| p.version + 1),
            root: ImageId(root),
            parent: prev.map(|p| p.label()),
            created: now(),
            message: message.to_string(),
            files: 0,
            logical_bytes: 0,
            volume: self.rec.volume,
        };
        self.local.publish(&rec)?;
        tracing::info!(guest = %self.rec.name, checkpoint = rec.version, root = %root.0, "checkpoint recorded");
        Ok(rec)
    }

    /// Checkpoint a mounted guest: fold its live overlay under the engine's
    /// lock (every filesystem operation waits, so the cut is consistent) and
    /// record it. The overlay is not rebased while mounted; the fold's memo
    /// makes the next checkpoint cost only what changes after this one.
    pub fn checkpoint_live(&self, ov: &Overlay, store: &dyn ObjectStore, message: &str) -> Result<Checkpoint> {
        let mut st = ov.lock();
        let (root, memo) = super::fold::fold(ov, &mut st, store)?;
        let cp = self.record_checkpoint(root, message)?;
        // Its objects are durable now: the next fold may reuse them.
        ov.apply_memo(&mut st, memo)?;
        Ok(cp)
    }

    /// Write files into the guest's overlay (personalisation at creation):
    /// `(path, bytes, mode)`; missing parent directories are created 0755.
    pub fn personalise(&self, shared: Arc<dyn ObjectStore>, files: &[(Vec<u8>, Vec<u8>, u32)]) -> Result<()> {
        use crate::overlay::ns::{NewNode, SetAttr};
        use crate::tree::Kind;
        let ov = self.overlay(self.store(shared))?;
        for (path, bytes, mode) in files {
            let comps: Vec<&[u8]> = path.split(|&b| b == b'/').filter(|c| !c.is_empty()).collect();
            let Some((last, parents)) = comps.split_last() else { continue };
            let mut dir = crate::overlay::ROOT_INO;
            for c in parents {
                dir = match ov.lookup(dir, c) {
                    Ok((ino, _)) => ino,
                    Err(Error::Posix(libc::ENOENT)) => ov.create(dir, c, NewNode { kind: Kind::Dir, mode: 0o755, uid: 0, gid: 0, rdev: 0, target: b"" })?.0,
                    Err(e) => return Err(e),
                };
            }
            let ino = match ov.lookup(dir, last) {
                Ok((ino, _)) => {
                    ov.setattr(ino, SetAttr { size: Some(0), mode: Some(*mode), ..Default::default() })?;
                    ino
                }
                Err(Error::Posix(libc::ENOENT)) => ov.create(dir, last, NewNode { kind: Kind::File, mode: *mode, uid: 0, gid: 0, rdev: 0, target: b"" })?.0,
                Err(e) => return Err(e),
            };
            ov.write(ino, 0, bytes)?;
        }
        ov.sync_all()
    }

    /// Delete the guest: its registry entry, then its directory.
    pub fn remove(self, repo: &Path) -> Result<()> {
        super::unregister(repo, &self.rec.name)?;
        let dir = self.rec.dir.clone();
        drop(self);
        std::fs::remove_dir_all(&dir).map_err(|e| Error::io("removing", &dir, e))
    }

    /// Delete guest `name` whatever state its own files are in (a damaged
    /// `STATE` included): under its lock, the registry entry, then its
    /// directory.
    pub fn remove_named(repo: &Path, name: &str) -> Result<()> {
        let rec = find(repo, name)?;
        let guard = lock(&rec.dir, name)?;
        super::unregister(repo, name)?;
        drop(guard);
        std::fs::remove_dir_all(&rec.dir).map_err(|e| Error::io("removing", &rec.dir, e))
    }

    /// Checkpoint an unmounted guest, then rebase it on the checkpoint (a new,
    /// empty overlay generation), so the next checkpoint costs only what
    /// changes after this one.
    pub fn checkpoint_offline(&mut self, shared: Arc<dyn ObjectStore>, message: &str) -> Result<Checkpoint> {
        let store = self.store(shared);
        let root = {
            let ov = self.overlay(store.clone())?;
            let mut st = ov.lock();
            super::fold::fold(&ov, &mut st, &*store)?.0
        };
        let cp = self.record_checkpoint(root, message)?;
        crate::gc::failpoint("checkpoint-before-rebase");
        match self.switch_base(root, store) {
            Ok(()) => {}
            // The checkpoint is taken; the rebase only saves the next one
            // work. The guest stays on its current generation (STATE was not
            // replaced) and the half-made one goes.
            Err(e) if e.is_no_space() => {
                tracing::warn!(guest = %self.rec.name, checkpoint = cp.version, error = %crate::overlay::error_chain(&e), "checkpoint taken, but no room to rebase the guest on it");
                self.remove_stale_generations();
            }
            Err(e) => return Err(e),
        }
        Ok(cp)
    }

    /// Make `root` the guest's state: a fresh overlay generation over it.
    /// The STATE rename is the commit point.
    pub fn switch_base(&mut self, root: TreeId, store: Arc<dyn ObjectStore>) -> Result<()> {
        drop(self.prepare_generation(root, store)?);
        self.commit_generation(root)?;
        self.remove_stale_generations();
        Ok(())
    }

    /// [`Self::switch_base`] leaving the new generation unborn (its overlay
    /// made at first use, as a new guest's, [`open_generation`]): a rebase or
    /// propagate over many guests then makes no overlay database.
    pub(crate) fn switch_base_unborn(&mut self, root: TreeId) -> Result<()> {
        let nd = self.gen_dir(self.state.generation + 1);
        if nd.exists() {
            // Left by a crash before the commit point: never visible, discard.
            std::fs::remove_dir_all(&nd).map_err(|e| Error::io("removing", &nd, e))?;
        }
        make_unborn(&nd)?;
        self.commit_generation(root)?;
        self.remove_stale_generations();
        Ok(())
    }

    /// Create the next overlay generation, over `root`, not yet committed.
    fn prepare_generation(&self, root: TreeId, store: Arc<dyn ObjectStore>) -> Result<Overlay> {
        let nd = self.gen_dir(self.state.generation + 1);
        if nd.exists() {
            // Left by a crash before the commit point: never visible, discard.
            std::fs::remove_dir_all(&nd).map_err(|e| Error::io("removing", &nd, e))?;
        }
        Ok(Overlay::open(&nd, store, root)?.for_guest(&self.rec.name))
    }

    /// Commit the generation [`Self::prepare_generation`] made: the STATE rename.
    fn commit_generation(&mut self, root: TreeId) -> Result<()> {
        let prev = self.state.clone();
        self.state = GuestState { base: root, generation: prev.generation + 1 };
        if let Err(e) = self.write_state() {
            self.state = prev;
            return Err(e);
        }
        crate::gc::failpoint("switch-after-commit");
        Ok(())
    }

    /// Roll a mounted guest back to checkpoint `cp`: requests pause while the
    /// new generation is made, takes over the kernel's references and is
    /// committed; then the kernel's caches are invalidated (see
    /// [`crate::overlay::Adopted`] for what open handles see).
    pub fn rollback_live(&mut self, live: &crate::fuse::Live, shared: Arc<dyn ObjectStore>, cp: &Checkpoint) -> Result<()> {
        let store = self.store(shared);
        {
            let mut sw = live.begin();
            let old = sw.old();
            let ov = self.prepare_generation(cp.root_tree(), store)?;
            let adopted = ov.adopt(&old)?;
            self.commit_generation(cp.root_tree())?;
            sw.install(Arc::new(ov), adopted);
        }
        // The old generation's overlay is closed once the last request using
        // it has finished (none: the switch waited for them).
        self.remove_stale_generations();
        tracing::info!(guest = %self.rec.name, checkpoint = cp.version, "rolled back while mounted");
        Ok(())
    }

    /// Roll a guest served by another front (a volume over NBD, no client
    /// connected) back to `cp`: the new generation is made and committed,
    /// then handed to `install`, which makes it the one served. `store` is
    /// what the new overlay reads through: [`Self::store`], or a cache over it.
    pub fn rollback_served(&mut self, store: Arc<dyn ObjectStore>, cp: &Checkpoint, install: impl FnOnce(Arc<Overlay>) -> Result<()>) -> Result<()> {
        let ov = Arc::new(self.prepare_generation(cp.root_tree(), store)?);
        self.commit_generation(cp.root_tree())?;
        install(ov)?;
        self.remove_stale_generations();
        tracing::info!(guest = %self.rec.name, checkpoint = cp.version, "rolled back while served");
        Ok(())
    }

    /// Remove every overlay generation but the current one: old ones after a
    /// switch, and any a crash left behind (before or after a commit point).
    fn remove_stale_generations(&self) {
        let Ok(rd) = std::fs::read_dir(&self.rec.dir) else { return };
        let current = format!("gen-{:08}", self.state.generation);
        for ent in rd.flatten() {
            let name = ent.file_name();
            let name = name.to_string_lossy();
            if name.starts_with("gen-") && name != current {
                if let Err(e) = std::fs::remove_dir_all(ent.path()) {
                    tracing::warn!(guest = %self.rec.name, error = %e, dir = %name, "could not remove stale overlay generation");
                }
            }
        }
    }

    /// Roll an unmounted guest back to checkpoint `cp`.
    pub fn rollback_offline(&mut self, shared: Arc<dyn ObjectStore>, cp: &Checkpoint) -> Result<()> {
        let store = self.store(shared);
        self.switch_base(cp.root_tree(), store)?;
        tracing::info!(guest = %self.rec.name, checkpoint = cp.version, "rolled back");
        Ok(())
    }

    /// What the live state changed against root tree `against`. Nothing is
    /// stored: new chunks go to a scratch store in memory.
    pub fn diff_live(&self, shared: Arc<dyn ObjectStore>, ov: Option<&Overlay>, against: TreeId) -> Result<Vec<DiffEntry>> {
        let store = self.store(shared);
        let scratch = Layered::new(MemStore::new(), store.clone());
        let root = match ov {
            Some(ov) => {
                let mut st = ov.lock();
                super::fold::fold(ov, &mut st, &scratch)?.0
            }
            None => {
                let ov = self.overlay(store.clone())?;
                let mut st = ov.lock();
                super::fold::fold(&ov, &mut st, &scratch)?.0
            }
        };
        diff_trees(&scratch, &against, &root)
    }

    /// Keep the newest `keep` checkpoints; drop the others' refs and collect
    /// the guest-local objects only they used.
    pub fn prune(&mut self, shared: Arc<dyn ObjectStore>, keep: usize) -> Result<Vec<Checkpoint>> {
        let mut all = self.checkpoints()?;
        all.sort_by_key(|c| std::cmp::Reverse(c.version));
        let dropped: Vec<Checkpoint> = all.split_off(keep.min(all.len()));
        for c in &dropped {
            self.local.delete_image(&ImageRef { name: c.name.clone(), version: Some(c.version) })?;
        }
        let store = self.store(shared);
        if all.is_empty() && !dropped.is_empty() {
            // The fold memo's objects are reachable only from the newest
            // checkpoint, which goes: forget the memo first.
            self.overlay(store.clone())?.forget_memo()?;
        }
        let mut roots = vec![self.state.base];
        roots.extend(all.iter().map(|c| c.root_tree()));
        crate::gc::gc_marking(&self.local, &*store, &roots, &crate::import::NoProgress)?;
        Ok(dropped)
    }

    /// Every root this guest needs kept (its base and its checkpoints), for the
    /// shared repository's gc.
    pub fn roots(&self) -> Result<Vec<TreeId>> {
        let mut r = vec![self.state.base];
        r.extend(self.checkpoints()?.iter().map(|c| c.root_tree()));
        Ok(r)
    }

    pub fn local(&self) -> &Repository {
        &self.local
    }
}

/// The guest's STATE, checked: it decodes, and the generation it names is
/// there. Anything else is damage, reported
/// with what is there instead.
pub(crate) fn read_state(rec: &GuestRecord) -> Result<GuestState> {
    let sp = rec.dir.join("STATE");
    let damaged = |why: String| {
        tracing::error!(guest = %rec.name, path = %sp.display(), "guest STATE is damaged: {why}");
        Error::OverlayDamaged { path: sp.clone(), why: format!("{why}; nothing was changed (`lvrepo guest fsck {} --repair` repoints it at the newest sound generation)", rec.name) }
    };
    let text = match std::fs::read(&sp) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(damaged("missing".into())),
        Err(e) => return Err(Error::io("reading", &sp, e)),
    };
    let state: GuestState = serde_json::from_slice(&text).map_err(|e| damaged(format!("does not decode ({e})")))?;
    let gd = rec.dir.join(format!("gen-{:08}", state.generation));
    // (What the directory holds is the overlay's to check when opened.)
    if !gd.is_dir() && !never_opened(&rec.dir, &state) {
        let there: Vec<String> = generations(&rec.dir).iter().map(|g| format!("gen-{g:08}")).collect();
        return Err(damaged(format!("names generation {}, whose directory does not exist (generations there: {})", state.generation, if there.is_empty() { "none".into() } else { there.join(", ") })));
    }
    Ok(state)
}

/// A guest made by an lvrepo that created its first generation on first
/// use, never opened since: generation 1 and no generation directory at all.
fn never_opened(dir: &Path, state: &GuestState) -> bool {
    state.generation == 1 && generations(dir).is_empty()
}

/// Marker of a generation directory whose overlay was never made (a new
/// guest's generation 1). Present only while no write can have landed: it
/// is removed, durably, before the made overlay serves anything.
const UNBORN: &str = "UNBORN";

/// Make `gd` an unborn generation: the directory and its marker, durable.
fn make_unborn(gd: &Path) -> Result<()> {
    std::fs::create_dir(gd).map_err(|e| Error::io("creating", gd, e))?;
    write_atomic(&gd.join(UNBORN), b"")
}

/// Open a committed generation's overlay. An unborn one is made now: what
/// an interrupted making left is cleared first (it held no writes), and the
/// marker goes only once `FORMAT` is durable, so a lost `FORMAT` later is
/// still damage, never a new overlay.
pub(crate) fn open_generation(gd: &Path, store: Arc<dyn ObjectStore>, base: TreeId) -> Result<Overlay> {
    let marker = gd.join(UNBORN);
    if !marker.exists() {
        return Overlay::open_existing(gd, store, base);
    }
    let fmt = gd.join("FORMAT");
    let ov = if fmt.exists() {
        Overlay::open_existing(gd, store, base)?
    } else {
        for ent in std::fs::read_dir(gd).map_err(|e| Error::io("reading", gd, e))?.flatten() {
            if ent.file_name() != UNBORN {
                let p = ent.path();
                let r = if ent.file_type().is_ok_and(|t| t.is_dir()) { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
                r.map_err(|e| Error::io("removing", &p, e))?;
            }
        }
        Overlay::open(gd, store, base)?
    };
    (|| -> std::io::Result<()> {
        std::fs::File::open(&fmt)?.sync_all()?;
        std::fs::remove_file(&marker)?;
        std::fs::File::open(gd)?.sync_all()
    })()
    .map_err(|e| Error::io("committing", gd, e))?;
    Ok(ov)
}

/// The overlay generations present in guest directory `dir`, ascending.
pub(crate) fn generations(dir: &Path) -> Vec<u64> {
    let mut out: Vec<u64> = std::fs::read_dir(dir)
        .map(|rd| rd.flatten().filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_prefix("gen-")).and_then(|n| n.parse().ok())).collect())
        .unwrap_or_default();
    out.sort_unstable();
    out
}

/// The overlay directory of generation `g` of the guest in `dir`.
fn gen_dir(dir: &Path, g: u64) -> PathBuf {
    dir.join(format!("gen-{g:08}"))
}

/// Remove everything inside `dir`, keeping `dir`.
fn clear_dir(dir: &Path) -> std::io::Result<()> {
    for ent in std::fs::read_dir(dir)? {
        let p = ent?.path();
        if p.is_dir() && !p.is_symlink() {
            std::fs::remove_dir_all(&p)?;
        } else {
            std::fs::remove_file(&p)?;
        }
    }
    Ok(())
}
