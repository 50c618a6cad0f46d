//! `st_blocks` counts what a file holds, as SEEK_DATA/SEEK_HOLE report it,
//! so `du` and `cp --sparse` keep the holes of sparse files.

use super::*;

const MIB: u64 = 1 << 20;

/// Bytes of `p` that SEEK_DATA/SEEK_HOLE call data.
fn data_by_seeking(p: &Path) -> u64 {
    let f = File::open(p).unwrap();
    let size = f.metadata().unwrap().len() as i64;
    let (mut off, mut total) = (0i64, 0u64);
    while off < size {
        // SAFETY: lseek on a descriptor we own.
        let d = unsafe { libc::lseek(f.as_raw_fd(), off, libc::SEEK_DATA) };
        if d < 0 {
            break;
        }
        // SAFETY: as above.
        let h = unsafe { libc::lseek(f.as_raw_fd(), d, libc::SEEK_HOLE) };
        assert!(h > d, "SEEK_HOLE from {d} of {} gave {h}", p.display());
        total += (h - d) as u64;
        off = h;
    }
    total
}

fn du_kib(p: &Path) -> u64 {
    let out = Command::new("du").arg("-k").arg(p).output().unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().parse().unwrap()
}

/// `blocks` agrees with seeking within the host's allocation unit per
/// copied-up window.
fn assert_blocks_match_seeking(p: &Path, slack: u64) {
    let held = lstat(p).blocks() * 512;
    let data = data_by_seeking(p);
    assert!(held >= data && held <= data + slack, "{}: st_blocks says {held} bytes, seeking finds {data}", p.display());
}

#[test]
fn st_blocks_counts_held_bytes_and_du_and_cp_keep_holes() {
    let g = Guest::new(|src| {
        // 64 MiB with 1 MiB of data in the middle and 1 MiB at the end.
        let f = OpenOptions::new().create(true).write(true).open(src.join("sparse")).unwrap();
        f.set_len(64 * MIB).unwrap();
        f.write_all_at(&pseudo_random(1, MIB as usize), 20 * MIB).unwrap();
        f.write_all_at(&pseudo_random(2, MIB as usize), 63 * MIB).unwrap();
        write(&src.join("dense"), &pseudo_random(3, 3 * MIB as usize + 5));
        write(&src.join("small"), b"hello\n");
    });
    let m = g.mount();
    let sparse = m.p("sparse");
    assert_eq!(lstat(&sparse).blocks() * 512, 2 * MIB, "image file with 2 MiB of data");
    assert_eq!(data_by_seeking(&sparse), 2 * MIB);
    assert_eq!(du_kib(&sparse), 2048);
    assert_eq!(lstat(&m.p("dense")).blocks(), (3 * MIB + 5).div_ceil(512));
    assert_eq!(lstat(&m.p("small")).blocks(), 1);

    // cp --sparse=always through the mount keeps the holes and the bytes.
    let copy = g.r.scratch("copy");
    let st = Command::new("cp").arg("--sparse=always").arg(&sparse).arg(&copy).status().unwrap();
    assert!(st.success());
    assert_eq!(read(&copy), read(&g.src.join("sparse")));
    assert!(lstat(&copy).blocks() * 512 <= 2 * MIB + 64 * 1024, "the copy filled holes: {} blocks", lstat(&copy).blocks());

    // A write into a hole of the image file: what it holds grows by at most
    // the window copied up, and seeking agrees.
    let f = OpenOptions::new().write(true).open(&sparse).unwrap();
    f.write_all_at(b"x", 5 * MIB).unwrap();
    drop(f);
    assert_blocks_match_seeking(&sparse, 256 * 1024);
    assert!(lstat(&sparse).blocks() * 512 < 3 * MIB, "a 1-byte write counted as {} blocks", lstat(&sparse).blocks());

    // Files the guest makes: a small one, a truncated-up empty one (all
    // hole), and a large sparse one written at both ends.
    write(&m.p("new-small"), b"abc");
    assert_eq!(lstat(&m.p("new-small")).blocks(), 1);
    let t = File::create(m.p("new-hole")).unwrap();
    t.set_len(10 * MIB).unwrap();
    drop(t);
    assert_eq!(lstat(&m.p("new-hole")).blocks(), 0, "a file truncated up holds nothing");
    assert_eq!(data_by_seeking(&m.p("new-hole")), 0);
    let b = OpenOptions::new().create(true).write(true).open(m.p("new-big")).unwrap();
    b.write_all_at(&pseudo_random(4, MIB as usize), 0).unwrap();
    b.write_all_at(&pseudo_random(5, MIB as usize), 40 * MIB).unwrap();
    drop(b);
    assert_blocks_match_seeking(&m.p("new-big"), 64 * 1024);
    assert!(du_kib(&m.p("new-big")) < 3 * 1024);

    // The same after a remount.
    m.umount();
    let m = g.mount();
    assert_blocks_match_seeking(&m.p("sparse"), 256 * 1024);
    assert_eq!(lstat(&m.p("new-hole")).blocks(), 0);
    assert_blocks_match_seeking(&m.p("new-big"), 64 * 1024);
    m.umount();
}
