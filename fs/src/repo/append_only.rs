//! Append-only repositories: a backup target that refuses deletes and
//! overwrites (image deletes, `forget`, gc), so a host that writes backups
//! through lvrepo cannot destroy the ones already there. The marker is the
//! file `APPEND-ONLY` in the repository; only removing it by hand on the
//! target undoes it. Overwrites are refused everywhere already (published
//! refs are immutable).

use super::Repository;
use crate::error::{Error, Result};

const MARKER: &str = "APPEND-ONLY";

impl Repository {
    pub fn append_only(&self) -> bool {
        self.path().join(MARKER).exists()
    }

    /// Make the repository append-only (durably).
    pub fn set_append_only(&self) -> Result<()> {
        self.writable()?;
        crate::guest::write_atomic(&self.path().join(MARKER), b"this repository refuses deletes and overwrites\n")
    }

    /// `Err(AppendOnly)` (exit 77) for an operation that removes data.
    pub fn refuse_if_append_only(&self) -> Result<()> {
        if self.append_only() {
            return Err(Error::AppendOnly(self.path().to_path_buf()));
        }
        Ok(())
    }
}
