//! Micro-benchmarks of reading an image file's bytes through the overlay
//! engine, without FUSE: what a READ of an image file costs the daemon.
//!
//! A repository is made in a temporary directory with an image of one
//! 8 MiB file: 64 chunks of random bytes (stored raw) and 64 of text-like
//! bytes (stored zstd-compressed). An overlay is opened over it as a mount
//! opens it (verified pack store behind the chunk cache). Then:
//! - `image_read/4k_cached_chunk`: a 4 KiB READ of an image file whose
//!   chunk is in the chunk cache (the common case after the first touch of
//!   a chunk: the kernel asks 4 KiB at a time for random reads);
//! - `image_read/128k_cached_chunks`: a 128 KiB READ (two chunks);
//! - `image_read/1m_cached_chunks`: a 1 MiB READ (16 chunks), as a
//!   sequential reader's kernel read-ahead sends them (the mount's
//!   max_readahead), and `image_read/1m_one_buffer`, the same bytes
//!   gathered into one buffer as `Overlay::read` returns them (the daemon
//!   sends the pieces, `Overlay::read_out`);
//! - `chunk_load/raw_64k`, `chunk_load/zstd_64k`: one chunk loaded from the
//!   pack store as a cache miss does (index lookup, pack read from the page
//!   cache, zstd for the compressed one, BLAKE3 verification).
//!
//! Run: `cargo bench -p lvrepo-benches --bench image_read`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::Criterion;
use lvrepo_fs::object::Cached;
use lvrepo_fs::overlay::{Overlay, ROOT_INO};
use lvrepo_fs::tree::file::{leaf_extents, ContentBuilder};
use lvrepo_fs::tree::{store_root, Entry};
use lvrepo_fs::{Content, Kind, ObjectKind, ObjectStore, Repository, Tree};

const CHUNK: usize = 64 << 10;
const HALF: usize = 64;

/// 64 chunks of random bytes, then 64 of text-like bytes.
fn file_bytes() -> Vec<u8> {
    let mut random = vec![0u8; HALF * CHUNK];
    blake3::Hasher::new().update(b"image_read").finalize_xof().fill(&mut random);
    let mut text = Vec::with_capacity(HALF * CHUNK);
    let mut i = 0u64;
    while text.len() < HALF * CHUNK {
        text.extend_from_slice(format!("line {i:08} of a log file that compresses, value={}\n", i * 7919 % 1000).as_bytes());
        i += 1;
    }
    text.truncate(HALF * CHUNK);
    random.extend_from_slice(&text);
    random
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = Repository::init(&dir.path().join("repo")).expect("init repository");
    let data = file_bytes();
    let mut b = ContentBuilder::new(repo.objects());
    b.push(0, &data).expect("store file");
    let content = b.finish(data.len() as u64).expect("finish file");
    let ids: Vec<_> = leaf_extents(repo.objects(), &content, data.len() as u64).expect("extents").into_iter().map(|e| e.2).collect();
    let mut f = Entry::new(b"big".to_vec(), Kind::File);
    f.mode = 0o644;
    f.size = data.len() as u64;
    f.content = content;
    let mut r = Entry::new(Vec::new(), Kind::Dir);
    r.mode = 0o755;
    r.content = Content::Tree(Tree { entries: vec![f] }.store(repo.objects()).expect("store root listing"));
    let root = store_root(repo.objects(), r).expect("store root");
    repo.objects().flush().expect("flush");
    drop(repo);
    let repo = Repository::open(&dir.path().join("repo"), false).expect("open repository");
    let store: Arc<dyn ObjectStore> = Arc::new(Cached::new(repo.shared_store(), 64 << 20));
    let ov = Overlay::open(&dir.path().join("ov"), store, root).expect("open overlay");
    let (ino, _) = ov.lookup(ROOT_INO, b"big").expect("lookup");
    // Every chunk read once: cached from here.
    for off in (0..data.len()).step_by(CHUNK) {
        assert_eq!(ov.read(ino, off as u64, CHUNK as u32).expect("read"), data[off..off + CHUNK]);
    }

    let mut c = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let mut g = c.benchmark_group("image_read");
    g.bench_function("4k_cached_chunk", |b| {
        let mut i = 0u64;
        b.iter(|| {
            // Every 4 KiB page in turn, spread over all 128 chunks.
            i = (i + 17) % (data.len() as u64 / 4096);
            black_box(ov.read_out(ino, i * 4096, 4096).expect("read").io_slices().len())
        })
    });
    g.bench_function("128k_cached_chunks", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i = (i + 1) % (data.len() as u64 / (128 << 10));
            black_box(ov.read_out(ino, i * (128 << 10), 128 << 10).expect("read").io_slices().len())
        })
    });
    g.bench_function("1m_cached_chunks", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i = (i + 1) % (data.len() as u64 >> 20);
            black_box(ov.read_out(ino, i << 20, 1 << 20).expect("read").io_slices().len())
        })
    });
    g.bench_function("1m_one_buffer", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i = (i + 1) % (data.len() as u64 >> 20);
            black_box(ov.read(ino, i << 20, 1 << 20).expect("read"))
        })
    });
    g.finish();

    let packs = repo.shared_store();
    let mut g = c.benchmark_group("chunk_load");
    g.bench_function("raw_64k", |b| b.iter(|| black_box(packs.get(ObjectKind::Chunk, &ids[3].0).expect("get"))));
    g.bench_function("zstd_64k", |b| b.iter(|| black_box(packs.get(ObjectKind::Chunk, &ids[HALF + 3].0).expect("get"))));
    g.finish();
    c.final_summary();
}
