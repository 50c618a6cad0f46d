//! Roles through the local service (`lvrepo serve`): real unprivileged
//! users and groups (useradd/groupadd, removed at the end) run the real
//! binary under setpriv; it forwards to a service run by the test (root).
//! What users rely on: each role may do its commands and gets exit 77
//! outside them, a user acts only on the guests they own, root keeps
//! acting directly, and the audit log names the real user and role.

use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use lvrepo_tests::{lvrepo_bin, report, require_root, Lvrepo};

/// Users and groups made for one test, the repository, and the service;
/// all of it undone on drop.
struct Site {
    r: Lvrepo,
    sock: PathBuf,
    roles: PathBuf,
    service: Child,
    users: Vec<String>,
    groups: Vec<String>,
    /// Guest directories made under the default /var/lib/lvrepo/guests.
    dirs: Vec<PathBuf>,
    tag: String,
}

/// useradd and groupadd lock /etc/passwd and /etc/group: one at a time.
static ACCOUNTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn run(cmd: &str, args: &[&str]) {
    let _one = ACCOUNTS.lock().unwrap_or_else(|e| e.into_inner());
    let out = Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(out.status.success(), "{}", report(&format!("{cmd} {args:?}"), &out));
}

impl Site {
    /// A repository with image `web:1`, groups `P-user`, `P-manager`,
    /// `P-publisher` in the roles file, and the service listening.
    fn new(tag: &str) -> Site {
        Self::start(tag, false)
    }

    /// [`Site::new`], the service started by systemd-socket-activate
    /// (socket activation, as lvrepo.socket) when `activated`.
    fn start(tag: &str, activated: bool) -> Site {
        require_root();
        let r = Lvrepo::init();
        let base = r.repo().parent().expect("base").to_path_buf();
        // The users reach the socket (and the binary) through these.
        fs::set_permissions(&base, fs::Permissions::from_mode(0o755)).expect("chmod");
        let src = r.scratch("src");
        fs::create_dir_all(src.join("etc")).expect("mkdir");
        fs::write(src.join("etc/motd"), b"hello\n").expect("write");
        r.import(&src, "web");
        let p = prefix(tag);
        let groups: Vec<String> = ["user", "manager", "publisher"].iter().map(|role| format!("{p}-{role}")).collect();
        for g in &groups {
            run("groupadd", &[g]);
        }
        let roles = base.join("roles");
        let text: String = groups.iter().zip(["user", "manager", "publisher"]).map(|(g, role)| format!("{g} {role}\n")).collect();
        fs::write(&roles, format!("# test roles\n{text}")).expect("write roles");
        let sock = base.join("run/lvrepo.sock");
        let run_dir = base.join("run");
        fs::create_dir(&run_dir).expect("mkdir run");
        fs::set_permissions(&run_dir, fs::Permissions::from_mode(0o755)).expect("chmod");
        // Started by its socket, as lvrepo.socket does (LISTEN_FDS), or binding it itself.
        let mut c = if activated {
            let mut c = Command::new("systemd-socket-activate");
            c.arg("-l").arg(&sock).arg(lvrepo_bin());
            c
        } else {
            Command::new(lvrepo_bin())
        };
        c.arg("--repo").arg(r.repo()).arg("serve").arg("--roles").arg(&roles);
        if !activated {
            c.arg("--socket").arg(&sock);
        }
        let service = c.env_remove("LVREPO_REPO").stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawn lvrepo serve");
        let mut site = Site { r, sock, roles, service, users: Vec::new(), groups, dirs: Vec::new(), tag: tag.to_string() };
        // Its socket appears once it listens (bounded: a service that
        // cannot start fails the test here, not later).
        for _ in 0..3000 {
            if site.sock.exists() {
                // What SocketMode=0666 does in lvrepo.socket.
                fs::set_permissions(&site.sock, fs::Permissions::from_mode(0o666)).expect("chmod socket");
                return site;
            }
            if let Ok(Some(st)) = site.service.try_wait() {
                panic!("lvrepo serve exited: {st}");
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        site.service.kill().ok();
        panic!("lvrepo serve did not listen at {}", site.sock.display());
    }

    /// A new user in the groups of `roles` ("" for none).
    fn user(&mut self, name: &str, roles: &[&str]) -> String {
        let u = format!("{}{name}", prefix(&self.tag));
        let groups: Vec<String> = roles.iter().map(|r| self.groups.iter().find(|g| g.ends_with(&format!("-{r}"))).expect("role group").clone()).collect();
        let mut args = vec!["-U", "-M", "-s", "/usr/sbin/nologin"];
        let joined = groups.join(",");
        if !groups.is_empty() {
            args.extend(["-G", &joined]);
        }
        args.push(&u);
        run("useradd", &args);
        self.users.push(u.clone());
        u
    }

    /// `lvrepo --repo REPO ARGS` as `user`, through the service, `input` on
    /// stdin (ARGS that start with `--repo` name their own).
    fn as_user(&self, user: &str, args: &[&str], input: Option<&[u8]>) -> Output {
        let mut c = Command::new("setpriv");
        c.args([&format!("--reuid={user}"), &format!("--regid={user}"), "--init-groups", "--"]).arg(lvrepo_bin());
        if args.first() != Some(&"--repo") {
            c.arg("--repo").arg(self.r.repo());
        }
        c.args(args);
        c.env_remove("LVREPO_REPO").env("LVREPO_SOCKET", &self.sock).current_dir("/");
        c.stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() }).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = c.spawn().expect("setpriv");
        if let Some(data) = input {
            let mut stdin = child.stdin.take().expect("stdin");
            stdin.write_all(data).expect("feed stdin");
        }
        child.wait_with_output().expect("wait")
    }

    fn ok(&self, user: &str, args: &[&str]) -> Output {
        let out = self.as_user(user, args, None);
        assert!(out.status.success(), "{}", report(&format!("as {user}: lvrepo {args:?}"), &out));
        out
    }

    /// Run as `user`, assert exit 77, return stderr.
    fn refused(&self, user: &str, args: &[&str]) -> String {
        let out = self.as_user(user, args, None);
        assert_eq!(out.status.code(), Some(77), "{}", report(&format!("as {user}: lvrepo {args:?} (expected 77)"), &out));
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// A guest made by root directly, belonging to `owner` (or nobody).
    fn guest(&self, name: &str, owner: Option<&str>) {
        let dir = self.r.scratch(&format!("g-{name}"));
        let mut args = vec![OsStr::new("guest"), OsStr::new("create"), OsStr::new(name), OsStr::new("--image"), OsStr::new("web"), OsStr::new("--overlay"), dir.as_os_str()];
        if let Some(o) = owner {
            args.extend([OsStr::new("--owner"), OsStr::new(o)]);
        }
        self.r.ok(args);
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        let _ = self.service.kill();
        let _ = self.service.wait();
        let _one = ACCOUNTS.lock().unwrap_or_else(|e| e.into_inner());
        for u in &self.users {
            let _ = Command::new("userdel").arg(u).output();
        }
        for g in &self.groups {
            let _ = Command::new("groupdel").arg(g).output();
        }
        for d in &self.dirs {
            // A mount left by a failed assertion goes first (lazily).
            let _ = Command::new("umount").arg("-l").arg(d.join("mnt")).output();
            let _ = fs::remove_dir_all(d);
        }
        let _ = fs::remove_dir("/var/lib/lvrepo-tests"); // when no other test uses it
    }
}

/// Names unique to this test process (users of two runs never meet).
fn prefix(tag: &str) -> String {
    format!("lvrt{}{tag}", std::process::id() % 100_000)
}

fn audit(r: &Lvrepo) -> Vec<serde_json::Value> {
    r.json(["audit", "--json"])["events"].as_array().expect("audit --json has an events array").clone()
}

#[test]
fn a_user_checkpoints_and_diffs_only_their_own_guests() {
    let mut s = Site::new("u");
    let alice = s.user("alice", &["user"]);
    let bob = s.user("bob", &["user"]);
    s.guest("ga", Some(&alice));
    s.guest("gb", Some(&bob));
    s.guest("groot", None);

    s.ok(&alice, &["checkpoint", "ga", "-m", "mine"]);
    let log = s.ok(&alice, &["log", "ga", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&log.stdout).unwrap_or_else(|e| panic!("log --json through the service: {e}: {}", String::from_utf8_lossy(&log.stdout)));
    assert_eq!(v["checkpoints"].as_array().map(Vec::len), Some(1), "one checkpoint: {v}");
    s.ok(&alice, &["diff", "ga", "--json"]);
    // Images are everyone's to read.
    assert!(String::from_utf8_lossy(&s.ok(&alice, &["cat", "web:/etc/motd"]).stdout).contains("hello"));

    for args in [&["checkpoint", "gb"][..], &["diff", "gb"], &["log", "groot"], &["diff", "ga", "gb"]] {
        let e = s.refused(&alice, args);
        assert!(e.contains("is not yours") && e.contains(&alice), "{args:?}: {e}");
    }
    let e = s.refused(&alice, &["gc"]);
    assert!(e.contains(&format!("gc needs role publisher; you (user {alice}) have roles [user]")), "{e}");
    s.refused(&alice, &["import", "-", "--image", "x"]);
    s.refused(&alice, &["rollback", "ga", "1"]);
    s.refused(&alice, &["guest", "rm", "ga"]);
    // Nothing of bob's changed.
    assert_eq!(s.r.json(["log", "gb", "--json"])["checkpoints"].as_array().map(Vec::len), Some(0));
    // Exit codes come through as the command gave them.
    assert_eq!(s.as_user(&alice, &["checkpoint", "nosuch"], None).status.code(), Some(3));

    // The audit log names alice and her role, for what ran and what was refused.
    let entries = audit(&s.r);
    let mine: Vec<&serde_json::Value> = entries.iter().filter(|e| e["user"] == alice.as_str()).collect();
    assert!(mine.iter().any(|e| e["command"] == "checkpoint" && e["target"] == "ga" && e["role"] == "user" && e["result"] == "ok"), "{entries:?}");
    assert!(mine.iter().any(|e| e["command"] == "gc" && e["result"].as_str().is_some_and(|r| r.starts_with("exit 77"))), "{entries:?}");
    assert!(mine.iter().all(|e| e["uid"] != 0), "{mine:?}");
    // Root acting directly is recorded as root.
    assert!(entries.iter().any(|e| e["user"] == "root" && e["role"] == "root" && e["command"] == "guest create"), "{entries:?}");
    s.r.ok(["audit", "verify"]);
}

#[test]
fn a_manager_handles_guests_but_does_not_import() {
    let mut s = Site::new("m");
    let mgr = s.user("mgr", &["manager"]);
    let alice = s.user("alice", &["user"]);
    s.guest("ga", Some(&alice));
    let name = format!("{}g", prefix("m"));
    s.dirs.push(PathBuf::from("/var/lib/lvrepo/guests").join(&name));
    s.ok(&mgr, &["guest", "create", &name, "--image", "web"]);
    // A guest made through the service is its creator's.
    let uid = String::from_utf8_lossy(&Command::new("id").args(["-u", &mgr]).output().expect("id").stdout).trim().parse::<u64>().expect("uid");
    assert_eq!(s.r.json(["guest", "show", &name, "--json"])["guest"]["owner"].as_u64(), Some(uid));
    s.ok(&mgr, &["checkpoint", &name, "-m", "one"]);
    s.ok(&mgr, &["rollback", &name, "1"]);
    // Any guest: a manager is not held to owners.
    s.ok(&mgr, &["checkpoint", "ga"]);
    s.ok(&mgr, &["rollback", "ga", "1"]);
    s.ok(&mgr, &["guest", "rm", &name]);
    assert!(!s.r.ok(["guest", "list"]).contains(&name));

    let tar = tar_of(&s.r.scratch("src"));
    let out = s.as_user(&mgr, &["import", "-", "--image", "x"], Some(&tar));
    assert_eq!(out.status.code(), Some(77), "{}", report("manager import", &out));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("import needs role publisher; you (user {mgr}) have roles [manager]")), "{}", report("manager import", &out));
    // Paths on the host are not the service's to open for a caller.
    let e = s.refused(&mgr, &["guest", "create", "gx", "--image", "web", "--overlay", "/etc/gx"]);
    assert!(e.contains("--overlay /etc/gx is a path on this host"), "{e}");
    assert!(!Path::new("/etc/gx").exists());
    // Mounting and unmounting guests, on a directory of the manager's
    // below directories only root changes; always nosuid,nodev.
    let top = PathBuf::from("/var/lib/lvrepo-tests").join(prefix("m"));
    s.dirs.push(top.clone());
    let mp = top.join("mnt");
    fs::create_dir_all(&mp).expect("mkdir");
    fs::set_permissions(Path::new("/var/lib/lvrepo-tests"), fs::Permissions::from_mode(0o755)).expect("chmod");
    fs::set_permissions(&top, fs::Permissions::from_mode(0o755)).expect("chmod");
    let e = s.refused(&mgr, &["mount", "--guest", "ga", mp.to_str().expect("utf-8")]);
    assert!(e.contains("is not yours"), "{e}");
    run("chown", &[&mgr, mp.to_str().expect("utf-8")]);
    let e = s.refused(&mgr, &["mount", "--guest", "ga", s.r.scratch("g-ga").to_str().expect("utf-8")]);
    assert!(e.contains("may be changed by users other than root") || e.contains("is not yours"), "{e}");
    s.refused(&mgr, &["mount", "web", "--overlay", "/tmp/o", mp.to_str().expect("utf-8")]);
    s.ok(&mgr, &["mount", "--guest", "ga", mp.to_str().expect("utf-8"), "-o", "suid,dev"]);
    let info = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let line = info.lines().find(|l| l.split(' ').nth(4) == Some(mp.to_str().expect("utf-8"))).unwrap_or_else(|| panic!("{} not mounted:\n{info}", mp.display()));
    let opts: Vec<&str> = line.split(' ').nth(5).expect("mount options").split(',').collect();
    assert!(opts.contains(&"nosuid") && opts.contains(&"nodev"), "{line}");
    assert_eq!(fs::read(mp.join("etc/motd")).expect("read through the mount"), b"hello\n");
    s.ok(&mgr, &["umount", mp.to_str().expect("utf-8")]);
    assert!(!fs::read_to_string("/proc/self/mountinfo").expect("mountinfo").lines().any(|l| l.split(' ').nth(4) == Some(mp.to_str().expect("utf-8"))));
    let e = s.refused(&alice, &["umount", mp.to_str().expect("utf-8")]);
    assert!(e.contains("umount needs role manager"), "{e}");
    assert!(audit(&s.r).iter().any(|e| e["user"] == mgr.as_str() && e["role"] == "manager" && e["command"] == "rollback" && e["result"] == "ok"));
}

#[test]
fn a_publisher_imports_from_stdin_and_the_others_are_refused() {
    let mut s = Site::new("p");
    let publ = s.user("pub", &["publisher"]);
    let none = s.user("none", &[]);
    let tar = tar_of(&s.r.scratch("src"));
    let out = s.as_user(&publ, &["import", "-", "--image", "pubimg"], Some(&tar));
    assert!(out.status.success(), "{}", report("publisher import -", &out));
    assert!(s.r.image_names().contains(&"pubimg:1".to_string()), "{:?}", s.r.image_names());
    assert_eq!(s.r.ok(["cat", "pubimg:/etc/motd"]), "hello\n");
    s.ok(&publ, &["tag", "pubimg:1", "pubimg:stable"]);
    let e = s.refused(&publ, &["import", "/etc", "--image", "etc"]);
    assert!(e.contains("SOURCE /etc is a path on this host"), "{e}");
    s.refused(&publ, &["guest", "create", "gp", "--image", "web"]);
    // Another repository than the service's is not reached through it.
    let e = s.refused(&publ, &["--repo", "/tmp", "gc"]);
    assert!(e.contains("the repository is"), "{e}");

    let e = s.refused(&none, &["images"]);
    assert!(e.contains(&format!("images needs role user; you (user {none}) have roles []")), "{e}");
    // Only root edits the roles file: one others may write is refused.
    fs::set_permissions(&s.roles, fs::Permissions::from_mode(0o666)).expect("chmod");
    let out = s.as_user(&publ, &["images"], None);
    assert_ne!(out.status.code(), Some(0), "{}", report("images with a world-writable roles file", &out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("writable by root only"), "{}", report("images", &out));
    fs::set_permissions(&s.roles, fs::Permissions::from_mode(0o644)).expect("chmod");

    let entries = audit(&s.r);
    assert!(entries.iter().any(|e| e["user"] == publ.as_str() && e["role"] == "publisher" && e["command"] == "import" && e["target"] == "pubimg" && e["result"] == "ok"), "{entries:?}");
}

/// A tar stream of directory `dir`.
fn tar_of(dir: &Path) -> Vec<u8> {
    let out = Command::new("tar").arg("-C").arg(dir).args(["-cf", "-", "."]).output().expect("tar");
    assert!(out.status.success(), "{}", report("tar", &out));
    out.stdout
}

/// The processes whose parent is `pid`.
fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(n) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        // Field 4 of stat, after the parenthesised name (which may hold spaces).
        let Ok(stat) = fs::read_to_string(format!("/proc/{n}/stat")) else { continue };
        let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)).and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) {
            out.push(n);
        }
    }
    out
}

/// Wait (bounded) until `f` holds.
fn until(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..6000 {
        if f() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("gave up waiting: {what}");
}

#[test]
fn socket_activated_and_a_caller_that_goes_away_takes_its_command_with_it() {
    let mut s = Site::start("a", true);
    let publ = s.user("pub", &["publisher"]);
    s.ok(&publ, &["images"]);
    // An import reading the caller's stdin, which stays open and empty.
    let mut c = Command::new("setpriv");
    c.args([&format!("--reuid={publ}"), &format!("--regid={publ}"), "--init-groups", "--"]).arg(lvrepo_bin()).arg("--repo").arg(s.r.repo());
    c.args(["import", "-", "--image", "cut"]).env("LVREPO_SOCKET", &s.sock).env_remove("LVREPO_REPO");
    let mut client = c.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawn client");
    let mut stdin = client.stdin.take().expect("stdin");
    let svc = s.service.id();
    until("the service runs the import", || !children_of(svc).is_empty());
    client.kill().expect("kill the client");
    client.wait().expect("wait");
    until("the service ends the import of a caller gone", || children_of(svc).is_empty());
    // Nobody reads the stream any more: what follows lands nowhere.
    let tar = tar_of(&s.r.scratch("src"));
    assert!(stdin.write_all(&tar).and_then(|_| stdin.flush()).is_err(), "the import still read its stdin");
    drop(stdin);
    assert!(!s.r.image_names().iter().any(|n| n.starts_with("cut:")), "{:?}", s.r.image_names());
    s.r.ok(["verify"]);
}

#[test]
fn a_roles_file_with_an_unknown_role_keeps_the_service_from_starting() {
    require_root();
    let r = Lvrepo::init();
    let roles = r.scratch("roles");
    fs::write(&roles, "ops manager\nwheel admin\n").expect("write");
    let out = Command::new(lvrepo_bin()).arg("--repo").arg(r.repo()).arg("serve").arg("--socket").arg(r.scratch("s.sock")).arg("--roles").arg(&roles).output().expect("serve");
    assert_eq!(out.status.code(), Some(1), "{}", report("serve with a bad roles file", &out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 2: unknown role \"admin\""), "{}", report("serve", &out));
    assert!(!r.scratch("s.sock").exists());
}
