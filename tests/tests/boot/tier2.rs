//! Tier 2: a Debian bookworm minbase tree with systemd (and udev) as a guest
//! on its overlay partition boots to multi-user, where a unit writes a file,
//! runs `lvrepo checkpoint` in the guest and powers off through systemd
//! (lvrepo-shutdown as its system-shutdown hook); the overlay partition then
//! needs no recovery (clean ext4, `lvrepo guest fsck` clean), and the host
//! sees the file and the checkpoint. The tree comes from the cache that
//! `tests/fetch-debootstrap.sh --systemd` fills (scripts/test.sh runs it).

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use super::*;

/// The unit's script (shared with benches/boot-compare.sh): says that
/// multi-user is reached, writes, checkpoints (when its root is on lvrepo),
/// and powers off.
const SCRIPT: &str = include_str!("guest/lvrepo-tier2");

const UNIT: &str = include_str!("guest/lvrepo-tier2.service");

/// A copy of the cached systemd tree with lvrepo, its shutdown hook and the
/// test unit (enabled) in it; the cache is not touched.
pub(super) fn systemd_tree(dest: &Path) {
    run("cp -a", Command::new("cp").arg("-a").arg(lvrepo_tests::bookworm_systemd()).arg(dest));
    install_lvrepo(dest);
    let hook = dest.join("usr/lib/systemd/system-shutdown/lvrepo-shutdown");
    std::fs::create_dir_all(hook.parent().unwrap()).unwrap();
    std::fs::copy(initrd_dir().join("lvrepo-shutdown"), &hook).unwrap();
    let script = dest.join("usr/local/sbin/lvrepo-tier2");
    std::fs::create_dir_all(script.parent().unwrap()).unwrap();
    std::fs::write(&script, SCRIPT).unwrap();
    for f in [&hook, &script] {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::write(dest.join("etc/systemd/system/lvrepo-tier2.service"), UNIT).unwrap();
    std::fs::copy(initrd_dir().join("lvrepo-shutdown.service"), dest.join("usr/lib/systemd/system/lvrepo-shutdown.service")).unwrap();
    for (target, unit) in [("multi-user", "/etc/systemd/system/lvrepo-tier2.service"), ("final", "/usr/lib/systemd/system/lvrepo-shutdown.service")] {
        let wants = dest.join(format!("etc/systemd/system/{target}.target.wants"));
        std::fs::create_dir_all(&wants).unwrap();
        std::os::unix::fs::symlink(unit, wants.join(Path::new(unit).file_name().unwrap())).unwrap();
    }
}

#[test]
fn tier2_systemd_guest_boots_to_multi_user_checkpoints_in_the_guest_and_powers_off_clean() {
    require_root();
    let r = Lvrepo::init();
    let tree = r.scratch("systemd-tree");
    systemd_tree(&tree);
    r.import(&tree, "deb:1");
    let ov = r.scratch("guest.ext4");
    run("mkfs.ext4", Command::new("mkfs.ext4").args(["-q", "-F", "-L", "lvguest"]).arg(&ov).arg("256M"));
    let at = r.scratch("vm-part");
    {
        let _p = Loop::mount(&ov, &at);
        r.ok([OsStr::new("guest"), OsStr::new("create"), OsStr::new("vm"), OsStr::new("--image"), OsStr::new("deb:1"), OsStr::new("--overlay"), at.join("vm").as_os_str(), OsStr::new("--set"), OsStr::new("hostname=tier2")]);
    }
    let repo = repo_disk(&r);
    let append = "console=ttyS0 panic=-1 quiet root=lvrepo:guest=vm lvrepo.repo=LABEL=lvrepo lvrepo.overlay=LABEL=lvguest";
    let console = qemu(initrd(), append, &[(&repo, true), (&ov, false)], &ov.with_extension("console"), "tier2");
    assert_eq!(line(&console, "LVREPO-T2-TARGET:"), "active", "multi-user.target must be reached:\n{console}");
    assert!(line(&console, "LVREPO-T2-CP:").starts_with("rc=0 checkpoint 1 of vm: b3:"), "in-guest lvrepo checkpoint:\n{console}");
    assert_eq!(line(&console, "lvrepo-shutdown:"), "overlay clean", "systemd's shutdown must end with the overlay clean:\n{console}");
    assert!(console.contains("reboot: Power down"), "a clean power-off:\n{console}");
    assert_clean(&ov);
    let _p = Loop::mount(&ov, &at);
    r.ok(["guest", "fsck", "vm"]);
    let log = r.ok(["log", "vm", "--json"]);
    let cps: serde_json::Value = serde_json::from_str(&log).unwrap();
    assert_eq!(cps["checkpoints"][0]["message"].as_str(), Some("tier2"), "the host sees the guest's checkpoint: {log}");
    // The file is in the live state (against the image) and in the
    // checkpoint (the live state does not differ from it there).
    let file = "/var/lib/lvrepo-tier2";
    assert!(r.ok(["diff", "vm"]).lines().any(|l| l == format!("A {file}")), "the host sees the unit's file");
    assert!(!r.ok(["diff", "vm", "1"]).contains(file), "checkpoint 1 holds the unit's file");
    let mnt = r.scratch("vm-mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    r.ok([OsStr::new("mount"), OsStr::new("--guest"), OsStr::new("vm"), mnt.as_os_str()]);
    let seen = std::fs::read_to_string(mnt.join(file.trim_start_matches('/')));
    r.ok([OsStr::new("umount"), mnt.as_os_str()]);
    assert_eq!(seen.unwrap(), "written by a unit at boot\n");
}
