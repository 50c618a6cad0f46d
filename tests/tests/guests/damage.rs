//! Damage to a guest's own files (overlay data files, the overlay database,
//! FORMAT, STATE) is detected and named, never served as data: a read is
//! EIO, a mount refuses with exit 4, nothing is deleted, `guest fsck` names
//! the path and byte range, and `guest fsck --repair` salvages the rest.

use super::*;

const BIG: usize = 300_000;
const NEW: usize = 100_000;

fn gen_dir(g: &Guest, n: u64) -> PathBuf {
    g.dir.join(format!("gen-{n:08}"))
}

/// The overlay data files of generation 1: (of a file the guest created,
/// of an image file). Image entries' inode numbers have bit 62 set.
fn data_files(g: &Guest) -> (PathBuf, PathBuf) {
    let d = gen_dir(g, 1).join("data");
    let names: Vec<PathBuf> = fs::read_dir(&d).expect("read data dir").map(|e| e.expect("readdir").path()).collect();
    let pick = |image: bool| {
        names.iter().find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('4') == image)).cloned().unwrap_or_else(|| panic!("no {} data file in {}: {names:?}", if image { "image-file" } else { "new-file" }, d.display()))
    };
    (pick(false), pick(true))
}

fn flip(p: &Path, off: u64) {
    let mut b = fs::read(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
    let i = off as usize;
    assert!(i < b.len(), "{} is {} bytes, cannot flip byte {i}", p.display(), b.len());
    b[i] ^= 0x40;
    fs::write(p, b).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
}

/// A read of `p` through the mount fails with EIO (never zeros or wrong bytes).
#[track_caller]
fn assert_eio(p: &Path, what: &str) {
    match fs::read(p) {
        Ok(b) => panic!("{what}: reading {} returned {} bytes instead of EIO", p.display(), b.len()),
        Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EIO), "{what}: reading {} failed with {e}, not EIO", p.display()),
    }
}

/// A guest whose image file `big` has guest bytes in its second window and
/// which created `new` (a data file: larger than the inline limit).
fn damaged_world() -> (World, Vec<u8>, Vec<u8>) {
    let w = World::new(false, |src| {
        put(&src.join("big"), &pseudo_random(1, BIG));
        put(&src.join("small"), b"small\n");
    });
    let mut big = pseudo_random(1, BIG);
    big[70_000..70_011].copy_from_slice(b"guest bytes");
    (w, big, pseudo_random(2, NEW))
}

#[test]
fn damaged_overlay_data_is_eio_never_zeros_and_fsck_repairs_it() {
    let (w, big, new) = damaged_world();
    let g = w.guest("dmg");
    {
        let m = g.mount();
        write_at(&m.p("big"), 70_000, b"guest bytes");
        put(&m.p("new"), &new);
        m.umount();
    }
    let (new_data, big_data) = data_files(&g);
    let saved = [(new_data.clone(), fs::read(&new_data).expect("read")), (big_data.clone(), fs::read(&big_data).expect("read"))];
    let restore = || {
        for (p, b) in &saved {
            fs::write(p, b).unwrap_or_else(|e| panic!("restore {}: {e}", p.display()));
        }
    };
    type Damage = fn(&Path);
    // Damage in the 4 KiB block the guest wrote (69,632..73,728: the guest
    // bytes are at 70,000): since overlay format 4 that block is all `big`
    // keeps of its window; the rest of the window still reads from the image.
    let damages: [(&str, Damage); 4] = [
        ("a flipped byte", |p| flip(p, 70_005)),
        ("a zeroed block", |p| {
            let f = OpenOptions::new().write(true).open(p).expect("open");
            f.write_all_at(&[0u8; 4096], 65_536 + 4096).expect("zero a block");
        }),
        ("a truncated data file", |p| set_len(p, 65_536 + 4096 + 1000)),
        ("a deleted data file", |p| rm(p)),
    ];
    for (what, damage) in damages {
        for (file, target, name) in [(&new_data, "new", "/new"), (&big_data, "big", "/big")] {
            let what = format!("{what} in the data file of {name}");
            damage(file);
            {
                let m = g.mount();
                assert_eio(&m.p(target), &what);
                if target == "big" {
                    // The image's own window is still served, verified.
                    let mut head = vec![0u8; 65_536];
                    fs::File::open(m.p("big")).expect("open big").read_exact_at(&mut head, 0).expect("the image's window reads");
                    assert_eq!(head, big[..65_536], "{what}: the image's window changed");
                }
                assert_eq!(fs::read(m.p("small")).expect("read small"), b"small\n", "{what}: other files are served");
                m.umount();
            }
            let log = g.log();
            let line = log.lines().rev().find(|l| l.contains("damaged") && l.contains("offset=")).unwrap_or_else(|| panic!("{what}: no log line with an offset:\n{log}"));
            assert!(line.contains(&file.display().to_string()) && line.contains("guest=dmg"), "{what}: the log line does not name guest and data file: {line}");
            let err = g.r().fails(["checkpoint", "dmg", "-m", "never"], 4);
            assert!(err.contains("damaged"), "{what}: checkpoint's error does not say damaged: {err}");
            let out = g.r().run(["guest", "fsck", "dmg"]);
            assert_eq!(out.status.code(), Some(4), "{what}: {}", report("guest fsck", &out));
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(text.lines().any(|l| l.starts_with(&format!("DAMAGED {name} bytes "))), "{what}: fsck does not name {name} and a byte range:\n{text}");
            let v = g.r().run(["verify", "--overlays"]);
            assert_eq!(v.status.code(), Some(4), "{what}: {}", report("verify --overlays", &v));
            restore();
        }
    }
    assert!(g.checkpoints().is_empty(), "a checkpoint was recorded from damaged data");
    g.r().ok(["guest", "fsck", "dmg"]);
    g.r().ok(["verify", "--overlays"]);

    // Repair: a flipped byte in `new`, `big`'s data file gone.
    flip(&new_data, 50_000);
    rm(&big_data);
    let out = g.r().run(["guest", "fsck", "dmg", "--repair"]);
    assert_eq!(out.status.code(), Some(4), "{}", report("guest fsck --repair", &out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("DAMAGED /new bytes 49152..53248") && text.contains("lost: now zeros"), "repair does not list what /new lost:\n{text}");
    // The block the guest wrote (format 4 keeps no more of the window).
    assert!(text.contains("DAMAGED /big bytes 69632..73728") && text.contains("image's"), "repair does not list what /big lost:\n{text}");
    g.r().ok(["guest", "fsck", "dmg"]);
    let m = g.mount();
    let mut want = new.clone();
    want[49_152..53_248].fill(0);
    assert!(fs::read(m.p("new")).expect("read new after repair") == want, "/new after repair: not its sound bytes with the damaged block zeroed");
    assert!(fs::read(m.p("big")).expect("read big after repair") == pseudo_random(1, BIG), "/big after repair: not the image's bytes");
    m.umount();
    g.checkpoint("after repair");
}

/// Names of the files of an overlay database and their bytes (RocksDB's
/// info logs aside: every open writes one).
fn db_files(meta: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    fs::read_dir(meta)
        .expect("read meta")
        .map(|e| e.expect("readdir").path())
        .filter(|p| !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("LOG")))
        .map(|p| (p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(), fs::read(&p).expect("read db file")))
        .collect()
}

#[test]
fn damaged_overlay_database_refuses_to_mount_and_nothing_is_deleted() {
    let (w, _, new) = damaged_world();
    let g = w.guest("db");
    // A clean session first: its unmount flushes a table file to damage
    // (the database is made at the first mount).
    g.mount().umount();
    {
        let m = g.mount();
        for i in 0..300 {
            put(&m.p(&format!("f{i:03}")), format!("file {i}\n").as_bytes());
        }
        put(&m.p("new"), &new);
        // Killed: the records stay in the log (a clean unmount flushes
        // them to table files).
        m.kill9();
    }
    let gd = gen_dir(&g, 1);
    let meta = gd.join("meta");
    let backup = w.r.scratch("gen-backup");
    assert!(Command::new("cp").arg("-a").arg(&gd).arg(&backup).status().expect("cp").success());
    let restore = || {
        rm_rf(&gd);
        assert!(Command::new("cp").arg("-a").arg(&backup).arg(&gd).status().expect("cp").success());
    };
    let find = |ext: &str| -> PathBuf {
        let names: Vec<PathBuf> = fs::read_dir(&meta).expect("read meta").map(|e| e.expect("readdir").path()).collect();
        names.iter().find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().contains(ext))).cloned().unwrap_or_else(|| panic!("no {ext} in {}: {names:?}", meta.display()))
    };
    let log = fs::read_dir(&meta)
        .expect("read meta")
        .map(|e| e.expect("readdir").path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .max_by_key(|p| fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .unwrap_or_else(|| panic!("no log in {}", meta.display()));
    assert!(fs::metadata(&log).expect("stat log").len() > 20_000, "the log holds too few records to damage its middle");
    type Damage = Box<dyn Fn()>;
    let (l, l2, m1, s, c, f) = (log.clone(), log.clone(), find("MANIFEST-"), find(".sst"), meta.join("CURRENT"), gd.join("FORMAT"));
    let damages: Vec<(&str, Damage)> = vec![
        ("a flipped byte in the middle of the log", Box::new(move || flip(&l, fs::metadata(&l).expect("stat").len() / 2))),
        ("a flipped byte in the MANIFEST", Box::new(move || flip(&m1, fs::metadata(&m1).expect("stat").len() / 2))),
        ("a flipped byte in a table file", Box::new(move || flip(&s, fs::metadata(&s).expect("stat").len() / 3))),
        ("a garbage CURRENT", Box::new({ let c = c.clone(); move || put(&c, b"\x00garbage\xff") })),
        ("a missing CURRENT", Box::new(move || rm(&c))),
        ("a garbage FORMAT", Box::new({ let f = f.clone(); move || put(&f, b"lvrepo ov\x00erlay\n") })),
        ("a missing FORMAT", Box::new(move || rm(&f))),
        ("a missing log after a crash", Box::new(move || rm(&l2))),
    ];
    for (what, damage) in damages {
        damage();
        let before = db_files(&meta);
        let err = g.r().fails(["mount", "--guest", "db", g.mp.to_str().expect("utf-8 path")], 4);
        assert!(!is_mounted(&g.mp), "mounted despite {what}");
        assert!(err.contains("damaged") && err.contains(&gd.display().to_string()), "{what}: the error does not name the overlay and say damaged:\n{err}");
        assert!(db_files(&meta) == before, "{what}: the refused mount changed the database's files");
        g.r().fails(["checkpoint", "db", "-m", "never"], 4);
        let out = g.r().run(["guest", "fsck", "db"]);
        assert_eq!(out.status.code(), Some(4), "{what}: {}", report("guest fsck", &out));
        restore();
    }
    // A torn last record (a crash in the middle of a write) still opens.
    set_len(&log, fs::metadata(&log).expect("stat").len() - 5);
    let m = g.mount();
    assert_eq!(fs::read(m.p("f000")).expect("read f000"), b"file 0\n");
    m.umount();
    restore();
    let m = g.mount();
    assert!(fs::read(m.p("new")).expect("read new") == new, "new changed");
    assert_eq!(fs::read(m.p("f299")).expect("read f299"), b"file 299\n");
    m.umount();
    // After a clean unmount no record lives only in the log: losing it
    // loses nothing.
    for p in fs::read_dir(&meta).expect("read meta").map(|e| e.expect("readdir").path()).filter(|p| p.extension().is_some_and(|x| x == "log")) {
        rm(&p);
    }
    let m = g.mount();
    assert_eq!(fs::read(m.p("f299")).expect("read f299 after the log went"), b"file 299\n");
    m.umount();
}

#[test]
fn a_state_naming_no_generation_refuses_mount_and_rollback_and_deletes_nothing() {
    let w = World::new(false, |src| put(&src.join("a"), b"image\n"));
    let g = w.guest("st");
    {
        let m = g.mount();
        put(&m.p("kept"), b"v1\n");
        m.umount();
    }
    let cp = g.checkpoint("one");
    {
        let m = g.mount();
        put(&m.p("kept"), b"v2\n");
        m.umount();
    }
    let gens = g.gen_dirs();
    assert_eq!(gens, ["gen-00000002"], "after an offline checkpoint");
    let sp = g.dir.join("STATE");
    let good = fs::read(&sp).expect("read STATE");
    let mut v: Value = serde_json::from_slice(&good).expect("STATE is JSON");
    v["generation"] = 7.into();
    for (what, bytes) in [("a STATE naming generation 7", serde_json::to_vec(&v).expect("json")), ("a garbage STATE", b"{\"base\": 12".to_vec())] {
        put(&sp, &bytes);
        let err = g.r().fails(["mount", "--guest", "st", g.mp.to_str().expect("utf-8 path")], 4);
        assert!(err.contains("STATE") && err.contains("damaged"), "{what}: unclear mount error:\n{err}");
        g.r().fails(["rollback", "st", &cp.to_string()], 4);
        g.r().fails(["checkpoint", "st", "-m", "never"], 4);
        assert_eq!(g.gen_dirs(), gens, "{what}: a generation was deleted or made");
        assert_eq!(fs::read(&sp).expect("read STATE"), bytes, "{what}: STATE was rewritten");
    }
    let out = g.r().run(["guest", "fsck", "st"]);
    assert_eq!(out.status.code(), Some(4), "{}", report("guest fsck", &out));
    let out = g.r().run(["guest", "fsck", "st", "--repair"]);
    assert_eq!(out.status.code(), Some(4), "{}", report("guest fsck --repair", &out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("STATE now names generation 2"), "{}", report("guest fsck --repair", &out));
    g.r().ok(["guest", "fsck", "st"]);
    let m = g.mount();
    assert_eq!(fs::read(m.p("kept")).expect("read kept"), b"v2\n", "the repaired STATE lost the live generation");
    m.umount();
    // A STATE whose base disagrees with its generation's: one hex digit
    // of the id changed.
    let good = fs::read(&sp).expect("read STATE");
    let mut v: Value = serde_json::from_slice(&good).expect("STATE is JSON");
    let base = v["base"].as_str().expect("STATE.base is a string").to_string();
    let last = base.chars().last().expect("non-empty id");
    v["base"] = format!("{}{}", &base[..base.len() - 1], if last == '0' { '1' } else { '0' }).into();
    put(&sp, &serde_json::to_vec(&v).expect("json"));
    let err = g.r().fails(["mount", "--guest", "st", g.mp.to_str().expect("utf-8 path")], 4);
    assert!(err.contains("damaged") && err.contains("root"), "a STATE naming another base: unclear mount error:\n{err}");
    let out = g.r().run(["guest", "fsck", "st", "--repair"]);
    assert_eq!(out.status.code(), Some(4), "{}", report("guest fsck --repair", &out));
    g.r().ok(["guest", "fsck", "st"]);
    assert_eq!(fs::read(&sp).expect("read STATE"), good, "the repaired STATE is not the one the generation sits on");
    g.rollback(cp);
    let m = g.mount();
    assert_eq!(fs::read(m.p("kept")).expect("read kept"), b"v1\n");
    m.umount();
    // A guest whose STATE is damaged can still be removed.
    put(&sp, b"garbage");
    g.r().ok(["guest", "rm", "st"]);
    assert!(!g.dir.exists(), "guest rm left {}", g.dir.display());
}
