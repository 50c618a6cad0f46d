//! The Debian package: `scripts/deb.sh` builds it with cargo-deb (metadata
//! in repo-tools/Cargo.toml), and it installs with dpkg into a scratch root
//! (a dpkg database of its own, so the host is not touched): the binary, a
//! man page per command, completions, the systemd units and the mount(8)
//! helper; the installed helper mounts an image; it removes cleanly. Its
//! dependencies are installed on this host (no `--force-depends` needed
//! here).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use lvrepo_tests::{report, require_root, Lvrepo};

fn dpkg(root: &Path, args: &[&str], deb: Option<&Path>) -> std::process::Output {
    let mut c = Command::new("dpkg");
    c.arg(format!("--root={}", root.display())).args(args);
    if let Some(d) = deb {
        c.arg(d);
    }
    c.output().expect("dpkg")
}

#[test]
fn the_debian_package_builds_installs_and_works() {
    require_root();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new("bash").arg(src.join("scripts/deb.sh")).args(["--profile", "dev"]).current_dir(&src).output().expect("scripts/deb.sh");
    assert!(out.status.success(), "{}", report("scripts/deb.sh (cargo-deb: scripts/setup.sh installs it)", &out));
    let deb = src.join(String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or_default().trim());
    assert!(deb.extension().is_some_and(|e| e == "deb") && deb.is_file(), "{}", report("scripts/deb.sh", &out));

    // Every dependency is installed here, at the version asked for.
    let f = Command::new("dpkg-deb").args(["-f"]).arg(&deb).arg("Depends").output().unwrap();
    let depends = String::from_utf8_lossy(&f.stdout).trim().to_string();
    assert!(depends.contains("fuse3") && depends.contains("librocksdb"), "Depends: {depends}");
    for dep in depends.split(", ") {
        let (name, ver) = match dep.split_once(" (>= ") {
            Some((n, v)) => (n, Some(v.trim_end_matches(')'))),
            None => (dep, None),
        };
        let q = Command::new("dpkg-query").args(["-W", "-f", "${Version}", name]).output().unwrap();
        assert!(q.status.success(), "dependency {name} is not installed");
        if let Some(v) = ver {
            let have = String::from_utf8_lossy(&q.stdout).to_string();
            assert!(Command::new("dpkg").args(["--compare-versions", &have, "ge", v]).status().unwrap().success(), "{name} {have} < {v}");
        }
    }

    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    for d in ["var/lib/dpkg/info", "var/lib/dpkg/updates", "var/log"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(root.join("var/lib/dpkg/status"), b"").unwrap();
    // The scratch database knows none of the host's packages.
    let out = dpkg(root, &["--force-depends", "-i"], Some(&deb));
    assert!(out.status.success(), "{}", report("dpkg -i", &out));
    let st = dpkg(root, &["-s", "lvrepo"], None);
    assert!(String::from_utf8_lossy(&st.stdout).contains("Status: install ok installed"), "{}", report("dpkg -s", &st));

    let bin = root.join("usr/bin/lvrepo");
    let v = Command::new(&bin).arg("--version").output().unwrap();
    assert!(v.status.success() && String::from_utf8_lossy(&v.stdout).starts_with("lvrepo "), "{}", report("lvrepo --version", &v));
    // A man page per command and subcommand: the ones the binary generates.
    let gen = tempfile::tempdir().unwrap();
    assert!(Command::new(&bin).arg("man").arg("--out").arg(gen.path()).status().unwrap().success());
    let names = |d: &Path, strip: &str| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().trim_end_matches(strip).to_string()).collect();
        v.sort();
        v
    };
    let installed = names(&root.join("usr/share/man/man1"), ".gz");
    assert_eq!(installed, names(gen.path(), ""), "installed man pages differ from the commands'");
    assert!(installed.contains(&"lvrepo-guest-create.1".to_string()));
    for f in ["usr/share/bash-completion/completions/lvrepo", "usr/share/zsh/vendor-completions/_lvrepo", "usr/share/fish/vendor_completions.d/lvrepo.fish", "lib/systemd/system/lvrepo-guest@.service", "lib/systemd/system/lvrepo-backup@.timer", "usr/share/doc/lvrepo/operations.md"] {
        assert!(root.join(f).is_file(), "the package lacks /{f}");
    }
    let helper = root.join("sbin/mount.fuse.lvrepo");
    assert_eq!(std::fs::read_link(&helper).ok(), Some(PathBuf::from("/usr/bin/lvrepo")), "mount helper link");

    // The installed binary, called by the helper's name as mount(8) calls it.
    let r = Lvrepo::init();
    let tree = r.scratch("src");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("hello"), b"hi\n").unwrap();
    r.import(&tree, "web:1");
    let mp = r.scratch("mp");
    std::fs::create_dir(&mp).unwrap();
    let opts = format!("repo={},overlay={},nosuid", r.repo().display(), r.scratch("ov").display());
    let m = Command::new(&bin).arg0("mount.fuse.lvrepo").arg("web:1").arg(&mp).args(["-o", &opts]).output().unwrap();
    assert!(m.status.success(), "{}", report("mount.fuse.lvrepo web:1", &m));
    let read = std::fs::read(mp.join("hello"));
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let u = Command::new(&bin).arg("umount").arg(&mp).output().unwrap();
    assert_eq!(read.ok().as_deref(), Some(&b"hi\n"[..]));
    assert!(info.lines().any(|l| l.contains(mp.to_str().unwrap()) && l.contains("fuse.lvrepo web:1")), "no fuse.lvrepo mount of web:1:\n{info}");
    assert!(u.status.success(), "{}", report("lvrepo umount", &u));

    let out = dpkg(root, &["-r", "lvrepo"], None);
    assert!(out.status.success(), "{}", report("dpkg -r", &out));
    assert!(!bin.exists() && !helper.exists() && !root.join("usr/share/man/man1/lvrepo.1.gz").exists(), "dpkg -r left files");
}
