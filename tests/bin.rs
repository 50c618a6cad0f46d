//! Run the real `lvrepo` binary, as a user would, against a throwaway repo.
//!
//! Tests go through the CLI rather than the library so exit codes, stdout
//! cleanliness and JSON output are what gets tested. Every run has a timeout
//! (`LVREPO_TEST_TIMEOUT` seconds, default 1200) so a hang fails the test
//! instead of hanging CI.

use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// Path of the `lvrepo` binary: `$LVREPO_BIN`, else `target/<profile>/lvrepo`
/// next to this test executable's `deps/` dir.
pub fn lvrepo_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("LVREPO_BIN") {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "LVREPO_BIN={} does not exist", p.display());
        return p;
    }
    let exe = std::env::current_exe().expect("current_exe");
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let bin = dir.join("lvrepo");
    assert!(
        bin.is_file(),
        "lvrepo binary not found at {}: run `cargo build -p lvrepo` first (or set LVREPO_BIN)",
        bin.display()
    );
    bin
}

/// A repository under test; the temp dir (if any) is removed on drop.
pub struct Lvrepo {
    pub repo: PathBuf,
    /// Extra environment of every run (an S3 endpoint and keys, a host's cache dir).
    pub env: Vec<(OsString, OsString)>,
    _tmp: Option<tempfile::TempDir>,
}

fn timeout() -> Duration {
    let secs = std::env::var("LVREPO_TEST_TIMEOUT").ok().and_then(|s| s.parse().ok()).unwrap_or(1200);
    Duration::from_secs(secs)
}

/// Wait for `child` with a timeout; stdout/stderr drained on threads.
fn wait_output(mut child: Child, what: &str) -> Output {
    let mut so = child.stdout.take().expect("piped stdout");
    let mut se = child.stderr.take().expect("piped stderr");
    let to = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = so.read_to_end(&mut v);
        v
    });
    let te = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = se.read_to_end(&mut v);
        v
    });
    let start = Instant::now();
    let status: ExitStatus = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        if start.elapsed() > timeout() {
            let _ = child.kill();
            let _ = child.wait();
            panic!("timed out after {:?}: {what}", timeout());
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output { status, stdout: to.join().expect("stdout"), stderr: te.join().expect("stderr") }
}

fn describe(args: &[OsString]) -> String {
    use std::os::unix::ffi::OsStrExt;
    let v: Vec<String> = args.iter().map(|a| a.as_bytes().escape_ascii().to_string()).collect();
    format!("lvrepo {}", v.join(" "))
}

/// Human-readable report of a finished command.
pub fn report(what: &str, out: &Output) -> String {
    let cut = |b: &[u8]| {
        let s = String::from_utf8_lossy(b);
        if s.len() > 4000 {
            format!("{}… ({} bytes)", &s[..s.floor_char_boundary(4000)], s.len())
        } else {
            s.into_owned()
        }
    };
    format!(
        "{what}\n  exit: {:?}\n  stdout: {}\n  stderr: {}",
        out.status.code(),
        cut(&out.stdout),
        cut(&out.stderr)
    )
}

impl Lvrepo {
    /// A handle on an existing (or not yet created) repo path.
    pub fn at(repo: impl Into<PathBuf>) -> Self {
        Lvrepo { repo: repo.into(), env: Vec::new(), _tmp: None }
    }

    /// The repository path.
    pub fn repo(&self) -> &Path {
        &self.repo
    }

    /// The same handle with `key=val` in the environment of every run.
    pub fn with_env(mut self, key: impl Into<OsString>, val: impl Into<OsString>) -> Self {
        self.env.push((key.into(), val.into()));
        self
    }

    /// `lvrepo --repo REPO ARGS` with this handle's environment, not yet
    /// started (stdin null, stdout and stderr piped), for runs a test spawns,
    /// races or kills itself.
    pub fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new(lvrepo_bin());
        cmd.arg("--repo").arg(&self.repo).args(args);
        cmd.env_remove("LVREPO_REPO").envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd
    }

    /// A fresh temp dir with `lvrepo init` already run in `<tmp>/repo`.
    pub fn init() -> Self {
        let tmp = tempfile::Builder::new().prefix("lvrepo-test").tempdir().expect("tempdir");
        let r = Lvrepo { repo: tmp.path().join("repo"), env: Vec::new(), _tmp: Some(tmp) };
        r.ok(["init"]);
        r
    }

    /// Scratch dir living as long as this repo (same filesystem as the repo).
    pub fn scratch(&self, name: &str) -> PathBuf {
        let base = self.repo.parent().expect("repo has a parent");
        base.join(name)
    }

    /// Run with `--repo` set; stdin is empty.
    pub fn run<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.run_stdin(args, None)
    }

    /// Run with `--repo` set, feeding `input` on stdin.
    pub fn run_stdin<I, S>(&self, args: I, input: Option<&[u8]>) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let mut cmd = self.command(&args);
        cmd.stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() });
        let mut child = cmd.spawn().expect("spawn lvrepo");
        let feeder = input.map(|data| {
            let data = data.to_vec();
            let mut stdin = child.stdin.take().expect("piped stdin");
            std::thread::spawn(move || {
                let _ = stdin.write_all(&data); // EPIPE is fine: the binary may stop early
            })
        });
        let out = wait_output(child, &describe(&args));
        if let Some(f) = feeder {
            let _ = f.join();
        }
        out
    }

    /// Run, assert exit 0, return stdout as (lossy) UTF-8.
    pub fn ok<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        String::from_utf8_lossy(&self.ok_bytes(args)).into_owned()
    }

    /// Run, assert exit 0, return raw stdout.
    pub fn ok_bytes<I, S>(&self, args: I) -> Vec<u8>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let out = self.run(&args);
        assert!(out.status.success(), "{}", report(&format!("expected success: {}", describe(&args)), &out));
        out.stdout
    }

    /// Run, assert the exact exit `code`, return stderr (lossy UTF-8).
    pub fn fails<I, S>(&self, args: I, code: i32) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let out = self.run(&args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{}",
            report(&format!("expected exit {code}: {}", describe(&args)), &out)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Run, assert exit 0, parse stdout as JSON.
    pub fn json<I, S>(&self, args: I) -> serde_json::Value
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let out = self.ok_bytes(&args);
        serde_json::from_slice(&out).unwrap_or_else(|e| {
            panic!("{} printed invalid JSON ({e}):\n{}", describe(&args), String::from_utf8_lossy(&out))
        })
    }

    /// `images --json` as a list of "name:version" strings.
    pub fn image_names(&self) -> Vec<String> {
        let v = self.json(["images", "--json"]);
        let arr = v["images"].as_array().unwrap_or_else(|| panic!("images --json has no images array: {v}"));
        arr.iter()
            .map(|i| {
                let name = i["name"].as_str().unwrap_or_else(|| panic!("image without name: {i}"));
                let ver = &i["version"];
                let ver = ver.as_u64().map(|v| v.to_string()).or_else(|| ver.as_str().map(String::from));
                format!("{name}:{}", ver.unwrap_or_else(|| panic!("image without version: {i}")))
            })
            .collect()
    }

    /// Import a directory or tar file as `image` and assert success.
    pub fn import(&self, src: &Path, image: &str) -> String {
        self.ok([OsStr::new("import"), src.as_os_str(), OsStr::new("--image"), OsStr::new(image)])
    }

    /// Export `image` to `dest` and assert success.
    pub fn export(&self, image: &str, dest: &Path) -> String {
        self.ok([OsStr::new("export"), OsStr::new(image), dest.as_os_str()])
    }
}

impl Lvrepo {
    /// `diff A B --json` as a set of (path without leading '/', change).
    pub fn diff_set(&self, a: &str, b: &str) -> std::collections::BTreeSet<(String, String)> {
        let v = self.json(["diff", a, b, "--json"]);
        let arr = v["changes"].as_array().unwrap_or_else(|| panic!("diff --json has no changes array: {v}"));
        arr.iter()
            .map(|d| {
                let p = d["path"].as_str().unwrap_or_else(|| panic!("diff entry without path: {d}"));
                let c = d["change"].as_str().unwrap_or_else(|| panic!("diff entry without change: {d}"));
                (p.trim_start_matches('/').to_string(), c.to_string())
            })
            .collect()
    }
}

/// Build a `BTreeSet<(String, String)>` of expected diff entries.
pub fn changes(items: &[(&str, &str)]) -> std::collections::BTreeSet<(String, String)> {
    items.iter().map(|(p, c)| (p.to_string(), c.to_string())).collect()
}

/// `IMAGE:PATH` argument with raw path bytes (names need not be UTF-8).
pub fn image_path(image: &str, path: &[u8]) -> OsString {
    use std::os::unix::ffi::OsStringExt;
    let mut v = image.as_bytes().to_vec();
    v.push(b':');
    v.extend_from_slice(path);
    OsString::from_vec(v)
}
