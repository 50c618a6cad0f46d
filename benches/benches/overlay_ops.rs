//! Micro-benchmarks of the overlay engine's per-request work, without FUSE:
//! what the daemon spends beyond the kernel's round trip on the requests of
//! `touch`, `chmod`, `ls -l` and file creation.
//!
//! A repository is made in a temporary directory with an image of 20
//! directories of 100 files each (names like the bench tree's), and an
//! overlay is opened over it as a mount opens it (verified, cached store).
//! Then:
//! - `setattr/chmod`: chmod of an image file the kernel has looked up (an
//!   inode record committed to the overlay database, durable against a kill
//!   of the daemon);
//! - `lookup/image_file`: LOOKUP of an image file in a directory whose tree
//!   is cached, and its FORGET;
//! - `getxattr/absent_acl`: GETXATTR of `system.posix_acl_access` on an image
//!   file that has none (asked once per file by `ls -l`);
//! - `readdirplus/list_and_resolve_100`: a directory of 100 image files
//!   listed and every entry resolved with its attributes, as a READDIRPLUS
//!   that carries them (per directory, not per entry);
//! - `create_unlink/file`: CREATE of a new file and its UNLINK (two
//!   committed namespace operations); `create_unlink/file_with_4k` writes
//!   4 KiB in between (inline in the overlay database, no data file).
//!
//! Run: `cargo bench -p lvrepo-benches --bench overlay_ops`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::Criterion;
use lvrepo_fs::object::Cached;
use lvrepo_fs::overlay::ns::{NewNode, SetAttr};
use lvrepo_fs::overlay::{Overlay, ROOT_INO};
use lvrepo_fs::tree::{store_root, Entry};
use lvrepo_fs::{Content, Kind, ObjectStore, Repository, Timestamp, Tree, TreeId};

const DIRS: usize = 20;
const FILES: usize = 100;

/// The image: `/dNN/file-NNNN.txt`, with content ids that need not exist
/// (nothing here reads file data).
fn image(store: &dyn ObjectStore) -> TreeId {
    let mut dirs = Vec::new();
    for d in 0..DIRS {
        let mut entries = Vec::new();
        for f in 0..FILES {
            let mut e = Entry::new(format!("file-{f:04}.txt").into_bytes(), Kind::File);
            e.mode = 0o644;
            e.size = 3000 + f as u64;
            e.mtime = Timestamp { sec: 1_700_000_000, nsec: 0 };
            e.content = Content::Chunk(lvrepo_fs::ChunkId(lvrepo_fs::Digest::from_slice(blake3::hash(&[d as u8, f as u8]).as_bytes()).expect("32 bytes")));
            entries.push(e);
        }
        let mut t = Tree { entries };
        t.sort();
        let mut e = Entry::new(format!("d{d:02}").into_bytes(), Kind::Dir);
        e.mode = 0o755;
        e.content = Content::Tree(t.store(store).expect("store dir"));
        dirs.push(e);
    }
    let mut root = Tree { entries: dirs };
    root.sort();
    let mut r = Entry::new(Vec::new(), Kind::Dir);
    r.mode = 0o755;
    r.content = Content::Tree(root.store(store).expect("store root listing"));
    store_root(store, r).expect("store root")
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = Repository::init(&dir.path().join("repo")).expect("init repository");
    let root = image(repo.objects());
    repo.objects().flush().expect("flush");
    drop(repo);
    let repo = Repository::open(&dir.path().join("repo"), false).expect("open repository");
    let store: Arc<dyn ObjectStore> = Arc::new(Cached::new(repo.shared_store(), 64 << 20));
    let ov = Overlay::open(&dir.path().join("ov"), store, root).expect("open overlay");

    // Every directory and file looked up once, as the kernel would have.
    let mut files = Vec::new();
    let mut dinos = Vec::new();
    for d in 0..DIRS {
        let (dino, _) = ov.lookup(ROOT_INO, format!("d{d:02}").as_bytes()).expect("lookup dir");
        dinos.push(dino);
        for f in 0..FILES {
            let (ino, _) = ov.lookup(dino, format!("file-{f:04}.txt").as_bytes()).expect("lookup file");
            files.push(ino);
        }
    }

    let mut c = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let mut g = c.benchmark_group("setattr");
    let mut i = 0usize;
    g.bench_function("chmod", |b| {
        b.iter(|| {
            i += 1;
            let mode = if i / files.len() % 2 == 0 { 0o600 } else { 0o644 };
            black_box(ov.setattr(files[i % files.len()], SetAttr { mode: Some(mode), ..Default::default() }).expect("chmod"))
        })
    });
    g.finish();

    let mut g = c.benchmark_group("lookup");
    let mut i = 0usize;
    g.bench_function("image_file", |b| {
        b.iter(|| {
            i += 1;
            let (d, f) = (i % DIRS, (i / DIRS) % FILES);
            let (ino, _) = ov.lookup(dinos[d], format!("file-{f:04}.txt").as_bytes()).expect("lookup");
            ov.forget(ino, 1);
            black_box(ino)
        })
    });
    g.finish();

    let mut g = c.benchmark_group("getxattr");
    let mut i = 0usize;
    g.bench_function("absent_acl", |b| {
        b.iter(|| {
            i += 1;
            black_box(ov.getxattr(files[i % files.len()], b"system.posix_acl_access").is_err())
        })
    });
    g.finish();

    let mut g = c.benchmark_group("readdirplus");
    let mut i = 0usize;
    g.bench_function("list_and_resolve_100", |b| {
        b.iter(|| {
            i += 1;
            let d = dinos[i % DIRS];
            let (gen, list) = ov.list_gen(d).expect("list");
            for l in &list {
                let (ino, size) = ov.lookup_listed(d, l, gen, |_, inode| inode.size).expect("lookup_listed");
                ov.forget(ino, 1);
                black_box(size);
            }
        })
    });
    g.finish();

    let mut g = c.benchmark_group("create_unlink");
    let nn = || NewNode { kind: Kind::File, mode: 0o644, uid: 0, gid: 0, rdev: 0, target: b"" };
    g.bench_function("file", |b| {
        b.iter(|| {
            let (ino, _) = ov.create(dinos[0], b"new-file", nn()).expect("create");
            ov.unlink(dinos[0], b"new-file").expect("unlink");
            ov.forget(ino, 1);
        })
    });
    let page = vec![0x5au8; 4096];
    g.bench_function("file_with_4k", |b| {
        b.iter(|| {
            let (ino, _) = ov.create(dinos[0], b"new-file", nn()).expect("create");
            ov.write(ino, 0, &page).expect("write");
            ov.unlink(dinos[0], b"new-file").expect("unlink");
            ov.forget(ino, 1);
        })
    });
    g.finish();
    c.final_summary();
}
