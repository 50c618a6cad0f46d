//! Groups of guests: a name and a list of member guests, so one command
//! (checkpoint, rollback, rebase with `--group`) acts on each of them.
//!
//! Layout: `REPO/groups/NAME.json` ([`Group`]), replaced atomically on every
//! change (a crash leaves the old list or the new one). Members are guest
//! names checked to be registered when added; a guest removed later stays
//! listed until removed from the group (commands name it as not found).

use std::path::{Path, PathBuf};

use super::{valid_guest_name, write_atomic};
use crate::error::{Error, Result};

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Group {
    pub name: String,
    /// Member guests, sorted, each once.
    pub members: Vec<String>,
    pub created: i64,
}

fn dir(repo: &Path) -> PathBuf {
    repo.join("groups")
}

fn path(repo: &Path, name: &str) -> PathBuf {
    dir(repo).join(format!("{name}.json"))
}

fn write(repo: &Path, g: &Group) -> Result<()> {
    let d = dir(repo);
    std::fs::create_dir_all(&d).map_err(|e| Error::io("creating", &d, e))?;
    let json = serde_json::to_vec_pretty(g).map_err(|_| Error::Decode { what: "group", why: "unencodable" })?;
    write_atomic(&path(repo, &g.name), &json)
}

/// Group `name`.
pub fn find_group(repo: &Path, name: &str) -> Result<Group> {
    let p = path(repo, name);
    match std::fs::read(&p) {
        Ok(t) => serde_json::from_slice(&t).map_err(|_| Error::BadFile { what: "group", path: p }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::GroupNotFound(name.to_string())),
        Err(e) => Err(Error::io("reading", p, e)),
    }
}

/// Every group, sorted by name.
pub fn groups(repo: &Path) -> Result<Vec<Group>> {
    let d = dir(repo);
    let rd = match std::fs::read_dir(&d) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("listing", d, e)),
    };
    let mut out = Vec::new();
    for ent in rd.flatten() {
        let n = ent.file_name();
        if let Some(name) = n.to_str().and_then(|n| n.strip_suffix(".json")) {
            out.push(find_group(repo, name)?);
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Create group `name` with `members` (registered guests).
pub fn create_group(repo: &Path, name: &str, members: &[String]) -> Result<Group> {
    if !valid_guest_name(name) {
        return Err(Error::BadImageName(name.to_string()));
    }
    if path(repo, name).exists() {
        return Err(Error::GroupExists(name.to_string()));
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let mut g = Group { name: name.to_string(), members: Vec::new(), created: now };
    add(&mut g, repo, members)?;
    write(repo, &g)?;
    Ok(g)
}

/// Add registered guests `members` to group `name`.
pub fn add_members(repo: &Path, name: &str, members: &[String]) -> Result<Group> {
    let mut g = find_group(repo, name)?;
    add(&mut g, repo, members)?;
    write(repo, &g)?;
    Ok(g)
}

fn add(g: &mut Group, repo: &Path, members: &[String]) -> Result<()> {
    for m in members {
        super::find(repo, m)?;
    }
    g.members.extend(members.iter().cloned());
    g.members.sort();
    g.members.dedup();
    Ok(())
}

/// Remove `members` from group `name`; with none, remove the group.
pub fn remove_members(repo: &Path, name: &str, members: &[String]) -> Result<Option<Group>> {
    let mut g = find_group(repo, name)?;
    if members.is_empty() {
        let p = path(repo, name);
        std::fs::remove_file(&p).map_err(|e| Error::io("removing", &p, e))?;
        return Ok(None);
    }
    for m in members {
        if !g.members.contains(m) {
            return Err(Error::GuestNotFound(format!("{m} (in group {name})")));
        }
    }
    g.members.retain(|m| !members.contains(m));
    write(repo, &g)?;
    Ok(Some(g))
}
