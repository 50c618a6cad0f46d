//! Safety against gc, operators and other users: gc never removes what a
//! mounted guest's checkpoint relies on (the reported scenario, and random
//! interleavings of import, delete, gc, writes, checkpoints and rollbacks,
//! some of them concurrent); `delete` refuses an image a guest stands on;
//! mount flags are applied; an unprivileged user reads nothing of the
//! repository or of another guest's overlay, and cannot drive a guest's
//! daemon.

use super::*;
use std::collections::BTreeMap;

/// Pool content `i`: 200 KiB that compress poorly (so storing them shows).
fn pool(i: usize) -> Vec<u8> {
    pseudo_random(0x5afe_0000 + i as u64, 200 << 10)
}

fn import_pool(w: &World, image: &str, members: &[usize]) {
    let src = w.r.scratch(&format!("src-{}", image.replace(':', "-")));
    let _ = fs::remove_dir_all(&src);
    mkdir(&src);
    for &i in members {
        put(&src.join(format!("p{i}")), &pool(i));
    }
    w.r.import(&src, image);
    rm_rf(&src);
}

#[test]
fn gc_under_a_mounted_guest_keeps_what_its_checkpoint_needs() {
    let w = World::new(false, |s| put(&s.join("base"), b"base\n"));
    import_pool(&w, "other:1", &[0]);
    let g = w.guest("g");
    let m = g.mount();
    // The only image holding pool(0) goes while the guest is mounted.
    w.r.ok(["delete", "other:1"]);
    w.r.ok(["gc"]);
    let before = g.local_bytes();
    put(&m.p("copy"), &pool(0));
    let cp = g.checkpoint("holds pool 0");
    assert!(g.local_bytes() >= before + (150 << 10), "the checkpoint did not store the bytes gc had removed from the repository");
    put(&m.p("copy"), b"changed\n");
    g.rollback(cp);
    assert!(fs::read(m.p("copy")).expect("read after rollback") == pool(0), "rolled-back file differs");
    m.umount();
    w.r.ok(["gc"]);
    w.r.ok(["verify"]);
    let m = g.mount();
    assert!(fs::read(m.p("copy")).expect("read after remount") == pool(0));
    m.umount();
}

/// What the guest's `/w` holds: file name -> pool index.
type State = BTreeMap<String, usize>;

fn check_state(m: &Mounted, want: &State, what: &str) {
    let dir = m.p("w");
    let mut got = State::new();
    if dir.exists() {
        for e in fs::read_dir(&dir).expect("readdir w") {
            let e = e.expect("readdir");
            let name = e.file_name().to_string_lossy().into_owned();
            let bytes = fs::read(e.path()).unwrap_or_else(|er| panic!("{what}: reading w/{name}: {er}"));
            let i = (0..8).find(|&i| pool(i) == bytes).unwrap_or_else(|| panic!("{what}: w/{name} holds no pool content"));
            got.insert(name, i);
        }
    }
    assert_eq!(&got, want, "{what}");
}

#[test]
fn random_interleavings_of_gc_import_checkpoint_and_rollback_lose_nothing() {
    let w = World::new(false, |s| put(&s.join("base"), b"base\n"));
    let g = w.guest("g");
    let s = seed("gc_interleavings");
    let mut rng = Rng::new(s);
    let mut images: Vec<String> = Vec::new();
    let mut next_image = 1;
    let mut state = State::new();
    let mut cps: Vec<(u64, State)> = Vec::new();
    let mut m = Some(g.mount());
    mkdir(&m.as_ref().expect("mounted").p("w"));
    for step in 0..40 {
        match rng.below(8) {
            0 => {
                let members: Vec<usize> = (0..8).filter(|_| rng.below(3) == 0).collect();
                let name = format!("p:{next_image}");
                next_image += 1;
                import_pool(&w, &name, &members);
                images.push(name);
            }
            1 if !images.is_empty() => {
                let i = rng.below(images.len() as u64) as usize;
                w.r.ok(["delete", &images.remove(i)]);
            }
            2 => {
                w.r.ok(["gc"]);
            }
            3 | 4 => {
                if let Some(m) = &m {
                    let f = format!("f{}", rng.below(4));
                    let k = rng.below(8) as usize;
                    put(&m.p("w").join(&f), &pool(k));
                    state.insert(f, k);
                }
            }
            5 => {
                // A checkpoint and a gc at once: gc waits for the checkpoint
                // or runs before it; either way nothing it needs goes.
                let gc = lvrepo_cmd(&w.r, &["gc"]).spawn().expect("spawn gc");
                let n = g.checkpoint(&format!("step {step}"));
                let out = gc.wait_with_output().expect("gc");
                assert!(out.status.success(), "{}", report("gc beside a checkpoint", &out));
                cps.push((n, state.clone()));
            }
            6 if !cps.is_empty() => {
                let (n, st) = cps[rng.below(cps.len() as u64) as usize].clone();
                g.rollback(n);
                state = st;
            }
            7 => match m.take() {
                Some(mm) => mm.umount(),
                None => m = Some(g.mount()),
            },
            _ => {}
        }
        if let Some(mm) = &m {
            check_state(mm, &state, &format!("seed {s}, after step {step}"));
        }
    }
    drop(m);
    w.r.ok(["gc"]);
    let v = w.r.run(["verify"]);
    assert!(v.status.success(), "seed {s}: {}", report("verify after the interleaving", &v));
    // Every checkpoint still reads back exactly.
    for (n, st) in cps.iter().rev().take(6) {
        g.rollback(*n);
        let mm = g.mount();
        check_state(&mm, st, &format!("seed {s}, checkpoint {n} after gc"));
        mm.umount();
    }
}

#[test]
fn delete_refuses_an_image_a_guest_stands_on() {
    let w = World::new(false, |s| put(&s.join("f"), b"data\n"));
    let g = w.guest("web01");
    let err = w.r.fails(["delete", "img:1"], 6);
    assert!(err.contains("web01"), "the refusal names the guest: {err}");
    assert!(w.r.image_names().contains(&"img:1".to_string()));
    // An image nobody stands on goes at once.
    import_pool(&w, "spare:1", &[1]);
    w.r.ok(["delete", "spare:1"]);
    // Forced: the image goes, gc keeps what the guest uses.
    w.r.ok(["delete", "img:1", "--force"]);
    w.r.ok(["gc"]);
    w.r.ok(["verify"]);
    let m = g.mount();
    assert_eq!(fs::read(m.p("f")).expect("read"), b"data\n");
    m.umount();
}

fn mountinfo_opts(mp: &Path) -> String {
    let mp = fs::canonicalize(mp).expect("canonicalize");
    let info = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    info.lines().find(|l| l.split(' ').nth(4).map(Path::new) == Some(&mp)).map(|l| l.split(' ').nth(5).unwrap_or("").to_string()).unwrap_or_else(|| panic!("{} not in mountinfo", mp.display()))
}

#[test]
fn mount_flags_are_applied_to_the_mount() {
    let w = World::new(false, |s| {
        put(&s.join("run.sh"), b"#!/bin/sh\necho ran\n");
        chmod(&s.join("run.sh"), 0o755);
    });
    let g = w.guest("g");
    let out = w.r.run([os("mount"), os("--guest"), os("g"), os("-o"), os("nosuid,nodev,noexec,noatime"), g.mp.as_os_str()]);
    assert!(out.status.success(), "{}", report("mount -o nosuid,nodev,noexec,noatime", &out));
    let m = Mounted { g: &g, live: true, pid: daemon_pid(&g.mp).expect("daemon") };
    let opts = mountinfo_opts(&g.mp);
    for f in ["nosuid", "nodev", "noexec", "noatime"] {
        assert!(opts.split(',').any(|o| o == f), "{f} missing from the mount's flags {opts}");
    }
    let run = Command::new(m.p("run.sh")).output();
    assert!(matches!(&run, Err(e) if e.raw_os_error() == Some(libc::EACCES)), "a noexec mount ran a program: {run:?}");
    m.umount();
    let out = w.r.run([os("mount"), os("--guest"), os("g"), os("--read-only"), g.mp.as_os_str()]);
    assert!(out.status.success(), "{}", report("mount --read-only", &out));
    let m = Mounted { g: &g, live: true, pid: daemon_pid(&g.mp).expect("daemon") };
    assert!(mountinfo_opts(&g.mp).split(',').any(|o| o == "ro"));
    let e = fs::write(m.p("new"), b"x").expect_err("a read-only mount took a write");
    assert_eq!(e.raw_os_error(), Some(libc::EROFS));
    m.umount();
    w.r.fails([os("mount"), os("--guest"), os("g"), os("-o"), os("bogus"), g.mp.as_os_str()], 2);
}

const USER: &str = "tests";

/// Run `cmd args` as the unprivileged test user.
fn as_user(cmd: &str, args: &[&OsStr]) -> Output {
    if Command::new("id").arg(USER).output().map(|o| !o.status.success()).unwrap_or(true) {
        let out = Command::new("useradd").args(["-U", "-M", "-s", "/usr/sbin/nologin", USER]).output().expect("useradd");
        assert!(out.status.success(), "{}", report("useradd tests", &out));
    }
    Command::new("setpriv").args([&format!("--reuid={USER}"), &format!("--regid={USER}"), "--init-groups", "--"]).arg(cmd).args(args).env_remove("LVREPO_REPO").stdin(Stdio::null()).output().expect("setpriv")
}

/// Every path under `dir` (dir included), iteratively.
fn all_paths(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        if fs::symlink_metadata(&out[i]).is_ok_and(|m| m.is_dir()) {
            let mut kids: Vec<PathBuf> = fs::read_dir(&out[i]).expect("readdir").map(|e| e.expect("readdir").path()).collect();
            out.append(&mut kids);
        }
        i += 1;
    }
    out
}

#[test]
fn an_unprivileged_user_reads_nothing_of_the_repository_or_an_overlay() {
    let w = World::new(false, |s| {
        mkdir(&s.join("etc"));
        put(&s.join("etc/shadow"), b"root:SECRET-IN-IMAGE:19000::::::\n");
        chmod(&s.join("etc/shadow"), 0o600);
        put(&s.join("etc/motd"), b"hello\n");
    });
    // Only lvrepo's own modes may protect the files: open the way to them.
    let base = w.r.repo().parent().expect("base");
    chmod(base, 0o755);
    let g = w.guest("g");
    let m = g.mount();
    put(&m.p("private"), b"SECRET-IN-OVERLAY ".repeat(5000).as_slice());
    chmod(&m.p("private"), 0o600);
    put(&m.p("small"), b"SECRET-SMALL\n");
    chmod(&m.p("small"), 0o600);
    g.checkpoint("secrets");
    put(&m.p("after"), b"SECRET-AFTER\n");
    chmod(&m.p("after"), 0o600);

    let bin = lvrepo_bin();
    let cat = as_user(bin.to_str().expect("utf-8 path"), &[os("--repo"), w.r.repo().as_os_str(), os("cat"), os("img:1:/etc/shadow")]);
    assert_eq!(cat.status.code(), Some(77), "{}", report("cat as an unprivileged user", &cat));
    assert!(!String::from_utf8_lossy(&cat.stdout).contains("SECRET"));
    assert!(String::from_utf8_lossy(&cat.stderr).contains("permission denied"), "{}", report("cat as an unprivileged user", &cat));
    // Nothing lvrepo created is open to group or others...
    for p in all_paths(w.r.repo()).into_iter().chain(all_paths(&g.dir)) {
        let md = fs::symlink_metadata(&p).expect("lstat");
        if md.file_type().is_symlink() {
            continue;
        }
        assert_eq!(md.mode() & 0o077, 0, "{} is mode {:o}", p.display(), md.mode() & 0o7777);
    }
    // ...and reading any of it directly fails.
    for p in all_paths(w.r.repo()).into_iter().chain(all_paths(&g.dir)).filter(|p| p.is_file()) {
        let out = as_user("cat", &[p.as_os_str()]);
        assert!(!out.status.success() && !String::from_utf8_lossy(&out.stdout).contains("SECRET"), "the user read {}", p.display());
    }
    // Through the mount the user sees what a user of the guest would.
    let motd = as_user("cat", &[m.p("etc/motd").as_os_str()]);
    assert_eq!(motd.stdout, b"hello\n", "{}", report("cat motd as user", &motd));
    for f in ["etc/shadow", "private", "small", "after"] {
        let out = as_user("cat", &[m.p(f).as_os_str()]);
        assert!(!out.status.success() && out.stdout.is_empty(), "the user read {f} through the mount");
    }
    m.umount();
}

#[test]
fn the_control_socket_answers_only_root() {
    let w = World::new(false, |s| put(&s.join("f"), b"x\n"));
    let g = w.guest("g");
    let m = g.mount();
    // Open the way to the socket, as a careless bind mount or chmod would.
    chmod(w.r.repo().parent().expect("base"), 0o755);
    chmod(&g.dir, 0o755);
    let sock = g.dir.join("control.sock");
    chmod(&sock, 0o777);
    // A raw client in a child that drops to uid/gid 65534 (no allocation
    // after the fork).
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let path = sock.as_os_str().as_encoded_bytes();
    assert!(path.len() < addr.sun_path.len(), "socket path too long for sockaddr_un");
    for (d, s) in addr.sun_path.iter_mut().zip(path) {
        *d = *s as libc::c_char;
    }
    let req = b"{\"op\":\"checkpoint\",\"message\":\"x\"}\n";
    let code = common::in_child(|| {
        // SAFETY: raw syscalls on data prepared before the fork.
        unsafe {
            if libc::setgroups(0, std::ptr::null()) != 0 || libc::setgid(65534) != 0 || libc::setuid(65534) != 0 {
                return 10;
            }
            let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
            if fd < 0 || libc::connect(fd, (&addr as *const libc::sockaddr_un).cast(), std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t) != 0 {
                return 11;
            }
            // The daemon may refuse (reply and close) before the request
            // is written: a failed write is no failure, the reply counts.
            libc::write(fd, req.as_ptr().cast(), req.len());
            let mut buf = [0u8; 512];
            let mut n = 0usize;
            while n < buf.len() {
                let k = libc::read(fd, buf.as_mut_ptr().add(n).cast(), buf.len() - n);
                if k <= 0 {
                    break;
                }
                n += k as usize;
            }
            let needle = b"permission denied";
            let found = (0..n.saturating_sub(needle.len() - 1)).any(|i| buf[i..i + needle.len()] == needle[..]);
            if found { 0 } else { 13 }
        }
    });
    assert_eq!(code, 0, "the daemon did not refuse uid 65534 (child exit {code}: 10 setuid, 11 connect, 13 no refusal)");
    assert!(g.checkpoints().is_empty(), "an unprivileged user took a checkpoint");
    m.umount();
}
