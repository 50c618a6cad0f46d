//! `lvrepo serve`: accept requests, decide, run the command as root.
//!
//! Per connection (a thread each): the peer's uid (SO_PEERCRED) → its user
//! and groups (getgrouplist) → its roles (the roles file, read again at
//! every request, so an edit needs no restart) → the role the command
//! needs (`roles::access`). Then, in this order, a refusal (exit 77,
//! said on the caller's stderr): a role the caller lacks, a repository
//! other than the service's, a host path argument, a guest of someone
//! else's for a `user` command. Else the command runs in a child
//! (this binary, the caller's argv, a clean environment, cwd `/`, the
//! caller's stdio) whose exit code is the answer. A caller that goes away
//! (Ctrl-C) has its command terminated.

use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::FromArgMatches;

use super::{user_name, wire, CALLER_ENV};
use crate::roles::{self, Access, Role, RolesFile};

struct Service {
    /// The repository, canonical, and as the operator named it.
    repo: PathBuf,
    repo_given: PathBuf,
    roles: PathBuf,
    exe: PathBuf,
}

/// `lvrepo serve --socket PATH [--roles FILE]`: serve until killed.
pub fn serve(cli: &crate::Cli, socket: &Path, roles_flag: Option<&Path>) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        return Err(crate::Exit(crate::exit::NOT_PERMITTED, "lvrepo serve runs as root (it runs commands for others)".into()).into());
    }
    let repo_given = crate::cmd::repo_path(cli)?;
    let repo = std::fs::canonicalize(&repo_given).with_context(|| format!("repository {}", repo_given.display()))?;
    let roles = roles::file_path(roles_flag);
    // A broken roles file is said now, not at the first request.
    RolesFile::load(&roles)?;
    let svc = Arc::new(Service { repo, repo_given, roles, exe: std::env::current_exe().context("finding the lvrepo binary")? });
    let listener = listener(socket)?;
    tracing::info!(path = %socket.display(), repo = %svc.repo.display(), "lvrepo service listening");
    for conn in listener.incoming() {
        let conn = match conn {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "accepting a connection");
                continue;
            }
        };
        let svc = svc.clone();
        std::thread::spawn(move || svc.handle(conn));
    }
    Ok(())
}

/// The socket systemd passes (lvrepo.socket), else `path`, bound here:
/// reachable by everyone (the roles decide, not the socket's mode).
fn listener(path: &Path) -> Result<UnixListener> {
    let pid_ok = std::env::var("LISTEN_PID").ok().and_then(|p| p.parse::<u32>().ok()) == Some(std::process::id());
    if pid_ok && std::env::var("LISTEN_FDS").as_deref() == Ok("1") {
        // SAFETY: systemd's socket activation protocol hands this process
        // descriptor 3, a listening socket, and no one else owns it.
        return Ok(unsafe { UnixListener::from_raw_fd(3) });
    }
    if let Some(dir) = path.parent().filter(|d| !d.exists()) {
        // Everyone must reach the socket (lvrepo's umask would make it 0700).
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).with_context(|| format!("chmod {}", dir.display()))?;
    }
    use std::os::unix::fs::FileTypeExt;
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
        std::fs::remove_file(path).with_context(|| format!("removing the old socket {}", path.display()))?;
    }
    let l = UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o666)).with_context(|| format!("chmod {}", path.display()))?;
    Ok(l)
}

/// An answer to a caller: the exit code, and what to tell them.
struct Refusal(u8, String);

impl Service {
    fn handle(&self, mut conn: UnixStream) {
        let cred = match crate::control::peer_cred(&conn) {
            Ok(c) => c,
            Err(e) => return tracing::warn!(error = %e, "lvrepo service: no peer credentials"),
        };
        // A caller that connects and sends nothing holds a thread, not the service.
        let _ = conn.set_read_timeout(Some(std::time::Duration::from_secs(60)));
        let (req, fds) = match wire::recv(&mut conn) {
            Ok(r) => r,
            Err(e) => return tracing::warn!(error = %e, uid = cred.uid, "lvrepo service: a bad request"),
        };
        let user = user_name(cred.uid);
        let code = match self.decide(cred.uid, &user, &req) {
            Ok((argv, role)) => {
                tracing::info!(uid = cred.uid, user, role = role.name(), command = ?cli_words(&req), "running for a caller");
                self.run(&mut conn, &argv, fds, cred.uid, role)
            }
            Err(Refusal(code, msg)) => {
                tracing::info!(uid = cred.uid, user, command = ?cli_words(&req), code, reason = msg, "refused a caller");
                let [_, _, err] = fds;
                let _ = writeln!(std::fs::File::from(err), "{}", msg.trim_end());
                code
            }
        };
        let _ = conn.write_all(&[code]);
    }

    /// The parsed command and the role it runs under, or why not.
    fn decide(&self, uid: u32, user: &str, req: &wire::Request) -> std::result::Result<(Vec<std::ffi::OsString>, Role), Refusal> {
        let argv: Vec<std::ffi::OsString> = req.argv.iter().map(|a| std::ffi::OsStr::from_bytes(a).to_owned()).collect();
        let matches = crate::cli::command().try_get_matches_from(&argv).map_err(|e| Refusal(crate::exit::USAGE, e.render().to_string()))?;
        let mut cli = crate::Cli::from_arg_matches(&matches).map_err(|e| Refusal(crate::exit::USAGE, e.to_string()))?;
        let what = command_name(&matches);
        let r = self.decide_parsed(uid, user, req, &matches, &cli, &what);
        if let Err((roles, Refusal(code, msg))) = &r {
            // The attempt is recorded, in the service's repository, as the
            // caller with the roles they hold.
            cli.repo = Some(self.repo.clone());
            let caller = lvrepo_fs::audit::Caller { uid, user, role: if roles.is_empty() { "none" } else { roles } };
            crate::audit::record_as(&cli, &Err(crate::Exit(*code, msg.trim_start_matches("lvrepo: ").to_string()).into()), Some(&caller));
        }
        let role = r.map_err(|(_, refusal)| refusal)?;
        let argv = match cli.command {
            crate::cli::Command::Mount { .. } => super::mountpoint::forced(&argv).map_err(refused)?,
            _ => argv,
        };
        Ok((argv, role))
    }

    /// [`Self::decide`] once the command line parsed; a refusal comes with
    /// the caller's roles (`a,b`) for the audit log.
    fn decide_parsed(&self, uid: u32, user: &str, req: &wire::Request, matches: &clap::ArgMatches, cli: &crate::Cli, what: &str) -> std::result::Result<Role, (String, Refusal)> {
        let no_roles = |r: Refusal| (String::new(), r);
        let need = match roles::access(&cli.command) {
            Access::Needs(r) => r,
            Access::Root(why) => return Err(no_roles(refused(format!("lvrepo: {what} is root's only ({why}); you are user {user}")))),
            Access::Local => return Err(no_roles(refused(format!("lvrepo: {what} runs as you, not through the service: run it with LVREPO_SOCKET=")))),
        };
        let have = self.roles_of(uid, user).map_err(|e| no_roles(Refusal(crate::exit::ERROR, format!("lvrepo service: {e:#}"))))?;
        let names: Vec<&str> = have.iter().map(|r| r.name()).collect();
        let refused = |msg: String| (names.join(","), refused(msg));
        let Some(role) = roles::granting(&have, need) else {
            return Err(refused(format!("lvrepo: {what} needs role {}; you (user {user}) have roles [{}]", need.name(), names.join(", "))));
        };
        self.same_repo(matches, req).map_err(|Refusal(_, m)| refused(m))?;
        if let Some((arg, p)) = roles::host_paths(&cli.command).first() {
            return Err(refused(format!("lvrepo: {what}: {arg} {} is a path on this host; through the service only - (your own stdin or stdout) is taken (docs/threat-model.md)", p.display())));
        }
        if let Some((mp, own)) = roles::mount_point(&cli.command) {
            super::mountpoint::check(mp, uid, own).map_err(|m| refused(format!("lvrepo: {what}: {m}")))?;
        }
        if need == Role::User && !have.contains(&Role::Manager) {
            for name in roles::guests_named(&cli.command) {
                match lvrepo_fs::guest::find(&self.repo, name) {
                    Ok(g) if g.owner == Some(uid) => {}
                    Ok(_) => return Err(refused(format!("lvrepo: guest {name} is not yours (user {user}): {what} on it needs role manager"))),
                    Err(e) if e.class() == lvrepo_fs::ErrorClass::NotFound || e.class() == lvrepo_fs::ErrorClass::Usage => {}
                    Err(e) => return Err((names.join(","), Refusal(crate::exit::ERROR, format!("lvrepo: {}", lvrepo_fs::error::chain(&e))))),
                }
            }
        }
        Ok(role)
    }

    /// The caller's roles: those of every group it is in.
    fn roles_of(&self, uid: u32, user: &str) -> Result<Vec<Role>> {
        let file = RolesFile::load(&self.roles)?;
        let Some(u) = nix::unistd::User::from_uid(uid.into())? else { return Ok(Vec::new()) };
        let cname = std::ffi::CString::new(user.as_bytes())?;
        let gids = nix::unistd::getgrouplist(&cname, u.gid)?;
        let groups: Vec<String> = gids.into_iter().filter_map(|g| nix::unistd::Group::from_gid(g).ok().flatten()).map(|g| g.name).collect();
        Ok(file.roles_of(&groups))
    }

    /// The caller may name the repository (`--repo`, `LVREPO_REPO`) only
    /// as the service's: the command runs on that one. `--repo` must be
    /// the very path (a symbolic link of the caller's could change between
    /// this check and the command's open).
    fn same_repo(&self, m: &clap::ArgMatches, req: &wire::Request) -> std::result::Result<(), Refusal> {
        // Relative: the command would resolve it from `/`, not as the operator did.
        let ok = |p: &Path| p == self.repo || (p == self.repo_given && p.is_absolute());
        if m.value_source("repo") == Some(clap::parser::ValueSource::CommandLine) {
            let p: Option<&PathBuf> = m.get_one("repo");
            if !p.is_some_and(|p| ok(p)) {
                return Err(refused(format!("lvrepo: through the service, the repository is {} (given: {})", self.repo.display(), p.map(|p| p.display().to_string()).unwrap_or_default())));
            }
        } else if let Some(r) = &req.repo {
            let p = Path::new(std::ffi::OsStr::from_bytes(r));
            if !std::fs::canonicalize(p).is_ok_and(|c| c == self.repo) {
                return Err(refused(format!("lvrepo: through the service, the repository is {} (LVREPO_REPO is {})", self.repo.display(), p.display())));
            }
        }
        Ok(())
    }

    /// Run the command as root with the caller's stdio; its exit code.
    fn run(&self, conn: &mut UnixStream, argv: &[std::ffi::OsString], [stdin, stdout, stderr]: [OwnedFd; 3], uid: u32, role: Role) -> u8 {
        let args = argv.iter().skip(1);
        let spawned = std::process::Command::new(&self.exe)
            .args(args)
            .env_clear()
            .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            .env("LVREPO_REPO", &self.repo)
            .env("LVREPO_SOCKET", "")
            .env(CALLER_ENV, format!("{uid} {}", role.name()))
            .current_dir("/")
            .stdin(Stdio::from(stdin))
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(stderr))
            .spawn();
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "lvrepo service: starting the command");
                return crate::exit::ERROR;
            }
        };
        // Wait for the command or for the caller to go away, whichever
        // comes first (the caller sends nothing more: readable = gone).
        // SAFETY: pidfd_open on our own unreaped child; the descriptor
        // returned (or -1) is taken into an OwnedFd only when valid.
        let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, child.id() as libc::pid_t, 0) } as i32;
        if pidfd >= 0 {
            // SAFETY: a fresh descriptor that nothing else owns.
            let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
            let mut fds = [libc::pollfd { fd: pidfd.as_raw_fd(), events: libc::POLLIN, revents: 0 }, libc::pollfd { fd: conn.as_raw_fd(), events: libc::POLLIN, revents: 0 }];
            loop {
                // SAFETY: polling two descriptors we hold, in an array we own.
                let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
                if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                if n > 0 && fds[0].revents == 0 && fds[1].revents != 0 {
                    tracing::info!(uid, "the caller went away: terminating its command");
                    // SAFETY: signalling our own child, not yet reaped.
                    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
                }
                break;
            }
        }
        match child.wait() {
            Ok(s) => s.code().and_then(|c| u8::try_from(c).ok()).unwrap_or(crate::exit::ERROR),
            Err(_) => crate::exit::ERROR,
        }
    }
}

fn refused(msg: String) -> Refusal {
    Refusal(crate::exit::NOT_PERMITTED, msg)
}

/// The command's words (`guest create`), for messages.
fn command_name(m: &clap::ArgMatches) -> String {
    let mut words = Vec::new();
    let mut cur = m;
    while let Some((name, sub)) = cur.subcommand() {
        words.push(name.to_string());
        cur = sub;
    }
    words.join(" ")
}

fn cli_words(req: &wire::Request) -> Vec<String> {
    req.argv.iter().skip(1).map(|a| String::from_utf8_lossy(a).into_owned()).collect()
}
