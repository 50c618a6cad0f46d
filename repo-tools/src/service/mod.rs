//! The local service: unprivileged users act on the repository through it.
//! Layer: the binary, above the commands.
//!
//! Client side ([`forward`]): `lvrepo` run by a user other than root, when
//! the service's socket exists, sends its command line and its stdin,
//! stdout and stderr (SCM_RIGHTS, `wire.rs`) to the service instead of
//! opening the repository, and exits with the code the service returns.
//! Service side (`server.rs`): it reads the caller's uid from the socket
//! (SO_PEERCRED), the caller's groups from the system, the roles from the
//! roles file, and runs the command as root in a child process whose
//! stdio are the caller's descriptors, or refuses it (exit 77). The child
//! learns who it runs for from `LVREPO_CALLER` ([`caller`]), believed only
//! by a root process: the audit log names the caller and the role, and a
//! guest created through the service belongs to the caller.

mod mountpoint;
mod server;
mod wire;

use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

pub use server::serve;

/// Where clients look for the service (`LVREPO_SOCKET` overrides; set to
/// the empty string, clients never forward).
pub const DEFAULT_SOCKET: &str = "/run/lvrepo/lvrepo.sock";

/// The variable through which the service tells the command it runs who
/// asked: `UID ROLE`.
const CALLER_ENV: &str = "LVREPO_CALLER";

/// Who a command runs for, when the service runs it.
pub struct Caller {
    pub uid: u32,
    pub user: String,
    pub role: String,
}

/// The service's caller this process runs for, if it runs for one. Only a
/// root process believes `LVREPO_CALLER`: anyone else setting it gains
/// nothing but their own rights.
pub fn caller() -> Option<Caller> {
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    let v = std::env::var(CALLER_ENV).ok()?;
    let (uid, role) = v.split_once(' ')?;
    let uid: u32 = uid.parse().ok()?;
    Some(Caller { uid, user: user_name(uid), role: role.to_string() })
}

/// The name of `uid`, or the number when it has none.
pub fn user_name(uid: u32) -> String {
    nix::unistd::User::from_uid(uid.into()).ok().flatten().map_or_else(|| uid.to_string(), |u| u.name)
}

/// The uid of user `u`: a name in the user database, or a number.
pub fn uid_of(u: &str) -> Result<u32> {
    if let Ok(n) = u.parse::<u32>() {
        return Ok(n);
    }
    match nix::unistd::User::from_name(u) {
        Ok(Some(user)) => Ok(user.uid.as_raw()),
        _ => Err(crate::Exit(crate::exit::NOT_FOUND, format!("no user {u:?}")).into()),
    }
}

/// The socket clients use: `LVREPO_SOCKET` (empty: none), else the default.
fn socket_path() -> Option<PathBuf> {
    match std::env::var_os("LVREPO_SOCKET") {
        Some(v) if v.is_empty() => None,
        Some(v) => Some(PathBuf::from(v)),
        None => Some(PathBuf::from(DEFAULT_SOCKET)),
    }
}

/// Run `cli`'s command through the service when this process is not root,
/// the command is not one a user runs alone, and the service's socket
/// exists. `None`: run it here, as today.
pub fn forward(cli: &crate::Cli) -> Option<u8> {
    if nix::unistd::geteuid().is_root() || crate::roles::access(&cli.command) == crate::roles::Access::Local {
        return None;
    }
    // Present, or not reachable by this user (then connecting says why).
    let sock = socket_path().filter(|p| !std::fs::metadata(p).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound))?;
    Some(match call(&sock, cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("lvrepo: {}", crate::chain(&e));
            crate::exit_code(&e)
        }
    })
}

fn call(sock: &Path, cli: &crate::Cli) -> Result<u8> {
    let mut conn = UnixStream::connect(sock).with_context(|| format!("connecting to the lvrepo service at {} (LVREPO_SOCKET= acts without it)", sock.display()))?;
    let cred = crate::control::peer_cred(&conn).map_err(|e| anyhow::anyhow!("{}: {e}", sock.display()))?;
    if cred.uid != 0 {
        return Err(crate::Exit(crate::exit::NOT_PERMITTED, format!("{}: served by uid {}, not root: refusing to talk to it", sock.display(), cred.uid)).into());
    }
    // The repository named in the environment, as this user sees it.
    let repo = match (&cli.repo, std::env::var_os("LVREPO_REPO")) {
        (Some(r), Some(_)) => Some(std::env::current_dir().map(|d| d.join(r)).unwrap_or_else(|_| r.clone())),
        _ => None,
    };
    let req = wire::Request { argv: std::env::args_os().map(|a| a.as_bytes().to_vec()).collect(), repo: repo.map(|r| r.as_os_str().as_bytes().to_vec()) };
    wire::send(&mut conn, &req, &[0, 1, 2]).with_context(|| format!("sending the command to the lvrepo service at {}", sock.display()))?;
    let mut code = [0u8; 1];
    match std::io::Read::read_exact(&mut conn, &mut code) {
        Ok(()) => Ok(code[0]),
        Err(e) => Err(anyhow::anyhow!("the lvrepo service at {} ended without an exit code: {e}", sock.display())),
    }
}
