//! The error type of lvrepo-fs: one enum, typed causes, and a coarse class that
//! binaries map to exit codes and the FUSE layer maps to errno.

use std::io;
use std::path::{Path, PathBuf};

use crate::digest::{Digest, ObjectKind};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("index database")]
    Db(#[from] rocksdb::Error),
    /// The RocksDB index at `path` is damaged (a checksum, a missing or cut
    /// file: SST, MANIFEST, CURRENT or log). Raised at open and on reads.
    #[error("index {path} is damaged")]
    IndexDamaged {
        path: PathBuf,
        #[source]
        source: rocksdb::Error,
    },
    /// A complete index table its MANIFEST does not list (the MANIFEST was
    /// cut or damaged); a writer would delete it, so none may open.
    #[error("index table {0} is not listed by the index's MANIFEST (the MANIFEST is damaged or cut); refusing to write")]
    IndexUnlisted(PathBuf),
    /// A file the index needs (`CURRENT`, naming the MANIFEST) is gone.
    #[error("index {0} is damaged: its CURRENT file is missing")]
    IndexIncomplete(PathBuf),
    /// A write found its partition full (ENOSPC) or over quota (EDQUOT);
    /// [`Error::io`] makes every such I/O error this one.
    #[error("no space left on the partition mounted at {partition} ({op} {path})")]
    NoSpace {
        partition: PathBuf,
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{kind} {id} is missing from the repository")]
    Missing { kind: ObjectKind, id: Digest },
    #[error("{kind} {id} is damaged: {why}")]
    Damaged {
        kind: ObjectKind,
        id: Digest,
        why: DamageKind,
    },
    #[error("malformed {what}: {why}")]
    Decode { what: &'static str, why: &'static str },
    /// A small JSON file (guest record, guest state) that does not parse.
    #[error("{path} is damaged: not a valid {what}")]
    BadFile { what: &'static str, path: PathBuf },
    #[error("not an lvrepo repository: {0}")]
    NotARepository(PathBuf),
    #[error("repository {path} has format {found}; this lvrepo reads format {supported}{hint}")]
    Format {
        path: PathBuf,
        found: u32,
        supported: u32,
        hint: &'static str,
    },
    #[error("repository is opened read-only")]
    ReadOnly,
    #[error("repository is busy: another writer holds {0}")]
    Locked(PathBuf),
    /// A request to a remote repository's object store failed (after its
    /// retries): unreachable, refused, or an object gone.
    #[error("remote repository: {op} {object}")]
    Remote {
        op: &'static str,
        object: String,
        #[source]
        source: Box<object_store::Error>,
    },
    /// A conditional write kept losing to other hosts' writes.
    #[error("{0} keeps changing under concurrent writers; try again")]
    RemoteRace(String),
    #[error("invalid remote repository {url:?}: {why}")]
    BadRemoteUrl { url: String, why: &'static str },
    /// A cache directory given for one repository already serves another.
    #[error("cache directory {cache} belongs to {url}; give another --cache")]
    CacheOfOther { cache: PathBuf, url: String },
    #[error("image {0} not found")]
    ImageNotFound(String),
    #[error("image {0} already exists (published images are immutable)")]
    ImageExists(String),
    #[error("invalid image name {0:?}: use letters, digits, '.', '_', '-' and an optional :VERSION")]
    BadImageName(String),
    #[error("no such path {path} in {image}")]
    PathNotFound { image: String, path: String },
    #[error("{path}: {why}")]
    NotSupported { path: String, why: &'static str },
    #[error("archive entry {path}: {why}")]
    UnsafeEntry { path: String, why: &'static str },
    #[error("reading archive")]
    Archive(#[source] io::Error),
    #[error("not a tar archive: {0}")]
    NotTar(&'static str),
    #[error("destination {0} exists and is not empty")]
    DestinationNotEmpty(PathBuf),
    #[error("guest {0} not found")]
    GuestNotFound(String),
    /// A guest name that cannot be used (see [`crate::guest::check_guest_name`]).
    #[error("invalid guest name {name:?}: {why} (a guest name is 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit)")]
    BadGuestName { name: String, why: &'static str },
    /// An `--exclude` pattern that does not parse.
    #[error("invalid exclude pattern {pattern:?}: {why}")]
    BadPattern { pattern: String, why: &'static str },
    /// A checkpoint that cannot be deleted, and why.
    #[error("checkpoint {checkpoint} of guest {guest} cannot be deleted: {why}")]
    CheckpointInUse { guest: String, checkpoint: u32, why: &'static str },
    #[error("guest {0} already exists")]
    GuestExists(String),
    #[error("guest {0} is busy (mounted, or another command works on it)")]
    GuestBusy(String),
    #[error("guest {guest} has no checkpoint {checkpoint}")]
    CheckpointNotFound { guest: String, checkpoint: String },
    /// A guest operation refused before changing anything: what it would
    /// use from the guest's store is damaged or missing.
    #[error("{what} uses {count} damaged or missing objects, first {first}; {op} refused, nothing was changed (lvrepo verify names them all)")]
    Unsound { what: String, op: &'static str, count: usize, first: String },
    /// A POSIX-level refusal of a filesystem operation (ENOENT, EEXIST, ...).
    #[error("{}", std::io::Error::from_raw_os_error(*.0))]
    Posix(i32),
    #[error("overlay {path}: {why}")]
    Overlay { path: PathBuf, why: String },
    /// A guest's directory is not on this host (its partition not attached):
    /// gc cannot see what its checkpoints use.
    #[error("guest {guest}: its directory {dir} is not present (attach its partition); gc needs every guest's checkpoints")]
    GuestAbsent { guest: String, dir: PathBuf },
    /// The caller may not read or change this (lvrepo's files are root-only).
    #[error("{0}: permission denied (lvrepo's repositories and overlays are readable by root only; run as root or through the lvrepo service)")]
    NotPermitted(PathBuf),
    #[error("image {image} is in use by {users}; pass --force to delete it anyway (gc keeps what they use)")]
    ImageInUse { image: String, users: String },
    /// Damage in a guest's or an overlay's own files (data file, database,
    /// FORMAT, STATE): `path` names the file or directory, `why` what is
    /// wrong (and where, for data: the byte range).
    #[error("{path} is damaged: {why}")]
    OverlayDamaged { path: PathBuf, why: String },
    #[error("backup of guest {guest}: {why}")]
    BackupConflict { guest: String, why: String },
    /// A stream (`lvrepo receive`) that is damaged, truncated or not ours.
    #[error("bad stream: {0}")]
    BadStream(String),
    /// An incremental stream whose base the receiver does not hold.
    #[error("the stream is incremental on {base}, which this repository does not hold: send a full stream or one based on something it holds")]
    StreamBaseMissing { base: crate::digest::Digest },
    #[error("the stream was already received: this repository holds every ref it carries")]
    AlreadyReceived,
    /// A rebase both of whose sides (the guest, the new image) changed the
    /// same paths differently; refused, nothing changed.
    #[error("rebase of guest {guest} onto {image}: {} paths were changed both by the guest and by the image, first {}; nothing was changed (pass --prefer guest or --prefer image to choose)", .paths.len(), first_path(.paths))]
    RebaseConflict { guest: String, image: String, paths: Vec<Vec<u8>> },
    /// A propagation to a guest whose own version of chosen paths differs
    /// from both the source's before and after; refused, nothing changed.
    #[error("propagate from {source_label} to guest {guest}: {} paths differ in the guest from both the source's image and the source's state, first {}; nothing was changed (pass --prefer guest or --prefer source to choose)", .paths.len(), first_path(.paths))]
    PropagateConflict { guest: String, source_label: String, paths: Vec<Vec<u8>> },
    /// A path argument that names no path below the root.
    #[error("invalid path {path:?}: {why}")]
    BadPath { path: String, why: &'static str },
    /// The audit log's chain is broken at `line` (1-based; 0: its head file).
    #[error("audit log {path} line {line}: {why}")]
    AuditDamaged { path: PathBuf, line: usize, why: String },
    #[error("group {0} not found")]
    GroupNotFound(String),
    #[error("group {0} already exists")]
    GroupExists(String),
    /// The signing policy requires a signature no required key made.
    #[error("image {0} is not signed by a key the repository's policy requires; refused (lvrepo sign {0} --key FILE)")]
    Unsigned(String),
    /// A required key's signature of the image does not verify: the image
    /// is not the one that was signed.
    #[error("image {0}: its signature does not match the image (tampered: not the image that was signed); refused")]
    BadSignature(String),
    /// The repository is append-only: deletes and overwrites are refused.
    #[error("{0} is append-only: it refuses deletes and overwrites")]
    AppendOnly(PathBuf),
}

/// How a stored object failed its check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DamageKind {
    #[error("content does not match its id")]
    HashMismatch,
    #[error("compressed payload does not decode")]
    Undecodable,
    #[error("record header in the pack is wrong")]
    BadHeader,
    #[error("pack file is shorter than the index says")]
    Truncated,
    #[error("the pack file holding it is missing")]
    PackMissing,
}

/// Coarse classes, stable for exit codes (see docs/operations.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    Other,
    NotFound,
    Damaged,
    Exists,
    Busy,
    Usage,
    /// Refused for lack of permission (exit 77).
    NotPermitted,
    /// Two changes that cannot both be kept (exit 7).
    Conflict,
}

fn first_path(p: &[Vec<u8>]) -> String {
    p.first().map_or_else(String::new, |p| crate::walk::escape_path(p))
}

impl Error {
    /// An I/O error of `op` on `path`; a full partition becomes
    /// [`Error::NoSpace`], naming the partition.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        let path = path.into();
        match source.raw_os_error() {
            Some(libc::ENOSPC | libc::EDQUOT) => Error::NoSpace { partition: mount_point(&path), op, path, source },
            _ => Error::Io { op, path, source },
        }
    }

    /// [`Error::NoSpace`] for a database in `dir` whose write failed for want
    /// of space (RocksDB says so only in its message), else `Error::Db`.
    pub fn db(op: &'static str, dir: &Path, e: rocksdb::Error) -> Self {
        match db_errno(&e) {
            Some(errno) => Error::NoSpace { partition: mount_point(dir), op, path: dir.to_path_buf(), source: io::Error::from_raw_os_error(errno) },
            None => Error::Db(e),
        }
    }

    /// Whether this is a full partition (or an exceeded quota).
    pub fn is_no_space(&self) -> bool {
        matches!(self.errno(), libc::ENOSPC | libc::EDQUOT)
    }

    pub fn class(&self) -> ErrorClass {
        match self {
            Error::ImageNotFound(_) | Error::PathNotFound { .. } | Error::GuestNotFound(_) | Error::GroupNotFound(_) | Error::CheckpointNotFound { .. } | Error::StreamBaseMissing { .. } => ErrorClass::NotFound,
            Error::Missing { .. } | Error::Damaged { .. } | Error::Decode { .. } | Error::IndexDamaged { .. } | Error::IndexIncomplete(_) | Error::IndexUnlisted(_) | Error::Unsound { .. } | Error::BadFile { .. } | Error::OverlayDamaged { .. } | Error::BadStream(_) | Error::AuditDamaged { .. } | Error::BadSignature(_) => {
                ErrorClass::Damaged
            }
            Error::Db(e) if db_damage(e) => ErrorClass::Damaged,
            // The overlay keeps its database's error as text (RocksDB's
            // messages name their kind first, as `db_damage` reads them).
            Error::Overlay { why, .. } if why.contains("Corruption: ") => ErrorClass::Damaged,
            Error::ImageExists(_) | Error::DestinationNotEmpty(_) | Error::GuestExists(_) | Error::GroupExists(_) | Error::BackupConflict { .. } | Error::AlreadyReceived => ErrorClass::Exists,
            Error::GuestBusy(_) | Error::ImageInUse { .. } | Error::CheckpointInUse { .. } => ErrorClass::Busy,
            Error::NotPermitted(_) | Error::AppendOnly(_) | Error::Unsigned(_) => ErrorClass::NotPermitted,
            Error::BadImageName(_) | Error::BadGuestName { .. } | Error::BadPattern { .. } | Error::BadPath { .. } | Error::BadRemoteUrl { .. } | Error::CacheOfOther { .. } => ErrorClass::Usage,
            Error::RebaseConflict { .. } | Error::PropagateConflict { .. } | Error::RemoteRace(_) => ErrorClass::Conflict,
            Error::Locked(_) => ErrorClass::Busy,
            _ => ErrorClass::Other,
        }
    }

    /// An error from opening or reading the RocksDB index at `path`, named
    /// as damage when RocksDB says so (see [`db_damage`]).
    pub fn from_index(path: &std::path::Path, e: Error) -> Error {
        match e {
            Error::Db(source) if db_damage(&source) => Error::IndexDamaged { path: path.to_path_buf(), source },
            other => other,
        }
    }

    /// The errno a filesystem front reports for this error. The one place this
    /// mapping lives.
    pub fn errno(&self) -> i32 {
        match self {
            Error::Io { source, .. } | Error::Archive(source) | Error::NoSpace { source, .. } => {
                source.raw_os_error().unwrap_or(libc::EIO)
            }
            Error::Db(e) => db_errno(e).unwrap_or(libc::EIO),
            Error::Posix(e) => *e,
            Error::PathNotFound { .. } | Error::ImageNotFound(_) => libc::ENOENT,
            Error::ReadOnly => libc::EROFS,
            Error::NotPermitted(_) => libc::EACCES,
            Error::NotSupported { .. } => libc::EOPNOTSUPP,
            Error::ImageExists(_) | Error::DestinationNotEmpty(_) => libc::EEXIST,
            _ => libc::EIO,
        }
    }
}

/// Whether a RocksDB error means its files are damaged: a checksum or format
/// error (`Corruption`), or a file its MANIFEST or CURRENT names being gone
/// (RocksDB reports those as I/O errors "No such file or directory").
/// Permission, space and lock errors are not damage.
pub fn db_damage(e: &rocksdb::Error) -> bool {
    use rocksdb::ErrorKind;
    match e.kind() {
        ErrorKind::Corruption => true,
        ErrorKind::IOError | ErrorKind::InvalidArgument => {
            let m = e.to_string();
            m.contains("No such file or directory") || m.contains("does not exist")
        }
        _ => false,
    }
}

/// An error and its causes, `a: b: c` (RocksDB's own message is the cause).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// ENOSPC or EDQUOT when a RocksDB error is a failed write for want of space:
/// its status carries the OS's message ("IO error: No space left on device:
/// While appending to file: …"), not the errno.
fn db_errno(e: &rocksdb::Error) -> Option<i32> {
    let m = e.as_ref();
    if m.contains("No space left on device") {
        Some(libc::ENOSPC)
    } else if m.contains("Disk quota exceeded") {
        Some(libc::EDQUOT)
    } else {
        None
    }
}

/// The mount point of the partition holding `path` (the nearest existing
/// ancestor's device, followed up to where it changes); `path` itself if
/// nothing of it can be examined.
pub fn mount_point(path: &Path) -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut cur = abs.as_path();
    let dev = loop {
        match std::fs::metadata(cur) {
            Ok(m) => break m.dev(),
            Err(_) => match cur.parent() {
                Some(p) => cur = p,
                None => return path.to_path_buf(),
            },
        }
    };
    while let Some(p) = cur.parent() {
        match std::fs::metadata(p) {
            Ok(m) if m.dev() == dev => cur = p,
            _ => break,
        }
    }
    cur.to_path_buf()
}
