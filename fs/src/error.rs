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
    #[error("destination {0} exists and is not empty")]
    DestinationNotEmpty(PathBuf),
    #[error("guest {0} not found")]
    GuestNotFound(String),
    #[error("guest {0} already exists")]
    GuestExists(String),
    #[error("guest {0} is busy (mounted, or another command works on it)")]
    GuestBusy(String),
    #[error("guest {guest} has no checkpoint {checkpoint}")]
    CheckpointNotFound { guest: String, checkpoint: String },
    /// A POSIX-level refusal of a filesystem operation (ENOENT, EEXIST, ...).
    #[error("{}", std::io::Error::from_raw_os_error(*.0))]
    Posix(i32),
    #[error("overlay {path}: {why}")]
    Overlay { path: PathBuf, why: String },
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
            Error::ImageNotFound(_) | Error::PathNotFound { .. } | Error::GuestNotFound(_) | Error::CheckpointNotFound { .. } => ErrorClass::NotFound,
            Error::Missing { .. } | Error::Damaged { .. } | Error::Decode { .. } => {
                ErrorClass::Damaged
            }
            Error::ImageExists(_) | Error::DestinationNotEmpty(_) | Error::GuestExists(_) => ErrorClass::Exists,
            Error::GuestBusy(_) => ErrorClass::Busy,
            Error::BadImageName(_) => ErrorClass::Usage,
            Error::Locked(_) => ErrorClass::Busy,
            _ => ErrorClass::Other,
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
            Error::NotSupported { .. } => libc::EOPNOTSUPP,
            Error::ImageExists(_) | Error::DestinationNotEmpty(_) => libc::EEXIST,
            _ => libc::EIO,
        }
    }
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
