//! Signatures travel with `send`/`receive`: a signed image received into a
//! repository under `policy require-signature` is usable there (its
//! signature is stored and verifies); an unsigned image is refused (exit
//! 77) and a stream whose signature or signed record was tampered with is
//! refused (exit 4), each publishing nothing.

use super::dr::site;
use super::dr_stream::{build, receive, records, refused, send_to_file};
use super::rollback::build_system;
use super::*;

/// `NAME` and `NAME.pub` in `r`'s scratch; `key generate`.
fn keygen(r: &Lvrepo, name: &str) -> (PathBuf, PathBuf) {
    let key = r.scratch(name);
    r.ok([os("key"), os("generate"), os("--out"), key.as_os_str()]);
    let public = key.with_extension("key.pub");
    (key, public)
}

/// The image labels `r` holds.
fn images(r: &Lvrepo) -> Vec<String> {
    r.image_names()
}

/// `stream` with its refs record's JSON changed by `edit`, framed again
/// with a correct trailer (what someone rewriting the stream can do).
fn edit_refs(stream: &[u8], edit: impl Fn(&mut Value)) -> Vec<u8> {
    let mut recs = records(stream);
    let refs = recs.iter_mut().find(|(t, _)| *t == b'R').expect("a refs record");
    let mut v: Value = serde_json::from_slice(&refs.1).expect("refs record is JSON");
    edit(&mut v);
    refs.1 = serde_json::to_vec(&v).expect("encode refs");
    build(&recs)
}

#[test]
fn signatures_travel_with_send_and_receive_is_refused_unsigned_or_tampered() {
    let w = World::new(true, build_system);
    let (key, public) = keygen(&w.r, "release.key");
    let (other, _) = keygen(&w.r, "other.key");
    w.r.ok([os("sign"), os("img:1"), os("--key"), key.as_os_str()]);
    let v2 = w.r.scratch("v2");
    w.r.export("img:1", &v2);
    put(&v2.join("etc/hostname"), b"version two\n");
    w.r.import(&v2, "img:2");
    w.r.ok([os("sign"), os("img:2"), os("--key"), other.as_os_str()]);
    let signed = send_to_file(&w.r, &["img:1"], &w.r.scratch("signed.lvs"));
    let by_other = send_to_file(&w.r, &["img:2"], &w.r.scratch("other.lvs"));
    let sigs = serde_json::from_slice::<Value>(&records(&signed).iter().find(|(t, _)| *t == b'R').expect("refs").1).expect("json")["signatures"].clone();
    assert_eq!(sigs.as_array().map(|a| a.len()), Some(1), "the stream carries img:1's signature: {sigs}");

    let rx = site(&w, "rx", false);
    rx.ok([os("policy"), os("require-signature"), os("--key"), public.as_os_str()]);
    // Tampered: a signature that does not verify, or a signed record changed
    // (its version, and the carried signature's with it).
    let bad_sig = edit_refs(&signed, |v| {
        let s = v["signatures"][0]["signature"].as_str().expect("hex signature").to_string();
        let flipped = if s.starts_with('0') { format!("1{}", &s[1..]) } else { format!("0{}", &s[1..]) };
        v["signatures"][0]["signature"] = Value::from(flipped);
    });
    let e = refused(&rx, &bad_sig, &[4], "a stream whose signature was altered");
    assert!(e.contains("signature"), "{e}");
    let relabelled = edit_refs(&signed, |v| {
        v["images"][0]["version"] = Value::from(7);
        v["signatures"][0]["version"] = Value::from(7);
    });
    let e = refused(&rx, &relabelled, &[4], "a stream whose signed record was relabelled");
    assert!(e.contains("img:7") && e.contains("signature"), "{e}");
    // Unsigned (by a required key): signed by another key only, or not at all.
    let e = refused(&rx, &by_other, &[77], "an image signed by a key the policy does not require");
    assert!(e.contains("img:2 is not signed"), "{e}");
    let stripped = edit_refs(&signed, |v| {
        v.as_object_mut().expect("refs object").remove("signatures");
    });
    refused(&rx, &stripped, &[77], "a stream without signatures");
    assert_eq!(images(&rx), Vec::<String>::new(), "a refused receive published an image");

    // Signed by the required key: received, and signed there.
    let out = receive(&rx, &signed);
    assert!(out.status.success(), "{}", report("receive of the signed stream", &out));
    assert_eq!(images(&rx), vec!["img:1"]);
    rx.ok(["verify"]);
    let dir = rx.scratch("g-signed");
    rx.ok([os("guest"), os("create"), os("g"), os("--image"), os("img:1"), os("--overlay"), dir.as_os_str()]);

    // Without a policy a signed stream is received with its signature, which
    // a policy set afterwards accepts; a tampered one is refused anyway.
    let rx2 = site(&w, "rx2", false);
    refused(&rx2, &bad_sig, &[4], "an altered signature without a policy");
    let out = receive(&rx2, &signed);
    assert!(out.status.success(), "{}", report("receive without a policy", &out));
    rx2.ok([os("policy"), os("require-signature"), os("--key"), public.as_os_str()]);
    let dir = rx2.scratch("g2");
    rx2.ok([os("guest"), os("create"), os("g"), os("--image"), os("img:1"), os("--overlay"), dir.as_os_str()]);
}
