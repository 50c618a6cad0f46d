//! The control socket of a mounted guest (`GUESTDIR/control.sock`): commands
//! that must act on the live overlay (checkpoint, diff, rollback) talk to the daemon
//! that owns it. One JSON request per line, one JSON response per line.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Request {
    Checkpoint { message: String },
    Diff { against: String },
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
    let p = socket_path(guest_dir);
    let _ = std::fs::remove_file(&p);
    let listener = UnixListener::bind(&p).with_context(|| format!("binding {}", p.display()))?;
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut line = String::new();
            if BufReader::new(&conn).read_line(&mut line).is_err() {
                continue;
            }
            let reply = match serde_json::from_str::<Request>(&line) {
                Ok(req) => match handler(req) {
                    Ok(v) => serde_json::json!({ "ok": true, "result": v }),
                    Err(e) => serde_json::json!({ "ok": false, "error": format!("{e:#}") }),
                },
                Err(e) => serde_json::json!({ "ok": false, "error": format!("bad request: {e}") }),
            };
            let _ = writeln!(conn, "{reply}");
        }
    });
    Ok(())
}

/// Send `req` to the daemon of the guest in `guest_dir`. `Ok(None)`: no
/// daemon is listening (the guest is not mounted).
pub fn call(guest_dir: &Path, req: &Request) -> Result<Option<serde_json::Value>> {
    let p = socket_path(guest_dir);
    let mut conn = match UnixStream::connect(&p) {
        Ok(c) => c,
        Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused) => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("connecting to {}", p.display())),
    };
    writeln!(conn, "{}", serde_json::to_string(req)?)?;
    let mut line = String::new();
    BufReader::new(&conn).read_line(&mut line)?;
    let v: serde_json::Value = serde_json::from_str(&line).context("daemon reply")?;
    if v["ok"] == serde_json::Value::Bool(true) {
        Ok(Some(v["result"].clone()))
    } else {
        Err(anyhow!("daemon: {}", v["error"].as_str().unwrap_or("unknown error")))
    }
}
