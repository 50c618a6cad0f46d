//! Directory reads on a mount. Directories are not opened (the daemon answers
//! OPENDIR with ENOSYS), so a read's offsets are name cookies instead of
//! places in a per-handle snapshot: a read that runs while the directory
//! changes must still list every entry present throughout exactly once, and
//! telldir/seekdir must come back to the same place.

mod common;

use std::collections::HashMap;
use std::ffi::CStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use common::{cpath, Guest};

/// An image whose `big/` holds 2,000 lasting entries (`s…`) and 300 that a
/// test removes (`c…`).
fn image() -> Guest {
    Guest::new(|src| {
        fs::create_dir(src.join("big")).expect("mkdir");
        for i in 0..2000 {
            fs::write(src.join(format!("big/s{i:05}")), b"s").expect("write");
        }
        for i in 0..300 {
            fs::write(src.join(format!("big/c{i:05}")), b"c").expect("write");
        }
    })
}

#[test]
fn a_read_during_changes_lists_every_lasting_entry_once() {
    let g = image();
    let m = g.mount();
    let dir = m.p("big");
    // Overlay entries too: 1,000 lasting (`o…`), 300 removed during the read (`d…`).
    for i in 0..1000 {
        fs::write(dir.join(format!("o{i:05}")), b"o").expect("create");
    }
    for i in 0..300 {
        fs::write(dir.join(format!("d{i:05}")), b"d").expect("create");
    }
    for pass in 0..2 {
        let mut seen: HashMap<Vec<u8>, usize> = HashMap::new();
        let mut rd = fs::read_dir(&dir).expect("opendir");
        // glibc reads 32 KiB of entries at a time: after 200, most of the
        // 3,600 are still to come from the kernel.
        for e in rd.by_ref().take(200) {
            *seen.entry(e.expect("entry").file_name().as_bytes().to_vec()).or_default() += 1;
        }
        // Remove the c… and d… entries, add n… ones: every offset after this
        // point refers to a directory that changed.
        for i in 0..300 {
            let (gone, new) = if pass == 0 { (format!("c{i:05}"), format!("n{i:05}")) } else { (format!("d{i:05}"), format!("m{i:05}")) };
            fs::remove_file(dir.join(gone)).expect("unlink");
            fs::write(dir.join(new), b"n").expect("create");
        }
        for e in rd {
            *seen.entry(e.expect("entry").file_name().as_bytes().to_vec()).or_default() += 1;
        }
        let twice: Vec<_> = seen.iter().filter(|(_, &n)| n > 1).map(|(k, _)| String::from_utf8_lossy(k).into_owned()).collect();
        assert!(twice.is_empty(), "pass {pass}: listed more than once: {twice:?}");
        for name in (0..2000).map(|i| format!("s{i:05}")).chain((0..1000).map(|i| format!("o{i:05}"))) {
            assert!(seen.contains_key(name.as_bytes()), "pass {pass}: lasting entry {name} not listed");
        }
    }
    // And a fresh read lists exactly what is there now.
    let mut now: Vec<_> = fs::read_dir(&dir).expect("opendir").map(|e| e.expect("entry").file_name().into_string().expect("utf8")).collect();
    now.sort();
    let mut want: Vec<_> = ["s", "o", "n", "m"].iter().flat_map(|p| (0..if *p == "s" { 2000 } else if *p == "o" { 1000 } else { 300 }).map(move |i| format!("{p}{i:05}"))).collect();
    want.sort();
    assert_eq!(now, want);
    m.umount();
}

/// Read up to `n` entry names from an open `DIR`.
fn take(d: *mut libc::DIR, n: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while out.len() < n {
        // SAFETY: `d` is an open DIR; readdir's result is valid until the
        // next call on `d`, and the name is copied out before that.
        let e = unsafe { libc::readdir(d) };
        if e.is_null() {
            break;
        }
        // SAFETY: d_name is NUL-terminated within the dirent readdir returned.
        out.push(unsafe { CStr::from_ptr((*e).d_name.as_ptr()) }.to_bytes().to_vec());
    }
    out
}

#[test]
fn telldir_and_seekdir_return_to_the_same_place() {
    let g = image();
    let m = g.mount();
    let check = |dir: &Path| {
        let p = cpath(dir);
        // SAFETY: opendir of a NUL-terminated path; the DIR is closed below.
        let d = unsafe { libc::opendir(p.as_ptr()) };
        assert!(!d.is_null(), "opendir {}", dir.display());
        let first = take(d, 1500);
        // SAFETY: telldir/seekdir on the DIR opened above.
        let pos = unsafe { libc::telldir(d) };
        let a = take(d, 100);
        // SAFETY: as above.
        unsafe { libc::seekdir(d, pos) };
        let b = take(d, 100);
        // SAFETY: closing the DIR opened above, once.
        unsafe { libc::closedir(d) };
        assert_eq!(first.len(), 1500);
        assert_eq!(a.len(), 100);
        assert_eq!(a, b, "seekdir to telldir's position lists other entries");
        assert!(a.iter().all(|n| !first.contains(n)), "entries after telldir repeat earlier ones");
    };
    // Uncached (fresh mount), then from the kernel's listing cache.
    check(&m.p("big"));
    check(&m.p("big"));
    m.umount();
}

/// Walk `dir` recursively by d_type, as `find` does: every entry's path,
/// d_ino and d_type. With `stat`, lstat each entry as soon as it is read, as
/// `ls -l` and `du` do, and check it against the directory entry.
fn walk(dir: &Path, stat: bool, out: &mut Vec<(std::path::PathBuf, u64, fs::FileType)>) {
    use std::os::unix::fs::{DirEntryExt, MetadataExt};
    for e in fs::read_dir(dir).expect("opendir") {
        let e = e.expect("entry");
        let (p, ino, ty) = (e.path(), e.ino(), e.file_type().expect("d_type"));
        if stat {
            let st = fs::symlink_metadata(&p).expect("lstat");
            assert_eq!((st.ino(), st.file_type()), (ino, ty), "{}: lstat disagrees with its directory entry", p.display());
        }
        if ty.is_dir() {
            walk(&p, stat, out);
        }
        out.push((p, ino, ty));
    }
}

/// The daemon sends entries' attributes only to readers that stat what they
/// list (see fs/src/fuse/plus.rs); either way a listing must give every
/// entry's true inode number and type, for image entries, entries the guest
/// created, and image entries it renamed.
#[test]
fn listings_with_and_without_attributes_agree_with_lstat() {
    use std::os::unix::fs::{symlink, MetadataExt};
    let g = Guest::new(|src| {
        for half in ["a", "b"] {
            for d in 0..48 {
                let dir = src.join(format!("{half}/d{d:02}"));
                fs::create_dir_all(dir.join("sub")).expect("mkdir");
                for f in 0..20 {
                    fs::write(dir.join(format!("f{f:02}")), b"x").expect("write");
                }
                symlink("f00", dir.join("link")).expect("symlink");
                fs::hard_link(dir.join("f01"), dir.join("hard")).expect("link");
            }
        }
    });
    let m = g.mount_with(&["-vv"]);
    for half in ["a", "b"] {
        for d in 0..48 {
            let dir = m.p(&format!("{half}/d{d:02}"));
            fs::write(dir.join("new"), b"n").expect("create");
            fs::rename(dir.join("f02"), dir.join("moved")).expect("rename");
        }
    }
    // `find`: nothing is stat'ed, so chunks soon carry directories' attributes only.
    let mut a = Vec::new();
    walk(&m.p("a"), false, &mut a);
    assert!(g.log().contains("attributes for directories only"), "a walk that stats nothing still gets every attribute:\n{}", g.log());
    // `ls -l`: every entry stat'ed as it is read, so chunks go back to full.
    let mut b = Vec::new();
    walk(&m.p("b"), true, &mut b);
    assert!(g.log().contains("attributes for every entry"), "a reader that stats everything gets names only:\n{}", g.log());
    assert_eq!((a.len(), b.len()), (48 * 25, 48 * 25));
    for (p, ino, ty) in a.iter().chain(&b) {
        let st = fs::symlink_metadata(p).expect("lstat");
        assert_eq!((st.ino(), st.file_type()), (*ino, *ty), "{}: lstat disagrees with its directory entry", p.display());
    }
    // The hardlinks share a number, and it is the one their entries gave.
    let f01 = fs::metadata(m.p("a/d00/f01")).expect("stat").ino();
    assert!(a.iter().any(|(p, ino, _)| p.ends_with("d00/hard") && *ino == f01));
    m.umount();
}
