//! Micro-benchmarks of loading one image directory (a tree object): the daemon
//! does this at the first LOOKUP or READDIRPLUS in every directory, and it is
//! most of what a cold walk of an image costs the daemon.
//!
//! A repository is made in a temporary directory with directory trees of 60
//! and 600 entries (names and attributes like a real /usr/share/doc: a median
//! directory of the mount-compare tree has ~60 entries). Then, per size:
//! - `tree_decode`: bytes to [`Tree`] (parsing, allocation);
//! - `tree_get`: the verified store read of the object (index lookup in
//!   RocksDB, pack read from the page cache, zstd, BLAKE3 check);
//! - `tree_load`: both, as the daemon calls it.
//!
//! Run: `cargo bench -p lvrepo-benches --bench tree_load`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion};
use lvrepo_fs::tree::Entry;
use lvrepo_fs::{Content, Kind, ObjectKind, ObjectStore, Repository, Timestamp, Tree, TreeId};

/// A directory of `n` entries: mostly files with content, some
/// subdirectories and symlinks, one with an ACL.
fn directory(store: &dyn ObjectStore, n: usize) -> Tree {
    let leaf = Tree { entries: vec![Entry::new(b"x".to_vec(), Kind::File)] }.store(store).expect("store leaf");
    let mut entries = Vec::with_capacity(n);
    for i in 0..n {
        let (kind, name) = match i % 10 {
            0 => (Kind::Dir, format!("subdir-{i:05}")),
            1 => (Kind::Symlink, format!("link-{i:05}.so")),
            _ => (Kind::File, format!("changelog-{i:05}.Debian.gz")),
        };
        let mut e = Entry::new(name.into_bytes(), kind);
        e.mode = if kind == Kind::Dir { 0o755 } else { 0o644 };
        e.mtime = Timestamp { sec: 1_700_000_000 + i as i64, nsec: 123_456_789 };
        match kind {
            Kind::Dir => e.content = Content::Tree(leaf),
            Kind::Symlink => e.target = b"../../lib/x86_64-linux-gnu/libexample.so.1".to_vec(),
            _ => {
                e.size = 3000 + (i as u64 * 7919) % 20000;
                e.content = Content::Chunk(lvrepo_fs::ChunkId(lvrepo_fs::Digest::from_slice(blake3::hash(&i.to_le_bytes()).as_bytes()).expect("32 bytes")));
            }
        }
        if i == 2 {
            e.xattrs.push((b"system.posix_acl_access".to_vec(), vec![2, 0, 0, 0, 1, 0, 6, 0, 255, 255, 255, 255]));
        }
        entries.push(e);
    }
    let mut t = Tree { entries };
    t.sort();
    t
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = Repository::init(&dir.path().join("repo")).expect("init repository");
    let sizes = [60usize, 600];
    let mut made: Vec<(usize, TreeId, Vec<u8>)> = Vec::new();
    for n in sizes {
        let t = directory(repo.objects(), n);
        let id = t.store(repo.objects()).expect("store tree");
        made.push((n, id, t.encode()));
    }
    repo.objects().flush().expect("flush");
    drop(repo);
    // As the daemon: the repository opened read-only, objects read through
    // the verifying store.
    let repo = Repository::open(&dir.path().join("repo"), false).expect("open repository");
    let store = repo.objects();

    let mut c = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let mut g = c.benchmark_group("tree_decode");
    for (n, _, bytes) in &made {
        g.bench_function(BenchmarkId::from_parameter(n), |b| b.iter(|| black_box(Tree::decode(black_box(bytes)).expect("decode"))));
    }
    g.finish();
    let mut g = c.benchmark_group("tree_get");
    for (n, id, _) in &made {
        g.bench_function(BenchmarkId::from_parameter(n), |b| b.iter(|| black_box(store.get(ObjectKind::Tree, &id.0).expect("get").expect("present"))));
    }
    g.finish();
    let mut g = c.benchmark_group("tree_load");
    for (n, id, _) in &made {
        g.bench_function(BenchmarkId::from_parameter(n), |b| b.iter(|| black_box(Tree::load(store, id).expect("load"))));
    }
    g.finish();
    c.final_summary();
}
