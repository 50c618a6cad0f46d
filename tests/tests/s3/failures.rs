//! A server that stops and comes back (s3s-fs: its objects are files, so a
//! restart on the same root and port is the same store): a stopped server
//! is a clear error and EIO through a mount, never wrong bytes; once it is
//! back, the next command and the next read through the same mount work.

use super::*;
use lvrepo_tests::fixture::pseudo_random;
use lvrepo_tests::image_path;

fn server(w: &mut World) -> &mut Server {
    w.server.as_mut().expect("these tests run on a server")
}

pub fn a_restarted_server_is_picked_up(store: Store) {
    let mut w = World::new(store);
    let (a, src1) = published(&w, |d| small_tree(d, 1));
    let b = w.host("b");
    b.guest("g1", "img:1");
    let m = b.mount("g1");

    server(&mut w).stop();
    server(&mut w).start();

    let src2 = small_image(&w, &a, "src2", 2, "img:2");
    assert_eq!(image_list(&b), strings(&["img:1", "img:2"]), "host b after the server's restart");
    assert_same("guest of img:1 mounted on host b before the restart, read after it", &manifest(&src1).expect("manifest"), &m.manifest());
    m.umount();
    assert_same("img:2 published after the restart, exported on host b", &manifest(&src2).expect("manifest"), &b.export_manifest("img:2"));
}

pub fn a_server_down_is_a_clear_error_never_wrong_bytes(store: Store) {
    let mut w = World::new(store);
    let big = pseudo_random(33, 3 << 20);
    let (_a, _src) = published(&w, |d| {
        small_tree(d, 3);
        put(&d.join("big"), &big);
    });
    let b = w.host("b");
    b.guest("g1", "img:1");
    let m = b.mount("g1");
    assert_eq!(fs::read(m.mp.join("etc/hostname")).expect("read before the stop"), b"host-3\n");
    let port = server(&mut w).port;
    server(&mut w).stop();

    // Through the mount: big was never read, so its bytes must come from the server.
    let log_before = m.log().len();
    match fs::read(m.mp.join("big")) {
        Ok(d) => panic!("read of a never-fetched file with the server down succeeded ({} bytes, {})", d.len(), if d == big { "right bytes: fetched before it was read?" } else { "WRONG bytes" }),
        Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EIO), "read with the server down: {e}"),
    }
    let log = m.log();
    let new = &log[log_before.min(log.len())..];
    assert!(new.contains(&format!("127.0.0.1:{port}")) || new.to_lowercase().contains("remote"), "the daemon logged no line naming the unreachable store:\n{new}");

    // A command on a fresh host: a clear error naming the store, nothing on stdout.
    let c = w.host("c");
    let out = c.run(["images"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && out.stdout.is_empty(), "{}", report("images with the server down", &out));
    assert!(err.contains(&format!("127.0.0.1:{port}")) || err.contains("s3://main/repo"), "the error does not name the store:\n{err}");
    let out = b.run([OsString::from("cat"), image_path("img:1", b"big")]);
    assert!(!out.status.success() && big.starts_with(&out.stdout), "{}", report("cat with the server down", &out));

    // Back: the same mount reads the file, whole.
    server(&mut w).start();
    let got = fs::read(m.mp.join("big")).unwrap_or_else(|e| panic!("read after the server came back: {e}\ndaemon.log:\n{}", m.log()));
    assert!(got == big, "big read after the server came back is not the file");
    m.umount();
}
