//! A new guest's first generation is unborn: `guest create` writes no
//! database (that is what makes it cheap), the first writable open makes it.
//! What an interrupted making left behind held no writes and is made again;
//! once made, a lost `FORMAT` is damage (damage.rs), never a new overlay.

use super::*;

fn names(d: &Path) -> BTreeSet<String> {
    fs::read_dir(d).expect("read dir").map(|e| e.expect("readdir").file_name().to_string_lossy().into_owned()).collect()
}

#[test]
fn create_writes_no_database_and_an_interrupted_first_mount_is_made_again() {
    let w = World::new(false, |src| put(&src.join("f"), b"image\n"));
    let g = w.guest("u");
    let gd = g.dir.join("gen-00000001");
    assert_eq!(names(&gd), BTreeSet::from(["UNBORN".to_string()]), "guest create made more than the unborn marker");
    // A crash while the first open was making the database: half of one.
    fs::create_dir_all(gd.join("meta")).expect("mkdir meta");
    fs::create_dir_all(gd.join("data")).expect("mkdir data");
    put(&gd.join("meta").join("CURRENT"), b"MANIFEST-000009\n");
    put(&gd.join("data").join("junk"), b"never written by the guest");
    {
        let m = g.mount();
        assert_eq!(fs::read(m.p("f")).expect("read f"), b"image\n");
        put(&m.p("mine"), b"guest bytes\n");
        m.umount();
    }
    assert!(!gd.join("UNBORN").exists(), "the marker outlived the making of the generation");
    assert!(gd.join("FORMAT").is_file(), "no FORMAT after the first mount");
    assert!(!gd.join("data").join("junk").exists(), "the half-made generation's files were kept");
    let m = g.mount();
    assert_eq!(fs::read(m.p("mine")).expect("read mine"), b"guest bytes\n", "the guest's write did not survive a remount");
    assert_eq!(fs::read(m.p("f")).expect("read f"), b"image\n");
    m.umount();
}

#[test]
fn checkpoint_log_and_fsck_of_a_never_mounted_guest_work() {
    let w = World::new(false, |src| put(&src.join("f"), b"image\n"));
    let g = w.guest("u");
    let out = g.r().run(["guest", "fsck", "u"]);
    assert_eq!(out.status.code(), Some(0), "{}", report("guest fsck", &out));
    g.r().ok(["checkpoint", "u", "-m", "first"]);
    let log = g.r().run(["log", "u"]);
    assert!(log.status.success() && String::from_utf8_lossy(&log.stdout).contains("first"), "{}", report("log", &log));
    let m = g.mount();
    assert_eq!(fs::read(m.p("f")).expect("read f"), b"image\n");
    m.umount();
}
