//! The mount(8) helper, so `mount -t fuse.lvrepo` and /etc/fstab work: the
//! `lvrepo` binary acts as it when called by a name starting with `mount.`.
//! Install: `ln -s /usr/local/bin/lvrepo /sbin/mount.fuse.lvrepo` (and
//! `/sbin/mount.lvrepo` for `-t lvrepo`).
//!
//! mount(8) calls `mount.fuse.lvrepo SOURCE MOUNTPOINT [-o OPTIONS]` (plus
//! flags like -n, -v, -s that are accepted and ignored). SOURCE is an image
//! (`NAME[:VERSION]`, with `overlay=DIR`) or `guest:NAME`. Options:
//! `repo=PATH` (required unless LVREPO_REPO is set), `overlay=DIR`,
//! `threads=N`, `cache_mib=N`, `no_uring`, `no_handoff`, `seclabel`; the
//! kernel's per-mount flags (ro, rw, nosuid, suid, nodev, dev, noexec, exec,
//! noatime, atime, relatime, user, users, defaults) are applied to the mount;
//! mount(8)'s own (auto, noauto, _netdev, nofail, nouser, async, x-*) are
//! accepted and left to mount(8). An fstab line:
//!
//! ```text
//! web:2  /srv/web  fuse.lvrepo  repo=/srv/lvrepo,overlay=/var/lib/web  0 0
//! guest:web01  /guests/web01  fuse.lvrepo  repo=/srv/lvrepo  0 0
//! ```

use std::ffi::OsString;
use std::process::{Command, ExitCode};

pub fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("mount.lvrepo: {msg}");
            ExitCode::from(32) // mount(8): "mount failure"
        }
    }
}

fn run() -> Result<ExitCode, String> {
    let mut args = std::env::args_os().skip(1);
    // mount(8) may run us with a minimal environment; find lvrepo next to us.
    let mut positional: Vec<OsString> = Vec::new();
    let mut opts: Vec<String> = Vec::new();
    while let Some(a) = args.next() {
        match a.to_str() {
            Some("-o") => opts.extend(args.next().ok_or("-o needs a value")?.to_string_lossy().split(',').map(str::to_string)),
            Some(s) if s.starts_with("-o") => opts.extend(s[2..].split(',').map(str::to_string)),
            Some("-n" | "-v" | "-s" | "-f" | "-r" | "-w") => {}
            Some("-t") => {
                args.next();
            }
            _ => positional.push(a),
        }
    }
    let [source, mountpoint] = <[OsString; 2]>::try_from(positional).map_err(|_| "usage: mount.lvrepo SOURCE MOUNTPOINT [-o OPTIONS]")?;
    let (mut repo, mut overlay, mut threads, mut cache) = (std::env::var_os("LVREPO_REPO"), None, None, None);
    let mut flags = Vec::new();
    // The kernel's per-mount flags, passed on and applied to the mount.
    let mut kernel: Vec<&str> = Vec::new();
    for o in opts.iter().filter(|o| !o.is_empty()) {
        match o.split_once('=') {
            Some(("repo", v)) => repo = Some(v.into()),
            Some(("overlay", v)) => overlay = Some(v.to_string()),
            Some(("threads", v)) => threads = Some(v.to_string()),
            Some(("cache_mib", v)) => cache = Some(v.to_string()),
            None if ["no_uring", "no_handoff", "seclabel"].contains(&o.as_str()) => flags.push(format!("--{}", o.replace('_', "-"))),
            Some((k, _)) if k.starts_with("x-") => {}
            None if lvrepo_fs::fuse::MountFlags::default().apply(o) => kernel.push(o),
            // mount(8)'s own: for fstab and mount, not for the filesystem.
            None if ["auto", "noauto", "_netdev", "nofail", "nouser", "async"].contains(&o.as_str()) => {}
            None if o.starts_with("x-") => {}
            _ => return Err(format!("unknown option {o}")),
        }
    }
    let repo = repo.ok_or("no repository: add -o repo=PATH")?;
    let lvrepo = std::env::current_exe().map_err(|e| format!("locating lvrepo: {e}"))?;
    let mut cmd = Command::new(lvrepo);
    cmd.arg("--repo").arg(&repo).arg("mount");
    let src = source.to_string_lossy();
    match src.strip_prefix("guest:") {
        Some(name) => {
            cmd.arg("--guest").arg(name);
        }
        None => {
            cmd.arg(&source);
            // Without an overlay, `ro` browses the image (lvrepo refuses it read-write).
            match overlay {
                Some(o) => cmd.arg("--overlay").arg(o),
                None if kernel.contains(&"ro") => &mut cmd,
                None => return Err("mounting an image needs -o overlay=DIR (or -o ro to browse it)".into()),
            };
        }
    }
    if let Some(t) = threads {
        cmd.arg("--threads").arg(t);
    }
    if let Some(c) = cache {
        cmd.arg("--cache-mib").arg(c);
    }
    cmd.args(&flags);
    if !kernel.is_empty() {
        cmd.arg("-o").arg(kernel.join(","));
    }
    cmd.arg(&mountpoint);
    let status = cmd.status().map_err(|e| format!("running lvrepo: {e}"))?;
    Ok(if status.success() { ExitCode::SUCCESS } else { ExitCode::from(32) })
}
