//! TRIM and WRITE_ZEROES on a served volume guest store nothing (whole
//! 4 KiB blocks become the overlay's zeros), honour NO_HOLE and FAST_ZERO,
//! and give the same bytes as `nbdkit --filter=cow file` on the same disk,
//! with a map that agrees with it and with the bytes.

use std::path::Path;
use std::process::{Child, Command};

#[path = "nbd_common/mod.rs"]
mod nbd_common;
use nbd_common::*;

/// `nbdkit -f --filter=cow file DISK` on a Unix socket, killed on drop.
struct Nbdkit(Child);

impl Drop for Nbdkit {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn nbdkit_cow(disk: &Path, sock: &Path) -> Nbdkit {
    let child = Command::new("nbdkit").args(["-f", "-U"]).arg(sock).args(["--filter=cow", "file"]).arg(disk).spawn().expect("nbdkit");
    let k = Nbdkit(child);
    // Ready once a client gets through the handshake.
    let uri = format!("nbd+unix:///?socket={}", sock.display());
    for _ in 0..200 {
        if sock.exists() && Command::new("nbdinfo").args(["--size", &uri]).output().is_ok_and(|o| o.status.success()) {
            return k;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("nbdkit did not come up on {}", sock.display());
}

/// `nbdinfo --map` of `uri`: (start, length, type) per extent.
fn map(uri: &str) -> Vec<(u64, u64, u32)> {
    let out = run(Command::new("nbdinfo").args(["--map", uri]), "nbdinfo --map");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0].parse().unwrap(), f[1].parse().unwrap(), f[2].parse().unwrap())
        })
        .collect()
}

/// The type `map` gives byte `p` (bit 0 hole, bit 1 zero).
fn type_at(map: &[(u64, u64, u32)], p: u64) -> u32 {
    map.iter().find(|e| e.0 <= p && p < e.0 + e.1).map(|e| e.2).unwrap_or_else(|| panic!("{p} not in the map {map:?}"))
}

/// Does `uri` say it can FAST_ZERO (`nbdinfo --can`: 0 yes, 2 no)?
fn can_fast_zero(uri: &str) -> bool {
    let st = Command::new("nbdinfo").args(["--can", "fast-zero", uri]).status().unwrap();
    assert!(st.code() == Some(0) || st.code() == Some(2), "nbdinfo --can fast-zero: {st}");
    st.success()
}

#[test]
fn zeroes_and_discards_store_nothing_and_match_nbdkit_cow() {
    let (r, raw) = world();
    guest(&r, "vg");
    let s = serve(&r, &["--guest", "vg"], "vg.sock");
    let uri = s.uri("vg");
    let disk = r.scratch("cow-base.raw");
    std::fs::copy(&raw, &disk).unwrap();
    let ksock = r.scratch("cow.sock");
    let _k = nbdkit_cow(&disk, &ksock);
    let kuri = format!("nbd+unix:///?socket={}", ksock.display());
    // Over image data, over the guest's own data, unaligned, with and
    // without NO_HOLE (qemu-io's `write -z` asks NO_HOLE, `-u` does not);
    // discards on nbdkit's 64 KiB blocks, where both define the bytes.
    let ops = [
        "write -P 0x33 12M 256k",
        "write -z -u 1M 512k",
        "write -z 10M 64k",
        "discard 12M 128k",
        "write -z -u 3000 10000",
        "write -P 0x44 12292k 100",
        "discard 1600k 64k",
        "flush",
    ];
    qemu_io(&uri, &ops);
    qemu_io(&kuri, &ops);
    let expect = r.scratch("expect.raw");
    std::fs::copy(&raw, &expect).unwrap();
    qemu_io_file(&expect, &ops);
    qemu_img(&["compare", "-f", "raw", "-F", "raw", &kuri, &uri]);
    qemu_img(&["compare", "-f", "raw", "-F", "raw", expect.to_str().unwrap(), &uri]);

    let (ours, theirs) = (map(&uri), map(&kuri));
    let bytes = std::fs::read(&expect).unwrap();
    for &(start, len, t) in &ours {
        if t & 2 != 0 {
            assert!(bytes[start as usize..(start + len) as usize].iter().all(|&b| b == 0), "our map says zero at {start}+{len}, the bytes are not");
        }
    }
    // Where nbdkit's cow overlay has a hole, so do we.
    for &(start, len, t) in &theirs {
        if t & 1 != 0 {
            assert_eq!(type_at(&ours, start) & 1, 1, "nbdkit: hole at {start}+{len}; ours: {ours:?}");
            assert_eq!(type_at(&ours, start + len - 1) & 1, 1, "nbdkit: hole at {start}+{len}; ours: {ours:?}");
        }
    }
    // Zeroing without NO_HOLE and discards store nothing: holes, at 4 KiB
    // granularity (the whole blocks of the unaligned range).
    for (p, what) in [(MIB, "write -z -u"), (MIB + 512 * 1024 - 1, "write -z -u, its end"), (12 * MIB, "discard"), (4096, "unaligned zero, whole block"), (1600 * 1024, "discard of image data")] {
        assert_eq!(type_at(&ours, p), 3, "{what} at {p}: hole,zero expected; {ours:?}");
    }
    // NO_HOLE: zeros, but allocated.
    assert_eq!(type_at(&ours, 10 * MIB), 2, "write -z (NO_HOLE) at 10M: zero, not a hole; {ours:?}");
    assert_eq!(type_at(&ours, 12292 * 1024), 0, "the write into a discarded block is data");
    // qemu-img's view of the same.
    let qmap = qemu_img(&["map", "--output=json", "-f", "raw", &uri]);
    let qmap: serde_json::Value = serde_json::from_slice(&qmap.stdout).unwrap();
    let at = |p: u64| qmap.as_array().unwrap().iter().find(|e| e["start"].as_u64().unwrap() <= p && p < e["start"].as_u64().unwrap() + e["length"].as_u64().unwrap()).unwrap().clone();
    assert_eq!((at(MIB)["zero"].as_bool(), at(MIB)["data"].as_bool()), (Some(true), Some(false)), "qemu-img map at 1M: {qmap}");

    // FAST_ZERO: we can (nothing is written), nbdkit's cow filter cannot;
    // with NO_HOLE zeros must be written, which is not fast: ENOTSUP.
    assert!(can_fast_zero(&uri));
    assert!(!can_fast_zero(&kuri), "nbdkit's cow filter learnt fast zero: revisit this comparison");
    let script = format!(
        "h = nbd.NBD(); h.connect_uri({uri:?})\n\
         h.zero(4 * 1048576, 20 * 1048576, nbd.CMD_FLAG_FAST_ZERO)\n\
         assert h.pread(4096, 20 * 1048576) == bytes(4096)\n\
         try:\n    h.zero(65536, 30 * 1048576, nbd.CMD_FLAG_FAST_ZERO | nbd.CMD_FLAG_NO_HOLE)\n    print('fast')\n\
         except nbd.Error as e:\n    assert e.errno == 'ENOTSUP', e\n    print('ok')\n"
    );
    let out = run(nbdsh().args(["-c", &script]), "nbdsh fast zero");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok", "FAST_ZERO with NO_HOLE must fail with ENOTSUP");
    // 20M..24M was image zeros; zeroed fast, it is the overlay's hole now.
    let ours = map(&uri);
    assert_eq!(type_at(&ours, 20 * MIB), 3);

    // The overlay stored what was written, not what was zeroed: 256 KiB +
    // 64 KiB (NO_HOLE) + a few partial blocks, less the discarded part.
    let data = r.scratch("guests").join("vg");
    let stored = du(&data);
    assert!(stored < 448 * 1024, "the guest's overlay holds {stored} bytes of data files");
}

/// Bytes allocated to the data files (`data/*`) under `dir`, recursively.
fn du(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let m = e.metadata().unwrap();
            if m.is_dir() {
                todo.push(e.path());
            } else if d.file_name().is_some_and(|n| n == "data") {
                total += m.blocks() * 512;
            }
        }
    }
    total
}
