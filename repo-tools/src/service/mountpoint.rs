//! Mount points a manager names through the service. The mount is made by
//! root on a path the caller chose, so the path must be one the caller
//! cannot redirect between this check and the mount: absolute, its own
//! canonical form (no symbolic link, `.` or `..`), every directory above
//! it owned by root and writable by no one else (a sticky /tmp does not
//! do: the caller may rename what it owns there), and, for a mount, a
//! directory the caller owns. The mount is also always `nosuid,nodev`
//! (a guest's set-uid files and device nodes must not serve the caller).

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Why `mp` may not be used by `uid` (`own`: it must be the caller's).
pub fn check(mp: &Path, uid: u32, own: bool) -> Result<(), String> {
    let shown = mp.display();
    if !mp.is_absolute() {
        return Err(format!("mount point {shown} must be an absolute path"));
    }
    if std::fs::canonicalize(mp).ok().as_deref() != Some(mp) {
        return Err(format!("mount point {shown} must be an existing directory named as it is (no symbolic link, `.`, `..` or trailing `/`)"));
    }
    for a in mp.ancestors().skip(1) {
        let md = std::fs::symlink_metadata(a).map_err(|e| format!("{}: {e}", a.display()))?;
        if md.uid() != 0 || md.mode() & 0o022 != 0 {
            return Err(format!("mount point {shown}: {} may be changed by users other than root (uid {}, mode {:o}); use a directory under one only root can change", a.display(), md.uid(), md.mode() & 0o7777));
        }
    }
    let md = std::fs::symlink_metadata(mp).map_err(|e| format!("{shown}: {e}"))?;
    if !md.is_dir() {
        return Err(format!("mount point {shown} is not a directory"));
    }
    if own && md.uid() != uid {
        return Err(format!("mount point {shown} is not yours (owner uid {}): mount on a directory you own", md.uid()));
    }
    Ok(())
}

/// `argv` of a mount with `-o nosuid,nodev` added last (so it wins over
/// the caller's `suid`/`dev`), checked by parsing it again as the command
/// will; `Err` if the caller's words keep it from taking effect (`--`).
pub fn forced(argv: &[std::ffi::OsString]) -> Result<Vec<std::ffi::OsString>, String> {
    let mut out = argv.to_vec();
    out.extend(["-o".into(), "nosuid,nodev".into()]);
    let cli = <crate::Cli as clap::Parser>::try_parse_from(&out).map_err(|e| format!("mount with nosuid,nodev added: {}", e.kind()))?;
    let crate::cli::Command::Mount { options, .. } = &cli.command else { return Err("not a mount".into()) };
    let mut flags = lvrepo_fs::fuse::MountFlags::default();
    for o in options {
        flags.apply(o);
    }
    if !(flags.nosuid && flags.nodev) {
        return Err("a mount through the service is nosuid,nodev".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    #[test]
    fn paths_a_caller_could_redirect_are_refused() {
        assert!(super::check(Path::new("mnt"), 1000, true).unwrap_err().contains("absolute"));
        assert!(super::check(Path::new("/etc/../etc"), 1000, false).unwrap_err().contains("named as it is"));
        // /tmp is sticky and writable by all: what is below it is not safe.
        let d = std::fs::canonicalize("/tmp").expect("/tmp").join(format!("lvrepo-mp-test-{}", std::process::id()));
        std::fs::create_dir(&d).expect("mkdir");
        let r = super::check(&d, 0, false);
        std::fs::remove_dir(&d).expect("rmdir");
        assert!(r.unwrap_err().contains("may be changed by users other than root"));
        // /etc is root's: fine for root, not the caller's own.
        assert_eq!(super::check(Path::new("/etc"), 0, true), Ok(()));
        assert!(super::check(Path::new("/etc"), 1000, true).unwrap_err().contains("not yours"));
    }

    #[test]
    fn mounts_are_nosuid_nodev_whatever_the_caller_says() {
        let a = |v: &[&str]| v.iter().map(|s| std::ffi::OsString::from(*s)).collect::<Vec<_>>();
        let out = super::forced(&a(&["lvrepo", "mount", "--guest", "g", "/m", "-o", "suid,dev"])).expect("forced");
        assert_eq!(out[out.len() - 2..], a(&["-o", "nosuid,nodev"])[..]);
        assert!(super::forced(&a(&["lvrepo", "mount", "--guest", "g", "--", "/m"])).is_err(), "after --, the options would be operands");
    }
}
