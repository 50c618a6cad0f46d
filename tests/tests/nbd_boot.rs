//! A real QEMU guest (TCG) boots Debian's kernel with its root disk an
//! lvrepo NBD export of an ext4 volume made from an image: the guest writes,
//! the host checkpoints and rolls back, and the next boot sees the
//! rolled-back state. Needs the kernel, QEMU and busybox that
//! scripts/setup.sh installs (linux-image-amd64, qemu-system-x86,
//! busybox-static).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lvrepo_tests::{report, require_root, Lvrepo};

/// The newest kernel and its initrd under /boot.
fn kernel() -> (PathBuf, PathBuf) {
    let (k, ver) = lvrepo_tests::newest_kernel();
    let initrd = PathBuf::from(format!("/boot/initrd.img-{ver}"));
    assert!(initrd.is_file(), "no initrd for {}: run update-initramfs -c -k {ver}", k.display());
    (k, initrd)
}

/// A root filesystem tree: busybox and an init that appends the boot's
/// label (kernel parameter lvrepo.test=LABEL) to /log, prints /log, powers off.
fn root_tree(dir: &Path) {
    for d in ["bin", "proc", "sys", "dev", "etc"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", dir.join("bin/busybox")).expect("busybox-static (scripts/setup.sh)");
    let init = "#!/bin/busybox sh\n\
        B=/bin/busybox\n\
        $B mount -t proc proc /proc\n\
        $B mount -o remount,rw /\n\
        L=$($B sed -n 's/.*lvrepo.test=\\([^ ]*\\).*/\\1/p' /proc/cmdline)\n\
        echo \"$L\" >> /log\n\
        $B sync\n\
        echo \"LVREPO-LOG: $($B tr '\\n' ' ' < /log)\"\n\
        $B sync\n\
        $B poweroff -f\n";
    std::fs::write(dir.join("init"), init).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.join("init"), std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Boot once with the guest's export as the root disk; the LVREPO-LOG line.
fn boot(sock: &Path, label: &str) -> String {
    let (k, initrd) = kernel();
    let drive = format!("driver=raw,if=virtio,file.driver=nbd,file.server.type=unix,file.server.path={},file.export=vm", sock.display());
    let mut c = Command::new("qemu-system-x86_64");
    c.args(["-machine", "q35,accel=tcg", "-cpu", "max", "-m", "512", "-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio"])
        .arg("-kernel")
        .arg(&k)
        .arg("-initrd")
        .arg(&initrd)
        .args(["-append", &format!("root=/dev/vda rw rootfstype=ext4 console=ttyS0 init=/init panic=-1 quiet lvrepo.test={label}")])
        .args(["-drive", &drive])
        .stdin(Stdio::null());
    let log = sock.with_extension(format!("{label}.console"));
    c.stdout(std::fs::File::create(&log).unwrap()).stderr(Stdio::piped());
    let t = Instant::now();
    let mut child = c.spawn().expect("qemu-system-x86_64 (scripts/setup.sh installs qemu-system-x86)");
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t.elapsed() > Duration::from_secs(300) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("boot {label} did not power off within 300 s:\n{}", std::fs::read_to_string(&log).unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = std::process::Output { status, stdout: std::fs::read(&log).unwrap_or_default(), stderr: Vec::new() };
    let console = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("boot {label}: {:.1} s", t.elapsed().as_secs_f64());
    console
        .lines()
        .find(|l| l.contains("LVREPO-LOG:"))
        .map(|l| l.split("LVREPO-LOG:").nth(1).unwrap_or("").trim().to_string())
        .unwrap_or_else(|| panic!("{}", report(&format!("boot {label}: no LVREPO-LOG line on the console"), &out)))
}

#[test]
fn a_qemu_guest_boots_from_an_nbd_volume_and_a_rollback_shows_at_the_next_boot() {
    require_root();
    let r = Lvrepo::init();
    let tree = r.scratch("root");
    root_tree(&tree);
    let disk = r.scratch("root.ext4");
    let out = Command::new("mkfs.ext4").args(["-q", "-F", "-L", "lvroot", "-d"]).arg(&tree).arg(&disk).arg("64M").output().unwrap();
    assert!(out.status.success(), "{}", report("mkfs.ext4 -d", &out));
    r.ok([OsStr::new("import"), disk.as_os_str(), OsStr::new("--volume"), OsStr::new("--image"), OsStr::new("bootvol:1")]);
    let gdir = r.scratch("vm");
    r.ok([OsStr::new("guest"), OsStr::new("create"), OsStr::new("vm"), OsStr::new("--image"), OsStr::new("bootvol:1"), OsStr::new("--overlay"), gdir.as_os_str()]);
    let sock = r.scratch("vm.sock");
    let serve = [OsStr::new("nbd"), OsStr::new("serve"), OsStr::new("--guest"), OsStr::new("vm"), OsStr::new("--socket"), sock.as_os_str()];
    r.ok(serve);
    struct Stop<'a>(&'a Lvrepo);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            let _ = self.0.run(["nbd", "stop", "--guest", "vm"]);
        }
    }
    let _stop = Stop(&r);
    assert_eq!(boot(&sock, "one"), "one");
    r.ok(["checkpoint", "vm", "-m", "after the first boot"]);
    assert_eq!(boot(&sock, "two"), "one two");
    r.ok(["rollback", "vm", "1"]);
    assert_eq!(boot(&sock, "three"), "one three", "the third boot must see the rolled-back disk");
    // The image itself never changed.
    r.ok(["nbd", "stop", "--guest", "vm"]);
    r.ok(["verify"]);
}
