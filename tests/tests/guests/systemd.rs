//! The host integration a unit relies on: `dist/systemd/lvrepo-guest@.service`
//! run as systemd runs it (its ExecStartPre and ExecStart, `%i` and its
//! Environment= defaults substituted, NOTIFY_SOCKET set): READY=1 arrives
//! only once the guest is mounted, and SIGTERM (systemctl stop) unmounts it
//! cleanly.

use super::*;
use std::os::unix::net::UnixDatagram;

/// The unit's `KEY=VALUE` lines, in order.
fn unit_lines(unit: &str) -> Vec<(String, String)> {
    unit.lines().filter(|l| !l.starts_with('#')).filter_map(|l| l.split_once('=')).map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).collect()
}

/// A unit command line as systemd expands it: `%i`, `${VAR}` (one word) and
/// `$VAR` (split into words), `/usr/bin/lvrepo` as the binary under test.
fn expand(cmd: &str, inst: &str, env: &[(String, String)]) -> Vec<String> {
    let get = |k: &str| env.iter().rev().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap_or_default();
    let mut out = Vec::new();
    for w in cmd.replace("%i", inst).split_whitespace() {
        if let Some(var) = w.strip_prefix('$').filter(|v| !v.starts_with('{')) {
            out.extend(get(var).split_whitespace().map(str::to_string));
            continue;
        }
        let mut w = w.to_string();
        while let Some(i) = w.find("${") {
            let j = w[i..].find('}').map(|j| i + j).expect("unclosed ${");
            w = format!("{}{}{}", &w[..i], get(&w[i + 2..j]), &w[j + 1..]);
        }
        out.push(if w == "/usr/bin/lvrepo" { lvrepo_bin().display().to_string() } else { w });
    }
    out
}

#[test]
fn guest_unit_mounts_notifies_ready_and_stops_cleanly() {
    let w = World::new(false, |src| put(&src.join("hello"), b"from the image\n"));
    let g = w.guest("svc");
    let unit = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/systemd/lvrepo-guest@.service")).expect("read unit");
    let lines = unit_lines(&unit);
    assert!(lines.contains(&("Type".into(), "notify".into())), "the unit is not Type=notify");
    let mounts = w.r.scratch("unit-mounts");
    // Environment= defaults, then what an EnvironmentFile would set.
    let mut env: Vec<(String, String)> = lines.iter().filter(|(k, _)| k == "Environment").filter_map(|(_, v)| v.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect();
    assert_eq!(env.iter().find(|(k, _)| k == "LVREPO_GUEST_MOUNTS").map(|(_, v)| v.as_str()), Some("/var/lib/lvrepo/mnt"), "documented default mount root");
    env.push(("LVREPO_GUEST_MOUNTS".into(), mounts.display().to_string()));
    env.push(("LVREPO_MOUNT_OPTS".into(), "-o nosuid,nodev".into()));
    for (_, pre) in lines.iter().filter(|(k, _)| k == "ExecStartPre") {
        let argv = expand(pre, "svc", &env);
        let st = Command::new(&argv[0]).args(&argv[1..]).status().expect("ExecStartPre");
        assert!(st.success(), "ExecStartPre {argv:?}");
    }
    let start = lines.iter().find(|(k, _)| k == "ExecStart").map(|(_, v)| v.clone()).expect("ExecStart");
    let argv = expand(&start, "svc", &env);
    let mp = mounts.join("svc");
    assert_eq!(argv.last().map(PathBuf::from), Some(mp.clone()), "{argv:?}");

    let sock_path = w.r.scratch("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).expect("bind notify socket");
    // A bound on a hang, not a measurement: the daemon answers in milliseconds.
    sock.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let log = fs::File::create(w.r.scratch("unit.log")).unwrap();
    let mut child = Command::new(&argv[0]).args(&argv[1..]).env("LVREPO_REPO", w.r.repo()).env("NOTIFY_SOCKET", &sock_path).stdin(Stdio::null()).stdout(log.try_clone().unwrap()).stderr(log).spawn().expect("ExecStart");
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).unwrap_or_else(|e| {
        let _ = child.kill();
        panic!("no readiness notification: {e}\n{}", fs::read_to_string(w.r.scratch("unit.log")).unwrap_or_default())
    });
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(msg.lines().any(|l| l == "READY=1"), "{msg}");
    assert!(msg.contains(&format!("MAINPID={}", child.id())), "{msg}");
    // Ready means mounted: the guest is there, with the unit's options.
    assert!(is_mounted(&mp), "READY=1 before {} was mounted", mp.display());
    assert_eq!(fs::read(mp.join("hello")).unwrap(), b"from the image\n");
    fs::write(mp.join("written"), b"kept\n").unwrap();
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = info.lines().find(|l| l.split(' ').nth(4) == Some(mp.to_str().unwrap())).expect("mountinfo line");
    assert!(line.contains("nosuid") && line.contains("nodev") && line.contains("fuse.lvrepo"), "{line}");
    // systemctl stop: SIGTERM to the main process.
    // SAFETY: a signal to the child we started; no memory is passed.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let st = child.wait().unwrap();
    assert!(st.success(), "the daemon exited with {st} on SIGTERM:\n{}", fs::read_to_string(w.r.scratch("unit.log")).unwrap_or_default());
    assert!(!is_mounted(&mp), "still mounted after stop");
    // What was written while it ran is in the guest.
    let m = g.mount();
    assert_eq!(fs::read(m.p("written")).unwrap(), b"kept\n");
    m.umount();
}
