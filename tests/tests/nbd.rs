//! Block volumes over NBD, with real clients (qemu-io, qemu-img, nbdinfo,
//! nbdcopy, nbdsh, fio): the bytes, the allocation maps, flush across
//! connections, read-only exports of images and checkpoints, checkpoint and
//! rollback of a served guest, kill -9 in a write+flush loop, and hostile
//! bytes on the socket.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lvrepo_tests::report;

#[path = "nbd_common/mod.rs"]
mod nbd_common;
use nbd_common::*;

#[test]
fn qemu_io_reads_writes_zeroes_discards_and_flushes() {
    let (r, _raw) = world();
    guest(&r, "vg");
    let s = serve(&r, &["--guest", "vg"], "vg.sock");
    let uri = s.uri("vg");
    qemu_io(&uri, &["read -P 0xab 1M 1M", "read -P 0 0 1M", "read -P 0xcd 10M 64k", "read -P 0xef 67104768 4k", "read -P 0 20M 1M"]);
    qemu_io(&uri, &["write -P 0x11 1040k 8k", "write -P 0x22 30M 3M", "write -z 10M 64k", "discard 40M 1M", "flush"]);
    // A second client sees every change, and the image's bytes around them.
    qemu_io(&uri, &["read -P 0xab 1M 16k", "read -P 0x11 1040k 8k", "read -P 0xab 1048k 1000k", "read -P 0x22 30M 3M", "read -P 0 10M 64k", "read -P 0 40M 1M"]);
    // The default export ("") is the guest too.
    qemu_io(&format!("nbd+unix:///?socket={}", s.sock.display()), &["read -P 0x22 30M 4k"]);
    // Out of range: refused, the connection survives.
    let out = Command::new("qemu-io").args(["-f", "raw", "-c", "read 64M 4k", "-c", "read -P 0xab 1M 4k"]).arg(&uri).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("read 4096/4096 bytes at offset 1048576"), "after a refused read the connection still serves:\n{text}");
}

#[test]
fn qemu_img_and_nbdcopy_see_the_volume_byte_for_byte_and_maps_agree_with_the_bytes() {
    let (r, raw) = world();
    guest(&r, "vg");
    let s = serve(&r, &["--guest", "vg"], "vg.sock");
    let uri = s.uri("vg");
    let writes = ["write -P 0x5a 3M 100k", "write -P 0x77 63M 64k", "write -z 1M 4k"];
    qemu_io(&uri, &writes);
    // The same writes on a copy of the raw disk: what the volume must be.
    let expect = r.scratch("expect.raw");
    std::fs::copy(&raw, &expect).unwrap();
    qemu_io_file(&expect, &writes);
    qemu_img(&["compare", "-f", "raw", "-F", "raw", expect.to_str().unwrap(), &uri]);
    let out = r.scratch("out.raw");
    qemu_img(&["convert", "-f", "raw", "-O", "raw", &uri, out.to_str().unwrap()]);
    assert!(std::fs::read(&out).unwrap() == std::fs::read(&expect).unwrap(), "qemu-img convert output differs");
    let out2 = r.scratch("out2.raw");
    run(Command::new("nbdcopy").args(["--connections=4", &uri, out2.to_str().unwrap()]), "nbdcopy out, 4 connections");
    assert!(std::fs::read(&out2).unwrap() == std::fs::read(&expect).unwrap(), "nbdcopy output differs");
    // Every byte that is not zero lies in a data extent of the map.
    let map = qemu_img(&["map", "--output=json", "-f", "raw", &uri]);
    let map: serde_json::Value = serde_json::from_slice(&map.stdout).unwrap();
    let bytes = std::fs::read(&expect).unwrap();
    for e in map.as_array().unwrap() {
        let (start, len) = (e["start"].as_u64().unwrap() as usize, e["length"].as_u64().unwrap() as usize);
        if e["zero"] == true {
            assert!(bytes[start..start + len].iter().all(|&b| b == 0), "map says zero at {start}+{len} but the volume has data there");
        }
    }
    // Allocation depth: written blocks (4 KiB, not whole 64 KiB windows)
    // are the guest's, image data the backing's.
    let depth = run(Command::new("nbdinfo").args(["--map=qemu:allocation-depth", &uri]), "nbdinfo depth");
    let depth = String::from_utf8_lossy(&depth.stdout).into_owned();
    assert!(depth.lines().any(|l| l.split_whitespace().collect::<Vec<_>>()[..3] == [(3 * MIB).to_string().as_str(), "102400", "1"]), "3M+100k written: depth 1\n{depth}");
    assert!(depth.lines().any(|l| l.split_whitespace().nth(2) == Some("2")), "image data: depth 2\n{depth}");
    run(Command::new("nbdinfo").args(["--can", "fast-zero", &uri]), "nbdinfo --can fast-zero");
    // Copying a whole file in through several connections, then reading it back.
    let src = r.scratch("src.raw");
    let pattern: Vec<u8> = (0..SIZE as usize).map(|i| (i / 4096 % 251) as u8).collect();
    std::fs::write(&src, &pattern).unwrap();
    run(Command::new("nbdcopy").args(["--connections=2", src.to_str().unwrap(), &uri]), "nbdcopy in, 2 connections");
    qemu_img(&["compare", "-f", "raw", "-F", "raw", src.to_str().unwrap(), &uri]);
}

#[test]
fn a_flush_on_one_connection_is_seen_by_another_and_fio_verifies() {
    let (r, _raw) = world();
    guest(&r, "vg");
    let s = serve(&r, &["--guest", "vg"], "vg.sock");
    let uri = s.uri("vg");
    let script = format!(
        "a = nbd.NBD(); a.connect_uri({uri:?}); b = nbd.NBD(); b.connect_uri({uri:?})\n\
         assert a.can_multi_conn()\n\
         a.pwrite(b'\\x42' * 65536, 5 * 1048576); a.flush()\n\
         assert b.pread(65536, 5 * 1048576) == b'\\x42' * 65536\n\
         print('ok')"
    );
    let out = run(nbdsh().args(["-c", &script]), "nbdsh two connections");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
    let job = r.scratch("verify.fio");
    std::fs::write(
        &job,
        format!("[v]\nioengine=nbd\nuri={uri}\nrw=randwrite\nbs=4k\nsize=16m\noffset=8m\niodepth=16\nverify=crc32c\nverify_fatal=1\ndo_verify=1\nverify_state_save=0\n"),
    )
    .unwrap();
    run(Command::new("fio").arg("--output-format=terse").arg(&job).current_dir(r.scratch("")), "fio --ioengine=nbd with verify");
}

#[test]
fn images_and_checkpoints_are_served_read_only() {
    let (r, _raw) = world();
    guest(&r, "vg");
    {
        let s = serve(&r, &["--guest", "vg"], "vg.sock");
        qemu_io(&s.uri("vg"), &["write -P 0x99 2M 64k", "flush"]);
        r.ok(["checkpoint", "vg", "-m", "one"]);
        qemu_io(&s.uri("vg"), &["write -P 0x98 2M 64k", "flush"]);
    }
    let img = serve(&r, &["--image", "vol:1"], "img.sock");
    let uri = img.uri("vol");
    qemu_io_ro(&uri, &["read -P 0xab 1M 1M", "read -P 0 2M 64k"]);
    let info = run(Command::new("nbdinfo").arg(&uri), "nbdinfo image");
    assert!(String::from_utf8_lossy(&info.stdout).contains("is_read_only: true"));
    // The server itself refuses a write (clients refuse before sending).
    assert_eq!(raw_write(&img.sock, b"vol"), 1, "a read-only export answers a WRITE with EPERM");
    let cp = serve(&r, &["--guest", "vg", "--checkpoint", "1"], "cp.sock");
    qemu_io_ro(&cp.uri("vg"), &["read -P 0x99 2M 64k", "read -P 0xab 1M 64k"]);
    assert_eq!(raw_write(&cp.sock, b"vg"), 1);
    // The guest itself is untouched by both.
    let s = serve(&r, &["--guest", "vg"], "vg.sock");
    qemu_io(&s.uri("vg"), &["read -P 0x98 2M 64k"]);
}

fn qemu_io_ro(uri: &str, cmds: &[&str]) {
    let mut c = Command::new("qemu-io");
    c.args(["-r", "-f", "raw"]);
    for x in cmds {
        c.args(["-c", x]);
    }
    c.arg(uri);
    let out = run(&mut c, &format!("qemu-io -r {cmds:?}"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(!text.contains("Pattern verification failed") && !text.contains("failed:"), "qemu-io -r {cmds:?}:\n{text}");
}

/// A hand-made client: EXPORT_NAME `name`, then one 4-byte WRITE at 0;
/// returns the error of its simple reply.
fn raw_write(sock: &Path, name: &[u8]) -> u32 {
    use std::io::Read;
    let mut c = UnixStream::connect(sock).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut hello = [0u8; 18];
    c.read_exact(&mut hello).unwrap();
    let mut m = 3u32.to_be_bytes().to_vec(); // FIXED_NEWSTYLE | NO_ZEROES
    m.extend_from_slice(&0x4948_4156_454f_5054u64.to_be_bytes());
    m.extend_from_slice(&1u32.to_be_bytes()); // OPT_EXPORT_NAME
    m.extend_from_slice(&(name.len() as u32).to_be_bytes());
    m.extend_from_slice(name);
    c.write_all(&m).unwrap();
    let mut exp = [0u8; 10];
    c.read_exact(&mut exp).unwrap();
    let mut req = 0x2560_9513u32.to_be_bytes().to_vec();
    req.extend_from_slice(&0u16.to_be_bytes()); // flags
    req.extend_from_slice(&1u16.to_be_bytes()); // WRITE
    req.extend_from_slice(&7u64.to_be_bytes()); // cookie
    req.extend_from_slice(&0u64.to_be_bytes()); // offset
    req.extend_from_slice(&4u32.to_be_bytes()); // length
    req.extend_from_slice(b"evil");
    c.write_all(&req).unwrap();
    let mut rep = [0u8; 16];
    c.read_exact(&mut rep).unwrap();
    assert_eq!(&rep[0..4], &0x6744_6698u32.to_be_bytes(), "simple reply magic");
    assert_eq!(&rep[8..16], &7u64.to_be_bytes(), "the reply carries the request's cookie");
    u32::from_be_bytes([rep[4], rep[5], rep[6], rep[7]])
}

/// Start an nbdsh client that holds a connection open until killed; returns
/// once it is connected.
fn hold_connection(uri: &str) -> Child {
    let mut c = nbdsh()
        .args(["-c", &format!("h = nbd.NBD(); h.connect_uri({uri:?}); print('connected', flush=True); import time; time.sleep(120)")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(c.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "connected");
    c
}

#[test]
fn checkpoint_and_rollback_of_a_served_guest() {
    let (r, _raw) = world();
    guest(&r, "vg");
    let s = serve(&r, &["--guest", "vg"], "vg.sock");
    let uri = s.uri("vg");
    qemu_io(&uri, &["write -P 0x01 4M 64k", "flush"]);
    r.ok(["checkpoint", "vg", "-m", "one"]);
    qemu_io(&uri, &["write -P 0x02 4M 64k", "write -P 0x03 50M 64k", "flush"]);
    let mut held = hold_connection(&uri);
    r.fails(["rollback", "vg", "1"], 6);
    qemu_io(&uri, &["read -P 0x02 4M 64k"]);
    r.ok(["rollback", "vg", "1", "--disconnect"]);
    let _ = held.kill();
    let _ = held.wait();
    qemu_io(&uri, &["read -P 0x01 4M 64k", "read -P 0 50M 64k", "read -P 0xab 1M 64k"]);
    // What the guest changed, as byte ranges: against its image, and against checkpoint 1.
    qemu_io(&uri, &["write -P 0x04 7M 4k", "flush"]);
    let ranges = |v: serde_json::Value| -> Vec<(u64, u64)> { v["ranges"].as_array().unwrap().iter().map(|r| (r["offset"].as_u64().unwrap(), r["length"].as_u64().unwrap())).collect() };
    assert_eq!(ranges(r.json(["diff", "vg", "--json"])), vec![(4 * MIB, 65536), (7 * MIB, 65536)]);
    assert_eq!(ranges(r.json(["diff", "vg", "1", "--json"])), vec![(7 * MIB, 65536)]);
    // mount and serve exclude each other, and a served guest cannot be served twice.
    let sock2 = r.scratch("second.sock");
    r.fails([OsStr::new("nbd"), OsStr::new("serve"), OsStr::new("--guest"), OsStr::new("vg"), OsStr::new("--socket"), sock2.as_os_str()], 6);
}

#[test]
fn volumes_export_as_raw_disks() {
    let (r, raw) = world();
    let out = r.scratch("img.raw");
    r.ok([OsStr::new("export"), OsStr::new("vol:1"), out.as_os_str()]);
    assert!(std::fs::read(&out).unwrap() == std::fs::read(&raw).unwrap(), "exported image differs from the imported disk");
    guest(&r, "vg");
    // Blocks among the image's data (a window then mixes the guest's blocks,
    // zeroed ones and the image's), and a window of image zeros.
    let guest_writes = ["write -P 0x66 5M 100k", "write -P 0x67 1100k 4k", "write -z -u 1108k 8k", "write -P 0x68 1200k 100", "flush"];
    {
        let s = serve(&r, &["--guest", "vg"], "vg.sock");
        qemu_io(&s.uri("vg"), &guest_writes);
        let busy = r.scratch("busy.raw");
        r.fails([OsStr::new("export"), OsStr::new("vg"), busy.as_os_str()], 6);
    }
    let g = r.scratch("guest.raw");
    r.ok([OsStr::new("export"), OsStr::new("vg"), g.as_os_str()]);
    let expect = r.scratch("expect.raw");
    std::fs::copy(&raw, &expect).unwrap();
    qemu_io_file(&expect, &guest_writes);
    assert!(std::fs::read(&g).unwrap() == std::fs::read(&expect).unwrap(), "exported guest differs");
    // Holes stay holes: the 64 MiB disk takes about what its data takes.
    use std::os::unix::fs::MetadataExt;
    assert!(std::fs::metadata(&g).unwrap().blocks() * 512 < 4 * MIB, "the exported disk is not sparse");
    let ranges = r.json(["diff", "vol:1", "vol:1", "--json"]);
    assert_eq!(ranges["ranges"].as_array().map(Vec::len), Some(0));
    // qcow2 in (through qemu-img), the same disk out; and a raw stream on stdin.
    let q = r.scratch("disk.qcow2");
    qemu_img(&["convert", "-f", "raw", "-O", "qcow2", raw.to_str().unwrap(), q.to_str().unwrap()]);
    r.ok([OsStr::new("import"), q.as_os_str(), OsStr::new("--volume"), OsStr::new("--image"), OsStr::new("vol:2")]);
    let out2 = r.scratch("from-qcow2.raw");
    r.ok([OsStr::new("export"), OsStr::new("vol:2"), out2.as_os_str()]);
    assert!(std::fs::read(&out2).unwrap() == std::fs::read(&raw).unwrap(), "qcow2 import differs");
    let out = r.run_stdin(["import", "-", "--volume", "--image", "vol:3"], Some(&std::fs::read(&raw).unwrap()));
    assert!(out.status.success(), "{}", report("import - --volume", &out));
    assert_eq!(r.json(["diff", "vol:1", "vol:3", "--json"])["ranges"].as_array().map(Vec::len), Some(0), "the same disk from stdin");
    // Same chunks: the second and third imports stored nothing new.
    let v = r.json(["images", "--json"]);
    assert!(v["images"].as_array().unwrap().iter().filter(|i| i["volume"] == true).count() >= 3, "{v}");
}

#[test]
fn kill_9_in_a_write_flush_loop_keeps_every_flushed_write() {
    let (r, _raw) = world();
    guest(&r, "vg");
    let sock = r.scratch("vg.sock");
    let uri = format!("nbd+unix:///vg?socket={}", sock.display());
    let mut acked = 0u64;
    for round in 0..4u64 {
        let s = serve(&r, &["--guest", "vg"], "vg.sock");
        let script = format!(
            "h = nbd.NBD(); h.connect_uri({uri:?})\n\
             i = {acked}\n\
             while True:\n    h.pwrite(bytes([i % 251 + 1]) * 4096, i * 4096); h.flush(); print(i, flush=True); i += 1\n"
        );
        let mut c = nbdsh().args(["-c", &script]).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
        let mut lines = BufReader::new(c.stdout.take().unwrap()).lines();
        let want = acked + 50 + round * 37;
        while let Some(Ok(l)) = lines.next() {
            acked = l.trim().parse::<u64>().unwrap() + 1;
            if acked >= want {
                break;
            }
        }
        let pid = server_pid(&s.sock).expect("server pid");
        // SAFETY: SIGKILL to the server this test started.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
        let t = Instant::now();
        // SAFETY: signal 0 checks the process exists.
        while unsafe { libc::kill(pid, 0) } == 0 && t.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = c.kill();
        let _ = c.wait();
        std::mem::forget(s);
    }
    let s = serve(&r, &["--guest", "vg"], "vg.sock");
    let script = format!(
        "h = nbd.NBD(); h.connect_uri({uri:?})\n\
         bad = [i for i in range({acked}) if h.pread(4096, i * 4096) != bytes([i % 251 + 1]) * 4096]\n\
         print(len(bad), bad[:5])"
    );
    let out = run(nbdsh().args(["-c", &script]), "nbdsh check");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("0 "), "flushed writes lost after kill -9: {}", String::from_utf8_lossy(&out.stdout));
    drop(s);
}

/// Send one option, read its replies up to the final one (ACK or an error).
fn option(c: &mut UnixStream, opt: u32, data: &[u8]) -> Vec<(u32, Vec<u8>)> {
    use std::io::Read;
    let mut m = 0x4948_4156_454f_5054u64.to_be_bytes().to_vec();
    m.extend_from_slice(&opt.to_be_bytes());
    m.extend_from_slice(&(data.len() as u32).to_be_bytes());
    m.extend_from_slice(data);
    c.write_all(&m).unwrap();
    let mut out = Vec::new();
    loop {
        let mut h = [0u8; 20];
        c.read_exact(&mut h).unwrap();
        assert_eq!(&h[0..8], &0x0003_e889_0455_65a9u64.to_be_bytes(), "option reply magic");
        assert_eq!(&h[8..12], &opt.to_be_bytes(), "the reply names the option");
        let kind = u32::from_be_bytes([h[12], h[13], h[14], h[15]]);
        let len = u32::from_be_bytes([h[16], h[17], h[18], h[19]]) as usize;
        let mut d = vec![0u8; len];
        c.read_exact(&mut d).unwrap();
        let last = kind == 1 || kind >= 1 << 31;
        out.push((kind, d));
        if last {
            return out;
        }
    }
}

#[test]
fn unknown_and_malformed_options_are_answered_in_step() {
    use std::io::Read;
    let (r, _raw) = world();
    let s = serve(&r, &["--image", "vol:1"], "img.sock");
    let mut c = UnixStream::connect(&s.sock).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut hello = [0u8; 18];
    c.read_exact(&mut hello).unwrap();
    assert_eq!(&hello[0..8], b"NBDMAGIC");
    c.write_all(&3u32.to_be_bytes()).unwrap();
    let unsup = 0x8000_0001u32;
    let invalid = 0x8000_0003u32;
    assert_eq!(option(&mut c, 99, b"some payload the server must skip")[0].0, unsup);
    assert_eq!(option(&mut c, 5, b"")[0].0, unsup, "STARTTLS is not offered");
    assert_eq!(option(&mut c, 3, b"x")[0].0, invalid, "LIST takes no data");
    assert_eq!(option(&mut c, 10, b"")[0].0, invalid, "SET_META_CONTEXT before STRUCTURED_REPLY");
    assert_eq!(option(&mut c, 7, &[0, 0, 0, 9, b'a'])[0].0, invalid, "GO with a name longer than its payload");
    let mut go = 3u32.to_be_bytes().to_vec();
    go.extend_from_slice(b"nop");
    go.extend_from_slice(&0u16.to_be_bytes());
    assert_eq!(option(&mut c, 7, &go)[0].0, 0x8000_0006, "GO of an unknown export");
    let list = option(&mut c, 3, b"");
    assert_eq!(list.len(), 2, "one export, then ACK");
    assert_eq!(&list[0].1[4..], b"vol");
    assert_eq!(option(&mut c, 8, b"")[0].0, 1, "STRUCTURED_REPLY acked");
    let mut meta = 3u32.to_be_bytes().to_vec();
    meta.extend_from_slice(b"vol");
    meta.extend_from_slice(&2u32.to_be_bytes());
    for q in [&b"base:allocation"[..], b"nope:thing"] {
        meta.extend_from_slice(&(q.len() as u32).to_be_bytes());
        meta.extend_from_slice(q);
    }
    let set = option(&mut c, 10, &meta);
    assert_eq!(set.len(), 2, "one context selected, then ACK: {set:?}");
    assert_eq!(&set[0].1[4..], b"base:allocation");
    let mut go = 3u32.to_be_bytes().to_vec();
    go.extend_from_slice(b"vol");
    go.extend_from_slice(&1u16.to_be_bytes());
    go.extend_from_slice(&3u16.to_be_bytes()); // NBD_INFO_BLOCK_SIZE
    let replies = option(&mut c, 7, &go);
    assert_eq!(replies.last().unwrap().0, 1, "GO acked");
    let size = replies.iter().find(|(k, d)| *k == 3 && d[0..2] == [0, 0]).expect("INFO_EXPORT");
    assert_eq!(u64::from_be_bytes(size.1[2..10].try_into().unwrap()), SIZE);
    assert!(replies.iter().any(|(k, d)| *k == 3 && d[0..2] == [0, 3]), "block sizes sent");
    // Transmission: a request with an unknown flag is refused (structured error), the next one served.
    let req = |flags: u16, kind: u16, cookie: u64, off: u64, len: u32| {
        let mut b = 0x2560_9513u32.to_be_bytes().to_vec();
        b.extend_from_slice(&flags.to_be_bytes());
        b.extend_from_slice(&kind.to_be_bytes());
        b.extend_from_slice(&cookie.to_be_bytes());
        b.extend_from_slice(&off.to_be_bytes());
        b.extend_from_slice(&len.to_be_bytes());
        b
    };
    c.write_all(&req(1 << 9, 0, 1, 0, 4096)).unwrap();
    let mut h = [0u8; 20];
    c.read_exact(&mut h).unwrap();
    assert_eq!(&h[0..4], &0x668e_33efu32.to_be_bytes(), "structured reply");
    assert_eq!(u16::from_be_bytes([h[6], h[7]]), (1 << 15) + 1, "an error chunk");
    let mut d = vec![0u8; u32::from_be_bytes([h[16], h[17], h[18], h[19]]) as usize];
    c.read_exact(&mut d).unwrap();
    assert_eq!(u32::from_be_bytes([d[0], d[1], d[2], d[3]]), 22, "EINVAL");
    // BLOCK_STATUS of the whole volume.
    c.write_all(&req(0, 7, 2, 0, SIZE as u32)).unwrap();
    c.read_exact(&mut h).unwrap();
    assert_eq!(u16::from_be_bytes([h[6], h[7]]), 5, "a block status chunk");
    let mut d = vec![0u8; u32::from_be_bytes([h[16], h[17], h[18], h[19]]) as usize];
    c.read_exact(&mut d).unwrap();
    let total: u64 = d[4..].chunks(8).map(|e| u64::from(u32::from_be_bytes([e[0], e[1], e[2], e[3]]))).sum();
    assert_eq!(total, SIZE, "the extents cover the request");
    c.write_all(&req(0, 2, 3, 0, 0)).unwrap(); // DISC
}

#[test]
fn hostile_bytes_never_take_the_server_down() {
    let (r, _raw) = world();
    let s = serve(&r, &["--image", "vol:1"], "img.sock");
    let mut x = 0x1234_5678_9abc_def1u64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for round in 0..200 {
        let Ok(mut c) = UnixStream::connect(&s.sock) else { panic!("server gone after round {round}") };
        c.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let mut hello = [0u8; 18];
        let _ = std::io::Read::read_exact(&mut c, &mut hello);
        // Sometimes a valid client flag word and option header, then garbage.
        let mut msg = Vec::new();
        if round % 2 == 0 {
            msg.extend_from_slice(&3u32.to_be_bytes());
            msg.extend_from_slice(&0x4948_4156_454f_5054u64.to_be_bytes());
            msg.extend_from_slice(&((next() % 12) as u32).to_be_bytes());
            msg.extend_from_slice(&((next() % 64) as u32).to_be_bytes());
        }
        for _ in 0..(next() % 200) {
            msg.push(next() as u8);
        }
        let _ = c.write_all(&msg);
    }
    // Still serving, right bytes.
    qemu_io_ro(&s.uri("vol"), &["read -P 0xab 1M 64k"]);
    let out = run(Command::new("nbdinfo").args(["--list", &format!("nbd+unix://?socket={}", s.sock.display())]), "nbdinfo --list");
    assert!(String::from_utf8_lossy(&out.stdout).contains("export=\"vol\""), "{}", String::from_utf8_lossy(&out.stdout));
}
