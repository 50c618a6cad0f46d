//! What every store must do, run on s3s-fs and on `file://`: publish on one
//! host and read (export, guest mount, full manifests) on another; backup to
//! a second bucket and restore on a third host; a file larger than a
//! multipart part; kill -9 of an import and of a backup; a damaged object;
//! two-phase gc; a deleted image kept for another host's guest by its lease.

use super::*;
use lvrepo_tests::fixture::{build_hostile_tree, pseudo_random, set_xattr};
use lvrepo_tests::image_path;
use std::time::Duration;

fn hostile(dir: &Path) {
    build_hostile_tree(dir).expect("build the hostile tree");
}

pub fn publish_on_one_host_mount_and_export_on_another(store: Store) {
    let w = World::new(store);
    let (a, src) = published(&w, hostile);
    let want = manifest(&src).expect("manifest of the source");
    assert_eq!(image_list(&a), strings(&["img:1"]));

    // Host b has nothing but the bucket.
    let b = w.host("b");
    assert_eq!(image_list(&b), strings(&["img:1"]), "host b does not see what host a published");
    assert_eq!(b.fetched(), 0, "host b fetched pack bytes before reading any file");
    b.guest("g1", "img:1");
    let m = b.mount("g1");
    assert_same("guest of img:1 mounted on host b", &want, &m.manifest());
    m.umount();
    assert!(b.fetched() > 0, "host b read every file of img:1 but CACHE/packs holds nothing");
    assert_same("img:1 exported on host b", &want, &b.export_manifest("img:1"));

    // And the other way: b publishes, a (with a warm cache) sees it.
    let src2 = small_image(&w, &b, "src2", 2, "img:2");
    assert_eq!(image_list(&a), strings(&["img:1", "img:2"]));
    assert_same("img:2 (published on b) exported on host a", &manifest(&src2).expect("manifest"), &a.export_manifest("img:2"));
    a.ok(["verify"]);
}

pub fn backup_to_a_second_bucket_and_restore_on_a_third_host(store: Store) {
    let w = World::new(store);
    let (_a, _src) = published(&w, hostile);
    let b = w.host("b");
    b.guest("g1", "img:1");
    let m = b.mount("g1");
    put(&m.mp.join("new-file"), &pseudo_random(41, 700_000));
    set_xattr(&m.mp.join("new-file"), "user.origin", b"host b").expect("setxattr");
    mk(&m.mp.join("new-dir/sub"));
    put(&m.mp.join("new-dir/sub/small"), b"written on host b\n");
    let changed = m.manifest();
    m.umount();

    let bk = w.url("backup", "site2");
    let site = w.host_on(&bk, "site2-admin");
    w.init(&site, "backup", "site2");
    b.ok([os("backup"), os("g1"), os("--to"), os(&bk)]);
    let listed = site.ok(["backups"]);
    assert!(listed.contains("g1"), "backups on {bk} does not list g1:\n{listed}");

    // Host c: a fresh cache, restoring from the backup bucket.
    let c = w.host("c");
    let ov = c.dir.join("guests").join("g1");
    c.ok([os("restore"), os("g1"), os("--from"), os(&bk), os("--overlay"), ov.as_os_str()]);
    let m = c.mount("g1");
    assert_same("guest g1 restored on host c from the backup bucket", &changed, &m.manifest());
    m.umount();
}

const BIG: usize = 72 * 1024 * 1024 + 12_345;

pub fn large_file_round_trips(store: Store) {
    let w = World::new(store);
    let big = pseudo_random(72, BIG);
    let (_a, _src) = published(&w, |d| put(&d.join("big"), &big));
    if store != Store::Moto {
        let largest = files_under(&w.bucket_dir("main")).into_iter().map(|(_, n)| n).max().unwrap_or(0);
        eprintln!("largest object in the bucket: {largest} bytes");
    }
    let b = w.host("b");
    let out = b.ok_bytes([OsString::from("cat"), image_path("img:1", b"big")]);
    assert!(out.len() == big.len() && blake3::hash(&out) == blake3::hash(&big), "cat of a {BIG}-byte file on host b: {} bytes, not the file", out.len());
    // Through a mount on a third host: lazily fetched ranges of the same objects.
    let c = w.host("c");
    c.guest("g1", "img:1");
    let m = c.mount("g1");
    let got = fs::read(m.mp.join("big")).unwrap_or_else(|e| panic!("read big through the mount on host c: {e}\ndaemon.log:\n{}", m.log()));
    assert!(got.len() == big.len() && blake3::hash(&got) == blake3::hash(&big), "big read through the mount on host c differs");
    m.umount();
}

/// Where an upload in progress shows first: the whole s3s-fs root (parts
/// of a multipart upload may live outside the bucket) or the `file://` bucket.
fn store_dir(w: &World) -> PathBuf {
    match w.store {
        Store::S3sFs => w.server.as_ref().and_then(|s| s.root.clone()).expect("s3s-fs root"),
        _ => w.bucket_dir("main"),
    }
}

pub fn kill9_of_an_import_leaves_no_image_and_a_retry_completes(store: Store) {
    let w = World::new(store);
    let (a, _src) = published(&w, |d| small_tree(d, 1));
    let src2 = w.scratch("src2");
    mk(&src2);
    for i in 0..3u64 {
        put(&src2.join(format!("part{i}")), &pseudo_random(100 + i, 40 << 20));
    }
    small_tree(&src2, 2);

    // Kill once at least 16 MiB of the import's objects reached the store:
    // an event, not a delay.
    let dir = store_dir(&w);
    let before: u64 = files_under(&dir).iter().map(|(_, n)| n).sum();
    let mut child = spawn(&a, &[os("import"), src2.as_os_str(), os("--image"), os("img:2")]);
    loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            let out = child.wait_with_output().expect("output");
            panic!("the import ended ({st}) before 16 MiB of it reached the store: nothing left to kill\n{}", report("import", &out));
        }
        let now: u64 = files_under(&dir).iter().map(|(_, n)| n).sum();
        if now >= before + (16 << 20) {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().expect("kill -9 the import");
    let st = child.wait().expect("wait");
    assert!(!st.success(), "the import finished before the kill; the test proved nothing");

    let b = w.host("b");
    assert_eq!(image_list(&a), strings(&["img:1"]), "a killed import left an image on its host");
    assert_eq!(image_list(&b), strings(&["img:1"]), "a killed import left an image another host sees");
    b.fails(["ls", "img:2"], 3);
    b.ok(["verify"]);

    a.import(&src2, "img:2");
    assert_eq!(image_list(&b), strings(&["img:1", "img:2"]));
    assert_same("img:2 after the retried import, exported on host b", &manifest(&src2).expect("manifest"), &b.export_manifest("img:2"));
}

pub fn damaged_object_is_detected_by_verify_and_on_read(store: Store) {
    let w = World::new(store);
    let big = pseudo_random(9, 6 << 20);
    let (a, _src) = published(&w, |d| {
        small_tree(d, 9);
        put(&d.join("big"), &big);
    });
    // The largest object is the pack holding `big` (random: stored as is);
    // its middle byte lies inside big's data.
    // (A pack object, by name: a server's temporaries beside it are not.)
    let objs = files_under(&w.bucket_dir("main"));
    let packs = objs.iter().filter(|(p, _)| p.extension().is_some_and(|e| e == "pack"));
    let (pack, len) = packs.max_by_key(|(_, n)| *n).cloned().unwrap_or_else(|| panic!("no pack object in the bucket: {objs:?}"));
    assert!(len > 6 << 20, "largest object {} is only {len} bytes: where is big's data?", pack.display());
    let mut bytes = fs::read(&pack).expect("read the pack object");
    bytes[(len / 2) as usize] ^= 0x5a;
    put(&pack, &bytes);

    let b = w.host("b");
    let out = b.run(["verify"]);
    assert_eq!(out.status.code(), Some(4), "{}", report("verify on a fresh host after a byte of a pack object flipped", &out));
    let out = a.run(["verify"]);
    assert_eq!(out.status.code(), Some(4), "{}", report("verify on the publishing host after a byte of a pack object flipped", &out));

    let out = b.run([OsString::from("cat"), image_path("img:1", b"big")]);
    if out.status.code() != Some(4) {
        let first_diff = big.iter().zip(&out.stdout).position(|(x, y)| x != y);
        panic!(
            "cat of the damaged file exited {:?}, {} bytes ({}; first difference at {first_diff:?}; the flipped byte is at {} of {} in {}); stderr: {}",
            out.status.code(),
            out.stdout.len(),
            if out.stdout == big { "the right bytes" } else { "NOT the file's bytes" },
            len / 2,
            len,
            pack.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(big.starts_with(&out.stdout), "cat of the damaged file wrote {} bytes that are not the file's", out.stdout.len());

    let c = w.host("c");
    c.guest("g1", "img:1");
    let m = c.mount("g1");
    match fs::read(m.mp.join("big")) {
        Ok(d) => panic!("read of the damaged file through a mount succeeded ({} bytes, {})", d.len(), if d == big { "right bytes from where?" } else { "WRONG bytes" }),
        Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EIO), "read of the damaged file through a mount: {e}"),
    }
    let hn = fs::read(m.mp.join("etc/hostname")).expect("an undamaged file of the same image still reads");
    assert_eq!(hn, b"host-9\n");
    m.umount();
}

pub fn gc_marks_then_sweeps_and_other_hosts_keep_reading(store: Store) {
    let w = World::new(store);
    let (a, src1) = published(&w, |d| small_tree(d, 1));
    let src2 = w.scratch("src2");
    mk(&src2);
    small_tree(&src2, 2);
    put(&src2.join("only-in-2"), &pseudo_random(22, 8 << 20));
    a.import(&src2, "img:2");

    // Host b mounts a guest of img:1 before anything is deleted.
    let b = w.host("b");
    b.guest("g1", "img:1");
    let m = b.mount("g1");

    a.ok(["delete", "img:2"]);
    let bucket = w.bucket_dir("main");
    let total = |v: &[(PathBuf, u64)]| v.iter().map(|(_, n)| n).sum::<u64>();
    let before = files_under(&bucket);
    a.ok(["gc"]);
    let marked = files_under(&bucket);
    for (p, n) in before.iter().filter(|(_, n)| *n > 1 << 20) {
        assert!(marked.iter().any(|(q, _)| q == p), "the first gc (mark) removed {} ({n} bytes): it must only mark", p.display());
    }
    a.ok(["gc", "--grace", "0s"]);
    let swept = files_under(&bucket);
    assert!(
        total(&swept) + (8 << 20) <= total(&marked),
        "gc --grace 0s after the mark reclaimed {} bytes, less than the 8 MiB only img:2 used",
        total(&marked).saturating_sub(total(&swept))
    );
    assert_eq!(image_list(&a), strings(&["img:1"]));

    let want = manifest(&src1).expect("manifest");
    assert_same("guest of img:1 on host b, mounted before the gc, read after it", &want, &m.manifest());
    m.umount();
    let c = w.host("c");
    assert_same("img:1 exported on a fresh host after the gc", &want, &c.export_manifest("img:1"));
    c.ok(["verify"]);
}

/// A guest on another host keeps its image through a gc run after the
/// image is deleted (its host's lease names it); once the guest is
/// removed, the next gc takes the image's packs.
pub fn a_deleted_image_under_another_hosts_guest_survives_gc_until_the_guest_goes(store: Store) {
    let w = World::new(store);
    let (a, src1) = published(&w, |d| {
        small_tree(d, 3);
        put(&d.join("big"), &pseudo_random(33, 8 << 20));
    });
    // Host b creates a guest of img:1 and reads nothing yet.
    let b = w.host("b");
    b.guest("g1", "img:1");
    let lease = b.json(["gc", "--dry-run", "--json"]);
    assert_eq!((lease["lease_count"].as_u64(), lease["leased_image_count"].as_u64()), (Some(1), Some(1)), "{lease}");

    a.ok(["delete", "img:1"]);
    assert_eq!(image_list(&a), Vec::<String>::new());
    let bucket = w.bucket_dir("main");
    let total = |v: &[(PathBuf, u64)]| v.iter().map(|(_, n)| n).sum::<u64>();
    a.ok(["gc", "--grace", "0s"]);
    let r = a.json(["gc", "--grace", "0s", "--json"]);
    assert_eq!(r["swept_packs"].as_array().map(Vec::len), Some(0), "a gc swept what host b's guest stands on: {r}");
    assert!(total(&files_under(&bucket)) >= 8 << 20, "the deleted image's packs left the bucket while a guest on host b stands on it");

    // Every byte, fetched only now, from the bucket.
    let m = b.mount("g1");
    assert_same("guest of the deleted img:1 on host b, first read after two gc runs", &manifest(&src1).expect("manifest"), &m.manifest());
    m.umount();

    // The guest goes: its lease lets go, and gc takes the image.
    b.ok(["guest", "rm", "g1"]);
    a.ok(["gc", "--grace", "0s"]);
    let r = a.json(["gc", "--grace", "0s", "--json"]);
    assert_eq!(r["lease_count"].as_u64(), Some(0), "{r}");
    assert!(total(&files_under(&bucket)) < 4 << 20, "the image no guest stands on any more is still in the bucket: {r}");
}

/// kill -9 of a backup to a bucket: the site lists no backup of the guest,
/// and a second backup completes and restores.
pub fn kill9_of_a_backup_leaves_no_backup_and_a_retry_completes(store: Store) {
    let w = World::new(store);
    let (_a, _src) = published(&w, |d| small_tree(d, 1));
    let b = w.host("b");
    b.guest("g1", "img:1");
    let m = b.mount("g1");
    for i in 0..3u64 {
        put(&m.mp.join(format!("own{i}")), &pseudo_random(200 + i, 40 << 20));
    }
    let changed = m.manifest();
    m.umount();
    let bk = w.url("backup", "site2");
    let site = w.host_on(&bk, "site2-admin");
    w.init(&site, "backup", "site2");

    // Kill once 16 MiB of the backup reached the store: an event, not a delay.
    let dir = match store {
        Store::S3sFs => store_dir(&w),
        _ => w.bucket_dir("backup"),
    };
    let before: u64 = files_under(&dir).iter().map(|(_, n)| n).sum();
    let mut child = spawn(&b, &[os("backup"), os("g1"), os("--to"), os(&bk)]);
    loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            let out = child.wait_with_output().expect("output");
            panic!("the backup ended ({st}) before 16 MiB of it reached the store: nothing left to kill\n{}", report("backup", &out));
        }
        let now: u64 = files_under(&dir).iter().map(|(_, n)| n).sum();
        if now >= before + (16 << 20) {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().expect("kill -9 the backup");
    assert!(!child.wait().expect("wait").success(), "the backup finished before the kill; the test proved nothing");
    let listed = site.ok(["backups"]);
    assert!(!listed.contains("g1"), "a killed backup is listed on {bk}:\n{listed}");
    let c = w.host("c");
    let ov = c.dir.join("guests").join("g1");
    c.fails([os("restore"), os("g1"), os("--from"), os(&bk), os("--overlay"), ov.as_os_str()], 3);

    b.ok([os("backup"), os("g1"), os("--to"), os(&bk)]);
    assert!(site.ok(["backups"]).contains("g1"), "the retried backup is not listed on {bk}");
    c.ok([os("restore"), os("g1"), os("--from"), os(&bk), os("--overlay"), ov.as_os_str()]);
    let m = c.mount("g1");
    assert_same("guest g1 restored on host c after a killed and a retried backup", &changed, &m.manifest());
    m.umount();
}
