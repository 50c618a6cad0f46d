//! Micro-benchmarks of lvrepo's per-chunk hot paths: BLAKE3 hashing and zstd
//! compression (levels 1 and 3) / decompression, at candidate chunk sizes
//! 16 KiB, 64 KiB, 256 KiB and 1 MiB.
//!
//! Input is realistic: ~8 MiB read at start-up from the first files (sorted) of
//! /usr/bin (ELF) and /usr/share/doc (text, plus the .gz changelogs a real
//! image contains), interleaved file by file. If those are unreadable a
//! deterministic synthetic mix (text-like, code-like, zeros, random) is used.
//! Each benchmark iteration processes the NEXT chunk of that corpus, round
//! robin, so the throughput is an average over the whole corpus rather than
//! over one lucky chunk.
//!
//! Before timing, the achieved compression ratio per (level, chunk size) is
//! printed once to stderr — we use it to choose the chunk size. Two views:
//! chunks cut from the concatenated corpus (spanning files) and chunks cut per
//! source file (what a per-file chunker stores; small files = one chunk).
//!
//! Run: `cargo bench -p lvrepo-benches` (add `-- --quick` for a faster pass,
//! or a filter such as `-- zstd_compress`). Budget: sample_size(20),
//! warm_up 1 s, measurement 3 s per benchmark, 20 benchmarks ≈ 1.5–2 minutes.

use std::fs;
use std::hint::black_box;
use std::io::Read;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;
const CHUNK_SIZES: [usize; 4] = [16 * KIB, 64 * KIB, 256 * KIB, MIB];
const LEVELS: [i32; 2] = [1, 3];
const CORPUS_TARGET: usize = 8 * MIB;
const PER_FILE_MAX: usize = MIB;

fn size_label(n: usize) -> String {
    if n >= MIB {
        format!("{}MiB", n / MIB)
    } else {
        format!("{}KiB", n / KIB)
    }
}

/// Regular files under `root`, sorted, recursively (symlinks not followed).
fn sorted_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = fs::read_dir(&dir) else { continue };
        let mut entries: Vec<_> = rd.filter_map(Result::ok).collect();
        entries.sort_by_key(|e| e.file_name());
        let mut subdirs = Vec::new();
        for e in entries {
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_file() {
                out.push(e.path());
            } else if ft.is_dir() {
                subdirs.push(e.path());
            }
        }
        // Reverse so the stack pops them in sorted order.
        stack.extend(subdirs.into_iter().rev());
    }
    out
}

fn read_prefix(path: &Path, max: usize) -> Option<Vec<u8>> {
    let f = fs::File::open(path).ok()?;
    let mut buf = Vec::new();
    f.take(max as u64).read_to_end(&mut buf).ok()?;
    Some(buf)
}

/// Benchmark input: the concatenated bytes, the byte range of every source
/// file inside them, and a one-line description.
struct Corpus {
    data: Vec<u8>,
    files: Vec<Range<usize>>,
    desc: String,
}

/// ~8 MiB of real data: files from /usr/bin and /usr/share/doc, interleaved.
fn real_corpus() -> Option<Corpus> {
    let sources = [Path::new("/usr/bin"), Path::new("/usr/share/doc")];
    let lists: Vec<Vec<PathBuf>> = sources.iter().map(|s| sorted_files(s)).collect();
    let per_source = CORPUS_TARGET / sources.len();
    let mut taken = vec![0usize; sources.len()];
    let mut idx = vec![0usize; sources.len()];
    let mut nfiles = vec![0usize; sources.len()];
    let mut corpus = Vec::with_capacity(CORPUS_TARGET);
    let mut files = Vec::new();
    loop {
        let mut progressed = false;
        for s in 0..sources.len() {
            if taken[s] >= per_source || idx[s] >= lists[s].len() {
                continue;
            }
            let path = &lists[s][idx[s]];
            idx[s] += 1;
            progressed = true;
            let want = PER_FILE_MAX.min(per_source - taken[s]);
            if let Some(data) = read_prefix(path, want) {
                taken[s] += data.len();
                nfiles[s] += 1;
                files.push(corpus.len()..corpus.len() + data.len());
                corpus.extend_from_slice(&data);
            }
        }
        if !progressed {
            break;
        }
    }
    if corpus.len() < 2 * MIB {
        return None;
    }
    let desc = format!(
        "{:.1} MiB real data: {} files / {:.1} MiB from /usr/bin, {} files / {:.1} MiB from /usr/share/doc",
        corpus.len() as f64 / MIB as f64,
        nfiles[0],
        taken[0] as f64 / MIB as f64,
        nfiles[1],
        taken[1] as f64 / MIB as f64
    );
    Some(Corpus { data: corpus, files, desc })
}

/// Deterministic fallback: text-like, code-like, zero and random segments.
fn synthetic_corpus() -> Corpus {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        // xorshift64*
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    const WORDS: &[&str] = &[
        "the", "system", "package", "config", "default", "value", "error", "service",
        "network", "kernel", "module", "user", "file", "path", "option", "enable",
        "version", "license", "copyright", "debian", "install", "library", "=", "#",
    ];
    let mut out = Vec::with_capacity(CORPUS_TARGET);
    let mut files = Vec::new();
    while out.len() < CORPUS_TARGET {
        let start = out.len();
        let seg = 4 * KIB + (next() as usize % (60 * KIB));
        let end = (out.len() + seg).min(CORPUS_TARGET);
        match next() % 10 {
            0..=3 => {
                while out.len() < end {
                    let w = WORDS[next() as usize % WORDS.len()];
                    out.extend_from_slice(w.as_bytes());
                    out.push(if next() % 9 == 0 { b'\n' } else { b' ' });
                }
                out.truncate(end);
            }
            4..=6 => {
                // code-like: small opcode alphabet with repeated operands
                let ops = [0x48u8, 0x89, 0x8b, 0xe8, 0xc3, 0x0f, 0x1f, 0x44, 0x00, 0xff];
                while out.len() < end {
                    let r = next();
                    out.push(ops[r as usize % ops.len()]);
                    if r % 3 == 0 {
                        out.extend_from_slice(&(r >> 32).to_le_bytes()[..2]);
                    }
                }
                out.truncate(end);
            }
            7..=8 => out.resize(end, 0),
            _ => {
                while out.len() < end {
                    out.extend_from_slice(&next().to_le_bytes());
                }
                out.truncate(end);
            }
        }
        files.push(start..out.len());
    }
    let desc = format!(
        "{:.1} MiB SYNTHETIC data (/usr/bin or /usr/share/doc unreadable)",
        out.len() as f64 / MIB as f64
    );
    Corpus { data: out, files, desc }
}

fn chunks_of(corpus: &[u8], size: usize) -> Vec<&[u8]> {
    corpus.chunks_exact(size).collect()
}

/// (raw, compressed, stored) bytes for zstd-compressing each chunk separately;
/// `stored` keeps incompressible chunks raw. Also returns the number of chunks
/// and of incompressible chunks.
fn compress_chunks<'a>(
    comp: &mut zstd::bulk::Compressor<'_>,
    chunks: impl Iterator<Item = &'a [u8]>,
    out: &mut [u8],
) -> (usize, usize, usize, usize, usize) {
    let (mut raw, mut packed, mut stored, mut n, mut incompressible) = (0, 0, 0, 0, 0);
    for c in chunks {
        let z = comp.compress_to_buffer(c, &mut *out).expect("zstd compress");
        raw += c.len();
        packed += z;
        n += 1;
        if z >= c.len() {
            incompressible += 1;
            stored += c.len();
        } else {
            stored += z;
        }
    }
    (raw, packed, stored, n, incompressible)
}

/// Print, once, the compression ratio per level and chunk size (outside timing).
///
/// Two views: `concat` cuts the concatenated corpus into equal chunks (chunks
/// span file boundaries, so large chunks also profit from similar neighbouring
/// files); `per-file` cuts every file separately (last chunk of a file is
/// short, small files are one chunk) — what a per-file chunker stores.
fn print_ratio_table(corpus: &Corpus) {
    let data = &corpus.data[..];
    eprintln!();
    eprintln!(
        "zstd compression ratio, raw/compressed (stored = incompressible chunks kept raw), {} files:",
        corpus.files.len()
    );
    eprintln!(
        "{:>5} {:>7} | {:>6} {:>7} {:>7} {:>8} | {:>6} {:>7} {:>7} {:>8}",
        "level", "chunk", "concat", "ratio", "stored", "incompr", "perfile", "ratio", "stored", "incompr"
    );
    for level in LEVELS {
        let Ok(mut comp) = zstd::bulk::Compressor::new(level) else {
            eprintln!("zstd level {level}: cannot create compressor");
            continue;
        };
        for size in CHUNK_SIZES {
            let mut out = vec![0u8; zstd::zstd_safe::compress_bound(size)];
            let (raw, packed, stored, n, inc) =
                compress_chunks(&mut comp, data.chunks_exact(size), &mut out);
            let (fraw, fpacked, fstored, fnum, finc) = compress_chunks(
                &mut comp,
                corpus.files.iter().flat_map(|r| data[r.clone()].chunks(size)),
                &mut out,
            );
            eprintln!(
                "{:>5} {:>7} | {:>6} {:>6.3}x {:>6.3}x {:>7.1}% | {:>7} {:>6.3}x {:>6.3}x {:>7.1}%",
                level,
                size_label(size),
                n,
                raw as f64 / packed as f64,
                raw as f64 / stored as f64,
                100.0 * inc as f64 / n.max(1) as f64,
                fnum,
                fraw as f64 / fpacked as f64,
                fraw as f64 / fstored as f64,
                100.0 * finc as f64 / fnum.max(1) as f64,
            );
        }
    }
    let whole = zstd::bulk::compress(data, 3).map(|v| v.len()).unwrap_or(data.len());
    eprintln!(
        "(reference: whole corpus as ONE zstd frame at level 3: {:.3}x; incompr = % of chunks that do not shrink)",
        data.len() as f64 / whole as f64
    );
    eprintln!();
}

fn bench_blake3(c: &mut Criterion, corpus: &[u8]) {
    let mut g = c.benchmark_group("blake3_hash");
    for size in CHUNK_SIZES {
        let chunks = chunks_of(corpus, size);
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function(BenchmarkId::from_parameter(size_label(size)), |b| {
            let mut i = 0usize;
            b.iter(|| {
                let chunk = chunks[i % chunks.len()];
                i = i.wrapping_add(1);
                black_box(blake3::hash(black_box(chunk)))
            })
        });
    }
    g.finish();
}

fn bench_zstd_compress(c: &mut Criterion, corpus: &[u8]) {
    for level in LEVELS {
        let mut g = c.benchmark_group(format!("zstd_compress_l{level}"));
        for size in CHUNK_SIZES {
            let chunks = chunks_of(corpus, size);
            let mut comp = zstd::bulk::Compressor::new(level).expect("zstd compressor");
            let mut out = vec![0u8; zstd::zstd_safe::compress_bound(size)];
            g.throughput(Throughput::Bytes(size as u64));
            g.bench_function(BenchmarkId::from_parameter(size_label(size)), |b| {
                let mut i = 0usize;
                b.iter(|| {
                    let chunk = chunks[i % chunks.len()];
                    i = i.wrapping_add(1);
                    black_box(
                        comp.compress_to_buffer(black_box(chunk), &mut out[..])
                            .expect("zstd compress"),
                    )
                })
            });
        }
        g.finish();
    }
}

fn bench_zstd_decompress(c: &mut Criterion, corpus: &[u8]) {
    for level in LEVELS {
        let mut g = c.benchmark_group(format!("zstd_decompress_l{level}"));
        for size in CHUNK_SIZES {
            let frames: Vec<Vec<u8>> = chunks_of(corpus, size)
                .into_iter()
                .map(|ch| zstd::bulk::compress(ch, level).expect("zstd compress"))
                .collect();
            let mut dec = zstd::bulk::Decompressor::new().expect("zstd decompressor");
            let mut out = vec![0u8; size];
            // Throughput in UNCOMPRESSED bytes produced.
            g.throughput(Throughput::Bytes(size as u64));
            g.bench_function(BenchmarkId::from_parameter(size_label(size)), |b| {
                let mut i = 0usize;
                b.iter(|| {
                    let frame = &frames[i % frames.len()];
                    i = i.wrapping_add(1);
                    let n = dec
                        .decompress_to_buffer(black_box(&frame[..]), &mut out[..])
                        .expect("zstd decompress");
                    black_box(n)
                })
            });
        }
        g.finish();
    }
}

fn main() {
    let corpus = real_corpus().unwrap_or_else(synthetic_corpus);
    eprintln!("hot_paths corpus: {}", corpus.desc);
    print_ratio_table(&corpus);
    let corpus = &corpus.data[..];

    let mut c = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    bench_blake3(&mut c, corpus);
    bench_zstd_compress(&mut c, corpus);
    bench_zstd_decompress(&mut c, corpus);
    c.final_summary();
}
