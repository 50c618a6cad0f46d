//! Every `--json` document against docs/schema/lvrepo-1.json: each command
//! that has `--json` (found in its man page's synopsis, so generated from the
//! clap tree: a new command cannot be left out) is run on a repository with
//! images, a volume, guests, checkpoints, groups, channels and a backup
//! site, and its output validated (python3-jsonschema, draft 2020-12)
//! against the schema's definition of that command. Across all documents,
//! a field name has one JSON type.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use lvrepo_tests::{report, require_root, Lvrepo};
use serde_json::Value;

fn schema_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/schema/lvrepo-1.json")
}

/// Command paths (`guest list`) whose man page synopsis offers `--json`.
fn commands_with_json(r: &Lvrepo) -> BTreeSet<String> {
    let dir = r.scratch("man");
    r.ok(["man".as_ref(), "--out".as_ref(), dir.as_os_str()]);
    let mut out = BTreeSet::new();
    for e in std::fs::read_dir(&dir).expect("man dir") {
        let text = std::fs::read_to_string(e.expect("entry").path()).expect("man page");
        let Some(synopsis) = text.lines().find(|l| l.starts_with("\\fBlvrepo")) else { continue };
        if synopsis.contains("\\fB\\-\\-json\\fR") {
            let name = synopsis.trim_start_matches("\\fB").split("\\fR").next().unwrap_or_default();
            out.insert(name.trim_start_matches("lvrepo").trim().to_string());
        }
    }
    assert!(out.len() > 20, "man pages list only {out:?} with --json");
    out
}

/// Run `args` (exit 0), parse its document and keep it for validation.
struct Docs<'a> {
    r: &'a Lvrepo,
    docs: Vec<(String, Value)>,
}

impl Docs<'_> {
    fn run(&mut self, command: &str, args: &[&str]) -> Value {
        self.at(self.r, command, args)
    }

    /// A command that exits `code` and still prints its document (a group's).
    fn failing(&mut self, command: &str, args: &[&str], code: i32) -> Value {
        let out = self.r.run(args);
        assert_eq!(out.status.code(), Some(code), "{}", report(&format!("lvrepo {}", args.join(" ")), &out));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{}", report(&format!("lvrepo {}: bad JSON {e}", args.join(" ")), &out)));
        self.docs.push((command.to_string(), v.clone()));
        v
    }

    fn at(&mut self, r: &Lvrepo, command: &str, args: &[&str]) -> Value {
        let v = r.json(args);
        assert_eq!(v["command"], command, "lvrepo {}: wrong command field", args.join(" "));
        self.docs.push((command.to_string(), v.clone()));
        v
    }
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 scratch path")
}

#[test]
fn every_json_document_matches_the_schema() {
    require_root();
    let r = Lvrepo::init();
    let src = r.scratch("src");
    std::fs::create_dir_all(src.join("etc")).unwrap();
    std::fs::write(src.join("etc/hostname"), b"web\n").unwrap();
    std::fs::write(src.join("big"), vec![7u8; 100_000]).unwrap();
    std::fs::hard_link(src.join("big"), src.join("big-link")).unwrap();
    std::os::unix::fs::symlink("etc/hostname", src.join("link")).unwrap();
    let mut d = Docs { r: &r, docs: Vec::new() };

    // Images: two versions of a tree, a channel, a signature; a volume.
    let web1 = d.run("import", &["import", s(&src), "--image", "web", "-m", "first", "--json"]);
    std::fs::write(src.join("etc/added"), b"two\n").unwrap();
    d.run("import", &["import", s(&src), "--image", "web", "--json"]);
    d.run("images", &["images", "--json"]);
    d.run("images", &["images", "web", "--json"]);
    d.run("ls", &["ls", "web:1", "--json"]);
    d.run("ls", &["ls", "web:2", "-R", "--json"]);
    d.run("ls", &["ls", "web:2:/etc/hostname", "--json"]);
    std::fs::create_dir(src.join("empty")).unwrap();
    r.ok(["import", s(&src), "--image", "web:3"]);
    d.run("ls", &["ls", "web:3:/empty", "--json"]);
    d.run("diff", &["diff", "web:1", "web:2", "--json"]);
    d.run("diff", &["diff", "web:1", "web:2", "--stat", "--json"]);
    d.run("tag", &["tag", "web:2", "web:stable", "--json"]);
    d.run("tag", &["tag", "web:1", "web:stable", "--json"]);
    d.run("log", &["log", "web", "--json"]);
    let key = r.scratch("key");
    d.run("key generate", &["key", "generate", "--out", s(&key), "--json"]);
    d.run("sign", &["sign", "web:2", "--key", s(&key), "--json"]);
    d.run("policy show", &["policy", "show", "--json"]);
    let disk = r.scratch("disk.raw");
    std::fs::write(&disk, vec![0u8; 1 << 20]).unwrap();
    r.ok(["import", "--volume", s(&disk), "--image", "disk"]);
    let mut bytes = vec![0u8; 1 << 20];
    bytes[300_000..300_010].copy_from_slice(b"0123456789");
    std::fs::write(&disk, &bytes).unwrap();
    r.ok(["import", "--volume", s(&disk), "--image", "disk"]);
    d.run("diff", &["diff", "disk:1", "disk:2", "--json"]);
    d.run("diff", &["diff", "disk:1", "disk:2", "--stat", "--json"]);
    let cache = r.scratch("filecache");
    d.run("prefetch", &["prefetch", "web:2", "--file-cache", s(&cache), "--json"]);

    // Guests (unmounted): one with a file of its own, checkpoints, a clone.
    let motd = r.scratch("motd");
    std::fs::write(&motd, b"hello\n").unwrap();
    let file = format!("/motd={}", s(&motd));
    let (ga, gb, gcl) = (r.scratch("ga"), r.scratch("gb"), r.scratch("gcl"));
    d.run("guest create", &["guest", "create", "ga", "--image", "web:1", "--overlay", s(&ga), "--file", &file, "--json"]);
    d.run("guest create", &["guest", "create", "gb", "--image", "web:1", "--overlay", s(&gb), "--json"]);
    d.run("guest list", &["guest", "list", "--json"]);
    d.run("diff", &["diff", "ga", "--json"]);
    d.run("checkpoint", &["checkpoint", "ga", "-m", "one", "--json"]);
    d.run("checkpoint", &["checkpoint", "ga", "-m", "two", "--json"]);
    d.run("checkpoint", &["checkpoint", "ga", "-m", "three", "--json"]);
    let log = d.run("log", &["log", "ga", "--json"]);
    // A checkpoint reports its tree's real totals: the image's and /motd.
    let cp1 = &log["checkpoints"][0];
    assert_eq!(cp1["entry_count"].as_u64(), web1["image"]["entry_count"].as_u64().map(|n| n + 1), "{log}");
    assert_eq!(cp1["logical_bytes"].as_u64(), web1["image"]["logical_bytes"].as_u64().map(|n| n + 6), "{log}");
    assert_eq!(web1["image"]["logical_bytes"], 100_004, "a hardlinked file counts once: {web1}");
    d.run("guest show", &["guest", "show", "ga", "--json"]);
    d.run("guest clone", &["guest", "clone", "ga:1", "gcl", "--overlay", s(&gcl), "--json"]);
    d.run("diff", &["diff", "ga", "gb", "--json"]);
    d.run("rollback", &["rollback", "ga", "1", "--json"]);
    d.run("checkpoint delete", &["checkpoint", "delete", "ga", "2", "--json"]);
    d.run("checkpoint prune", &["checkpoint", "prune", "ga", "--keep", "1", "--json"]);
    d.run("guest fsck", &["guest", "fsck", "ga", "--json"]);
    d.run("harvest", &["harvest", "ga", "--image", "harvested", "--json"]);
    d.run("rebase", &["rebase", "gb", "--image", "web:2", "--dry-run", "--json"]);
    d.run("rebase", &["rebase", "gb", "--image", "web:2", "--json"]);
    // gb changed nothing: the checkpoint the rebase took is web:1 exactly.
    let log = d.run("log", &["log", "gb", "--json"]);
    assert_eq!((&log["checkpoints"][0]["entry_count"], &log["checkpoints"][0]["logical_bytes"]), (&web1["image"]["entry_count"], &web1["image"]["logical_bytes"]), "{log}");

    d.run("propagate", &["propagate", "--from", "ga", "--path", "/motd", "--to", "gb", "--dry-run", "--json"]);
    let prop = d.run("propagate", &["propagate", "--from", "ga", "--path", "/motd", "--to", "gb", "--json"]);
    assert!(prop["propagations"][0]["checkpoint"]["number"].is_u64(), "{prop}");

    // Groups (of fresh guests: each member has checkpoint 1 to go back to).
    for g in ["gx", "gy"] {
        r.ok(["guest", "create", g, "--image", "web:2", "--overlay", s(&r.scratch(g))]);
    }
    r.ok(["group", "create", "fleet", "gx", "gy"]);
    d.run("group list", &["group", "list", "--json"]);
    d.run("group show", &["group", "show", "fleet", "--json"]);
    d.run("checkpoint", &["checkpoint", "--group", "fleet", "-m", "all", "--json"]);
    d.run("rollback", &["rollback", "--group", "fleet", "1", "--json"]);
    // Every member fails (no checkpoint 9): each result says why, exit 3.
    let failed = d.failing("rollback", &["rollback", "--group", "fleet", "9", "--json"], 3);
    assert!(failed["results"].as_array().is_some_and(|a| a.len() == 2 && a.iter().all(|m| m["ok"] == false && m["exit"] == 3)), "{failed}");
    d.run("rebase", &["rebase", "--group", "fleet", "--image", "web:2", "--dry-run", "--json"]);

    // Backups and streams.
    let site = Lvrepo::at(r.scratch("site"));
    site.ok(["init"]);
    d.run("backup", &["backup", "ga", "--to", s(site.repo()), "--json"]);
    d.run("backup", &["backup", "ga", "--to", s(site.repo()), "-m", "again", "--json"]);
    d.at(&site, "backups", &["backups", "--json"]);
    d.at(&site, "backups", &["backups", "ga", "--json"]);
    let restored = r.scratch("restored");
    d.run("restore", &["restore", "ga", "--from", s(site.repo()), "--as", "gr", "--overlay", s(&restored), "--json"]);
    d.at(&site, "forget", &["forget", "ga", "--keep-last", "1", "--dry-run", "--json"]);
    d.at(&site, "forget", &["forget", "ga", "--keep-last", "1", "--json"]);
    let stream = r.scratch("web.stream");
    d.run("send", &["send", "web:2", "-o", s(&stream), "--json"]);
    let other = Lvrepo::at(r.scratch("other"));
    other.ok(["init"]);
    d.at(&other, "receive", &["receive", s(&stream), "--json"]);

    // The repository as a whole.
    d.run("stats", &["stats", "--json"]);
    d.run("verify", &["verify", "--json"]);
    d.run("verify", &["verify", "--overlays", "--json"]);
    d.run("audit", &["audit", "--json"]);
    d.run("audit verify", &["audit", "verify", "--json"]);
    d.run("delete", &["delete", "web:1", "--force", "--json"]);
    d.run("gc", &["gc", "--dry-run", "--json"]);
    d.run("gc", &["gc", "--json"]);
    // A remote repository's gc has its own shape (file://: the code s3:// runs).
    let remote = Lvrepo::at(format!("file://{}", r.scratch("bucket").display())).with_env("LVREPO_CACHE", r.scratch("bucket-cache"));
    remote.ok(["init"]);
    d.at(&remote, "gc", &["gc", "--dry-run", "--json"]);
    let v = d.at(&remote, "gc", &["gc", "--grace", "0s", "--json"]);
    assert!(v["live_pack_count"].is_u64() && v["marked_packs"].is_array(), "remote gc document: {v}");

    validate(&r, &d.docs);
    same_types(&d.docs);
    let with_json = commands_with_json(&r);
    let run: BTreeSet<String> = d.docs.iter().map(|(c, _)| c.clone()).collect();
    assert_eq!(run, with_json, "the commands with --json (left: validated here, right: the clap tree's)");
    let schema: Value = serde_json::from_slice(&std::fs::read(schema_path()).unwrap()).unwrap();
    let defined: BTreeSet<String> = schema["$defs"].as_object().unwrap().keys().filter_map(|k| k.strip_prefix("command:")).map(|k| k.replace('-', " ")).collect();
    assert_eq!(defined, with_json, "docs/schema/lvrepo-1.json defines (left) vs the commands with --json (right)");
}

/// Validate each document against `$defs/command:NAME` in one python3 run.
fn validate(r: &Lvrepo, docs: &[(String, Value)]) {
    let input = r.scratch("docs.json");
    let all: Vec<Value> = docs.iter().map(|(c, v)| serde_json::json!([format!("command:{}", c.replace(' ', "-")), v])).collect();
    std::fs::write(&input, serde_json::to_vec(&all).unwrap()).unwrap();
    let script = r##"
import json, sys
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
schema = json.load(open(sys.argv[1]))
Draft202012Validator.check_schema(schema)
bad = 0
for name, doc in json.load(open(sys.argv[2])):
    if name not in schema["$defs"]:
        print(f"{name}: no definition in the schema"); bad += 1; continue
    v = Draft202012Validator({"$defs": schema["$defs"], "$ref": "#/$defs/" + name})
    for e in v.iter_errors(doc):
        bad += 1
        e = best_match(e.context) if e.context else e
        print(f"{name}: {'/'.join(map(str, e.absolute_path))}: {e.message[:300]}")
    for e in Draft202012Validator(schema).iter_errors(doc):
        bad += 1
        print(f"{name}: the top-level schema refuses it: {e.message[:200]}")
print(f"{bad} errors")
sys.exit(1 if bad else 0)
"##;
    let out = Command::new("python3").arg("-c").arg(script).arg(schema_path()).arg(&input).output().expect("python3 (scripts/setup.sh installs python3-jsonschema)");
    assert!(out.status.success(), "{}", report("validating --json documents against docs/schema/lvrepo-1.json", &out));
}

/// The JSON type of `v`, arrays by their elements' (empty: none).
fn type_of(v: &Value) -> Option<String> {
    Some(match v {
        Value::Null => return None,
        Value::Bool(_) => "boolean".into(),
        Value::Number(n) if n.is_f64() => "number".into(),
        Value::Number(_) => "integer".into(),
        Value::String(_) => "string".into(),
        Value::Object(_) => "object".into(),
        Value::Array(a) => format!("array of {}", type_of(a.first()?)?),
    })
}

/// A field name means one type in every document (`images` is never a
/// count in one command and a list in another).
fn same_types(docs: &[(String, Value)]) {
    let mut seen: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut stack: Vec<(&str, &Value)> = docs.iter().map(|(c, v)| (c.as_str(), v)).collect();
    while let Some((cmd, v)) = stack.pop() {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    if let Some(t) = type_of(x) {
                        seen.entry(k.clone()).or_default().entry(t).or_insert_with(|| cmd.to_string());
                    }
                    stack.push((cmd, x));
                }
            }
            Value::Array(a) => stack.extend(a.iter().map(|x| (cmd, x))),
            _ => {}
        }
    }
    let mixed: Vec<_> = seen.iter().filter(|(_, t)| t.len() > 1).collect();
    assert!(mixed.is_empty(), "field names with more than one type (type: a command printing it): {mixed:?}");
}
