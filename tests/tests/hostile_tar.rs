//! Hostile tar input: every stream is either refused with a clear error (and
//! leaves no image behind and the repo intact) or stored exactly as the
//! documented safe result. Nothing may ever be written outside the repo.

use std::ffi::OsStr;
use std::path::Path;

use lvrepo_tests::manifest::{manifest, Kind};
use lvrepo_tests::tar::RawTar;
use lvrepo_tests::{image_path, report, require_root, Lvrepo};

/// A repo holding one good image, so "no new image" is checked against a non-empty list.
fn repo() -> Lvrepo {
    require_root();
    let r = Lvrepo::init();
    let mut t = RawTar::new();
    t.file(b"good", b"good\n");
    import_ok(&r, &t, "base:1");
    r
}

fn write_tar(r: &Lvrepo, t: &[u8]) -> std::path::PathBuf {
    let p = r.scratch(&format!("in-{}.tar", blake3::hash(t).to_hex()));
    std::fs::write(&p, t).unwrap();
    p
}

fn import_ok(r: &Lvrepo, t: &RawTar, image: &str) {
    let p = write_tar(r, &t.finish());
    r.import(&p, image);
}

/// Import must fail with `code`; stderr must contain `needle`; no new image,
/// repo still verifies. Checked both from a file and from stdin.
fn refused(r: &Lvrepo, tar: &[u8], code: i32, needle: &str) {
    let before = r.image_names();
    let p = write_tar(r, tar);
    let args = [OsStr::new("import"), p.as_os_str(), OsStr::new("--image"), OsStr::new("bad")];
    let err = r.fails(args, code);
    assert!(err.contains(needle), "import error should mention {needle:?}, got:\n{err}");
    assert_eq!(r.image_names(), before, "failed import left an image behind");
    let out = r.run_stdin(["import", "-", "--image", "bad"], Some(tar));
    assert_eq!(out.status.code(), Some(code), "{}", report("import - (stdin)", &out));
    assert_eq!(r.image_names(), before, "failed stdin import left an image behind");
    r.ok(["verify"]);
}

#[test]
fn dotdot_component_is_refused() {
    let r = repo();
    for name in [&b"../escape"[..], b"a/../../escape", b"ok/../b", b".."] {
        let mut t = RawTar::new();
        t.file(b"fine", b"x").file(name, b"escaped!\n");
        refused(&r, &t.finish(), 1, "..");
    }
    assert!(!r.repo.parent().unwrap().join("escape").exists());
    assert!(!r.repo.join("escape").exists());
}

#[test]
fn dotdot_in_symlink_or_hardlink_name_is_refused() {
    let r = repo();
    let mut t = RawTar::new();
    t.symlink(b"../evil", b"/etc/passwd");
    refused(&r, &t.finish(), 1, "..");
    let mut t = RawTar::new();
    t.file(b"f", b"x").hardlink(b"h", b"../f");
    let out = r.run_stdin(["import", "-", "--image", "bad"], Some(&t.finish()));
    assert_ne!(out.status.code(), Some(0), "{}", report("hardlink target with ..", &out));
    assert_eq!(r.image_names(), vec!["base:1".to_string()]);
}

#[test]
fn absolute_names_are_made_relative() {
    let r = repo();
    let host = Path::new("/etc/lvrepo-test-must-not-exist");
    let mut t = RawTar::new();
    t.dir(b"/etc/").file(b"/etc/lvrepo-test-must-not-exist", b"abs\n").file(b"///double", b"d\n");
    import_ok(&r, &t, "abs:1");
    assert!(!host.exists(), "import wrote to the host's /etc");
    assert_eq!(r.ok_bytes(["cat", "abs:1:etc/lvrepo-test-must-not-exist"]), b"abs\n");
    assert_eq!(r.ok_bytes(["cat", "abs:1:double"]), b"d\n");
}

#[test]
fn file_under_a_symlinked_dir_is_refused() {
    let r = repo();
    let before = blake3::hash(&std::fs::read("/etc/passwd").unwrap());
    let mut t = RawTar::new();
    t.symlink(b"a", b"/etc").file(b"a/passwd", b"root::0:0::/:/bin/sh\n");
    refused(&r, &t.finish(), 1, "a/passwd");
    let mut t = RawTar::new();
    t.dir(b"d/").symlink(b"d/up", b"../..").file(b"d/up/x", b"x");
    refused(&r, &t.finish(), 1, "d/up/x");
    assert_eq!(blake3::hash(&std::fs::read("/etc/passwd").unwrap()), before, "/etc/passwd changed!");
}

#[test]
fn hardlink_to_missing_target_is_refused() {
    let r = repo();
    let mut t = RawTar::new();
    t.file(b"present", b"p").hardlink(b"link", b"not/in/archive");
    // The message must at least name the offending entry ("link").
    refused(&r, &t.finish(), 1, "link");
}

#[test]
fn hardlink_to_earlier_file_is_kept_as_a_hardlink() {
    let r = repo();
    let mut t = RawTar::new();
    t.dir(b"x/").file(b"x/orig", b"shared\n").hardlink(b"x/copy", b"x/orig");
    import_ok(&r, &t, "hl:1");
    let out = r.scratch("hl-out");
    r.export("hl:1", &out);
    let m = manifest(&out).unwrap();
    assert_eq!(m.get("x/copy").unwrap().link_group.as_deref(), Some(&b"x/copy"[..]));
    assert_eq!(m.get("x/orig").unwrap().link_group.as_deref(), Some(&b"x/copy"[..]));
}

#[test]
fn devices_fifos_and_odd_names_are_stored_exactly() {
    let r = repo();
    let odd: [&[u8]; 4] = [b"n/new\nline", b"n/bad\xff\xfe", b"n/sp ace", b"n/\xc3\xa9t\xc3\xa9"];
    let mut t = RawTar::new();
    t.dir(b"dev/").device(b"dev/null", true, 1, 3).device(b"dev/loop0", false, 7, 0);
    t.device(b"dev/whiteout", true, 0, 0).device(b"dev/big", true, 254, 70000).fifo(b"dev/fifo");
    t.dir(b"n/");
    for n in odd {
        t.file(n, n);
    }
    let long = [b"n/".as_slice(), &[b'L'; 255]].concat();
    t.file(&long, b"long");
    import_ok(&r, &t, "odd:1");
    let dest = r.scratch("odd-out");
    r.export("odd:1", &dest);
    let m = manifest(&dest).unwrap();
    let dev = |p: &str| {
        let e = m.get(p).unwrap_or_else(|| panic!("{p} missing after export"));
        (e.kind, e.rdev)
    };
    assert_eq!(dev("dev/null"), (Kind::CharDev, Some((1, 3))));
    assert_eq!(dev("dev/loop0"), (Kind::BlockDev, Some((7, 0))));
    assert_eq!(dev("dev/whiteout"), (Kind::CharDev, Some((0, 0))));
    assert_eq!(dev("dev/big"), (Kind::CharDev, Some((254, 70000))));
    assert_eq!(dev("dev/fifo"), (Kind::Fifo, None));
    for n in odd {
        assert!(m.get(n).is_some(), "{} missing after export", n.escape_ascii());
    }
    assert_eq!(m.get(&long).unwrap().size, Some(4));
    // Names are bytes: `cat` must take non-UTF-8 and newline paths.
    for n in odd.iter().chain([&long.as_slice()]) {
        let want: &[u8] = if n == &long.as_slice() { b"long" } else { n };
        let out = r.run([OsStr::new("cat"), &image_path("odd:1", n)]);
        assert!(out.status.success(), "{}", report(&format!("cat {}", n.escape_ascii()), &out));
        assert_eq!(out.stdout, want, "cat {}", n.escape_ascii());
    }
}

#[test]
fn truncated_archive_is_refused() {
    let r = repo();
    let mut t = RawTar::new();
    t.file(b"first", &[1u8; 3000]).file(b"second", &lvrepo_tests::fixture::pseudo_random(3, 200_000));
    let full = t.finish();
    let cut = &full[..512 * 3 + 512 + 100_000]; // inside "second"'s data
    refused(&r, cut, 1, "");
    let cut = &full[..512 + 1000]; // inside "first"'s data
    refused(&r, cut, 1, "");
    let cut = &full[..200]; // inside the first header
    refused(&r, cut, 1, "");
}

#[test]
fn garbage_and_bad_checksum_are_refused() {
    let r = repo();
    refused(&r, &lvrepo_tests::fixture::pseudo_random(9, 10_000), 1, "");
    let mut t = RawTar::new();
    t.file(b"f", b"data");
    let mut bad = t.finish();
    bad[148] ^= 1; // checksum field
    refused(&r, &bad, 1, "");
}

/// A PAX extended header (`x`) record list for the next entry.
fn pax(records: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in records {
        // LEN counts the whole record, its own digits included.
        let body = 3 + k.len() + v.len(); // ' ', '=', '\n'
        let mut len = body + 1;
        while len != body + len.to_string().len() {
            len = body + len.to_string().len();
        }
        out.extend_from_slice(format!("{len} ").as_bytes());
        out.extend_from_slice(k);
        out.push(b'=');
        out.extend_from_slice(v);
        out.push(b'\n');
    }
    out
}

#[test]
fn invalid_pax_numbers_are_refused_not_replaced() {
    let r = repo();
    let cases: [(&[u8], &[u8], &str); 6] = [
        (b"uid", b"abc", "PAX uid"),
        (b"uid", b"4294967296", "PAX uid"),
        (b"gid", b"-1", "PAX gid"),
        (b"gid", b"12x", "PAX gid"),
        (b"mtime", b"soon", "PAX mtime"),
        (b"mtime", b"1.2.3", "PAX mtime"),
    ];
    for (k, v, needle) in cases {
        let mut t = RawTar::new();
        t.pax_header(&pax(&[(k, v)]));
        t.file(b"f", b"data\n");
        refused(&r, &t.finish(), 1, needle);
    }
    // A valid PAX uid beyond the header's 7 octal digits is taken as it is.
    let mut t = RawTar::new();
    t.pax_header(&pax(&[(b"uid", b"4000000000"), (b"mtime", b"1700000000.25")]));
    t.file(b"f", b"data\n");
    import_ok(&r, &t, "paxok:1");
    let ls = r.json(["ls", "paxok:1", "--json"]);
    let f = ls["entries"].as_array().unwrap().iter().find(|e| e["path"].as_str().is_some_and(|p| p.trim_start_matches('/') == "f")).unwrap_or_else(|| panic!("no f in {ls}"));
    assert_eq!(f["uid"].as_u64(), Some(4_000_000_000), "{f}");
}

#[test]
fn non_tar_input_is_one_clear_line_without_its_bytes() {
    let r = repo();
    let garbage: Vec<u8> = (0u32..100_000).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8 | 0x80).collect();
    for input in [garbage.clone(), b"hello, this is a text file\n".repeat(40), Vec::new()] {
        let before = r.image_names();
        let out = r.run_stdin(["import", "-", "--image", "bad"], Some(&input));
        assert_eq!(out.status.code(), Some(1), "{}", report("import of non-tar input", &out));
        let err = &out.stderr;
        assert!(String::from_utf8_lossy(err).contains("not a tar archive"), "{}", report("import of non-tar input", &out));
        assert_eq!(err.iter().filter(|&&b| b == b'\n').count(), 1, "one line: {}", String::from_utf8_lossy(err));
        assert!(err.iter().all(|&b| b == b'\n' || (0x20..0x7f).contains(&b)), "stderr quotes raw bytes: {:?}", String::from_utf8_lossy(err));
        assert_eq!(r.image_names(), before);
    }
    r.ok(["verify"]);
}
