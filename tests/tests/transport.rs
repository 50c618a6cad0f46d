//! The daemon's two ways to the kernel: per-CPU io_uring queues when the
//! kernel offers FUSE over io_uring (`fuse.enable_uring=Y`, set by
//! scripts/setup.sh), and /dev/fuse otherwise or with `--no-uring`. Both must
//! serve the same filesystem, from every CPU, with replies of every size. The
//! ring threads' hand-off (idle-class while a CPU is spare) must serve as well,
//! and give way when every CPU is busy.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use common::{daemon_pid, Guest};
use lvrepo_tests::fixture::pseudo_random;

const PARAM: &str = "/sys/module/fuse/parameters/enable_uring";

fn possible_cpus() -> usize {
    let s = fs::read_to_string("/sys/devices/system/cpu/possible").expect("reading possible CPUs");
    s.trim().rsplit([',', '-']).next().and_then(|n| n.parse::<usize>().ok()).expect("parsing possible CPUs") + 1
}

/// The CPUs this test may run on: one pinned worker (or spinner) for each.
fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The daemon's io_uring threads: (ring index from the thread name, scheduling policy).
fn ring_threads(pid: i32) -> Vec<(usize, i32)> {
    fs::read_dir(format!("/proc/{pid}/task"))
        .expect("listing daemon threads")
        .filter_map(|t| {
            let t = t.ok()?.path();
            let i = fs::read_to_string(t.join("comm")).ok()?.trim().strip_prefix("fuser-ring-")?.parse().ok()?;
            // Field 41 of stat, the 39th after the parenthesized name.
            let stat = fs::read_to_string(t.join("stat")).ok()?;
            let policy = stat.rsplit_once(") ")?.1.split(' ').nth(38)?.parse().ok()?;
            Some((i, policy))
        })
        .collect()
}

/// A normal-priority spinner pinned to every CPU until dropped: a machine
/// with no CPU to spare.
struct Load(Arc<AtomicBool>, Vec<JoinHandle<()>>);

impl Load {
    fn start() -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let spin = (0..cpus())
            .map(|cpu| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    pin(cpu);
                    while !stop.load(Ordering::Relaxed) {
                        std::hint::spin_loop();
                    }
                })
            })
            .collect();
        Load(stop, spin)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
        for t in self.1.drain(..) {
            let _ = t.join();
        }
    }
}

fn pin(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET and
    // sched_setaffinity get pointers to this live local.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        assert_eq!(libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set), 0, "pinning to CPU {cpu}");
    }
}

/// From a thread pinned to each CPU: create, write (up to 1 MiB per call),
/// read back, list a directory of 1,500 entries, set and read xattrs,
/// rename, unlink, fsync.
fn workload(mp: &Path) {
    std::thread::scope(|s| {
        for cpu in 0..cpus() {
            s.spawn(move || {
                pin(cpu);
                let dir = mp.join(format!("cpu{cpu}"));
                fs::create_dir(&dir).expect("mkdir");
                for i in 0..1500u64 {
                    fs::write(dir.join(format!("f{i:04}")), i.to_le_bytes()).expect("create");
                }
                let mut names: Vec<String> = fs::read_dir(&dir).expect("readdir").map(|e| e.expect("entry").file_name().into_string().expect("utf8")).collect();
                names.sort();
                assert_eq!(names.len(), 1500, "listing of {}", dir.display());
                assert_eq!(names[1499], "f1499");
                let big = pseudo_random(cpu as u64 + 7, (3 << 20) + 12345);
                fs::write(dir.join("big"), &big).expect("write big");
                let f = fs::File::open(dir.join("big")).expect("open big");
                f.sync_all().expect("fsync");
                assert!(fs::read(dir.join("big")).expect("read big") == big, "big file read back differs");
                xattr::set(dir.join("f0001"), "user.cpu", cpu.to_string().as_bytes()).expect("setxattr");
                assert_eq!(xattr::get(dir.join("f0001"), "user.cpu").expect("getxattr"), Some(cpu.to_string().into_bytes()));
                fs::rename(dir.join("f0002"), dir.join("renamed")).expect("rename");
                fs::remove_file(dir.join("f0003")).expect("unlink");
                assert_eq!(fs::read(dir.join("renamed")).expect("read renamed"), 2u64.to_le_bytes());
                assert_eq!(fs::read(mp.join("etc/hostname")).expect("read image file"), b"golden\n");
            });
        }
    });
}

fn check_persisted(mp: &Path) {
    for cpu in 0..cpus() {
        let dir = mp.join(format!("cpu{cpu}"));
        assert_eq!(fs::read_dir(&dir).expect("readdir").count(), 1500, "entries of {} after remount", dir.display());
        assert_eq!(fs::metadata(dir.join("big")).expect("stat big").size(), (3 << 20) + 12345);
        assert_eq!(fs::read(dir.join("f1499")).expect("read"), 1499u64.to_le_bytes());
        assert!(!dir.join("f0003").exists());
    }
}

#[test]
fn io_uring_queues_serve_when_offered_and_dev_fuse_otherwise() {
    // A kernel with FUSE over io_uring must have it on here: otherwise this
    // machine would run every other mount test over /dev/fuse only.
    let offered = match fs::read_to_string(PARAM) {
        Ok(v) => {
            assert_eq!(v.trim(), "Y", "{PARAM} is {}: run scripts/setup.sh (it turns FUSE over io_uring on)", v.trim());
            true
        }
        Err(_) => false,
    };
    // io_uring with hand-off (the default) runs once more with every CPU busy.
    for (args, rings, loaded) in [(&[][..], offered, false), (&[][..], offered, true), (&["--no-handoff"][..], offered, false), (&["--no-uring"][..], false, false)] {
        let g = Guest::new(|src| {
            fs::create_dir(src.join("etc")).expect("mkdir");
            fs::write(src.join("etc/hostname"), b"golden\n").expect("write");
        });
        let m = g.mount_with(args);
        let pid = daemon_pid(&g.mp).expect("daemon pid");
        // Two entries per CPU queue, one on machines of more than 16 CPUs.
        let possible = possible_cpus();
        let per_queue = if possible <= 16 { 2 } else { 1 };
        let want = if rings { per_queue * possible } else { 0 };
        assert_eq!(ring_threads(pid).len(), want, "io_uring threads with {args:?} (kernel offers io_uring: {offered})");
        let load = loaded.then(Load::start);
        workload(&g.mp);
        let threads = ring_threads(pid);
        drop(load);
        for &(i, policy) in &threads {
            let ok = if args.contains(&"--no-handoff") { [libc::SCHED_OTHER].contains(&policy) } else { [libc::SCHED_OTHER, libc::SCHED_IDLE].contains(&policy) };
            assert!(ok, "ring thread {i} has scheduling policy {policy} with {args:?}");
        }
        if loaded && rings {
            // With no CPU to spare a ring thread must not stay idle-class:
            // each queue's busy thread went back to normal within the workload.
            for q in 0..cpus() {
                let normal = threads.iter().any(|&(i, p)| i / per_queue == q && p == libc::SCHED_OTHER);
                assert!(normal, "CPU {q}: every ring thread still SCHED_IDLE with all CPUs busy: {threads:?}");
            }
        }
        m.umount();
        let m = g.mount_with(args);
        check_persisted(&g.mp);
        m.umount();
        assert!(!g.log().contains("ERROR"), "daemon logged errors:\n{}", g.log());
    }
}
