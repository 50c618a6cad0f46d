//! The S3 servers the tests start on loopback: s3s-fs (objects are files
//! under a root directory, so it survives restarts and lets a test damage an
//! object) and moto's server (in memory; atomic conditional writes, for the
//! publishing races). Both are installed by scripts/setup.sh; a missing one
//! fails the test with that hint, it is never skipped.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const KEY: &str = "lvrepo-test-key";
pub const SECRET: &str = "lvrepo-test-secret-0123456789";

/// Where scripts/setup.sh installs the servers (the CI cache dir and the venv).
fn ci_cache() -> PathBuf {
    std::env::var_os("LVREPO_CI_CACHE").map(PathBuf::from).unwrap_or_else(|| "/var/cache/lvrepo-ci".into())
}

/// `$env`, else the first of `places` that exists, else `name` on PATH; a
/// test failure naming scripts/setup.sh when none is there.
fn find_server(env: &str, places: &[PathBuf], name: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "{env}={} does not exist", p.display());
        return p;
    }
    let on_path = std::env::var_os("PATH").map(|p| std::env::split_paths(&p).map(|d| d.join(name)).collect::<Vec<_>>()).unwrap_or_default();
    places.iter().chain(on_path.iter()).find(|p| p.is_file()).cloned().unwrap_or_else(|| {
        panic!("{name} not found (looked in {places:?}, PATH, ${env}): run scripts/setup.sh, which installs the S3 servers these tests start")
    })
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    S3sFs,
    Moto,
}

/// A running server on 127.0.0.1; stopped on drop.
pub struct Server {
    kind: Kind,
    bin: PathBuf,
    pub port: u16,
    /// s3s-fs: the directory whose subdirectories are the buckets.
    pub root: Option<PathBuf>,
    log: PathBuf,
    child: Option<Child>,
}

impl Server {
    /// s3s-fs serving `root` (created) on a free port; log in `log`.
    pub fn s3s_fs(root: &Path, log: &Path) -> Server {
        let bin = find_server("LVREPO_S3S_FS", &[ci_cache().join("bin/s3s-fs"), home_cargo("s3s-fs")], "s3s-fs");
        fs::create_dir_all(root).expect("mkdir s3s-fs root");
        let mut s = Server { kind: Kind::S3sFs, bin, port: free_port(), root: Some(root.to_path_buf()), log: log.to_path_buf(), child: None };
        s.start();
        s
    }

    /// moto's S3 server (in memory) on a free port; log in `log`.
    pub fn moto(log: &Path) -> Server {
        let bin = find_server("LVREPO_MOTO_SERVER", &[PathBuf::from("/opt/lvrepo-moto/bin/moto_server")], "moto_server");
        let mut s = Server { kind: Kind::Moto, bin, port: free_port(), root: None, log: log.to_path_buf(), child: None };
        s.start();
        s
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Start (again: same port, same root) and wait until it answers HTTP.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{:?} already running", self.kind);
        let log = fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("open server log");
        let mut cmd = Command::new(&self.bin);
        let port = self.port.to_string();
        match self.kind {
            Kind::S3sFs => {
                let root = self.root.as_ref().expect("s3s-fs root");
                cmd.args(["--host", "127.0.0.1", "--port", &port, "--access-key", KEY, "--secret-key", SECRET]).arg(root);
            }
            Kind::Moto => {
                cmd.args(["-H", "127.0.0.1", "-p", &port]);
            }
        }
        cmd.stdin(Stdio::null()).stdout(log.try_clone().expect("dup log")).stderr(log);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("start {}: {e}", self.bin.display()));
        self.child = Some(child);
        self.wait_ready();
    }

    /// Any HTTP answer on the port means the server is serving.
    fn wait_ready(&mut self) {
        let limit = Duration::from_secs(120);
        let start = Instant::now();
        loop {
            if let Some(st) = self.child.as_mut().and_then(|c| c.try_wait().expect("try_wait")) {
                self.child = None;
                panic!("{:?} exited ({st}) before serving on port {}; log:\n{}", self.kind, self.port, self.log_text());
            }
            if http(self.port, "GET", "/").is_ok() {
                return;
            }
            assert!(start.elapsed() < limit, "{:?} not answering on port {} after {limit:?}; log:\n{}", self.kind, self.port, self.log_text());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// kill -9 (nothing for the server to tidy: s3s-fs writes objects by
    /// rename, moto loses its memory, which no test stops it for).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn create_bucket(&self, bucket: &str) {
        match self.kind {
            Kind::S3sFs => fs::create_dir_all(self.root.as_ref().expect("root").join(bucket)).expect("mkdir bucket"),
            Kind::Moto => {
                let answer = http(self.port, "PUT", &format!("/{bucket}")).unwrap_or_else(|e| panic!("PUT /{bucket} on moto: {e}"));
                assert!(answer.starts_with("HTTP/1.1 200"), "PUT /{bucket} on moto: {answer}");
            }
        }
    }

    /// Whether moto lists `bucket/key` (an unsigned LIST, which moto
    /// answers; an unsigned GET or HEAD of an object it refuses).
    pub fn has_object(&self, bucket: &str, key: &str) -> bool {
        let path = format!("/{bucket}?list-type=2&prefix={key}");
        let answer = http(self.port, "GET", &path).unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert!(answer.starts_with("HTTP/1.1 200"), "GET {path} on moto: {answer}");
        answer.contains(&format!("<Key>{key}</Key>"))
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn home_cargo(name: &str) -> PathBuf {
    std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| "/root".into()).join(".cargo/bin").join(name)
}

/// A port the kernel just handed out (bound, then released for the server).
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

/// One unsigned HTTP/1.1 request without a body; the whole answer (status
/// line, headers, body) as lossy UTF-8.
fn http(port: u16, method: &str, path: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(s, "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    if text.starts_with("HTTP/") {
        Ok(text)
    } else {
        Err(std::io::Error::other(format!("not an HTTP answer: {:?}", text.lines().next().unwrap_or(""))))
    }
}
