//! Guests: a name, a base tree, an overlay and a chain of checkpoints.
//!
//! Layout. The registry entry `REPO/guests/NAME.json` ([`GuestRecord`]) names
//! the guest's directory on its own partition, which holds:
//! - `STATE` ([`GuestState`]): the current base root and overlay generation;
//!   replaced atomically (write + fsync + rename): the commit point of
//!   checkpoint rebase and rollback, so a crash leaves the old state or the new;
//! - `gen-NNNNNNNN/`: the overlay of that generation (see [`crate::overlay`]);
//! - `store/`: a guest-local repository holding the chunks and trees only
//!   this guest has, and its checkpoints as refs `checkpoint:N`;
//! - `lock`: taken by whoever changes the guest (the mount daemon, or the
//!   command working on an unmounted guest).

pub mod fold;
pub mod fsck;
mod manage;
mod group;
mod harvest;
mod ops;
mod paths;
mod propagate;
mod rebase;
mod view;
mod volume;

pub use ops::{Checkpoint, GuestHandle, CHECKPOINT as CHECKPOINT_REF};
pub use manage::{clone_checkpoint, fold_pair, rename};
pub use group::{add_members, create_group, find_group, groups, remove_members, Group};
pub use harvest::{harvest, Harvested};
pub use propagate::{changes as propagate_changes, Change, PropagateReport};
pub use rebase::{image_at, personal_files, record_rollback, RebaseReport};
pub use view::CheckpointView;
pub use volume::{changed_ranges, Range};

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::digest::TreeId;
use crate::error::{Error, Result};
use crate::repo::Repository;

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GuestRecord {
    pub name: String,
    /// The image it was created from, `NAME:VERSION`.
    pub image: String,
    /// The guest's directory (overlay generations, guest-local store).
    pub dir: PathBuf,
    pub created: i64,
    /// A volume guest (its image is a block volume; served over NBD).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub volume: bool,
    /// Personalisation values given at creation (`--set KEY=VALUE`), in
    /// order; a rebase writes their files again ([`personal_files`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub personal: Vec<(String, String)>,
    /// Rebases, oldest first: a rollback sets `image` to the one the
    /// checkpoint it goes to stood on ([`rebase::image_at`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rebases: Vec<Rebased>,
    /// The uid of the user it belongs to (`guest create --owner`, or the
    /// caller of a create through the service): that user may act on it in
    /// the `user` role. None: root's and the managers' only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<u32>,
}

/// One rebase of a guest: checkpoint `checkpoint` (taken by the rebase)
/// and those before it stand on `from`, those after it on `to`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rebased {
    pub checkpoint: u32,
    pub from: String,
    pub to: String,
    pub time: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GuestState {
    /// Root tree the current overlay generation sits on: the image's root, or
    /// the checkpoint last taken or rolled back to.
    pub base: TreeId,
    pub generation: u64,
}

/// Guest names: 1-128 letters, digits, `.`, `_` and `-`, starting with a
/// letter or digit (a name is a file name in the registry, and must not read
/// as an option or a hidden file).
pub fn valid_guest_name(n: &str) -> bool {
    check_guest_name(n).is_ok()
}

/// [`valid_guest_name`], saying what is wrong.
pub fn check_guest_name(n: &str) -> Result<()> {
    let why = if n.is_empty() {
        "empty"
    } else if n.len() > 128 {
        "longer than 128 characters"
    } else if n.contains('/') {
        "contains '/'"
    } else if n.starts_with('-') {
        "starts with '-'"
    } else if n.starts_with('.') {
        "starts with '.'"
    } else if !n.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
        "contains a character other than letters, digits, '.', '_' and '-'"
    } else {
        return Ok(());
    };
    Err(Error::BadGuestName { name: n.to_string(), why })
}

fn registry_dir(repo: &Path) -> PathBuf {
    repo.join("guests")
}

fn record_path(repo: &Path, name: &str) -> PathBuf {
    registry_dir(repo).join(format!("{name}.json"))
}

/// Every registered guest, sorted by name.
pub fn list(repo: &Path) -> Result<Vec<GuestRecord>> {
    let dir = registry_dir(repo);
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(Error::io("listing", dir, e)),
    };
    for ent in rd.flatten() {
        let p = ent.path();
        if p.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read(&p).map_err(|e| Error::io("reading", &p, e))?;
            let mut rec: GuestRecord = serde_json::from_slice(&text).map_err(|_| Error::BadFile { what: "guest record", path: p.clone() })?;
            if let Some(stem) = p.file_stem().and_then(|s| s.to_str()) {
                rec.name = stem.to_string();
            }
            out.push(rec);
        }
    }
    out.sort_by(|a: &GuestRecord, b| a.name.cmp(&b.name));
    Ok(out)
}

pub fn find(repo: &Path, name: &str) -> Result<GuestRecord> {
    if !valid_guest_name(name) {
        // Never a path outside the registry (`a/../../x`).
        return Err(Error::GuestNotFound(name.to_string()));
    }
    let p = record_path(repo, name);
    match std::fs::read(&p) {
        // The file's name is the guest's (a rename renames the file first).
        Ok(t) => serde_json::from_slice(&t).map(|r: GuestRecord| GuestRecord { name: name.to_string(), ..r }).map_err(|_| Error::BadFile { what: "guest record", path: p.clone() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::GuestNotFound(name.to_string())),
        Err(e) => Err(Error::io("reading", p, e)),
    }
}

/// Write `bytes` to `path` atomically and durably (temp file, fsync, rename,
/// fsync of the directory).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let dir = path.parent().unwrap_or(Path::new("."));
    (|| -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })()
    .map_err(|e| Error::io("writing", path, e))
}

pub(crate) fn register(repo: &Repository, rec: &GuestRecord) -> Result<()> {
    write_record(repo, rec)?;
    // On a remote repository the bucket learns what this guest stands on.
    if let Some(r) = repo.remote() {
        crate::remote::lease::refresh(repo, r);
    }
    Ok(())
}

fn write_record(repo: &Repository, rec: &GuestRecord) -> Result<()> {
    let dir = registry_dir(repo.path());
    std::fs::create_dir_all(&dir).map_err(|e| Error::io("creating", &dir, e))?;
    let p = record_path(repo.path(), &rec.name);
    let json = serde_json::to_vec_pretty(rec).map_err(|_| Error::Decode { what: "guest record", why: "unencodable" })?;
    // create_new: two creators of one name cannot both win.
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).open(&p).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            Error::GuestExists(rec.name.clone())
        } else {
            Error::io("creating", &p, e)
        }
    })?;
    f.write_all(&json).and_then(|_| f.sync_all()).map_err(|e| Error::io("writing", &p, e))?;
    File::open(&dir).and_then(|d| d.sync_all()).map_err(|e| Error::io("syncing", &dir, e))
}

/// Replace a registered guest's record (atomically: a crash leaves the old
/// record or the new one).
pub(crate) fn rewrite_record(repo: &Path, rec: &GuestRecord) -> Result<()> {
    let json = serde_json::to_vec_pretty(rec).map_err(|_| Error::Decode { what: "guest record", why: "unencodable" })?;
    write_atomic(&record_path(repo, &rec.name), &json)
}

pub(crate) fn unregister(repo: &Path, name: &str) -> Result<()> {
    let p = record_path(repo, name);
    std::fs::remove_file(&p).map_err(|e| Error::io("removing", &p, e))
}

/// An exclusive lock on a guest directory; `Err(GuestBusy)` if held (the
/// guest is mounted, or another command works on it).
pub struct GuestLock(#[allow(dead_code)] File);

pub fn lock(dir: &Path, name: &str) -> Result<GuestLock> {
    let p = dir.join("lock");
    let f = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&p).map_err(|e| Error::io("opening", &p, e))?;
    // SAFETY: flock on a descriptor we own; no memory is passed.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(Error::GuestBusy(name.to_string()));
    }
    Ok(GuestLock(f))
}

#[cfg(test)]
mod tests;
