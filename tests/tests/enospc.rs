//! A full overlay partition: writes fail with ENOSPC (never EIO, never a dead
//! daemon), and nothing written and fsynced before is lost. The overlay lives
//! on a 40 MiB tmpfs so "full" comes quickly and is real.

mod common;

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::process::Command;

use common::{lazy_umount, Guest};

struct Tmpfs(std::path::PathBuf);
impl Drop for Tmpfs {
    fn drop(&mut self) {
        lazy_umount(&self.0);
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn block(i: u32) -> Vec<u8> {
    lvrepo_tests::fixture::pseudo_random(u64::from(i) + 7, 1 << 20)
}

#[test]
fn a_full_overlay_partition_gives_enospc_and_keeps_what_was_written() {
    let g = Guest::new(|src| {
        std::fs::write(src.join("image-file"), b"from the image\n").unwrap();
    });
    std::fs::create_dir_all(&g.overlay).unwrap();
    let st = Command::new("mount").args(["-t", "tmpfs", "-o", "size=40m", "tmpfs"]).arg(&g.overlay).status().unwrap();
    assert!(st.success(), "mounting a tmpfs for the overlay");
    let _tmpfs = Tmpfs(g.overlay.clone());

    let m = g.mount();
    let mut written = 0u32;
    let mut err = None;
    for i in 0..200u32 {
        let r = (|| -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o644).open(m.p(&format!("f{i}")))?;
            f.write_all(&block(i))?;
            f.sync_all()
        })();
        match r {
            Ok(()) => written = i + 1,
            Err(e) => {
                err = Some(e);
                break;
            }
        }
    }
    let err = err.expect("40 MiB must fill up within 200 MiB of writes");
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "a full overlay must say ENOSPC, got {err}");
    assert!(written >= 5, "only {written} MiB fit before ENOSPC");
    // The mount still works: reads, and small metadata changes or a clean
    // refusal; the image is still readable.
    assert_eq!(std::fs::read(m.p("image-file")).unwrap(), b"from the image\n");
    for i in 0..written {
        assert!(std::fs::read(m.p(&format!("f{i}"))).unwrap() == block(i), "f{i} differs while full");
    }
    m.umount();

    // Remount: every fsynced file is intact.
    let m = g.mount();
    for i in 0..written {
        assert!(std::fs::read(m.p(&format!("f{i}"))).unwrap() == block(i), "f{i} lost or damaged after remount");
    }
    // Freeing space makes writes work again.
    for i in 0..written.min(4) {
        std::fs::remove_file(m.p(&format!("f{i}"))).unwrap();
    }
    std::fs::write(m.p("after"), b"room again").unwrap();
    assert_eq!(std::fs::read(m.p("after")).unwrap(), b"room again");
    m.umount();
}
