//! Fault injection: for each kind of file a repository and a guest keep
//! (packs, index tables, MANIFEST, CURRENT, logs, FORMAT, the guest's store,
//! the guest registry) and each fault (flip a byte, zero a range, truncate,
//! delete): `verify` exits with the documented code and names the file or
//! the object; `cat`/`export` never give wrong bytes; rollback refuses a
//! damaged checkpoint; `verify --repair-from` heals pack damage.
//! One world is built once and restored from a copy before each case.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use lvrepo_tests::fixture::pseudo_random;
use lvrepo_tests::{image_path, lvrepo_bin, report, require_root, Lvrepo};

#[derive(Clone, Copy, Debug)]
enum Fault {
    Flip,
    Zero,
    Truncate,
    Delete,
}
const FAULTS: [Fault; 4] = [Fault::Flip, Fault::Zero, Fault::Truncate, Fault::Delete];

fn inject(path: &Path, fault: Fault) {
    let len = fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).len();
    assert!(len > 0 || matches!(fault, Fault::Delete), "{} is empty: nothing to damage", path.display());
    let f = || fs::OpenOptions::new().write(true).read(true).open(path).unwrap();
    match fault {
        Fault::Flip => {
            let mut b = [0u8; 1];
            f().read_exact_at(&mut b, len / 2).unwrap();
            f().write_all_at(&[b[0] ^ 0xff], len / 2).unwrap();
        }
        Fault::Zero => {
            let n = (len / 4).max(1);
            f().write_all_at(&vec![0u8; n as usize], len / 4).unwrap();
        }
        Fault::Truncate => f().set_len(len / 2).unwrap(),
        Fault::Delete => fs::remove_file(path).unwrap(),
    }
}

/// The largest file in `dir` whose name satisfies `pick`.
fn largest(dir: &Path, pick: impl Fn(&str) -> bool) -> PathBuf {
    fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| pick(&p.file_name().unwrap().to_string_lossy()))
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .unwrap_or_else(|| panic!("no matching file in {}", dir.display()))
}

struct World {
    r: Lvrepo,
    src: PathBuf,
    gdir: PathBuf,
    pristine: PathBuf,
    files: Vec<(String, Vec<u8>)>,
}

fn sh(args: &[&OsStr]) {
    let st = Command::new(args[0]).args(&args[1..]).status().unwrap();
    assert!(st.success(), "{args:?}");
}

impl World {
    fn new() -> World {
        require_root();
        let r = Lvrepo::init();
        let src = r.scratch("src");
        fs::create_dir_all(src.join("sub")).unwrap();
        let mut files = Vec::new();
        for i in 0..2u64 {
            files.push((format!("sub/f{i}"), pseudo_random(300 + i, 90_000 + i as usize * 7)));
        }
        files.push(("big".into(), pseudo_random(9, 400_000)));
        files.push(("small".into(), b"small file\n".to_vec()));
        for (p, d) in &files {
            fs::write(src.join(p), d).unwrap();
        }
        r.import(&src, "img:1");
        let gfile = r.scratch("gfile");
        fs::write(&gfile, pseudo_random(77, 150_000)).unwrap();
        let gdir = r.scratch("g");
        let spec = format!("/etc/x={}", gfile.display());
        r.ok([OsStr::new("guest"), "create".as_ref(), "web".as_ref(), "--image".as_ref(), "img:1".as_ref(), "--overlay".as_ref(), gdir.as_os_str(), "--file".as_ref(), spec.as_ref()]);
        r.ok(["checkpoint", "web", "-m", "one"]);
        r.ok(["verify"]);
        let pristine = r.scratch("pristine");
        fs::create_dir(&pristine).unwrap();
        sh(&["cp".as_ref(), "-a".as_ref(), r.repo.as_os_str(), pristine.join("repo").as_os_str()]);
        sh(&["cp".as_ref(), "-a".as_ref(), gdir.as_os_str(), pristine.join("g").as_os_str()]);
        // lvrepo's own tar keeps every attribute: its trees have the image's ids.
        r.export("img:1", &pristine.join("img.tar"));
        World { r, src, gdir, pristine, files }
    }

    fn restore(&self) {
        for (live, saved) in [(&self.r.repo, "repo"), (&self.gdir, "g")] {
            fs::remove_dir_all(live).unwrap();
            sh(&["cp".as_ref(), "-a".as_ref(), self.pristine.join(saved).as_os_str(), live.as_os_str()]);
        }
    }

    /// `cat` every image file: 0 with exactly its bytes, or one of `codes`
    /// with at most a correct prefix. Returns how many failed.
    fn cat_all(&self, codes: &[i32], case: &str) -> usize {
        let mut failed = 0;
        for (p, data) in &self.files {
            let out = self.r.run(["cat".into(), image_path("img:1", p.as_bytes())]);
            match out.status.code() {
                Some(0) => assert!(out.stdout == *data, "{case}: cat {p} exited 0 with WRONG bytes"),
                Some(c) if codes.contains(&c) => {
                    assert!(data.starts_with(&out.stdout), "{case}: cat {p} failed but printed wrong bytes");
                    failed += 1;
                }
                _ => panic!("{}", report(&format!("{case}: cat {p}: expected 0 or {codes:?}"), &out)),
            }
        }
        failed
    }

    /// Export to a directory: 0 with every file right, or one of `codes`.
    fn export_checked(&self, codes: &[i32], case: &str) {
        let dest = self.r.scratch("out");
        let _ = fs::remove_dir_all(&dest);
        let out = self.r.run([OsStr::new("export"), "img:1".as_ref(), dest.as_os_str()]);
        match out.status.code() {
            Some(0) => {
                for (p, data) in &self.files {
                    assert!(fs::read(dest.join(p)).unwrap() == *data, "{case}: export exited 0 with WRONG bytes in {p}");
                }
            }
            Some(c) if codes.contains(&c) => {}
            _ => panic!("{}", report(&format!("{case}: export: expected 0 or {codes:?}"), &out)),
        }
        let _ = fs::remove_dir_all(&dest);
    }
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Run `args`; assert the exit code is one of `codes` and, unless it is
/// 0, that the output contains one of `needles`.
fn expect(r: &Lvrepo, args: &[&str], codes: &[i32], needles: &[String], case: &str) -> Output {
    let out = r.run(args);
    let code = out.status.code().unwrap_or(-1);
    assert!(codes.contains(&code), "{}", report(&format!("{case}: lvrepo {args:?}: expected {codes:?}"), &out));
    let t = text(&out);
    assert!(code == 0 || needles.iter().any(|n| t.contains(n.as_str())), "{case}: lvrepo {args:?} names none of {needles:?}:\n{t}");
    out
}

#[derive(Clone, Copy, Debug)]
enum Target {
    RepoPack,
    RepoTable,
    RepoManifest,
    RepoCurrent,
    RepoFormat,
    GuestPack,
    GuestTable,
    GuestManifest,
    GuestCurrent,
    GuestState,
    Registry,
}

impl Target {
    fn file(self, w: &World) -> PathBuf {
        let (repo_idx, guest_idx) = (w.r.repo.join("index"), w.gdir.join("store/index"));
        match self {
            Target::RepoPack => largest(&w.r.repo.join("packs"), |n| n.ends_with(".pack")),
            Target::RepoTable => largest(&repo_idx, |n| n.ends_with(".sst")),
            Target::RepoManifest => largest(&repo_idx, |n| n.starts_with("MANIFEST-")),
            Target::RepoCurrent => repo_idx.join("CURRENT"),
            Target::RepoFormat => w.r.repo.join("FORMAT"),
            Target::GuestPack => largest(&w.gdir.join("store/packs"), |n| n.ends_with(".pack")),
            Target::GuestTable => largest(&guest_idx, |n| n.ends_with(".sst")),
            Target::GuestManifest => largest(&guest_idx, |n| n.starts_with("MANIFEST-")),
            Target::GuestCurrent => guest_idx.join("CURRENT"),
            Target::GuestState => w.gdir.join("STATE"),
            Target::Registry => w.r.repo.join("guests/web.json"),
        }
    }
}

#[test]
fn every_fault_in_every_file_is_detected_named_and_never_served() {
    let w = World::new();
    let r = &w.r;
    let targets = [
        Target::RepoPack,
        Target::RepoTable,
        Target::RepoManifest,
        Target::RepoCurrent,
        Target::RepoFormat,
        Target::GuestPack,
        Target::GuestTable,
        Target::GuestManifest,
        Target::GuestCurrent,
        Target::GuestState,
        Target::Registry,
    ];
    for target in targets {
        for fault in FAULTS {
            w.restore();
            let file = target.file(&w);
            let case = format!("{target:?} {fault:?} ({})", file.display());
            inject(&file, fault);
            let name = |p: &Path| p.display().to_string();
            let repo_index = name(&r.repo.join("index"));
            let guest_index = name(&w.gdir.join("store/index"));
            // A MANIFEST cut at a record boundary is a valid older MANIFEST:
            // RocksDB opens the index as it was then, and verify names the
            // table files it no longer lists.
            let cut_manifest = matches!(fault, Fault::Truncate) && matches!(target, Target::RepoManifest | Target::GuestManifest);
            match target {
                Target::RepoPack => {
                    let out = expect(r, &["verify"], &[4], &[name(&file), "img:1:/".into()], &case);
                    let t = text(&out);
                    let failed = w.cat_all(&[4], &case);
                    assert!(failed > 0, "{case}: no cat noticed the damage");
                    assert!(w.files.iter().any(|(p, _)| t.contains(&format!("img:1:/{p}"))) || t.contains("img:1:/:") || t.contains(&name(&file)), "{case}: verify names no damaged path:\n{t}");
                    w.export_checked(&[4], &case);
                    expect(r, &["ls", "-R", "img:1"], &[0, 4], &["b3:".into()], &case);
                    let src = w.src.display().to_string();
                    if matches!(fault, Fault::Flip | Fault::Zero) {
                        // Re-importing the original tree heals: verify marked
                        // the damaged ids, so the import does not dedup them.
                        r.ok(["import", &src, "--image", "img"]);
                    } else {
                        // Repair from the source tree, or from a tar of the
                        // image on stdin: everything comes back.
                        let out = if matches!(fault, Fault::Delete) {
                            expect(r, &["verify", "--repair-from", &src], &[0], &[], &case)
                        } else {
                            let tar = fs::read(w.pristine.join("img.tar")).unwrap();
                            let out = r.run_stdin(["verify", "--repair-from", "-"], Some(&tar));
                            assert_eq!(out.status.code(), Some(0), "{}", report(&format!("{case}: repair from a tar on stdin"), &out));
                            out
                        };
                        assert!(text(&out).contains("REPAIRED"), "{case}: repair reported nothing repaired:\n{}", text(&out));
                    }
                    r.ok(["verify"]);
                    assert_eq!(w.cat_all(&[], &case), 0);
                }
                Target::RepoTable | Target::RepoManifest | Target::RepoCurrent => {
                    expect(r, &["verify"], &[4], &[repo_index.clone()], &case);
                    let codes: &[i32] = if cut_manifest { &[3, 4] } else { &[4] };
                    let failed = w.cat_all(codes, &case);
                    assert!(failed == w.files.len(), "{case}: cat read through a damaged index");
                    w.export_checked(codes, &case);
                    // Refs may live in an undamaged table; a writer may work
                    // around the damage, but must not make it go away.
                    expect(r, &["images"], &[0, 4], &[repo_index.clone()], &case);
                    let other = w.src.display().to_string();
                    expect(r, &["import", &other, "--image", "again"], &[0, 4], &[repo_index.clone()], &case);
                    expect(r, &["verify"], &[4], &[repo_index.clone()], &case);
                }
                Target::RepoFormat => {
                    expect(r, &["verify"], &[1], &[name(&r.repo)], &case);
                    w.cat_all(&[1], &case);
                }
                Target::GuestPack => {
                    expect(r, &["verify"], &[4], &[name(&file), "guest web checkpoint 1:/".into()], &case);
                    assert_eq!(w.cat_all(&[], &case), 0, "{case}: the image does not use the guest's store");
                    expect(r, &["rollback", "web", "1"], &[4], &["guest web".into()], &case);
                    expect(r, &["checkpoint", "web"], &[4], &["guest web".into()], &case);
                    // The guest's trees come from its fold, not a tree on
                    // disk: repair from a copy of its store.
                    let saved = name(&w.pristine.join("g/store"));
                    let out = expect(r, &["verify", "--repair-from", &saved], &[0], &[], &case);
                    assert!(text(&out).contains("REPAIRED"), "{case}: repair reported nothing repaired:\n{}", text(&out));
                    r.ok(["verify"]);
                    r.ok(["rollback", "web", "1"]);
                }
                Target::GuestTable | Target::GuestManifest | Target::GuestCurrent => {
                    expect(r, &["verify"], &[4], &[guest_index.clone()], &case);
                    assert_eq!(w.cat_all(&[], &case), 0, "{case}: the image does not use the guest's store");
                    let codes: &[i32] = if cut_manifest { &[3, 4] } else { &[4] };
                    expect(r, &["rollback", "web", "1"], codes, &[guest_index.clone(), "checkpoint 1".into()], &case);
                    expect(r, &["log", "web"], if cut_manifest { &[0, 4] } else { &[4] }, &[guest_index.clone()], &case);
                }
                Target::GuestState => {
                    expect(r, &["verify"], &[4], &[name(&file)], &case);
                    // A missing STATE reads as an I/O error (exit 1) outside verify.
                    let codes: &[i32] = if matches!(fault, Fault::Delete) { &[1, 4] } else { &[4] };
                    expect(r, &["rollback", "web", "1"], codes, &[name(&file)], &case);
                    expect(r, &["checkpoint", "web"], codes, &[name(&file)], &case);
                    assert_eq!(w.cat_all(&[], &case), 0);
                }
                Target::Registry => {
                    if matches!(fault, Fault::Delete) {
                        // The guest is no longer registered: nothing to check.
                        r.ok(["verify"]);
                        r.fails(["guest", "show", "web"], 3);
                    } else {
                        expect(r, &["verify"], &[4], &[name(&file)], &case);
                        expect(r, &["guest", "list"], &[4], &[name(&file)], &case);
                        expect(r, &["rollback", "web", "1"], &[4], &[name(&file)], &case);
                    }
                    assert_eq!(w.cat_all(&[], &case), 0);
                }
            }
        }
    }
}

/// Run with a failpoint: the process aborts there, leaving its index log
/// (WAL) unflushed.
fn abort_at(r: &Lvrepo, failpoint: &str, args: &[&str]) {
    let out = Command::new(lvrepo_bin()).arg("--repo").arg(&r.repo).args(args).env("LVREPO_FAILPOINT", failpoint).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("failpoint"), "{}", report(&format!("{args:?} with {failpoint}"), &out));
}

#[test]
fn damaged_index_logs_lose_at_most_unflushed_writes_and_never_serve_wrong_bytes() {
    let w = World::new();
    let r = &w.r;
    // Unflushed writes in each log: gc's dropped entries in the
    // repository's, a recorded checkpoint in the guest store's.
    let tmp = r.scratch("tmp-src");
    fs::create_dir(&tmp).unwrap();
    fs::write(tmp.join("t"), pseudo_random(5, 200_000)).unwrap();
    r.import(&tmp, "tmp:1");
    r.ok(["delete", "tmp:1"]);
    abort_at(r, "gc-after-index", &["gc"]);
    abort_at(r, "checkpoint-before-rebase", &["checkpoint", "web", "-m", "two"]);
    fs::remove_dir_all(&w.pristine).unwrap();
    fs::create_dir(&w.pristine).unwrap();
    sh(&["cp".as_ref(), "-a".as_ref(), r.repo.as_os_str(), w.pristine.join("repo").as_os_str()]);
    sh(&["cp".as_ref(), "-a".as_ref(), w.gdir.as_os_str(), w.pristine.join("g").as_os_str()]);
    for (dir, what) in [(r.repo.join("index"), "repository"), (w.gdir.join("store/index"), "guest store")] {
        for fault in FAULTS {
            w.restore();
            let log = largest(&dir, |n| n.ends_with(".log"));
            assert!(fs::metadata(&log).unwrap().len() > 0, "the {what}'s log is empty: the failpoint left nothing unflushed");
            let case = format!("{what} log {fault:?} ({})", log.display());
            inject(&log, fault);
            // The log's damaged tail is dropped (the index as of the last
            // intact write) or the index is refused as damaged (exit 4).
            let out = expect(r, &["verify"], &[0, 4], &[dir.display().to_string()], &case);
            let failed = w.cat_all(&[4], &case);
            if out.status.code() == Some(0) {
                assert_eq!(failed, 0, "{case}: verify clean but reads fail");
                r.ok(["rollback", "web", "1"]);
            }
        }
    }
}
