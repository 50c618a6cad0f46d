//! `lvrepo log NAME`: a guest's checkpoints, oldest first; or, when no guest
//! has that name, an image's versions and channels. Inside a guest booted
//! with its root on lvrepo, `lvrepo log` asks the root's daemon.

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use anyhow::{bail, Result};
use lvrepo_fs::guest::{Checkpoint, GuestHandle};
use lvrepo_fs::{Content, Kind, Tree, TreeId};
use serde_json::json;

use crate::cli::Cli;
use crate::control::{self, RootRequest};
use crate::json::{self, Guest, Image};
use crate::output::utc;

pub fn run(cli: &Cli, name: Option<&str>, json: bool) -> Result<()> {
    if control::this_root(cli) {
        let name = control::root_guest(name)?;
        let mut v = control::call_root(&RootRequest::Log)?;
        return print(&name, serde_json::from_value(v["checkpoints"].take())?, serde_json::from_value(v["base"].take())?, None, json);
    }
    let Some(name) = name else { bail!(crate::Exit(crate::exit::USAGE, "name the guest".into())) };
    let p = super::repo_path(cli)?;
    let g = match GuestHandle::open(&p, name, false) {
        Ok(g) => g,
        Err(lvrepo_fs::Error::GuestNotFound(_)) => return image_log(cli, name, json),
        Err(e) => return Err(e.into()),
    };
    let repo = if json { Some(super::open(cli, false)?) } else { None };
    let store = repo.as_ref().map(|r| g.store(super::shared(r)));
    print(name, g.checkpoints()?, g.state.base, store.as_deref(), json)
}

/// A guest's checkpoints; in JSON with each tree's totals when `store`
/// (the guest's) is at hand (not inside a guest booted on lvrepo).
fn print(name: &str, cps: Vec<Checkpoint>, base: TreeId, store: Option<&dyn lvrepo_fs::ObjectStore>, json: bool) -> Result<()> {
    if json {
        let mut memo = HashMap::new();
        let mut out = Vec::new();
        for c in &cps {
            let j = json::Checkpoint::of(c);
            out.push(match store.map(|s| totals(s, &c.root_tree(), &mut memo)) {
                Some(Ok(t)) => j.with_totals(t),
                // Still listed (it may be the one to roll back to); damage
                // is named, and `verify` says where.
                Some(Err(e)) => {
                    tracing::warn!(guest = name, checkpoint = c.version, error = %lvrepo_fs::error::chain(&e), "checkpoint tree unreadable: its totals are left out");
                    j
                }
                None => j,
            });
        }
        let guest = Guest { base: Some(base.to_string()), ..Guest::named(name) };
        return json::print("log", &serde_json::json!({ "guest": guest, "checkpoints": out }));
    }
    for c in cps {
        let current = if c.root_tree() == base { " (current base)" } else { "" };
        println!("{:>4}  {}  {}  {}{current}", c.version, utc(c.created), c.root.0, c.message);
    }
    Ok(())
}

/// The versions of image `name` (oldest first) with the channels pointing
/// at each, then every channel's moves.
fn image_log(cli: &Cli, name: &str, json: bool) -> Result<()> {
    let repo = super::open(cli, false)?;
    let versions: Vec<_> = repo.images()?.into_iter().filter(|i| i.name == name).collect();
    let channels = repo.channels(name)?;
    if versions.is_empty() && channels.is_empty() {
        return Err(lvrepo_fs::Error::ImageNotFound(name.to_string()).into());
    }
    let tags_of = |v: u32| -> Vec<&str> { channels.iter().filter(|c| c.version == v).map(|c| c.channel.as_str()).collect() };
    if json {
        let vs: Vec<_> = versions.iter().map(|i| json!({ "image": Image::of(i), "tags": tags_of(i.version) })).collect();
        let chs: Vec<_> = channels.iter().map(json::channel).collect();
        return json::print("log", &json!({ "name": name, "versions": vs, "channels": chs }));
    }
    for i in &versions {
        let tags = tags_of(i.version);
        let tags = if tags.is_empty() { String::new() } else { format!("  [{}]", tags.join(", ")) };
        println!("{:<24} {}  {}{tags}", i.label(), utc(i.created), i.message);
    }
    for c in &channels {
        let moves: Vec<String> = c.history.iter().map(|(v, t)| format!("{v} at {}", utc(*t))).collect();
        let before = if moves.is_empty() { String::new() } else { format!(" (before: {})", moves.join(", ")) };
        println!("{}:{} -> {}:{} since {}{before}", c.name, c.channel, c.name, c.version, utc(c.time));
    }
    Ok(())
}

/// What a directory holds below it: entries, bytes of files not hardlinked,
/// and the hardlinked files by link id (a set is counted once per tree).
#[derive(Default)]
struct Sum {
    entries: u64,
    bytes: u64,
    links: BTreeMap<u64, u64>,
}

impl Sum {
    fn add(&mut self, other: &Sum) {
        self.entries += other.entries;
        self.bytes += other.bytes;
        self.links.extend(other.links.iter().map(|(k, v)| (*k, *v)));
    }
}

/// Totals of root tree `root`: entries (the root included) and regular file
/// bytes, each hardlink set once, as an import counts them. Directories are
/// summed once per id across calls (`memo`): successive checkpoints share
/// most of them. Iterative (a deep tree costs heap, not stack).
fn totals(store: &dyn lvrepo_fs::ObjectStore, root: &TreeId, memo: &mut HashMap<TreeId, Rc<Sum>>) -> lvrepo_fs::Result<(u64, u64)> {
    let top = lvrepo_fs::tree::load_root(store, root)?;
    let Content::Tree(first) = top.content else { return Ok((1, 0)) };
    let mut stack = vec![(first, Tree::load(store, &first)?.entries.into_iter(), Sum::default())];
    let mut sum = Rc::default();
    while let Some((_, entries, part)) = stack.last_mut() {
        let Some(e) = entries.next() else {
            if let Some((id, _, done)) = stack.pop() {
                let done = Rc::new(done);
                memo.insert(id, done.clone());
                match stack.last_mut() {
                    Some((_, _, parent)) => parent.add(&done),
                    None => sum = done,
                }
            }
            continue;
        };
        part.entries += 1;
        match (e.kind, e.content) {
            (Kind::File, _) if e.link != 0 => {
                part.links.insert(e.link, e.size);
            }
            (Kind::File, _) => part.bytes += e.size,
            (Kind::Dir, Content::Tree(t)) => match memo.get(&t) {
                Some(s) => part.add(s),
                None => stack.push((t, Tree::load(store, &t)?.entries.into_iter(), Sum::default())),
            },
            _ => {}
        }
    }
    Ok((1 + sum.entries, sum.bytes + sum.links.values().sum::<u64>()))
}
