//! Browsing mounts (`mount IMAGE --read-only MNT`, `mount --guest
//! NAME:CHECKPOINT --read-only MNT`): served read-only through a scratch
//! overlay in a fresh private directory under `$TMPDIR` (default /tmp),
//! removed when the daemon exits, so a browse leaves nothing behind and
//! never touches a guest's own overlay or lock.
//!
//! The command that detaches the daemon makes the directory (so it can read
//! the daemon's log if it fails) and hands it over in `LVREPO_SCRATCH_OVERLAY`;
//! from then on the daemon owns it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// The environment variable naming the scratch overlay a daemon owns.
pub const ENV: &str = "LVREPO_SCRATCH_OVERLAY";

/// A scratch overlay directory, removed (with everything in it) on drop
/// unless [`Scratch::keep`] hands it on.
pub struct Scratch {
    dir: Option<PathBuf>,
}

impl Scratch {
    /// The directory handed over by the detaching command, else a new one.
    pub fn take_or_create() -> Result<Scratch> {
        match std::env::var_os(ENV) {
            Some(d) if !d.is_empty() => Ok(Scratch { dir: Some(PathBuf::from(d)) }),
            _ => Scratch::create(),
        }
    }

    /// A new private (0700) directory `lvrepo-browse-PID-N` under `$TMPDIR`.
    /// `create_dir` fails on anything already there, links included, so the
    /// directory is ours.
    pub fn create() -> Result<Scratch> {
        use std::os::unix::fs::DirBuilderExt;
        let base = std::env::temp_dir();
        for n in 0..1000u32 {
            let dir = base.join(format!("lvrepo-browse-{}-{n}", std::process::id()));
            match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => return Ok(Scratch { dir: Some(dir) }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e).with_context(|| format!("creating the scratch overlay {}", dir.display())),
            }
        }
        anyhow::bail!("no free scratch overlay name under {}", base.display())
    }

    pub fn path(&self) -> &Path {
        self.dir.as_deref().unwrap_or(Path::new(""))
    }

    /// Leave the directory in place (its daemon now owns it).
    pub fn keep(mut self) {
        self.dir = None;
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(d) = self.dir.take() {
            // Gone already when the daemon that owned it failed and removed it.
            if let Err(e) = std::fs::remove_dir_all(&d).or_else(|e| if e.kind() == std::io::ErrorKind::NotFound { Ok(()) } else { Err(e) }) {
                tracing::warn!(path = %d.display(), error = %e, "removing the scratch overlay");
            }
        }
    }
}
