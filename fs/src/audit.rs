//! The audit log: `REPO/audit.log`, one JSON line per state-changing
//! command (time, uid and user, command, target, result), appended only,
//! hash-chained. Layer: operations, on the repository directory only (the
//! commands that append need not hold the writer lock).
//!
//! Chain: entry N carries `seq` N (from 1), `prev` = entry N-1's `hash`
//! (64 zeros for the first) and `hash` = BLAKE3 (derive_key, its own
//! domain) of the entry's JSON with `hash` empty. `REPO/audit.head` holds
//! the last `seq` and `hash` (replaced atomically after each append), so
//! removing the newest entries is seen too. [`verify`] names the first
//! entry that is edited, removed, reordered or unreadable.
//!
//! Appends hold `flock` on the log, read its last entry, write one line and
//! fsync. A crash mid-append leaves a torn last line, which verify names
//! (the next append starts on a new line and chains on the last good
//! entry). What it does not stop: a root user who rewrites the whole chain
//! and head consistently (that needs a key held elsewhere).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

const LOG: &str = "audit.log";
const HEAD: &str = "audit.head";
const DOMAIN: &str = "lvrepo audit entry v1";
const ZERO: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Entry {
    pub seq: u64,
    /// Seconds since the epoch.
    pub time: i64,
    pub uid: u32,
    pub user: String,
    /// Who ran it through sudo, when it came that way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sudo_user: Option<String>,
    /// The role it ran under: `root` (uid 0 acting directly), or the role
    /// (`user`, `manager`, `publisher`) that let `user` run it through the
    /// service (`lvrepo serve`); absent for others acting on their own
    /// repository, and in entries older than roles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The command (`rebase`, `guest create`, ...).
    pub command: String,
    /// What it acted on (a guest, an image, a path), `-` if nothing.
    pub target: String,
    /// `ok`, or `exit N: MESSAGE`.
    pub result: String,
    pub prev: String,
    pub hash: String,
}

impl Entry {
    fn digest(&self) -> String {
        let mut e = self.clone();
        e.hash.clear();
        let bytes = serde_json::to_vec(&e).unwrap_or_default();
        blake3::Hasher::new_derive_key(DOMAIN).update(&bytes).finalize().to_hex().to_string()
    }
}

/// What a command appends: the rest is filled in by [`append`].
pub struct Record<'a> {
    pub command: &'a str,
    pub target: &'a str,
    pub result: &'a str,
}

fn log_path(repo: &Path) -> PathBuf {
    repo.join(LOG)
}

/// Who a command ran for when the service ran it (as root) for an
/// unprivileged caller: the entry names the caller, not root.
pub struct Caller<'a> {
    pub uid: u32,
    pub user: &'a str,
    pub role: &'a str,
}

/// Append `rec` to the audit log of the repository at `repo`, as the
/// calling user, now. Returns the entry written.
pub fn append(repo: &Path, rec: &Record<'_>) -> Result<Entry> {
    append_as(repo, rec, None)
}

/// [`append`], naming `caller` (the service's client) as the user when given.
pub fn append_as(repo: &Path, rec: &Record<'_>, caller: Option<&Caller<'_>>) -> Result<Entry> {
    let p = log_path(repo);
    let mut f = OpenOptions::new().create(true).append(true).read(true).open(&p).map_err(|e| crate::perms::open_error("opening", &p, e))?;
    loop {
        // SAFETY: flock on a descriptor we own; no memory is passed.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } == 0 {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(Error::io("locking", &p, e));
        }
    }
    let (last, torn) = last_entry(&mut f).map_err(|e| Error::io("reading", &p, e))?;
    let uid = nix::unistd::getuid();
    let (uid_raw, user, role) = match caller {
        Some(c) => (c.uid, c.user.to_string(), Some(c.role.to_string())),
        None => (uid.as_raw(), nix::unistd::User::from_uid(uid).ok().flatten().map_or_else(|| uid.to_string(), |u| u.name), uid.is_root().then(|| "root".to_string())),
    };
    let time = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let mut e = Entry {
        seq: last.as_ref().map_or(1, |l| l.seq + 1),
        time,
        uid: uid_raw,
        user,
        sudo_user: std::env::var("SUDO_USER").ok().filter(|_| uid.is_root() && caller.is_none()),
        role,
        command: rec.command.to_string(),
        target: rec.target.to_string(),
        result: rec.result.to_string(),
        prev: last.map_or_else(|| ZERO.to_string(), |l| l.hash),
        hash: String::new(),
    };
    e.hash = e.digest();
    let mut line = if torn { b"\n".to_vec() } else { Vec::new() };
    line.extend(serde_json::to_vec(&e).map_err(|_| Error::Decode { what: "audit entry", why: "unencodable" })?);
    line.push(b'\n');
    let len = f.seek(SeekFrom::End(0)).map_err(|e| Error::io("reading", &p, e))?;
    if let Err(e) = f.write_all(&line).and_then(|_| f.sync_data()) {
        // A full partition must not leave a torn line: cut back (we hold the lock).
        let _ = f.set_len(len);
        return Err(Error::io("appending to", &p, e));
    }
    crate::guest::write_atomic(&repo.join(HEAD), format!("{} {}\n", e.seq, e.hash).as_bytes())?;
    Ok(e)
}

/// The last entry that parses (None for an empty log), and whether the log
/// ends in a torn line (no newline: a crash mid-append).
fn last_entry(f: &mut File) -> std::io::Result<(Option<Entry>, bool)> {
    let len = f.seek(SeekFrom::End(0))?;
    let from = len.saturating_sub(1 << 20);
    f.seek(SeekFrom::Start(from))?;
    let mut tail = Vec::new();
    f.read_to_end(&mut tail)?;
    let torn = !tail.is_empty() && !tail.ends_with(b"\n");
    let last = tail.split(|&b| b == b'\n').rev().find_map(|l| serde_json::from_slice::<Entry>(l).ok());
    Ok((last, torn))
}

/// Every entry of the log, oldest first; lines that do not parse are
/// skipped (verify names them).
pub fn read(repo: &Path) -> Result<Vec<Entry>> {
    let p = log_path(repo);
    match std::fs::read(&p) {
        Ok(b) => Ok(b.split(|&c| c == b'\n').filter_map(|l| serde_json::from_slice(l).ok()).collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(crate::perms::open_error("reading", &p, e)),
    }
}

/// Check the chain: `Ok(entries)` when whole, else [`Error::AuditDamaged`]
/// naming the first entry (by line and sequence number) that is not what
/// the chain says.
pub fn verify(repo: &Path) -> Result<u64> {
    let p = log_path(repo);
    let bytes = match std::fs::read(&p) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(crate::perms::open_error("reading", &p, e)),
    };
    let bad = |line: usize, why: String| Error::AuditDamaged { path: p.clone(), line, why };
    let mut prev = ZERO.to_string();
    let mut seq = 0u64;
    let body = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
    if !bytes.is_empty() && !bytes.ends_with(b"\n") {
        tracing::warn!(path = %p.display(), "the audit log ends in a torn line");
    }
    for (i, l) in body.split(|&c| c == b'\n').enumerate().filter(|_| !bytes.is_empty()) {
        let line = i + 1;
        let e: Entry = serde_json::from_slice(l).map_err(|_| bad(line, format!("entry {} does not parse (edited, or torn by a crash)", seq + 1)))?;
        if e.seq > seq + 1 {
            let gone = if e.seq == seq + 2 { format!("entry {} was removed", seq + 1) } else { format!("entries {} to {} were removed", seq + 1, e.seq - 1) };
            return Err(bad(line, format!("entry {} follows entry {seq}: {gone}", e.seq)));
        }
        if e.seq != seq + 1 {
            return Err(bad(line, format!("entry {} follows entry {seq}: repeated or out of order", e.seq)));
        }
        if e.prev != prev {
            return Err(bad(line, format!("entry {} does not chain on the entry before it (that one was edited, removed or replaced)", e.seq)));
        }
        if e.digest() != e.hash {
            return Err(bad(line, format!("entry {} was edited: its hash does not match its contents", e.seq)));
        }
        prev = e.hash;
        seq = e.seq;
    }
    match std::fs::read_to_string(repo.join(HEAD)) {
        Ok(h) => {
            let (hs, hh) = h.trim().split_once(' ').unwrap_or(("", ""));
            let hs: u64 = hs.parse().map_err(|_| bad(0, format!("{HEAD} does not parse")))?;
            if hs > seq || (hs == seq && hh != prev) {
                return Err(bad(seq as usize + 1, format!("{HEAD} says the log ends with entry {hs}, it ends with entry {seq}: the newest entries were removed or replaced")));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && seq == 0 => {}
        Err(_) => return Err(bad(0, format!("{HEAD} is missing or unreadable"))),
    }
    Ok(seq)
}
