//! Streams (issue 26): `send` and `receive`. An image or a guest's
//! checkpoints go through a file or a pipe and come back exact (full
//! manifests); `--since` sends only the change; truncated, bit-flipped,
//! wrong-version, replayed and hand-crafted hostile streams, and incremental
//! streams whose base the receiver lacks, are refused with a clear error and
//! leave the receiver as it was (no image, no backup, verify clean).

use super::*;
use super::dr::{held, site, Mount};
use super::rollback::{build_system, change_a};

/// `send ARGS -o FILE`; returns the stream's bytes.
pub(super) fn send_to_file(r: &Lvrepo, args: &[&str], file: &Path) -> Vec<u8> {
    let mut a: Vec<&OsStr> = vec![os("send")];
    a.extend(args.iter().map(|s| os(s)));
    a.extend([os("-o"), file.as_os_str()]);
    r.ok(&a);
    fs::read(file).expect("read stream")
}

/// `receive -` with `stream` on stdin.
pub(super) fn receive(r: &Lvrepo, stream: &[u8]) -> Output {
    r.run_stdin(["receive", "-"], Some(stream))
}

#[track_caller]
pub(super) fn refused(r: &Lvrepo, stream: &[u8], codes: &[i32], what: &str) -> String {
    let out = receive(r, stream);
    assert!(codes.contains(&out.status.code().unwrap_or(-1)), "{}", report(&format!("receive of {what} (expected exit {codes:?})"), &out));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!err.contains("panicked"), "{what}: {err}");
    err
}

/// The records of a stream (after magic and version), trailer excluded.
pub(super) fn records(s: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    let mut i = 12;
    while i < s.len() {
        let len = u32::from_le_bytes(s[i + 1..i + 5].try_into().expect("4 bytes")) as usize;
        if s[i] != b'T' {
            out.push((s[i], s[i + 5..i + 5 + len].to_vec()));
        }
        i += 5 + len;
    }
    out
}

/// Object records: uncompressed (`O`) or as the sender stored them (`Z`).
fn is_object(tag: u8) -> bool {
    tag == b'O' || tag == b'Z'
}

/// A well-framed stream of `recs` with a correct trailer: hostile content
/// that no framing check can catch.
pub(super) fn build(recs: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let mut s = b"LVSTREAM".to_vec();
    s.extend_from_slice(&2u32.to_le_bytes());
    for (tag, body) in recs {
        s.push(*tag);
        s.extend_from_slice(&(body.len() as u32).to_le_bytes());
        s.extend_from_slice(body);
    }
    let n = recs.iter().filter(|(t, _)| is_object(*t)).count() as u64;
    let h = *blake3::hash(&s).as_bytes();
    s.push(b'T');
    s.extend_from_slice(&40u32.to_le_bytes());
    s.extend_from_slice(&n.to_le_bytes());
    s.extend_from_slice(&h);
    s
}

/// Export `image` of `r` and take its manifest.
fn exported(r: &Lvrepo, image: &str, dest: PathBuf) -> Manifest {
    r.export(image, &dest);
    manifest(&dest).unwrap_or_else(|e| panic!("manifest of {}: {e}", dest.display()))
}

#[test]
fn image_streams_round_trip_and_bad_streams_change_nothing() {
    let w = World::new(true, build_system);
    // img:2: img:1 with one file changed.
    let v2 = w.r.scratch("v2");
    w.r.export("img:1", &v2);
    write_at(&v2.join("data/big"), 1000, b"version two");
    w.r.import(&v2, "img:2");
    let full = send_to_file(&w.r, &["img:1"], &w.r.scratch("full.lvs"));
    let inc = send_to_file(&w.r, &["img:2", "--since", "1"], &w.r.scratch("inc.lvs"));
    eprintln!("stream bytes: full {}, incremental {}", full.len(), inc.len());
    assert!(inc.len() * 4 < full.len(), "an incremental stream carries the change: {} vs {}", inc.len(), full.len());

    let rx = site(&w, "rx", false);
    let err = refused(&rx, &inc, &[3], "an incremental stream without its base");
    assert!(err.contains("does not hold"), "{err}");
    // Truncated anywhere, flipped anywhere: refused.
    let mut rng = Rng::new(seed("dr_stream"));
    let mut cuts: Vec<usize> = vec![0, 5, 12, 13, 20, full.len() - 41, full.len() - 1];
    cuts.extend((0..12).map(|_| rng.below(full.len() as u64) as usize));
    for c in cuts {
        let err = refused(&rx, &full[..c], &[4], &format!("the stream cut at {c}"));
        assert!(err.contains("truncated") || err.contains("magic"), "cut at {c}: {err}");
    }
    for _ in 0..16 {
        let at = rng.below(full.len() as u64) as usize;
        let mut s = full.clone();
        s[at] ^= 1 << rng.below(8);
        refused(&rx, &s, &[4], &format!("the stream with a bit flipped at {at}"));
    }
    let mut s = full.clone();
    s[8..12].copy_from_slice(&3u32.to_le_bytes());
    let err = refused(&rx, &s, &[4], "a version 3 stream");
    assert!(err.contains("version 3"), "{err}");
    let mut s = full.clone();
    s.push(0);
    refused(&rx, &s, &[4], "a stream with bytes after its trailer");
    // Well framed but hostile: an object that does not hash to its id, an
    // object left out, an image name that is a path.
    let recs = records(&full);
    let first_obj = recs.iter().position(|(t, _)| is_object(*t)).expect("an object record");
    // Objects cross compressed, as the sender's store keeps them.
    assert!(recs.iter().any(|(t, _)| *t == b'Z'), "compressed objects cross compressed");
    // A damaged object of either form: its bytes are decoded and hashed
    // before anything is stored.
    for tag in [b'O', b'Z'] {
        // The payload starts after kind, id (and, compressed, its length).
        let start = if tag == b'Z' { 37 } else { 33 };
        let Some(at) = recs.iter().position(|(t, b)| *t == tag && b.len() > start) else { continue };
        let len = recs[at].1.len();
        for pos in [len - 1, start + (len - start) / 2] {
            let mut bad = recs.clone();
            bad[at].1[pos] ^= 0x55;
            let err = refused(&rx, &build(&bad), &[4], &format!("a {} object damaged at {pos}", tag as char));
            assert!(err.contains("does not match its id") || err.contains("does not decode"), "{err}");
        }
    }
    // A compressed object claiming a huge decoded length: refused, not allocated.
    if let Some(at) = recs.iter().position(|(t, _)| *t == b'Z') {
        let mut bad = recs.clone();
        bad[at].1[33..37].copy_from_slice(&u32::MAX.to_le_bytes());
        let err = refused(&rx, &build(&bad), &[4], "a compressed object of 4 GiB");
        assert!(err.contains("damaged length"), "{err}");
    }
    let mut bad = recs.clone();
    bad.remove(first_obj);
    let err = refused(&rx, &build(&bad), &[4], "a stream missing an object its refs need");
    assert!(err.contains("neither in the stream"), "{err}");
    let mut bad = recs.clone();
    let refs = bad.iter_mut().find(|(t, _)| *t == b'R').expect("refs record");
    let text = String::from_utf8(refs.1.clone()).expect("refs JSON");
    refs.1 = text.replace("\"name\":\"img\"", "\"name\":\"../../etc/img\"").into_bytes();
    assert_ne!(refs.1, text.as_bytes(), "the test must change the name");
    let err = refused(&rx, &build(&bad), &[4], "an image named with a path");
    assert!(err.contains("invalid name"), "{err}");
    assert_eq!(rx.image_names(), Vec::<String>::new(), "a refused stream leaves no image");
    rx.ok(["verify"]);
    // The good streams: full, then the incremental one, through a pipe.
    assert!(receive(&rx, &full).status.success());
    refused(&rx, &full, &[5], "a replayed stream");
    let sent = w.r.run(["send", "img:2", "--since", "img:1"]);
    assert!(sent.status.success(), "{}", report("send to stdout", &sent));
    assert_eq!(sent.stdout, inc, "a stream is deterministic: the pipe carries the file's bytes");
    assert!(receive(&rx, &sent.stdout).status.success());
    assert_eq!(rx.image_names(), vec!["img:1", "img:2"]);
    rx.ok(["verify"]);
    for img in ["img:1", "img:2"] {
        let a = exported(&w.r, img, w.r.scratch(&format!("src-{img}")));
        let b = exported(&rx, img, w.r.scratch(&format!("rx-{img}")));
        assert_same(&format!("{img} sent and received"), &a, &b);
    }
}

#[test]
fn guest_streams_restore_exactly_and_incrementally() {
    let w = World::new(true, build_system);
    let g = w.guest("g1");
    let s12 = w.r.scratch("g12.lvs");
    let s3 = w.r.scratch("g3.lvs");
    let (m2, m3, full, inc);
    {
        let m = g.mount();
        change_a(&m);
        g.checkpoint("one");
        put(&m.p("etc/second"), b"2\n");
        m2 = m.manifest();
        g.checkpoint("two");
        // Checkpoints 1 and 2 as one stream (from a mounted guest) ...
        full = send_to_file(&w.r, &["g1"], &s12);
        write_at(&m.p("data/big.link"), 5, b"third");
        m3 = m.manifest();
        g.checkpoint("three");
        // ... then 3 on its own.
        inc = send_to_file(&w.r, &["g1", "--since", "2"], &s3);
        m.umount();
    }
    eprintln!("guest stream bytes: checkpoints 1-2 {}, checkpoint 3 since 2 {}", full.len(), inc.len());
    assert!(inc.len() * 4 < full.len(), "the incremental guest stream carries the change: {} vs {}", inc.len(), full.len());
    let bare = site(&w, "bare", false);
    refused(&bare, &inc, &[3], "a guest stream without its base");
    assert_eq!(held(&bare, "g1"), Vec::<u64>::new());
    bare.ok(["verify"]);
    let dr = site(&w, "dr", false);
    dr.ok([os("receive"), s12.as_os_str()]);
    assert_eq!(held(&dr, "g1"), vec![1, 2]);
    refused(&dr, &full, &[5], "a replayed guest stream");
    dr.ok([os("receive"), s3.as_os_str()]);
    assert_eq!(held(&dr, "g1"), vec![1, 2, 3]);
    dr.ok(["verify"]);
    let host = site(&w, "host", false);
    for (n, expected) in [(2, &m2), (3, &m3)] {
        let name = format!("r{n}");
        let dir = w.r.scratch("host-guests").join(&name);
        host.ok([os("restore"), os("g1"), os("--from"), dr.repo().as_os_str(), os("--overlay"), dir.as_os_str(), os("--as"), os(&name), os("--checkpoint"), os(&n.to_string())]);
        let m = Mount::new(&host, &name, w.r.scratch(&format!("host-mnt-{n}")));
        assert_same(&format!("guest sent, received and restored at checkpoint {n}"), expected, &m.manifest());
    }
}
