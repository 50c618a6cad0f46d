//! The control socket of a mounted guest (`GUESTDIR/control.sock`): commands
//! that must act on the live overlay (checkpoint, diff, rollback) talk to the daemon
//! that owns it. One JSON request per line, one JSON response per line.
//!
//! Who may ask: the socket lives in the guest's directory (0700), and each
//! connection's peer credentials (SO_PEERCRED) are checked too, so a socket
//! reachable by others (a bind mount, a changed mode) still answers only
//! root and the daemon's own user.
//!
//! The root daemon (started from the initrd, docs/boot.md) also answers at
//! [`ROOT_SOCKET`], in the initramfs's /run, which the initrd moves into the
//! booted system: there the guest's own commands (`lvrepo checkpoint` with no
//! repository) reach it. It speaks [`RootRequest`]s, which name things as the
//! user typed them, since the booted system cannot see the repository; the
//! client also checks that the socket's owner is root.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Request {
    Checkpoint { message: String },
    Diff { against: String },
    Rollback {
        checkpoint: String,
        /// Disconnect clients of a served volume instead of refusing.
        #[serde(default)]
        disconnect: bool,
    },
}

/// The root daemon's socket in the booted system ("this root").
pub const ROOT_SOCKET: &str = "/run/lvrepo/control.sock";

/// What the guest's own commands ask the daemon serving its root. Names are
/// resolved by the daemon (the booted system has no repository).
#[derive(Serialize, Deserialize, Debug)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum RootRequest {
    /// `{"guest": NAME or null, "image": LABEL}`.
    Info,
    /// `{"base": TREE, "checkpoints": [...]}`.
    Log,
    Checkpoint { message: String },
    /// Against a checkpoint (number, root id prefix) or an image; `None`:
    /// the guest's image. Returns diff rows.
    Diff { against: Option<String> },
    Rollback { checkpoint: String },
}

pub fn socket_path(guest_dir: &Path) -> PathBuf {
    guest_dir.join("control.sock")
}

/// Serve requests on `guest_dir/control.sock` in a background thread.
pub fn serve<F>(guest_dir: &Path, handler: F) -> Result<()>
where
    F: Fn(Request) -> Result<serde_json::Value> + Send + 'static,
{
    serve_at(&socket_path(guest_dir), handler)
}

/// Serve [`RootRequest`]s at [`ROOT_SOCKET`] (its directory made root's only).
pub fn serve_root<F>(handler: F) -> Result<()>
where
    F: Fn(RootRequest) -> Result<serde_json::Value> + Send + 'static,
{
    let p = Path::new(ROOT_SOCKET);
    if let Some(dir) = p.parent() {
        lvrepo_fs::perms::create_private_dir(dir)?;
    }
    serve_at(p, handler)
}

/// Serve requests of type `R` on the socket at `p` in a background thread.
fn serve_at<R, F>(p: &Path, handler: F) -> Result<()>
where
    R: serde::de::DeserializeOwned,
    F: Fn(R) -> Result<serde_json::Value> + Send + 'static,
{
    let _ = std::fs::remove_file(p);
    let listener = UnixListener::bind(p).with_context(|| format!("binding {}", p.display()))?;
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            if let Err(why) = peer_allowed(&conn) {
                tracing::warn!(error = %why, "control socket: refused a connection");
                let _ = writeln!(conn, "{}", serde_json::json!({ "ok": false, "error": why }));
                continue;
            }
            let mut line = String::new();
            if BufReader::new(&conn).read_line(&mut line).is_err() {
                continue;
            }
            let reply = match serde_json::from_str::<R>(&line) {
                Ok(req) => match handler(req) {
                    Ok(v) => serde_json::json!({ "ok": true, "result": v }),
                    // The exit code travels with the error: damage (4), busy (6)...
                    Err(e) => serde_json::json!({ "ok": false, "error": format!("{e:#}"), "exit": crate::exit_code(&e) }),
                },
                Err(e) => serde_json::json!({ "ok": false, "error": format!("bad request: {e}") }),
            };
            let _ = writeln!(conn, "{reply}");
        }
    });
    Ok(())
}

/// Whether the peer of `conn` may control the daemon: root, or the user the
/// daemon runs as.
fn peer_allowed(conn: &UnixStream) -> std::result::Result<(), String> {
    let cred = peer_cred(conn)?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if cred.uid == 0 || cred.uid == me {
        Ok(())
    } else {
        Err(format!("permission denied: uid {} (pid {}) may not control this guest", cred.uid, cred.pid))
    }
}

/// The credentials of the process at the other end of `conn`.
pub(crate) fn peer_cred(conn: &UnixStream) -> std::result::Result<libc::ucred, String> {
    use std::os::fd::AsRawFd;
    let mut cred = libc::ucred { pid: 0, uid: u32::MAX, gid: u32::MAX };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: SO_PEERCRED fills a `ucred` of exactly `len` bytes, which we
    // own on the stack; the descriptor is the connected socket we hold.
    let rc = unsafe { libc::getsockopt(conn.as_raw_fd(), libc::SOL_SOCKET, libc::SO_PEERCRED, (&mut cred as *mut libc::ucred).cast(), &mut len) };
    if rc != 0 {
        return Err(format!("reading the peer's credentials: {}", std::io::Error::last_os_error()));
    }
    Ok(cred)
}

/// Whether this command acts on "this root": no repository was given and
/// the daemon serving the booted system's root answers at [`ROOT_SOCKET`].
pub fn this_root(cli: &crate::Cli) -> bool {
    cli.repo.is_none() && Path::new(ROOT_SOCKET).exists()
}

/// The guest this root is; `named`, a name the user gave, must be it.
pub fn root_guest(named: Option<&str>) -> Result<String> {
    let info = call_root(&RootRequest::Info)?;
    let Some(guest) = info["guest"].as_str() else {
        return Err(not_a_guest(info["image"].as_str().unwrap_or("?")));
    };
    match named {
        Some(n) if n != guest => Err(crate::Exit(crate::exit::USAGE, format!("this root is guest {guest}, not {n} (no repository is reachable from here)")).into()),
        _ => Ok(guest.to_string()),
    }
}

/// The answer of a root served as an image with a plain overlay.
pub fn not_a_guest(image: &str) -> anyhow::Error {
    crate::Exit(crate::exit::USAGE, format!("this root is image {image} over a plain overlay, not a guest: checkpoints, log, diff and rollback need root=lvrepo:guest=NAME")).into()
}

/// Send `req` to the daemon serving this root (see [`this_root`]).
pub fn call_root(req: &RootRequest) -> Result<serde_json::Value> {
    let p = Path::new(ROOT_SOCKET);
    let Some(v) = call_at(p, req, true)? else {
        return Err(crate::Exit(crate::exit::ERROR, format!("{ROOT_SOCKET}: the daemon serving this root does not answer")).into());
    };
    Ok(v)
}

/// Send `req` to the daemon of the guest in `guest_dir`. `Ok(None)`: no
/// daemon is listening (the guest is not mounted).
pub fn call(guest_dir: &Path, req: &Request) -> Result<Option<serde_json::Value>> {
    call_at(&socket_path(guest_dir), req, false)
}

/// One request over the socket at `p`; `root_only`: the daemon must be root's.
fn call_at<R: Serialize>(p: &Path, req: &R, root_only: bool) -> Result<Option<serde_json::Value>> {
    let mut conn = match UnixStream::connect(p) {
        Ok(c) => c,
        Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused) => return Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Err(crate::Exit(crate::exit::NOT_PERMITTED, format!("{}: permission denied (guests are controlled by root)", p.display())).into())
        }
        Err(e) => return Err(e).with_context(|| format!("connecting to {}", p.display())),
    };
    if root_only {
        let cred = peer_cred(&conn).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
        if cred.uid != 0 {
            return Err(crate::Exit(crate::exit::NOT_PERMITTED, format!("{}: served by uid {}, not root: refusing to talk to it", p.display(), cred.uid)).into());
        }
    }
    writeln!(conn, "{}", serde_json::to_string(req)?)?;
    let mut line = String::new();
    BufReader::new(&conn).read_line(&mut line)?;
    let v: serde_json::Value = serde_json::from_str(&line).context("daemon reply")?;
    if v["ok"] == serde_json::Value::Bool(true) {
        Ok(Some(v["result"].clone()))
    } else {
        let msg = v["error"].as_str().unwrap_or("unknown error");
        let code = match v["exit"].as_u64() {
            Some(c) => u8::try_from(c).unwrap_or(crate::exit::ERROR),
            None if msg.starts_with("permission denied") => crate::exit::NOT_PERMITTED,
            None => crate::exit::ERROR,
        };
        Err(crate::Exit(code, format!("daemon: {msg}")).into())
    }
}
