//! One file per command; `run` dispatches. Shared helpers open the repository
//! and split `IMAGE:PATH` arguments.

mod audit;
mod backup;
mod backups;
mod cat;
pub(crate) mod checkpoint;
mod complete;
mod completions;
mod delete;
mod diff;
mod export;
mod forget;
mod fsck;
mod gc;
mod group;
mod guest;
mod guest_clone;
mod harvest;
mod images;
mod import;
mod init;
mod log;
mod ls;
mod man;
pub(crate) mod names;
mod mount;
mod mount_control;
mod mount_ready;
mod mount_scratch;
mod nbd;
mod prefetch;
mod propagate;
mod rebase;
mod receive;
mod restore;
mod rollback;
mod send;
mod serve;
mod sign;
mod stats;
mod tag;
mod umount;
mod verify;
mod volume;

use std::path::PathBuf;

use anyhow::{Context, Result};
use lvrepo_fs::fuse::{MountFlags, MountOptions};
use lvrepo_fs::{ImageRecord, ImageRef, Repository};

use crate::cli::{Cli, Command};

pub fn run(cli: &Cli) -> Result<()> {
    match &cli.command {
        Command::Init { append_only } => init::run(cli, *append_only),
        Command::Import { source, image, message, parent, volume, exclude, one_file_system, json } => {
            let filter = import::filter(exclude, *one_file_system)?;
            import::run(cli, source, image, message, parent.as_deref(), *volume, &filter, *json)
        }
        Command::Delete { image, force, json } => delete::run(cli, image, *force, *json),
        Command::Images { name, json } => images::run(cli, name.as_deref(), *json),
        Command::Ls { target, recursive, json } => ls::run(cli, target, *recursive, *json),
        Command::Cat { target } => cat::run(cli, target),
        Command::Prefetch { image, paths, file_cache, file_cache_mib, json } => prefetch::run(cli, image, paths, file_cache, *file_cache_mib << 20, *json),
        Command::Export { image, dest } => export::run(cli, image, dest),
        Command::Diff { from, to, stat, json } => diff::run(cli, from.as_deref(), to.as_deref(), *stat, *json),
        Command::Guest(g) => guest::run(cli, g),
        Command::Checkpoint { action, name, message, group: Some(g), json } if action.is_none() && name.is_none() => group::checkpoint(cli, g, message, *json),
        Command::Checkpoint { action, name, message, json, .. } => checkpoint::run(cli, action.as_ref(), name.as_deref(), message, *json),
        Command::Log { name, json } => log::run(cli, name.as_deref(), *json),
        Command::Rollback { name, checkpoint, group, disconnect, json } => match (group, checkpoint) {
            (Some(g), None) => group::rollback(cli, g, name, *disconnect, *json),
            (None, cp) => rollback::run(cli, name, cp.as_deref(), *disconnect, *json),
            _ => Err(crate::Exit(crate::exit::USAGE, "usage: rollback NAME CHECKPOINT | rollback --group GROUP CHECKPOINT".into()).into()),
        },
        Command::Verify { json, overlays, repair_from } => verify::run(cli, *json, *overlays, repair_from),
        Command::Gc { dry_run, json, grace } => gc::run(cli, *dry_run, *json, grace),
        Command::Stats { json } => stats::run(cli, *json),
        Command::Mount { operands, overlay, guest, foreground, threads, no_uring, no_handoff, seclabel, cache_mib, options, read_only, file_cache, file_cache_mib } => {
            let mut flags = MountFlags { read_only: *read_only, ..Default::default() };
            for o in options.iter().filter(|o| !o.is_empty()) {
                if !flags.apply(o) {
                    return Err(crate::Exit(crate::exit::USAGE, format!("unknown mount option {o:?} (known: ro, rw, nosuid, suid, nodev, dev, noexec, exec, noatime, atime, relatime, user, users, defaults)")).into());
                }
            }
            if *read_only {
                flags.read_only = true;
            }
            let (image, mountpoint) = match (operands.as_slice(), guest) {
                ([mp], Some(_)) => (None, mp),
                ([img, mp], None) => (Some(img.to_string_lossy().into_owned()), mp),
                _ => return Err(crate::Exit(crate::exit::USAGE, "usage: mount IMAGE --overlay DIR MOUNTPOINT | mount --guest NAME[:CHECKPOINT] MOUNTPOINT | mount IMAGE --read-only MOUNTPOINT".into()).into()),
            };
            mount::run(cli, image.as_deref(), overlay.as_deref(), guest.as_deref(), mountpoint, *foreground, cache_mib.map(|m| (m as usize) << 20), MountOptions { threads: *threads, uring: !*no_uring, handoff: !*no_handoff, seclabel: *seclabel, flags, source: String::new(), root_daemon: false, file_cache: None, ready: None }, file_cache.as_deref().map(|d| (d, *file_cache_mib << 20)))
        }
        Command::Umount { mountpoint } => umount::run(mountpoint),
        Command::Nbd(c) => nbd::run(cli, c),
        Command::Backup { guest, to, no_checkpoint, message, json } => backup::run(cli, guest, to, *no_checkpoint, message, *json),
        Command::Restore { guest, from, checkpoint, as_name, overlay, json } => restore::run(cli, guest, from, *checkpoint, as_name.as_deref(), overlay, *json),
        Command::Backups { guest, json } => backups::run(cli, guest.as_deref(), *json),
        Command::Send { what, since, output, json } => send::run(cli, what, since.as_deref(), output.as_deref(), *json),
        Command::Receive { input, json } => receive::run(cli, input, *json),
        Command::Forget { guest, keep_last, keep_hourly, keep_daily, keep_weekly, keep_monthly, dry_run, json } => {
            let policy = lvrepo_fs::backup::KeepPolicy { last: *keep_last, hourly: *keep_hourly, daily: *keep_daily, weekly: *keep_weekly, monthly: *keep_monthly };
            forget::run(cli, guest, policy, *dry_run, *json)
        }
        Command::Man { out } => man::run(out),
        Command::Completions { shell } => completions::run(*shell),
        Command::Complete { what, words } => complete::run(cli, what, words),
        Command::Tag { image, channel, json } => tag::run(cli, image, channel, *json),
        Command::Audit { action: Some(crate::cli::AuditCmd::Verify { json }), .. } => audit::verify(cli, *json),
        Command::Audit { action: None, since, json } => audit::run(cli, since.as_deref(), *json),
        Command::Harvest { guest, checkpoint, image, message, json } => harvest::run(cli, guest, checkpoint.as_deref(), image, message, *json),
        Command::Rebase { guest, group, image, dry_run, prefer, jobs, json } => rebase::run(cli, guest.as_deref(), group.as_deref(), image, *dry_run, prefer.as_deref(), usize::from(*jobs), *json),
        Command::Propagate { from, path, to, group, dry_run, prefer, json } => propagate::run(cli, from, path, to, group.as_deref(), *dry_run, prefer.as_deref(), *json),
        Command::Group(g) => group::run(cli, g),
        Command::Key(crate::cli::KeyCmd::Generate { out, json }) => sign::generate(cli, out, *json),
        Command::Sign { image, key, json } => sign::sign(cli, image, key, *json),
        Command::Policy(p) => sign::policy(cli, p),
        Command::Serve { socket, roles } => serve::run(cli, socket, roles.as_deref()),
    }
}

/// The repository directory: `--repo`, or for a remote repository
/// (`s3://`, `file://`) its cache directory, made and synced at first use.
pub fn repo_path(cli: &Cli) -> Result<PathBuf> {
    let p = cli.repo.clone().ok_or_else(|| crate::Exit(crate::exit::USAGE, "no repository: pass --repo PATH or set LVREPO_REPO".into()))?;
    if !lvrepo_fs::remote::url::is_remote(p.as_os_str()) {
        return Ok(p);
    }
    if let Some(c) = RESOLVED.get() {
        return Ok(c.clone());
    }
    let c = remote_cache(&p, cli.cache.clone(), false)?;
    Ok(RESOLVED.get_or_init(|| c).clone())
}

/// The cache directory `repo_path` resolved a remote `--repo` to.
static RESOLVED: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// The repository directory this command used, without resolving anything
/// (the audit log goes there): `--repo`, or a remote one's cache.
pub fn used_repo(cli: &Cli) -> Option<PathBuf> {
    let p = cli.repo.clone()?;
    if lvrepo_fs::remote::url::is_remote(p.as_os_str()) {
        return RESOLVED.get().cloned();
    }
    Some(p)
}

/// The cache directory of remote repository `arg` (`cache`, or the
/// default for its URL): made and linked if new (`create`: the repository
/// in the bucket too), then synced with the bucket.
pub fn remote_cache(arg: &std::path::Path, cache: Option<PathBuf>, create: bool) -> Result<PathBuf> {
    let url: lvrepo_fs::remote::RemoteUrl = arg.to_string_lossy().parse()?;
    let dir = cache.unwrap_or_else(|| url.default_cache());
    if create {
        url.create_room()?;
    }
    let remote = lvrepo_fs::remote::Remote::connect(&url)?;
    lvrepo_fs::remote::prepare_cache(&dir, &url, &remote, create).with_context(|| format!("preparing cache {} of {url}", dir.display()))?;
    drop(remote);
    // Synced here (a writable open syncs) so read-only commands and the
    // daemons they start see the bucket's refs; a busy writer syncs itself.
    match Repository::open(&dir, true) {
        Ok(_) | Err(lvrepo_fs::Error::Locked(_)) => {}
        Err(e) => return Err(anyhow::Error::new(e).context(format!("syncing cache {} with {url}", dir.display()))),
    }
    tracing::info!(remote = %url, cache = %dir.display(), "remote repository");
    Ok(dir)
}

/// A repository argument besides --repo (`backup --to`, `restore --from`,
/// `verify --repair-from`): a remote one is given its cache directory,
/// `--cache` when --repo is local, else beside it (or the default).
pub fn other_repo(cli: &Cli, arg: &std::path::Path) -> Result<PathBuf> {
    if !lvrepo_fs::remote::url::is_remote(arg.as_os_str()) {
        return Ok(arg.to_path_buf());
    }
    let url: lvrepo_fs::remote::RemoteUrl = arg.to_string_lossy().parse()?;
    let main_remote = cli.repo.as_deref().is_some_and(|r| lvrepo_fs::remote::url::is_remote(r.as_os_str()));
    let cache = match &cli.cache {
        Some(c) if !main_remote => Some(c.clone()),
        Some(c) => c.parent().zip(url.default_cache().file_name().map(|n| n.to_os_string())).map(|(p, n)| p.join(n)),
        None => None,
    };
    remote_cache(arg, cache, false)
}

/// `--prefer guest|THEIRS` of rebase (`image`) and propagate (`source`):
/// whose version of a conflicting path wins.
pub fn prefer(arg: Option<&str>, theirs: &str) -> Result<Option<lvrepo_fs::merge::Prefer>> {
    use lvrepo_fs::merge::Prefer;
    match arg {
        None => Ok(None),
        Some("guest") => Ok(Some(Prefer::Guest)),
        Some(o) if o == theirs => Ok(Some(Prefer::Image)),
        Some(o) => Err(crate::Exit(crate::exit::USAGE, format!("--prefer takes guest or {theirs}, not {o:?}")).into()),
    }
}

pub fn open(cli: &Cli, writable: bool) -> Result<Repository> {
    let p = repo_path(cli)?;
    let repo = Repository::open(&p, writable).with_context(|| format!("opening repository {}", p.display()))?;
    tracing::info!(path = %p.display(), writable, "repository opened");
    Ok(repo)
}

/// Split `IMAGE[:VERSION][:PATH]`: the part after the second colon (or after
/// the first, when what follows it is not a version number) is the path,
/// kept as bytes (file names need not be UTF-8).
pub fn split_target(s: &std::ffi::OsStr) -> Result<(ImageRef, Vec<u8>)> {
    use std::os::unix::ffi::OsStrExt;
    let b = s.as_bytes();
    let mut parts = b.splitn(3, |&c| c == b':');
    let name = parts.next().unwrap_or_default();
    let (version, path): (Option<&[u8]>, Vec<u8>) = match (parts.next(), parts.next()) {
        (Some(v), rest) if !v.is_empty() && v.iter().all(u8::is_ascii_digit) => (Some(v), rest.unwrap_or(b"/").to_vec()),
        (Some(p), Some(rest)) => (None, [p, b":", rest].concat()),
        (Some(p), None) => (None, p.to_vec()),
        (None, _) => (None, b"/".to_vec()),
    };
    let name = std::str::from_utf8(name).map_err(|_| crate::Exit(crate::exit::USAGE, "image names are ASCII".into()))?;
    let r: ImageRef = match version {
        Some(v) => format!("{name}:{}", String::from_utf8_lossy(v)).parse()?,
        None => name.parse()?,
    };
    Ok((r, if path.is_empty() { b"/".to_vec() } else { path }))
}

/// The shared repository's verified store, for guest operations.
pub fn shared(repo: &Repository) -> std::sync::Arc<dyn lvrepo_fs::ObjectStore> {
    repo.shared_store()
}

/// Under a signing policy, refuse image `label` unless a required key
/// signed it as it is (no policy: nothing is looked up).
pub fn signed(repo: &Repository, label: &str) -> Result<()> {
    if lvrepo_fs::sign::policy(repo.path())?.require_signature.is_empty() {
        return Ok(());
    }
    Ok(lvrepo_fs::sign::check(repo, &repo.resolve_name(label)?)?)
}

/// `NAME`, `NAME:VERSION` or `NAME:CHANNEL` (a channel set by `tag`).
pub fn resolve(repo: &Repository, image: &str) -> Result<ImageRecord> {
    Ok(repo.resolve_name(image)?)
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn splits_targets() {
        let (r, p) = super::split_target(OsStr::new("deb:2:/etc/passwd")).unwrap();
        assert_eq!((r.name.as_str(), r.version, p.as_slice()), ("deb", Some(2), b"/etc/passwd".as_slice()));
        let (r, p) = super::split_target(OsStr::new("deb:/etc")).unwrap();
        assert_eq!((r.version, p.as_slice()), (None, b"/etc".as_slice()));
        let (_, p) = super::split_target(OsStr::new("deb")).unwrap();
        assert_eq!(p, b"/");
        let (r, p) = super::split_target(OsStr::new("deb:3")).unwrap();
        assert_eq!((r.version, p.as_slice()), (Some(3), b"/".as_slice()));
        let (_, p) = super::split_target(OsStr::from_bytes(b"deb:1:/bad\xff")).unwrap();
        assert_eq!(p, b"/bad\xff");
    }
}
