//! Roles: which role each command needs when an unprivileged user runs it
//! through the service (`lvrepo serve`), the guests it acts on (a `user`
//! acts only on guests they own), the host paths it takes (refused through
//! the service), and the roles file that maps Unix groups to roles.
//!
//! [`access`] is the one table of command → role: an exhaustive match on
//! [`Command`] with no catch-all arm, so a new command does not compile
//! until it is given a role. Root acting directly is never asked.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use crate::cli::{CheckpointCmd, Command, GroupCmd, GuestCmd, NbdCmd, PolicyCmd};

/// The default roles file (`lvrepo serve --roles`, env `LVREPO_ROLES`).
pub const DEFAULT_FILE: &str = "/etc/lvrepo/roles";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Read images; checkpoint, diff and log the guests they own.
    User,
    /// Create, remove, roll back and rebase any guest; groups; backups.
    Manager,
    /// Import, sign, tag, delete images; gc; harvest; receive.
    Publisher,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Manager => "manager",
            Role::Publisher => "publisher",
        }
    }

    fn parse(s: &str) -> Option<Role> {
        [Role::User, Role::Manager, Role::Publisher].into_iter().find(|r| r.name() == s)
    }
}

/// What running a command takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Runs in the caller's own process, with the caller's own rights
    /// (touches no repository: man pages, completions, key files).
    Local,
    /// Through the service, for a caller holding this role (every role
    /// grants the `user` commands).
    Needs(Role),
    /// Root's only, acting directly (why, for the refusal).
    Root(&'static str),
}

/// The role each command needs. No catch-all arm: a new command must be
/// given its role here before the binary compiles.
pub fn access(c: &Command) -> Access {
    use Access::{Local, Needs, Root};
    use Role::{Manager, Publisher, User};
    match c {
        Command::Init { .. } => Root("it creates a repository"),
        Command::Import { .. } | Command::Delete { .. } | Command::Gc { .. } | Command::Tag { .. } | Command::Sign { .. } => Needs(Publisher),
        Command::Harvest { .. } | Command::Receive { .. } | Command::Verify { .. } => Needs(Publisher),
        Command::Policy(PolicyCmd::RequireSignature { .. }) => Needs(Publisher),
        Command::Policy(PolicyCmd::Show { .. }) => Needs(User),
        Command::Images { .. } | Command::Ls { .. } | Command::Cat { .. } | Command::Stats { .. } | Command::Export { .. } => Needs(User),
        Command::Diff { .. } | Command::Log { .. } | Command::Send { .. } | Command::Backups { .. } | Command::Complete { .. } => Needs(User),
        Command::Checkpoint { action: None, group: None, .. } => Needs(User),
        Command::Checkpoint { action: Some(CheckpointCmd::Prune { .. } | CheckpointCmd::Delete { .. }), .. } | Command::Checkpoint { group: Some(_), .. } => Needs(Manager),
        Command::Guest(GuestCmd::List { .. } | GuestCmd::Show { .. }) => Needs(User),
        Command::Guest(GuestCmd::Create { .. } | GuestCmd::Rm { .. } | GuestCmd::Rename { .. } | GuestCmd::Clone { .. } | GuestCmd::Fsck { .. }) => Needs(Manager),
        Command::Group(GroupCmd::List { .. } | GroupCmd::Show { .. }) => Needs(User),
        Command::Group(GroupCmd::Create { .. } | GroupCmd::Add { .. } | GroupCmd::Rm { .. }) => Needs(Manager),
        Command::Rollback { .. } | Command::Rebase { .. } | Command::Propagate { .. } | Command::Prefetch { .. } | Command::Audit { .. } => Needs(Manager),
        Command::Backup { .. } | Command::Restore { .. } | Command::Forget { .. } | Command::Nbd(NbdCmd::Stop { .. }) => Needs(Manager),
        // A guest, on a directory of the caller's (service/mountpoint.rs).
        Command::Mount { guest: Some(_), overlay: None, .. } | Command::Umount { .. } => Needs(Manager),
        Command::Mount { .. } => Root("an image mount takes an overlay directory on the host; managers mount guests: mount --guest NAME DIR"),
        Command::Nbd(NbdCmd::Serve { .. }) => Root("an NBD server listens on a host socket or port"),
        Command::Serve { .. } => Root("it is the service"),
        Command::Man { .. } | Command::Completions { .. } | Command::Key(_) => Local,
    }
}

/// The guests a `user`-role command acts on (names that may be guests: the
/// service checks those that are registered). Commands of other roles act
/// on any guest: their role is checked, not the owner.
pub fn guests_named(c: &Command) -> Vec<&str> {
    match c {
        Command::Checkpoint { action: None, name: Some(n), .. } => vec![n],
        Command::Diff { from, to, .. } => from.iter().chain(to.iter()).map(String::as_str).collect(),
        Command::Log { name: Some(n), .. } | Command::Guest(GuestCmd::Show { name: n, .. }) => vec![n],
        Command::Send { what, .. } => vec![what],
        // A volume guest exports as a volume: `GUEST[:PATH]`.
        Command::Export { image, .. } => image.to_str().map(|s| s.split(':').next().unwrap_or(s)).into_iter().collect(),
        _ => Vec::new(),
    }
}

/// `-`: the caller's own stdin or stdout, handed to the service; the only
/// host "path" a command run through it may name.
pub fn is_stream(p: &Path) -> bool {
    p.as_os_str() == "-"
}

/// The host paths a command would open as root: the service refuses them
/// (docs/threat-model.md), `-` excepted. (What, the path.)
pub fn host_paths(c: &Command) -> Vec<(&'static str, &Path)> {
    let mut v: Vec<(&'static str, &Path)> = Vec::new();
    match c {
        Command::Import { source, .. } => v.push(("SOURCE", source)),
        Command::Export { dest, .. } => v.push(("DEST", dest)),
        Command::Guest(GuestCmd::Create { overlay, values, file, .. }) => {
            v.extend(overlay.as_deref().map(|p| ("--overlay", p)));
            v.extend(values.as_deref().map(|p| ("--values", p)));
            v.extend(file.iter().map(|f| ("--file", Path::new(OsStr::new(f.split_once('=').map_or(f.as_str(), |(_, src)| src))))));
        }
        Command::Guest(GuestCmd::Clone { overlay, .. }) => v.extend(overlay.as_deref().map(|p| ("--overlay", p))),
        Command::Verify { repair_from, .. } => v.extend(repair_from.iter().map(|p| ("--repair-from", p.as_path()))),
        Command::Prefetch { file_cache, .. } if file_cache.as_os_str() != lvrepo_fs::filecache::DEFAULT_DIR => v.push(("--file-cache", file_cache)),
        Command::Backup { to, .. } => v.push(("--to", to)),
        Command::Restore { from, overlay, .. } => v.extend([("--from", from.as_path()), ("--overlay", overlay.as_path())]),
        Command::Send { output: Some(o), .. } => v.push(("--output", o)),
        Command::Receive { input, .. } => v.push(("INPUT", input)),
        Command::Sign { key, .. } | Command::Policy(PolicyCmd::RequireSignature { key }) => v.push(("--key", key)),
        Command::Mount { file_cache: Some(fc), .. } => v.push(("--file-cache", fc)),
        _ => {}
    }
    v.retain(|(_, p)| !is_stream(p));
    v
}

/// The mount point a command mounts on or unmounts, and whether it must
/// be the caller's own directory (a mount) or not (an unmount). The service
/// checks it instead of refusing it as a host path.
pub fn mount_point(c: &Command) -> Option<(&Path, bool)> {
    match c {
        Command::Mount { operands, .. } => operands.last().map(|p| (p.as_path(), true)),
        Command::Umount { mountpoint } => Some((mountpoint, false)),
        _ => None,
    }
}

/// The roles file: `GROUP ROLE [ROLE...]` per line (`#` comments, blank
/// lines), a Unix group and the roles its members hold.
#[derive(Debug, Default)]
pub struct RolesFile {
    pub groups: Vec<(String, Vec<Role>)>,
}

impl RolesFile {
    /// Read and check the file: owned by root and writable by no one else
    /// (whoever could edit it could grant themselves any role).
    pub fn load(path: &Path) -> anyhow::Result<RolesFile> {
        use std::os::unix::fs::MetadataExt;
        let md = std::fs::metadata(path).map_err(|e| anyhow::anyhow!("roles file {}: {e}", path.display()))?;
        if md.uid() != 0 || md.mode() & 0o022 != 0 {
            anyhow::bail!("roles file {} must be owned by root and writable by root only (it is uid {}, mode {:o})", path.display(), md.uid(), md.mode() & 0o7777);
        }
        let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("reading roles file {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| anyhow::anyhow!("roles file {}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> anyhow::Result<RolesFile> {
        let mut groups = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or_default().trim();
            let mut words = line.split_whitespace();
            let Some(group) = words.next() else { continue };
            let roles = words.map(|w| Role::parse(w).ok_or_else(|| anyhow::anyhow!("line {}: unknown role {w:?} (roles: user, manager, publisher)", i + 1))).collect::<anyhow::Result<Vec<_>>>()?;
            if roles.is_empty() {
                anyhow::bail!("line {}: group {group} has no role (GROUP ROLE [ROLE...])", i + 1);
            }
            groups.push((group.to_string(), roles));
        }
        Ok(RolesFile { groups })
    }

    /// The roles of a member of `groups` (group names), sorted, distinct.
    pub fn roles_of(&self, groups: &[String]) -> Vec<Role> {
        let mut out: Vec<Role> = self.groups.iter().filter(|(g, _)| groups.contains(g)).flat_map(|(_, r)| r.iter().copied()).collect();
        out.sort();
        out.dedup();
        out
    }
}

/// The role among `have` that lets its holder run a command needing
/// `need`: `need` itself, or any role for a `user` command.
pub fn granting(have: &[Role], need: Role) -> Option<Role> {
    if have.contains(&need) {
        Some(need)
    } else if need == Role::User {
        have.iter().copied().max()
    } else {
        None
    }
}

/// The roles file path: `--roles`, else `LVREPO_ROLES`, else the default.
pub fn file_path(flag: Option<&Path>) -> PathBuf {
    flag.map(Path::to_path_buf).or_else(|| std::env::var_os("LVREPO_ROLES").map(PathBuf::from)).unwrap_or_else(|| PathBuf::from(DEFAULT_FILE))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn cmd(args: &[&str]) -> Command {
        crate::Cli::try_parse_from(std::iter::once("lvrepo").chain(args.iter().copied())).expect("parses").command
    }

    #[test]
    fn the_issue_s_roles() {
        let r = |a: &[&str]| access(&cmd(a));
        for a in [&["import", "-", "--image", "w"][..], &["sign", "w:1", "--key", "k"], &["delete", "w:1"], &["gc"], &["tag", "w:1", "w:stable"]] {
            assert_eq!(r(a), Access::Needs(Role::Publisher), "{a:?}");
        }
        for a in [&["guest", "create", "g", "--image", "w"][..], &["guest", "rm", "g"], &["rebase", "g", "--image", "w:2"], &["rollback", "g", "1"], &["checkpoint", "--group", "web"]] {
            assert_eq!(r(a), Access::Needs(Role::Manager), "{a:?}");
        }
        for a in [&["checkpoint", "g"][..], &["diff", "g"], &["log", "g"], &["images"]] {
            assert_eq!(r(a), Access::Needs(Role::User), "{a:?}");
        }
        assert_eq!(r(&["mount", "--guest", "g", "/mnt"]), Access::Needs(Role::Manager));
        assert!(matches!(r(&["mount", "web", "--overlay", "/o", "/mnt"]), Access::Root(_)));
        assert!(matches!(r(&["init"]), Access::Root(_)));
        assert_eq!(r(&["key", "generate", "--out", "k"]), Access::Local);
    }

    /// Every command of the CLI appears in the roles table of
    /// docs/operations.md (the match in [`access`] covers them by
    /// construction; this keeps the page that tells operators true).
    #[test]
    fn every_command_is_in_the_documented_table() {
        let doc = include_str!("../../docs/operations.md");
        let mut missing = Vec::new();
        let mut todo: Vec<(String, clap::Command)> = vec![(String::new(), crate::cli::command())];
        while let Some((path, c)) = todo.pop() {
            for s in c.get_subcommands().filter(|s| !s.is_hide_set()) {
                let p = if path.is_empty() { s.get_name().to_string() } else { format!("{path} {}", s.get_name()) };
                if s.has_subcommands() {
                    todo.push((p.clone(), s.clone()));
                }
                if !s.has_subcommands() || s.is_args_conflicts_with_subcommands_set() {
                    if !doc.lines().any(|l| l.starts_with(&format!("| `{p}`"))) {
                        missing.push(p);
                    }
                }
            }
        }
        assert!(missing.is_empty(), "commands missing from the roles table of docs/operations.md: {missing:?}");
    }

    /// The documented role of each command is the one [`access`] gives its
    /// example (examples.rs): the table cannot drift from the code.
    #[test]
    fn the_documented_table_says_what_the_code_does() {
        let doc = include_str!("../../docs/operations.md");
        let mut checked = 0;
        for line in doc.lines().filter(|l| l.starts_with("| `")) {
            let mut cells = line.split('|').map(str::trim).skip(1);
            let (Some(path), Some(role)) = (cells.next(), cells.next()) else { continue };
            let path = path.trim_matches('`');
            let Some(ex) = crate::examples::examples(path) else { continue };
            let want = role.split_whitespace().next().unwrap_or_default();
            // The first example of exactly this command that parses.
            let found = ex.lines().flat_map(|l| l.split("&&")).find_map(|seg| {
                let seg = seg.split(['#', '|', '>']).next().unwrap_or_default();
                let words: Vec<String> = seg.split_whitespace().map(|w| w.trim_matches('\'').to_string()).collect();
                if words.first().map(String::as_str) != Some("lvrepo") {
                    return None;
                }
                let m = crate::cli::command().try_get_matches_from(&words).ok()?;
                let mut names = Vec::new();
                let mut cur = &m;
                while let Some((n, sub)) = cur.subcommand() {
                    names.push(n);
                    cur = sub;
                }
                (names.join(" ") == path).then(|| <crate::Cli as clap::FromArgMatches>::from_arg_matches(&m).ok()).flatten()
            });
            let Some(cli) = found else { panic!("no example of `{path}` parses") };
            let got = match access(&cli.command) {
                Access::Local => "local",
                Access::Root(_) => "root",
                Access::Needs(r) => r.name(),
            };
            assert_eq!(got, want, "`{path}`: the code and docs/operations.md disagree");
            checked += 1;
        }
        assert!(checked > 40, "only {checked} rows of the roles table checked");
    }

    #[test]
    fn only_stdin_and_stdout_pass_as_host_paths() {
        assert!(host_paths(&cmd(&["import", "-", "--image", "w"])).is_empty());
        assert_eq!(host_paths(&cmd(&["import", "/etc", "--image", "w"])).len(), 1);
        assert_eq!(host_paths(&cmd(&["export", "w", "/dev/stdout"])).len(), 1, "a reopened /proc/self/fd is root's open");
        assert_eq!(host_paths(&cmd(&["guest", "create", "g", "--image", "w", "--file", "/etc/x=/etc/shadow"]))[0].1, Path::new("/etc/shadow"));
        assert!(host_paths(&cmd(&["prefetch", "w"])).is_empty(), "the default cache");
        assert_eq!(guests_named(&cmd(&["diff", "a", "b"])), ["a", "b"]);
        assert_eq!(guests_named(&cmd(&["export", "vm:/x", "-"])), ["vm"]);
    }

    #[test]
    fn parses_the_roles_file() {
        let f = RolesFile::parse("# comment\nlvrepo-user user\n\nops manager publisher # both\n").expect("parses");
        assert_eq!(f.roles_of(&["ops".into(), "lvrepo-user".into()]), [Role::User, Role::Manager, Role::Publisher]);
        assert_eq!(f.roles_of(&["wheel".into()]), []);
        assert!(RolesFile::parse("ops admin\n").unwrap_err().to_string().contains("line 1: unknown role \"admin\""));
        assert!(RolesFile::parse("ops\n").is_err());
        assert_eq!(granting(&[Role::Publisher], Role::User), Some(Role::Publisher));
        assert_eq!(granting(&[Role::Manager], Role::Publisher), None);
    }
}
