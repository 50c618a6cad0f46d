//! The host file cache with FUSE passthrough (`mount --file-cache DIR`):
//! unchanged image files are read by the kernel from one verified,
//! decompressed copy that every guest on the host shares; a damaged copy is
//! never served; writes still go to the guest's overlay.

mod common;

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{is_mounted, Guest};
use lvrepo_tests::fixture::pseudo_random;

const BIG: usize = 3 << 20;

fn image(src: &Path) {
    fs::write(src.join("big"), pseudo_random(7, BIG)).unwrap();
    fs::write(src.join("small"), b"small file\n").unwrap();
    let f = File::create(src.join("sparse")).unwrap();
    f.set_len(16 << 20).unwrap();
    f.write_all_at(&pseudo_random(8, 200_000), 8 << 20).unwrap();
    // A program to run from the mount.
    fs::copy("/bin/true", src.join("true")).unwrap();
    fs::set_permissions(src.join("true"), fs::Permissions::from_mode(0o755)).unwrap();
}

/// Every file in the cache.
fn cached(dir: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for d in fs::read_dir(dir.join("objects")).unwrap().flatten() {
        v.extend(fs::read_dir(d.path()).unwrap().flatten().map(|e| e.path()));
    }
    v.sort();
    v
}

fn cached_of_size(dir: &Path, size: u64) -> PathBuf {
    let c: Vec<PathBuf> = cached(dir).into_iter().filter(|p| p.metadata().unwrap().len() == size).collect();
    assert_eq!(c.len(), 1, "one cached file of {size} bytes: {c:?}");
    c.into_iter().next().unwrap()
}

fn read(p: &Path) -> Vec<u8> {
    fs::read(p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

/// Pages of `p` in the page cache.
fn resident_pages(p: &Path) -> usize {
    let out = Command::new("fincore").args(["--bytes", "--noheadings", "--output", "PAGES"]).arg(p).output().unwrap();
    assert!(out.status.success(), "fincore: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn drop_pages(p: &Path) {
    let f = File::open(p).unwrap();
    // Dirty pages (a fresh fill) stay: write them first.
    f.sync_all().unwrap();
    // SAFETY: fadvise on a descriptor we own; no memory is passed.
    assert_eq!(unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) }, 0);
}

#[test]
fn two_guests_read_one_cached_copy_by_passthrough() {
    let g = Guest::new(image);
    let fc = g.r.scratch("filecache");
    let fca = fc.to_str().unwrap();
    let m = g.mount_with(&["--file-cache", fca]);
    // A second guest of the same image, its own overlay, the same cache.
    let (ov2, mp2) = (g.r.scratch("overlay2"), g.r.scratch("mnt2"));
    fs::create_dir(&mp2).unwrap();
    g.r.ok([OsStr::new("mount"), OsStr::new(&g.image), OsStr::new("--overlay"), ov2.as_os_str(), OsStr::new("--file-cache"), fc.as_os_str(), mp2.as_os_str()]);
    assert!(is_mounted(&mp2));

    for name in ["big", "small", "sparse", "true"] {
        let want = read(&g.src(name));
        assert_eq!(read(&m.p(name)), want, "{name} in guest 1");
        assert_eq!(read(&mp2.join(name)), want, "{name} in guest 2");
    }
    assert_eq!(cached(&fc).len(), 4, "one cached copy per file, for both guests: {:?}", cached(&fc));
    // The copy keeps the image file's holes.
    let sparse = cached_of_size(&fc, 16 << 20);
    assert!(fs::metadata(&sparse).map(|m| std::os::unix::fs::MetadataExt::blocks(&m) * 512).unwrap() < 1 << 20);

    // Reads are the kernel's, from the cached file: its pages come back
    // when a guest reads the file again (the daemon would read its packs).
    let big = cached_of_size(&fc, BIG as u64);
    for mp in [&g.mp, &mp2] {
        drop_pages(&big);
        let before = resident_pages(&big);
        assert_eq!(read(&mp.join("big")), read(&g.src("big")));
        assert!(resident_pages(&big) > before + (BIG / 4096) / 2, "reading through {} did not read the cached file", mp.display());
    }
    // A program runs from it.
    assert!(Command::new(m.p("true")).status().unwrap().success());

    g.r.ok([OsStr::new("umount"), mp2.as_os_str()]);
    m.umount();
}

#[test]
fn writes_go_to_the_overlay_once_passthrough_readers_close() {
    let g = Guest::new(image);
    let fc = g.r.scratch("filecache");
    let m = g.mount_with(&["--file-cache", fc.to_str().unwrap()]);
    let want = read(&g.src("big"));

    // While a reader holds the file by passthrough, Linux refuses a writer
    // (EIO: one backing file per open inode, and the writer's bytes must go
    // to the overlay).
    let mut reader = File::open(m.p("big")).unwrap();
    let err = OpenOptions::new().append(true).open(m.p("big")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    let mut got = Vec::new();
    reader.read_to_end(&mut got).unwrap();
    assert_eq!(got, want);
    drop(reader);

    // Once the reader has closed (at once: the daemon's RELEASE may come
    // later), the write goes to the overlay; later reads see it, the cached
    // copy is untouched, and the change persists.
    OpenOptions::new().append(true).open(m.p("big")).unwrap().write_all(b"appended").unwrap();
    let mut changed = want.clone();
    changed.extend_from_slice(b"appended");
    assert_eq!(read(&m.p("big")), changed);
    assert_eq!(read(&cached_of_size(&fc, BIG as u64)), want, "the shared copy changed");
    m.umount();
    let m = g.mount_with(&["--file-cache", fc.to_str().unwrap()]);
    assert_eq!(read(&m.p("big")), changed);
    // Readers of a changed file are not passthrough: a writer is not refused.
    let r = File::open(m.p("big")).unwrap();
    OpenOptions::new().append(true).open(m.p("big")).unwrap().write_all(b"!").unwrap();
    drop(r);
    m.umount();
}

#[test]
fn a_damaged_cached_copy_is_never_served() {
    let g = Guest::new(image);
    let fc = g.r.scratch("filecache");
    let want = read(&g.src("big"));
    let m = g.mount_with(&["--file-cache", fc.to_str().unwrap()]);
    assert_eq!(read(&m.p("big")), want);
    m.umount();
    // Flip a byte of the copy and cut another file short, while no daemon runs.
    let big = cached_of_size(&fc, BIG as u64);
    let f = OpenOptions::new().read(true).write(true).open(&big).unwrap();
    let mut b = [0u8];
    f.read_exact_at(&mut b, 12345).unwrap();
    f.write_all_at(&[b[0] ^ 0x10], 12345).unwrap();
    drop(f);
    let m = g.mount_with(&["--file-cache", fc.to_str().unwrap()]);
    assert_eq!(read(&m.p("big")), want, "the damaged copy was served");
    assert_eq!(read(&cached_of_size(&fc, BIG as u64)), want, "the copy was not filled again");
    assert!(g.log().contains("damaged cached file"), "no log line names the damage:\n{}", g.log());
    m.umount();
}

#[test]
fn prefetch_fills_the_cache_ahead_of_guests() {
    let g = Guest::new(image);
    let fc = g.r.scratch("filecache");
    let fca = fc.to_str().unwrap();
    // One path: only that file.
    g.r.ok(["prefetch", &g.image, "/big", "--file-cache", fca]);
    assert_eq!(cached(&fc).len(), 1);
    assert_eq!(read(&cached_of_size(&fc, BIG as u64)), read(&g.src("big")));
    // A path the image lacks: not found, exit 3.
    g.r.fails(["prefetch", &g.image, "/no/such", "--file-cache", fca], 3);
    // The whole image, as JSON.
    let v = g.r.json(["prefetch", &g.image, "--file-cache", fca, "--json"]);
    assert_eq!(v["file_count"], 4, "{v}");
    assert_eq!(cached(&fc).len(), 4);
    let m = g.mount_with(&["--file-cache", fca]);
    for name in ["big", "small", "sparse", "true"] {
        assert_eq!(read(&m.p(name)), read(&g.src(name)), "{name}");
    }
    m.umount();
    assert_eq!(cached(&fc).len(), 4, "the mount filled nothing new");
}
