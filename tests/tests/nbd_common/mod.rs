//! Helpers of the NBD tests: a repository with a volume, a guest of it, a
//! server of it, and the real clients (qemu-io, qemu-img, nbdsh).
#![allow(dead_code)]

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use lvrepo_tests::{report, require_root, Lvrepo};

pub const MIB: u64 = 1 << 20;
pub const SIZE: u64 = 64 * MIB;

/// A repository with volume `vol:1`: a 64 MiB raw disk with data at 1 MiB
/// (1 MiB of 0xab), 10 MiB (64 KiB of 0xcd) and its last 4 KiB (0xef).
/// Returns the repo and the raw disk it was imported from.
pub fn world() -> (Lvrepo, PathBuf) {
    require_root();
    let r = Lvrepo::init();
    let raw = r.scratch("disk.raw");
    qemu_img(&["create", "-f", "raw", raw.to_str().unwrap(), "64M"]);
    qemu_io_file(&raw, &["write -P 0xab 1M 1M", "write -P 0xcd 10M 64k", "write -P 0xef 67104768 4k"]);
    r.ok([OsStr::new("import"), raw.as_os_str(), OsStr::new("--volume"), OsStr::new("--image"), OsStr::new("vol:1")]);
    (r, raw)
}

pub fn run(cmd: &mut Command, what: &str) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(out.status.success(), "{}", report(what, &out));
    out
}

/// nbdsh with Debian's Python (python3-libnbd), whatever PATH says.
pub fn nbdsh() -> Command {
    let mut c = Command::new("/usr/bin/nbdsh");
    c.env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    c
}

pub fn qemu_img(args: &[&str]) -> Output {
    run(Command::new("qemu-img").args(args), &format!("qemu-img {}", args.join(" ")))
}

pub fn qemu_io_file(f: &Path, cmds: &[&str]) {
    let mut c = Command::new("qemu-io");
    c.args(["-f", "raw"]);
    for x in cmds {
        c.args(["-c", x]);
    }
    c.arg(f);
    run(&mut c, &format!("qemu-io {cmds:?} on a file"));
}

/// qemu-io against `uri`; every command must succeed (qemu-io prints
/// failures but exits 0, so its output is checked too).
pub fn qemu_io(uri: &str, cmds: &[&str]) -> String {
    let mut c = Command::new("qemu-io");
    c.args(["-f", "raw"]);
    for x in cmds {
        c.args(["-c", x]);
    }
    c.arg(uri);
    let out = run(&mut c, &format!("qemu-io {cmds:?}"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    for bad in ["Pattern verification failed", "failed:", "error", "Error"] {
        assert!(!text.contains(bad), "qemu-io {cmds:?}:\n{text}");
    }
    text
}

/// A server of `lvrepo nbd serve ARGS --socket S`, stopped on drop.
pub struct Served<'r> {
    pub r: &'r Lvrepo,
    pub sock: PathBuf,
    pub guest: Option<String>,
}

impl Served<'_> {
    pub fn uri(&self, name: &str) -> String {
        format!("nbd+unix:///{name}?socket={}", self.sock.display())
    }
}

pub fn serve<'r>(r: &'r Lvrepo, args: &[&str], sock_name: &str) -> Served<'r> {
    let sock = r.scratch(sock_name);
    let mut a: Vec<&OsStr> = vec![OsStr::new("nbd"), OsStr::new("serve")];
    a.extend(args.iter().map(OsStr::new));
    a.push(OsStr::new("--socket"));
    a.push(sock.as_os_str());
    r.ok(&a);
    let guest = args.windows(2).find(|w| w[0] == "--guest").map(|w| w[1].to_string()).filter(|_| !args.contains(&"--checkpoint"));
    Served { r, sock, guest }
}

impl Drop for Served<'_> {
    fn drop(&mut self) {
        if let Some(g) = &self.guest {
            let _ = self.r.run(["nbd", "stop", "--guest", g]);
        } else if let Some(pid) = server_pid(&self.sock) {
            // SAFETY: a signal to the server this guard started.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
    }
}

/// The pid of the `nbd serve --foreground` process listening on `sock`.
pub fn server_pid(sock: &Path) -> Option<i32> {
    let want = sock.as_os_str().as_encoded_bytes();
    for ent in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = ent.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(cmdline) = std::fs::read(ent.path().join("cmdline")) else { continue };
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        if args.contains(&&b"serve"[..]) && args.contains(&&b"--foreground"[..]) && args.contains(&want) {
            return Some(pid);
        }
    }
    None
}

pub fn guest(r: &Lvrepo, name: &str) {
    let dir = r.scratch("guests").join(name);
    r.ok([OsStr::new("guest"), OsStr::new("create"), OsStr::new(name), OsStr::new("--image"), OsStr::new("vol:1"), OsStr::new("--overlay"), dir.as_os_str()]);
}
