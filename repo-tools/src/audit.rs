//! Which commands the audit log records, and what as
//! (`lvrepo_fs::audit`): every command that changes a repository or a
//! guest, with its result, once it has returned. Reading commands are not
//! recorded, nor the daemon processes (`mount -f`, `nbd serve -f`: the
//! command that started them is).

use crate::cli::{CheckpointCmd, Cli, Command, GroupCmd, GuestCmd, NbdCmd, PolicyCmd};

/// `(command, target)` for a state-changing command, `None` for the rest.
fn describe(c: &Command) -> Option<(&'static str, String)> {
    let s = |x: &str| x.to_string();
    let p = |x: &std::path::Path| x.display().to_string();
    Some(match c {
        Command::Init { .. } => ("init", s("-")),
        Command::Import { image, .. } => ("import", s(image)),
        Command::Delete { image, .. } => ("delete", s(image)),
        Command::Guest(g) => match g {
            GuestCmd::Create { name, image, .. } => ("guest create", format!("{name} {image}")),
            GuestCmd::Rm { name } => ("guest rm", s(name)),
            GuestCmd::Fsck { name, repair: true, .. } => ("guest fsck --repair", s(name)),
            GuestCmd::Rename { old, new } => ("guest rename", format!("{old} {new}")),
            GuestCmd::Clone { source, name, .. } => ("guest clone", format!("{source} {name}")),
            _ => return None,
        },
        Command::Checkpoint { action: Some(CheckpointCmd::Prune { name, .. }), .. } => ("checkpoint prune", s(name)),
        Command::Checkpoint { action: Some(CheckpointCmd::Delete { name, checkpoint, .. }), .. } => ("checkpoint delete", format!("{name} {checkpoint}")),
        Command::Checkpoint { group: Some(g), .. } => ("checkpoint", format!("group {g}")),
        Command::Checkpoint { name, .. } => ("checkpoint", name.clone().unwrap_or_else(|| s("-"))),
        Command::Rollback { name, checkpoint: None, group: Some(g), .. } => ("rollback", format!("group {g} {name}")),
        Command::Rollback { name, checkpoint, .. } => ("rollback", format!("{name} {}", checkpoint.as_deref().unwrap_or("-"))),
        Command::Verify { repair_from, .. } if !repair_from.is_empty() => ("verify --repair-from", s("-")),
        Command::Gc { dry_run: false, .. } => ("gc", s("-")),
        Command::Mount { foreground: false, guest, operands, .. } => ("mount", guest.clone().unwrap_or_else(|| operands.first().map(|o| p(o)).unwrap_or_default())),
        Command::Umount { mountpoint } => ("umount", p(mountpoint)),
        Command::Nbd(NbdCmd::Serve { foreground: false, guest, image, .. }) => ("nbd serve", guest.clone().or_else(|| image.clone()).unwrap_or_default()),
        Command::Nbd(NbdCmd::Stop { guest }) => ("nbd stop", s(guest)),
        Command::Backup { guest, .. } => ("backup", s(guest)),
        Command::Restore { guest, .. } => ("restore", s(guest)),
        Command::Receive { input, .. } => ("receive", p(input)),
        Command::Forget { guest, dry_run: false, .. } => ("forget", s(guest)),
        Command::Harvest { guest, image, .. } => ("harvest", format!("{guest} {image}")),
        Command::Rebase { guest, group, image, dry_run: false, .. } => ("rebase", format!("{} {image}", guest.clone().or_else(|| group.as_ref().map(|g| format!("group {g}"))).unwrap_or_default())),
        Command::Propagate { from, to, group, dry_run: false, .. } => ("propagate", format!("{from} {}", group.as_ref().map_or_else(|| to.join(" "), |g| format!("group {g}")))),
        Command::Group(GroupCmd::Create { name, .. } | GroupCmd::Add { name, .. } | GroupCmd::Rm { name, .. }) => (group_verb(c), s(name)),
        Command::Tag { image, channel, .. } => ("tag", format!("{image} {channel}")),
        Command::Sign { image, .. } => ("sign", s(image)),
        Command::Policy(PolicyCmd::RequireSignature { key }) => ("policy require-signature", p(key)),
        _ => return None,
    })
}

fn group_verb(c: &Command) -> &'static str {
    match c {
        Command::Group(GroupCmd::Create { .. }) => "group create",
        Command::Group(GroupCmd::Add { .. }) => "group add",
        _ => "group rm",
    }
}

/// Append the audit entry of the command `cli` ran, with its outcome. An
/// entry that cannot be written is a warning (the command's work is done).
pub fn record(cli: &Cli, outcome: &anyhow::Result<()>) {
    let caller = crate::service::caller();
    let caller = caller.as_ref().map(|c| lvrepo_fs::audit::Caller { uid: c.uid, user: &c.user, role: &c.role });
    record_as(cli, outcome, caller.as_ref());
}

/// [`record`], for `caller` (the service's: a command it ran or refused).
pub fn record_as(cli: &Cli, outcome: &anyhow::Result<()>, caller: Option<&lvrepo_fs::audit::Caller<'_>>) {
    let (Some((command, target)), Some(repo)) = (describe(&cli.command), crate::cmd::used_repo(cli)) else { return };
    let repo = repo.as_path();
    if !repo.join("FORMAT").exists() {
        return; // no repository to record in (init failed, a wrong --repo)
    }
    let result = match outcome {
        Ok(()) => "ok".to_string(),
        Err(e) => format!("exit {}: {}", crate::exit_code(e), format!("{e:#}").lines().next().unwrap_or_default()),
    };
    match lvrepo_fs::audit::append_as(repo, &lvrepo_fs::audit::Record { command, target: &target, result: &result }, caller) {
        Ok(_) => {}
        // A host that has the shared repository read-only (guest hosts) has
        // no log to write; its commands go unrecorded (docs/operations.md).
        Err(e) if e.errno() == libc::EROFS => tracing::debug!("repository is read-only here: audit entry not recorded"),
        Err(e) => tracing::warn!(error = %lvrepo_fs::error::chain(&e), "could not append to the audit log"),
    }
}
