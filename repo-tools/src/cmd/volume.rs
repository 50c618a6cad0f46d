//! `lvrepo import DISK --volume`: raw disks, block devices and raw streams
//! go straight in; qcow2 and vmdk files are first converted to a sparse raw
//! file with `qemu-img convert -O raw` (from qemu-utils), which is then
//! imported and removed.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use lvrepo_fs::import::import_volume;
use lvrepo_fs::{ImageRecord, ImportStats, ImportTarget, Progress, Repository};

/// Formats `qemu-img` converts, by their magic bytes.
const CONVERTED: [(&[u8], &str); 2] = [(b"QFI\xfb", "qcow2"), (b"KDMV", "vmdk")];

pub fn import(repo: &Repository, source: &Path, target: &ImportTarget, progress: &dyn Progress) -> Result<(ImageRecord, ImportStats)> {
    let Some(format) = converted_format(source) else {
        return Ok(import_volume(repo, source, target, progress)?);
    };
    let tmp = Scratch(scratch_path(source));
    let out = Command::new("qemu-img")
        .args(["convert", "-f", format, "-O", "raw"])
        .arg(source)
        .arg(&tmp.0)
        .output()
        .context("running qemu-img (install qemu-utils to import qcow2 or vmdk volumes)")?;
    if !out.status.success() {
        bail!("qemu-img convert of {} ({format}) failed: {}", source.display(), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(import_volume(repo, &tmp.0, target, progress)?)
}

fn converted_format(source: &Path) -> Option<&'static str> {
    use std::io::Read;
    if source == Path::new("-") || !source.is_file() {
        return None;
    }
    let mut magic = [0u8; 4];
    std::fs::File::open(source).ok()?.read_exact(&mut magic).ok()?;
    CONVERTED.iter().find(|(m, _)| *m == magic).map(|(_, f)| *f)
}

/// A raw file beside the temp directory's others, removed on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn scratch_path(source: &Path) -> PathBuf {
    let dir = std::env::var_os("TMPDIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/var/tmp"));
    let stem = source.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    dir.join(format!(".lvrepo-{}-{stem}.raw", std::process::id()))
}
