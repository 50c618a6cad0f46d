//! A checkpoint taken while another process writes is a consistent cut.

use super::*;
use super::rollback::build_hostname_only;

// ─────────── 2. a checkpoint during writes is a consistent cut ───────────

const WRITER_DIR: &str = "LVREPO_GUESTS_WRITER_DIR";
const WRITER_STOP: &str = "LVREPO_GUESTS_WRITER_STOP";
const REC: usize = 64;

/// Record `i` of the writer's log: exactly [`REC`] bytes.
fn record(i: u64) -> Vec<u8> {
    let mut r = format!("R{i:08} ").into_bytes();
    let fill = b'a' + (i % 26) as u8;
    r.resize(REC - 1, fill);
    r.push(b'\n');
    r
}

pub(super) fn record_file_body(i: u64) -> Vec<u8> {
    format!("file of record {i}\n").repeat(1 + (i % 7) as usize).into_bytes()
}

/// Not a test on its own: the writer process of
/// `checkpoints_during_writes_are_consistent_cuts` (this test binary started
/// again with `LVREPO_GUESTS_WRITER_DIR` set). Without it, it does nothing.
#[test]
fn writer_process() {
    let (Some(dir), Some(stop)) = (std::env::var_os(WRITER_DIR), std::env::var_os(WRITER_STOP)) else { return };
    let (dir, stop) = (PathBuf::from(dir), PathBuf::from(stop));
    let mut log = OpenOptions::new().create(true).append(true).open(dir.join("log")).expect("open log");
    let mut i = 0u64;
    while !stop.exists() {
        // The record's file first, then the record: a record implies its file.
        fs::write(dir.join("files").join(format!("{i:08}")), record_file_body(i)).expect("write record file");
        let n = log.write(&record(i)).expect("append record");
        assert_eq!(n, REC, "short append");
        i += 1;
    }
    println!("WRITER-RECORDS {i}");
}

/// What a mounted guest's writer log looks like: complete records
/// 0..n, each with its file; returns n.
fn check_cut(m: &Mounted, what: &str) -> u64 {
    let log = fs::read(m.p("wlog/log")).unwrap_or_else(|e| panic!("{what}: read log: {e}"));
    assert_eq!(log.len() % REC, 0, "{what}: torn record: log is {} bytes, not a multiple of {REC}", log.len());
    let n = (log.len() / REC) as u64;
    for (i, rec) in log.chunks(REC).enumerate() {
        assert_eq!(rec, &record(i as u64)[..], "{what}: record {i} is wrong: {:?}", String::from_utf8_lossy(rec));
    }
    let mut files: Vec<u64> = fs::read_dir(m.p("wlog/files"))
        .expect("readdir files")
        .map(|e| e.expect("readdir").file_name().to_string_lossy().parse().expect("numeric file name"))
        .collect();
    files.sort_unstable();
    // Files 0..n, plus at most file n (created, its record not yet appended).
    let expect: Vec<u64> = (0..n).collect();
    let ok = files == expect || (files.len() as u64 == n + 1 && files[..n as usize] == expect[..] && files[n as usize] == n);
    assert!(ok, "{what}: log has {n} records but files are {:?}…{:?} ({} files)", &files[..files.len().min(3)], &files[files.len().saturating_sub(3)..], files.len());
    for &i in &files {
        let body = fs::read(m.p(&format!("wlog/files/{i:08}"))).expect("read record file");
        // File n may be caught between its creation and its one write(2).
        let ok = body == record_file_body(i) || (i == n && body.is_empty());
        assert!(ok, "{what}: file of record {i} (log holds {n}) has wrong content: {:?}", String::from_utf8_lossy(&body));
    }
    n
}

#[test]
fn checkpoints_during_writes_are_consistent_cuts() {
    let w = World::new(true, build_hostname_only);
    let g = w.guest("busy");
    let m = g.mount();
    mkdir(&m.p("wlog/files"));
    let stop = w.r.scratch("writer.stop");
    let mut writer = Command::new(std::env::current_exe().expect("current_exe"))
        .args(["cuts::writer_process", "--exact", "--nocapture", "--test-threads=1"])
        .env(WRITER_DIR, m.p("wlog"))
        .env(WRITER_STOP, &stop)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start writer");
    // Stops the writer even if an assertion below fails.
    struct StopWriter<'a>(&'a Path, &'a mut std::process::Child);
    impl Drop for StopWriter<'_> {
        fn drop(&mut self) {
            let _ = fs::write(self.0, b"stop");
            let start = Instant::now();
            while matches!(self.1.try_wait(), Ok(None)) && start.elapsed() < Duration::from_secs(30) {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = self.1.kill();
            let _ = self.1.wait();
        }
    }
    let records_now = |m: &Mounted| fs::metadata(m.p("wlog/log")).map(|md| md.len() / REC as u64).unwrap_or(0);
    let mut cps = Vec::new();
    {
        let guard = StopWriter(&stop, &mut writer);
        let mut want = 0;
        for k in 0..3 {
            // Wait (a real signal: the log's length) for 150 more records.
            want += 150;
            let start = Instant::now();
            while records_now(&m) < want {
                if let Ok(Some(st)) = guard.1.try_wait() {
                    panic!("writer exited early ({st})");
                }
                assert!(start.elapsed() < Duration::from_secs(300), "writer made no progress: {} records", records_now(&m));
                std::thread::sleep(Duration::from_millis(5));
            }
            cps.push(g.checkpoint(&format!("during writes {k}")));
        }
        fs::write(&stop, b"stop").expect("write stop file");
        let start = Instant::now();
        while matches!(guard.1.try_wait(), Ok(None)) {
            assert!(start.elapsed() < Duration::from_secs(60), "writer did not stop");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let out = writer.wait_with_output().expect("writer output");
    assert!(out.status.success(), "{}", report("writer process", &out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    // (The harness prints the test's name on the same line.)
    let total: u64 = stdout
        .split("WRITER-RECORDS ")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .unwrap_or_else(|| panic!("writer printed no count:\n{stdout}"))
        .parse()
        .expect("count");
    assert_eq!(check_cut(&m, "live state after the writer stopped"), total);
    m.umount();
    assert_eq!(cps, vec![1, 2, 3]);

    let mut prev = 0;
    for &cp in &cps {
        g.rollback(cp);
        let m = g.mount();
        let n = check_cut(&m, &format!("checkpoint {cp}"));
        m.umount();
        eprintln!("checkpoint {cp}: {n} complete records of {total}");
        assert!(n >= 150 * cp && n > prev && n <= total, "checkpoint {cp} holds {n} records (previous {prev}, total {total})");
        prev = n;
    }
}
