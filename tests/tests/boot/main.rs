//! Booting a QEMU guest (TCG, Debian's kernel) whose root filesystem is
//! served by lvrepo from the initrd (issue 27, docs/boot.md): the initrd is
//! built with mkinitramfs after `initrd/install.sh`, the repository disk is
//! read-only, the overlay partition starts blank. Tier 1: a busybox init
//! writes, a write survives a reboot, the overlay partition is clean after
//! power-off (`e2fsck -fn`), the host reads it, checkpoints and rolls back,
//! and the next boot sees the rolled-back state; in the guest, its own
//! `lvrepo checkpoint`, `log`, `diff` and `rollback` reach the root's daemon;
//! failures print one line and power off. Tier 2 (a systemd guest): tier2.rs.
//! Needs what scripts/setup.sh installs (linux-image-amd64, initramfs-tools,
//! qemu-system-x86, busybox-static), plus dracut-core for the dracut check.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use lvrepo_tests::{lvrepo_bin, report, require_root, Lvrepo};

mod tier2;

fn initrd_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../initrd")
}

/// Run `c` (`what` names it in a failure); its stdout.
fn run(what: &str, c: &mut Command) -> String {
    let out = c.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(out.status.success(), "{}", report(what, &out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// This process's directory for what outlives one test (the shared
/// initrd), under cargo's target/tmp: removed at exit, and a killed run's
/// (its process gone) by the next run.
fn process_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
        for e in std::fs::read_dir(base).into_iter().flatten().flatten() {
            let name = e.file_name();
            let pid = name.to_str().and_then(|n| n.strip_prefix("boot-")).and_then(|p| p.parse::<u32>().ok());
            if pid.is_some_and(|p| !Path::new(&format!("/proc/{p}")).exists()) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
        let dir = base.join(format!("boot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        extern "C" fn remove() {
            if let Some(d) = DIR.get() {
                let _ = std::fs::remove_dir_all(d);
            }
        }
        // SAFETY: `remove` is a plain extern "C" fn, run once at exit; it only
        // reads the OnceLock (set before this registration) and removes files.
        unsafe { libc::atexit(remove) };
        dir
    })
}

/// This build's lvrepo, stripped (a smaller initrd, unpacked faster by the
/// emulated CPU at every boot).
fn stripped_bin() -> PathBuf {
    let bin = process_dir().join("lvrepo");
    if !bin.exists() {
        run("strip", Command::new("strip").arg("-o").arg(&bin).arg(lvrepo_bin()));
    }
    bin
}

/// The initrd, built once per test process: `initrd/install.sh`, then
/// mkinitramfs with this build's binary. Its content is checked.
fn initrd() -> &'static Path {
    static INITRD: OnceLock<PathBuf> = OnceLock::new();
    INITRD.get_or_init(|| {
        run("initrd/install.sh", Command::new("bash").arg(initrd_dir().join("install.sh")));
        let img = process_dir().join("initrd.img");
        let (_, ver) = lvrepo_tests::newest_kernel();
        run("mkinitramfs", Command::new("mkinitramfs").arg("-o").arg(&img).arg(&ver).env("LVREPO_BIN", stripped_bin()));
        let list = run("lsinitramfs", Command::new("lsinitramfs").arg(&img));
        for want in ["usr/bin/lvrepo", "usr/bin/@lvrepo", "scripts/lvrepo", "conf/conf.d/lvrepo", "usr/lib/lvrepo-boot.sh", "/fuse.ko", "/ext4.ko", "librocksdb"] {
            assert!(list.lines().any(|l| l.contains(want)), "initrd lacks {want}");
        }
        img
    })
}

/// Put this build's lvrepo (stripped) in `tree` as /usr/bin/lvrepo, with the
/// libraries it needs that the tree lacks: what a distribution package
/// installed in the image gives the guest (docs/boot.md).
fn install_lvrepo(tree: &Path) {
    let bin = tree.join("usr/bin/lvrepo");
    std::fs::create_dir_all(bin.parent().unwrap()).unwrap();
    std::fs::copy(stripped_bin(), &bin).unwrap();
    for l in run("ldd", Command::new("ldd").arg(lvrepo_bin())).lines() {
        // "libx.so => /lib/.../libx.so (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
        let Some(lib) = l.split_whitespace().find(|w| w.starts_with('/')) else { continue };
        let dest = tree.join(lib.trim_start_matches('/'));
        if !dest.exists() {
            std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
            std::fs::copy(lib, &dest).unwrap_or_else(|e| panic!("copying {lib}: {e}"));
        }
    }
}

/// The guest's root tree: busybox, lvrepo-shutdown and an init that appends
/// the boot's label (lvrepo.test=LABEL) to /log, prints /log and the
/// hostname, has the daemon make the overlay clean, and powers off. With
/// lvrepo.incmd on the command line it first runs the in-guest commands
/// (the image must hold lvrepo: [`install_lvrepo`]): checkpoint, log, a
/// write and a removal (then looked up: a miss the kernel caches), diff
/// against the checkpoint, rollback to it, and what is left.
fn root_tree(dir: &Path) {
    for d in ["bin", "proc", "sys", "dev", "etc", "run"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", dir.join("bin/busybox")).expect("busybox-static (scripts/setup.sh)");
    std::fs::copy(initrd_dir().join("lvrepo-shutdown"), dir.join("bin/lvrepo-shutdown")).unwrap();
    for a in ["sh", "cat", "head", "grep", "sleep", "kill", "sed", "tr", "ls", "readlink", "rm"] {
        std::os::unix::fs::symlink("busybox", dir.join("bin").join(a)).unwrap();
    }
    let init = "#!/bin/busybox sh\n\
        export PATH=/bin\n\
        mount -t proc proc /proc\n\
        mount -o remount,rw /\n\
        L=$(busybox sed -n 's/.*lvrepo.test=\\([^ ]*\\).*/\\1/p' /proc/cmdline)\n\
        echo \"$L\" >> /log\n\
        echo \"LVREPO-LOG: $(busybox tr '\\n' ' ' < /log)\"\n\
        echo \"LVREPO-HOST: $(cat /etc/hostname 2>/dev/null)\"\n\
        if grep -q lvrepo.incmd /proc/cmdline; then\n\
          echo a > /incmd-a\n\
          echo c > /incmd-c\n\
          o=$(/usr/bin/lvrepo checkpoint -m x 2>&1); echo \"LVREPO-CP: rc=$? $o\" | tr '\\n' ' '; echo\n\
          /usr/bin/lvrepo log 2>&1 | sed 's/^/LVREPO-GLOG: /'\n\
          echo b > /incmd-b\n\
          rm /incmd-c; cat /incmd-c 2>/dev/null\n\
          /usr/bin/lvrepo diff 2 2>&1 | sed 's/^/LVREPO-DIFF: /'\n\
          o=$(/usr/bin/lvrepo rollback 2 2>&1); echo \"LVREPO-RB: rc=$? $o\" | tr '\\n' ' '; echo\n\
          echo \"LVREPO-C: $(cat /incmd-c 2>&1)\"\n\
          echo \"LVREPO-LEFT: $(ls / | grep incmd | tr '\\n' ' ')\"\n\
        fi\n\
        lvrepo-shutdown\n\
        busybox poweroff -f -n\n";
    std::fs::write(dir.join("init"), init).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.join("init"), std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// The repository as a disk: its root directory is the repository.
fn repo_disk(r: &Lvrepo) -> PathBuf {
    let img = r.scratch("repo.ext4");
    run("mkfs.ext4 -d", Command::new("mkfs.ext4").args(["-q", "-F", "-L", "lvrepo", "-d"]).arg(r.repo()).arg(&img).arg("512M"));
    img
}

/// A blank overlay partition (formatted, empty).
fn blank_partition(path: &Path, label: &str) {
    run("mkfs.ext4", Command::new("mkfs.ext4").args(["-q", "-F", "-L", label]).arg(path).arg("64M"));
}

fn uuid(disk: &Path) -> String {
    run("blkid", Command::new("blkid").args(["-s", "UUID", "-o", "value"]).arg(disk)).trim().to_string()
}

/// Boot once; the console. The VM must power off by itself.
fn boot(initrd: &Path, repo: &Path, overlay: &Path, cmdline: &str, label: &str) -> String {
    let append = format!("console=ttyS0 panic=-1 quiet init=/init lvrepo.test={label} {cmdline}");
    qemu(initrd, &append, &[(repo, true), (overlay, false)], &overlay.with_extension(format!("{label}.console")), label)
}

/// Run QEMU (TCG) with `drives` (path, read-only) as virtio disks until the
/// guest powers off (at most 300 s); the console, also kept in `log`.
fn qemu(initrd: &Path, append: &str, drives: &[(&Path, bool)], log: &Path, label: &str) -> String {
    let (k, _) = lvrepo_tests::newest_kernel();
    let mut c = Command::new("qemu-system-x86_64");
    c.args(["-machine", "q35,accel=tcg", "-cpu", "max", "-m", "1024", "-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio"])
        .arg("-kernel")
        .arg(&k)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", append])
        .stdin(Stdio::null());
    for (d, ro) in drives {
        c.args(["-drive", &format!("file={},format=raw,if=virtio{}", d.display(), if *ro { ",readonly=on" } else { "" })]);
    }
    c.stdout(std::fs::File::create(log).unwrap()).stderr(Stdio::null());
    let t = Instant::now();
    let mut child = c.spawn().expect("qemu-system-x86_64 (scripts/setup.sh installs qemu-system-x86)");
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if t.elapsed() > Duration::from_secs(300) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("boot {label} did not power off within 300 s:\n{}", std::fs::read_to_string(log).unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("boot {label}: {:.1} s", t.elapsed().as_secs_f64());
    let console = String::from_utf8_lossy(&std::fs::read(log).unwrap_or_default()).into_owned();
    assert!(!console.contains("Kernel panic"), "boot {label} panicked:\n{console}");
    console
}

/// The value of the console line `KEY: value`.
fn line<'a>(console: &'a str, key: &str) -> &'a str {
    console.lines().find_map(|l| l.split(key).nth(1)).map(str::trim).unwrap_or_else(|| panic!("no {key} line on the console:\n{console}"))
}

/// A successful boot: the guest's log, after it reported a clean overlay.
fn boot_ok(repo: &Path, overlay: &Path, cmdline: &str, label: &str) -> (String, String) {
    boot_ok_with(initrd(), repo, overlay, cmdline, label)
}

fn boot_ok_with(initrd: &Path, repo: &Path, overlay: &Path, cmdline: &str, label: &str) -> (String, String) {
    let console = boot(initrd, repo, overlay, cmdline, label);
    assert_eq!(line(&console, "lvrepo-shutdown:"), "overlay clean", "{console}");
    assert_clean(overlay);
    (line(&console, "LVREPO-LOG:").to_string(), line(&console, "LVREPO-HOST:").to_string())
}

/// The overlay partition needs no journal replay and no repair as it is. (A
/// power-off without lvrepo-shutdown leaves `needs_recovery` set and stale
/// counts that `e2fsck -fn` reports but still exits 0 for.)
fn assert_clean(overlay: &Path) {
    let sb = run("dumpe2fs -h", Command::new("dumpe2fs").arg("-h").arg(overlay));
    assert!(!sb.contains("needs_recovery"), "the overlay partition needs journal recovery:\n{sb}");
    assert!(sb.lines().any(|l| l.strip_prefix("Filesystem state:").is_some_and(|v| v.trim() == "clean")), "the overlay partition is not marked clean:\n{sb}");
    let out = Command::new("e2fsck").arg("-fn").arg(overlay).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && !text.contains("Fix?"), "{}", report("e2fsck -fn (overlay partition after power-off)", &out));
}

/// The overlay partition loop-mounted on the host while this lives.
struct Loop(PathBuf);
impl Loop {
    fn mount(disk: &Path, at: &Path) -> Loop {
        std::fs::create_dir_all(at).unwrap();
        run("mount -o loop", Command::new("mount").args(["-o", "loop"]).arg(disk).arg(at));
        Loop(at.to_path_buf())
    }
}
impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// `with_lvrepo`: the image holds lvrepo, for the in-guest commands.
fn image_with_init(r: &Lvrepo, image: &str, with_lvrepo: bool) {
    let tree = r.scratch(&format!("tree-{}", image.replace(':', "-")));
    root_tree(&tree);
    if with_lvrepo {
        install_lvrepo(&tree);
    }
    r.import(&tree, image);
}

/// The console's `KEY: value` lines, in order.
fn lines<'a>(console: &'a str, key: &str) -> Vec<&'a str> {
    console.lines().filter_map(|l| l.split(key).nth(1)).map(str::trim).collect()
}

/// Image boot:1 in the repository, the repository disk, and a blank overlay
/// partition labelled lvov.
fn image_disks(r: &Lvrepo) -> (PathBuf, PathBuf) {
    image_with_init(r, "boot:1", false);
    let ov = r.scratch("overlay.ext4");
    blank_partition(&ov, "lvov");
    (repo_disk(r), ov)
}

#[test]
fn tier1_a_write_on_a_blank_overlay_partition_survives_a_reboot_and_the_host_reads_it() {
    require_root();
    let r = Lvrepo::init();
    let (repo, ov) = image_disks(&r);
    let (log, _) = boot_ok(&repo, &ov, "root=lvrepo:boot:1 lvrepo.repo=/dev/vda lvrepo.overlay=LABEL=lvov", "one");
    assert_eq!(log, "one");
    let cmd = format!("root=lvrepo:boot lvrepo.repo=UUID={} lvrepo.overlay=/dev/vdb", uuid(&repo));
    let (log, _) = boot_ok(&repo, &ov, &cmd, "two");
    assert_eq!(log, "one two", "the first boot's write must survive the reboot");
    // The host reads the guest's write through the overlay partition.
    let part = Loop::mount(&ov, &r.scratch("part"));
    let mnt = r.scratch("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    r.ok([OsStr::new("mount"), OsStr::new("boot:1"), OsStr::new("--overlay"), part.0.as_os_str(), mnt.as_os_str()]);
    let seen = std::fs::read_to_string(mnt.join("log"));
    r.ok([OsStr::new("umount"), mnt.as_os_str()]);
    assert_eq!(seen.unwrap(), "one\ntwo\n");
}

#[test]
fn tier1_a_guest_on_its_partition_is_checkpointed_and_rolled_back_in_the_guest_and_by_the_host() {
    require_root();
    let r = Lvrepo::init();
    image_with_init(&r, "boot:1", true);
    let ov = r.scratch("guest.ext4");
    blank_partition(&ov, "lvguest");
    // The guest's directory is a top-level directory of its partition.
    let at = r.scratch("vm-part");
    let gdir = at.join("vm");
    {
        let _p = Loop::mount(&ov, &at);
        r.ok([OsStr::new("guest"), OsStr::new("create"), OsStr::new("vm"), OsStr::new("--image"), OsStr::new("boot:1"), OsStr::new("--overlay"), gdir.as_os_str(), OsStr::new("--set"), OsStr::new("hostname=vm-one")]);
    }
    let cmd = "root=lvrepo:guest=vm lvrepo.repo=LABEL=lvrepo lvrepo.overlay=LABEL=lvguest";
    let (log, host) = boot_ok(&repo_disk(&r), &ov, cmd, "one");
    assert_eq!((log.as_str(), host.as_str()), ("one", "vm-one"), "the registry's hostname applies at first boot");
    {
        let _p = Loop::mount(&ov, &at);
        r.ok(["checkpoint", "vm", "-m", "after the first boot"]);
    }
    // In the guest, its own commands reach the root's daemon: a checkpoint
    // (2), the log, a diff against it and a rollback to it while running.
    let console = boot(initrd(), &repo_disk(&r), &ov, &format!("{cmd} lvrepo.incmd"), "two");
    assert_eq!(line(&console, "LVREPO-LOG:"), "one two");
    assert!(line(&console, "LVREPO-CP:").starts_with("rc=0 checkpoint 2 of vm: b3:"), "{console}");
    let glog = lines(&console, "LVREPO-GLOG:");
    assert!(glog.len() == 2 && glog[0].contains("after the first boot") && glog[1].contains("  x"), "in-guest lvrepo log:\n{console}");
    assert!(lines(&console, "LVREPO-DIFF:").contains(&"A /incmd-b"), "in-guest lvrepo diff 2:\n{console}");
    assert!(line(&console, "LVREPO-RB:").starts_with("rc=0 guest vm rolled back to checkpoint 2"), "{console}");
    // The miss of /incmd-c the kernel cached after its removal must not
    // outlive the rollback that brings it back (looked up before `ls`,
    // whose listing would refresh the kernel's entries).
    assert_eq!(line(&console, "LVREPO-C:"), "c", "the in-guest rollback to 2 brings back what was removed after it:\n{console}");
    assert_eq!(line(&console, "LVREPO-LEFT:"), "incmd-a incmd-c", "the in-guest rollback to 2 removes what was written after it");
    assert_eq!(line(&console, "lvrepo-shutdown:"), "overlay clean", "{console}");
    assert_clean(&ov);
    {
        // The host sees the checkpoint the guest took.
        let _p = Loop::mount(&ov, &at);
        let log = r.ok(["log", "vm", "--json"]);
        let cps: serde_json::Value = serde_json::from_str(&log).unwrap();
        let cp = &cps["checkpoints"][1];
        assert_eq!((cp["number"].as_u64(), cp["message"].as_str()), (Some(2), Some("x")), "{log}");
        let mnt = r.scratch("vm-mnt");
        std::fs::create_dir_all(&mnt).unwrap();
        r.ok([OsStr::new("mount"), OsStr::new("--guest"), OsStr::new("vm"), mnt.as_os_str()]);
        let (a, b) = (mnt.join("incmd-a").exists(), mnt.join("incmd-b").exists());
        r.ok([OsStr::new("umount"), mnt.as_os_str()]);
        assert_eq!((a, b), (true, false), "the host sees the guest's rolled-back state");
    }
    {
        let _p = Loop::mount(&ov, &at);
        r.ok(["rollback", "vm", "1"]);
    }
    let (log, _) = boot_ok(&repo_disk(&r), &ov, cmd, "three");
    assert_eq!(log, "one three", "the third boot must see the rolled-back state");
    r.ok(["verify"]);
}

/// A boot that must fail: the one `lvrepo:` line, then a power-off (the
/// VM exits by itself, no panic).
fn boot_fails(repo: &Path, overlay: &Path, cmdline: &str, label: &str) -> String {
    let console = boot(initrd(), repo, overlay, &format!("{cmdline} lvrepo.timeout=3"), label);
    let lines: Vec<&str> = console.lines().filter(|l| l.contains("lvrepo: ")).collect();
    assert_eq!(lines.len(), 1, "one failure line expected:\n{console}");
    assert!(console.contains("reboot: Power down"), "the initrd must power off:\n{console}");
    assert!(!console.contains("LVREPO-LOG"), "{console}");
    lines[0].split("lvrepo: ").skip(1).collect::<Vec<_>>().join("lvrepo: ")
}

#[test]
fn tier1_failures_print_one_line_and_power_off() {
    require_root();
    let r = Lvrepo::init();
    let (repo, ov) = image_disks(&r);
    let base = "lvrepo.repo=/dev/vda lvrepo.overlay=LABEL=lvov";
    let l = boot_fails(&repo, &ov, "root=lvrepo:boot:1 lvrepo.repo=/dev/vda lvrepo.overlay=LABEL=nosuch", "missing");
    assert!(l.starts_with("overlay partition LABEL=nosuch not found"), "{l}");
    let l = boot_fails(&repo, &ov, &format!("root=lvrepo:nosuch:1 {base}"), "noimage");
    assert!(l.starts_with("cannot serve root=lvrepo:nosuch:1:") && l.contains("nosuch"), "{l}");
    let l = boot_fails(&repo, &ov, &format!("root=lvrepo:guest=nosuch {base}"), "noguest");
    assert!(l.starts_with("no guest nosuch in the repository"), "{l}");
    // The overlay of boot:1 under another image: named, nothing served.
    boot_ok(&repo, &ov, &format!("root=lvrepo:boot:1 {base}"), "first");
    let other = r.scratch("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("init"), "not boot:1\n").unwrap();
    r.import(&other, "other:1");
    let repo = repo_disk(&r);
    let l = boot_fails(&repo, &ov, &format!("root=lvrepo:other:1 {base}"), "wrongimage");
    assert!(l.contains("overlay belongs to image root"), "{l}");
    // A damaged overlay partition (no filesystem).
    let zero = r.scratch("zero.img");
    std::fs::write(&zero, vec![0u8; 1 << 20]).unwrap();
    let l = boot_fails(&repo, &zero, "root=lvrepo:boot:1 lvrepo.repo=/dev/vda lvrepo.overlay=/dev/vdb", "damaged");
    assert!(l.starts_with("cannot mount overlay partition /dev/vdb"), "{l}");
}

/// dracut (Fedora, RHEL, SUSE) builds the same initrd from the module that
/// `initrd/install.sh` installs, and Debian's kernel boots it.
#[test]
fn dracut_builds_the_lvrepo_initrd_and_it_boots() {
    require_root();
    assert!(Path::new("/usr/bin/dracut").exists(), "dracut missing: scripts/setup.sh installs dracut-core");
    run("initrd/install.sh", Command::new("bash").arg(initrd_dir().join("install.sh")));
    let r = Lvrepo::init();
    let img = r.scratch("dracut.img");
    let (_, ver) = lvrepo_tests::newest_kernel();
    // Not host-only: the build host is not the guest. udev-rules loads the
    // virtio disk drivers and makes the by-label links.
    run(
        "dracut",
        Command::new("dracut")
            .args(["--force", "--no-hostonly", "--no-compress", "--modules", "base udev-rules lvrepo", "--add-drivers", "virtio_blk virtio_pci"])
            .arg(&img)
            .arg(&ver)
            .env("LVREPO_BIN", stripped_bin()),
    );
    let list = run("lsinitrd", Command::new("lsinitrd").arg(&img));
    for want in ["usr/bin/lvrepo", "usr/bin/@lvrepo", "usr/bin/lvrepo-shutdown", "lib/lvrepo-boot.sh", "hooks/cmdline/90-lvrepo-parse-root.sh", "hooks/mount/90-lvrepo-mount-root.sh", "hooks/shutdown/20-lvrepo-shutdown-hook.sh", "/fuse.ko", "/ext4.ko", "librocksdb"] {
        assert!(list.lines().any(|l| l.contains(want)), "dracut initrd lacks {want}:\n{list}");
    }
    let (repo, ov) = image_disks(&r);
    let (log, _) = boot_ok_with(&img, &repo, &ov, "root=lvrepo:boot:1 lvrepo.repo=LABEL=lvrepo lvrepo.overlay=LABEL=lvov", "dracut");
    assert_eq!(log, "dracut");
}
