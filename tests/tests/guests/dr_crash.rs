//! kill -9 of `backup`, `send`, `receive` and `restore` at random instants
//! (issue 26): a stream file is whole or absent, the target is left consistent (verify clean, the old set of backups
//! or the new one, no guest or a whole one), no lock needs clearing, and a
//! rerun completes with the exact guest.

use super::*;
use super::dr::{changed_guest, held, site, Mount};
use super::rollback::build_system;

/// A random instant within `d` (and at least 1 ms).
fn within(rng: &mut Rng, d: Duration) -> Duration {
    Duration::from_micros(1000 + rng.below(d.as_micros() as u64))
}

#[test]
fn kill9_of_backup_receive_and_restore_leaves_targets_consistent_and_reruns_complete() {
    let w = World::new(true, build_system);
    let m1 = changed_guest(&w);
    w.r.ok(["checkpoint", "g1"]);
    let mut rng = Rng::new(seed("dr_crash"));
    let probe = site(&w, "probe", false);
    let probe_s = probe.repo().to_str().expect("utf-8").to_string();
    let t_backup = timed(&w.r, &["backup", "g1", "--to", &probe_s, "--no-checkpoint"]);
    let stream = w.r.scratch("g1.lvs");
    let stream_s = stream.to_str().expect("utf-8").to_string();
    let t_send = timed(&w.r, &["send", "g1", "-o", &stream_s]);
    let full = fs::read(&stream).expect("read stream");
    let t_rx = timed(&site(&w, "probe-rx", false), &["receive", &stream_s]);
    let mut killed = 0;
    for round in 0..5 {
        let s = site(&w, &format!("b{round}"), false);
        let to = s.repo().to_str().expect("utf-8").to_string();
        let done = kill9_after(&w.r, &["backup", "g1", "--to", &to, "--no-checkpoint"], within(&mut rng, t_backup));
        killed += usize::from(!done);
        s.ok(["verify"]);
        let h = held(&s, "g1");
        assert!(h.is_empty() || h == vec![1], "round {round}: a killed backup shows all or nothing: {h:?}");
        w.r.ok(["backup", "g1", "--to", &to, "--no-checkpoint"]);
        assert_eq!(held(&s, "g1"), vec![1], "round {round}: the rerun completes");
        s.ok(["verify"]);

        // A killed send leaves its file complete or absent.
        let out = w.r.scratch(&format!("s{round}.lvs"));
        let out_s = out.to_str().expect("utf-8").to_string();
        let done = kill9_after(&w.r, &["send", "g1", "-o", &out_s], within(&mut rng, t_send));
        killed += usize::from(!done);
        match fs::read(&out) {
            Ok(b) => assert_eq!(b, full, "round {round}: a stream file that exists is the whole stream"),
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "round {round}: {e}"),
        }

        let rx = site(&w, &format!("rx{round}"), false);
        let done = kill9_after(&rx, &["receive", &stream_s], within(&mut rng, t_rx));
        killed += usize::from(!done);
        rx.ok(["verify"]);
        let h = held(&rx, "g1");
        assert!(h.is_empty() || h == vec![1], "round {round}: a killed receive shows all or nothing: {h:?}");
        if h.is_empty() {
            rx.ok(["receive", &stream_s]);
        }
        assert_eq!(held(&rx, "g1"), vec![1]);

        let host = site(&w, &format!("h{round}"), round % 2 == 0);
        let dir = w.r.scratch(&format!("h{round}-guests")).join("g1");
        let dir_s = dir.to_str().expect("utf-8").to_string();
        let args = ["restore", "g1", "--from", &to, "--overlay", &dir_s];
        let t_restore = Duration::from_millis(300);
        let done = kill9_after(&host, &args, within(&mut rng, t_restore));
        killed += usize::from(!done);
        host.ok(["verify"]);
        let guests = host.json(["guest", "list", "--json"]);
        let n = guests["guests"].as_array().expect("guest list").len();
        assert!(n <= 1, "round {round}: {guests}");
        if n == 0 {
            host.ok(&args);
        }
        if round == 0 || round == 1 {
            let m = Mount::new(&host, "g1", w.r.scratch(&format!("h{round}-mnt")));
            assert_same(&format!("round {round}: restored after kill -9"), &m1, &m.manifest());
        }
    }
    eprintln!("dr kill -9: {killed} of 20 runs killed before they finished");
}
