//! Bad input: a damaged chunk and a corrupt overlay database.

use super::*;

/// Find `needle` in the repository's packs; returns (pack, offset).
fn find_in_packs(repo: &Path, needle: &[u8]) -> Vec<(PathBuf, usize)> {
    let mut hits = Vec::new();
    for e in fs::read_dir(repo.join("packs")).unwrap() {
        let p = e.unwrap().path();
        if !p.is_file() {
            continue;
        }
        let data = fs::read(&p).unwrap();
        let mut from = 0;
        while let Some(i) = data[from..].windows(needle.len()).position(|w| w == needle) {
            hits.push((p.clone(), from + i));
            from += i + 1;
        }
    }
    hits
}

#[test]
fn damaged_chunk_gives_eio_for_its_file_only_and_is_logged() {
    let victim = pseudo_random(31, 1 << 20);
    let others = [("ok/one", pseudo_random(32, 300_000)), ("ok/two", b"plain text\n".to_vec()), ("ok/three", pseudo_random(33, 1 << 20))];
    let g = Guest::new(|src| {
        fs::create_dir(src.join("ok")).unwrap();
        write(&src.join("victim"), &victim);
        for (p, d) in &others {
            write(&src.join(p), d);
        }
    });
    // Chunk 5 of the victim: flip a byte of its stored (raw: random data does
    // not compress) bytes in the pack.
    let chunk = &victim[5 * 65536..6 * 65536];
    let chunk_id = blake3::hash(chunk).to_hex().to_string();
    let hits = find_in_packs(&g.r.repo, &chunk[1000..1064]);
    assert_eq!(hits.len(), 1, "the chunk's bytes should be in exactly one pack: {hits:?}");
    let (pack, at) = &hits[0];
    let f = OpenOptions::new().read(true).write(true).open(pack).unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, *at as u64 + 10).unwrap();
    f.write_all_at(&[b[0] ^ 0x40], *at as u64 + 10).unwrap();
    drop(f);

    let m = g.mount();
    assert_eq!(lstat(&m.p("victim")).len(), 1 << 20, "metadata of the damaged file still reads");
    let err = fs::read(m.p("victim")).expect_err("reading a file with a damaged chunk must fail");
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "damaged chunk: {err}");
    // The chunks before the damage are fine (no readahead across it).
    let mut head = vec![0u8; 4096];
    File::open(m.p("victim")).unwrap().read_exact_at(&mut head, 0).unwrap();
    assert_eq!(head, victim[..4096]);
    for (p, d) in &others {
        assert_eq!(&read(&m.p(p)), d, "{p} must read fine next to a damaged file");
    }
    m.umount();
    let log = g.log();
    let line = log.lines().find(|l| l.contains(&chunk_id));
    assert!(line.is_some(), "daemon.log does not name chunk b3:{chunk_id}:\n{log}");
    eprintln!("daemon.log: {}", line.unwrap_or_default());
}

#[test]
fn corrupt_overlay_database_gives_a_clear_mount_error() {
    let g = Guest::new(small_tree);
    // Two sessions, so RocksDB has recovered its log into table files.
    for round in 0..2 {
        let m = g.mount();
        for i in 0..50 {
            write(&m.p(&format!("file-{round}-{i}")), format!("{round} {i}").as_bytes());
        }
        m.umount();
    }
    let meta = g.overlay.join("meta");
    let ssts: Vec<PathBuf> = fs::read_dir(&meta).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "sst")).collect();
    assert!(!ssts.is_empty(), "no .sst in {}: {:?}", meta.display(), names(&meta));
    let backup = g.r.scratch("meta-backup");
    assert!(Command::new("cp").arg("-a").arg(&meta).arg(&backup).status().unwrap().success());
    let restore = || {
        fs::remove_dir_all(&meta).unwrap();
        assert!(Command::new("cp").arg("-a").arg(&backup).arg(&meta).status().unwrap().success());
    };

    // `needle`: what the last line of the error must say about the cause.
    let expect_clear_failure = |what: &str, needle: &str| {
        let t = Instant::now();
        let out = g.try_mount();
        let took = t.elapsed();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "mount with {what} succeeded");
        assert!(!is_mounted(&g.mp), "mounted despite {what}");
        assert!(took < Duration::from_secs(30), "mount with {what} took {took:?}");
        assert!(common::daemon_pid(&g.mp).is_none(), "a daemon is left running after {what}");
        let log = g.log();
        assert!(!stderr.contains("panicked") && !log.contains("panicked"), "panic with {what}:\n{stderr}\n{log}");
        let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default();
        assert!(
            last.contains("overlay database") && last.contains(needle),
            "unclear error for {what} (want \"overlay database\" and {needle:?} in the last line):\n{stderr}"
        );
        eprintln!("{what}: {last}");
    };
    // Truncated table files.
    for p in &ssts {
        let len = fs::metadata(p).unwrap().len();
        OpenOptions::new().write(true).open(p).unwrap().set_len(len / 2).unwrap();
    }
    expect_clear_failure("truncated .sst files", "Corruption");
    // Garbage in table files (same size).
    restore();
    for p in &ssts {
        let len = fs::metadata(p).unwrap().len() as usize;
        fs::write(p, pseudo_random(99, len)).unwrap();
    }
    expect_clear_failure("garbage .sst files", "Corruption");
    // Garbage CURRENT.
    restore();
    fs::write(meta.join("CURRENT"), b"\x00garbage\xff").unwrap();
    expect_clear_failure("a garbage CURRENT", "CURRENT");
    // Missing CURRENT.
    restore();
    fs::remove_file(meta.join("CURRENT")).unwrap();
    expect_clear_failure("a missing CURRENT", "CURRENT");
    // The backup itself is fine: the failures above came from the damage.
    restore();
    let m = g.mount();
    assert_eq!(read(&m.p("file-1-49")), b"1 49");
    m.umount();
}
