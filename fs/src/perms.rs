//! Who may read what lvrepo stores: everything it creates on disk (the
//! repository, guest directories, overlays, their databases and data files)
//! is for root (or the owner) only. Image files keep their modes inside the
//! image; on disk they are chunks any reader of a pack could decode, so the
//! pack files themselves must not be readable by others.
//!
//! The rule is enforced twice: [`private_umask`] makes every file the process
//! creates owner-only (RocksDB creates its files itself, with the umask), and
//! [`private_dir`] sets 0700 on the top directories explicitly, whatever the
//! caller's umask and whether the directory existed.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::error::{Error, Result};

/// Set the process umask to 077: files and directories created from now on
/// are owner-only. The binary calls it first thing; library users that
/// create repositories or overlays should too.
pub fn private_umask() {
    // SAFETY: umask only changes the calling process's file mode mask.
    unsafe {
        libc::umask(0o077);
    }
}

/// Make `dir` (which exists) 0700 if it is reachable by group or others.
pub fn private_dir(dir: &Path) -> Result<()> {
    let md = std::fs::metadata(dir).map_err(|e| Error::io("reading the mode of", dir, e))?;
    if md.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| Error::io("making private", dir, e))?;
    }
    Ok(())
}

/// Create `dir` (and missing parents) and make it 0700.
pub fn create_private_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io("creating", dir, e))?;
    private_dir(dir)
}

/// The error for an `io::Error` met opening something of lvrepo's: a
/// permission refusal gets its own, clear error (exit 77).
pub(crate) fn open_error(op: &'static str, path: &Path, e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::PermissionDenied {
        Error::NotPermitted(path.to_path_buf())
    } else {
        Error::io(op, path, e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_dir_drops_group_and_other_bits_whatever_the_mode() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("r");
        std::fs::create_dir(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        private_dir(&d).unwrap();
        assert_eq!(std::fs::metadata(&d).unwrap().permissions().mode() & 0o777, 0o700);
        create_private_dir(&d.join("a/b")).unwrap();
        assert_eq!(std::fs::metadata(d.join("a/b")).unwrap().permissions().mode() & 0o077, 0);
    }
}
