//! `lvrepo ls IMAGE[:PATH]`: list a directory (or show one entry) of an image.

use std::io::Write;

use anyhow::Result;
use lvrepo_fs::walk::{escape_path, walk_entry};
use lvrepo_fs::{Entry, Kind};
use serde_json::json;

use crate::cli::Cli;
use crate::output::utc;

pub fn run(cli: &Cli, target: &std::ffi::OsStr, recursive: bool, json: bool) -> Result<()> {
    let (r, path) = super::split_target(target)?;
    let repo = super::open(cli, false)?;
    let img = repo.resolve(&r)?;
    let store = repo.objects();
    let entry = lvrepo_fs::tree::lookup(store, &img.root_tree(), &path)?
        .ok_or_else(|| lvrepo_fs::Error::PathNotFound { image: img.label(), path: escape_path(&path) })?;
    let mut base = path.clone();
    while base.last() == Some(&b'/') {
        base.pop();
    }
    let out = std::io::stdout().lock();
    let head = json.then(|| crate::json::open_stream("ls", &json!({ "image": crate::json::Image::of(&img) }), "entries")).transpose()?;
    let mut rows = Rows { out: std::io::BufWriter::new(out), head, recursive, n: 0 };
    if entry.kind != Kind::Dir {
        rows.row(&base, &entry)?;
    } else if recursive {
        // Streamed as the walk goes: a deep tree's rows (each its whole
        // path) are never held at once.
        walk_entry(store, &entry, &base, &mut |p, e| rows.row(p, e).map_err(|er| lvrepo_fs::Error::io("writing", "stdout", er)))?;
    } else if let lvrepo_fs::Content::Tree(t) = entry.content {
        let mut p = base.clone();
        for e in lvrepo_fs::Tree::load(store, &t)?.entries {
            p.truncate(base.len());
            p.push(b'/');
            p.extend_from_slice(&e.name);
            rows.row(&p, &e)?;
        }
    }
    rows.finish()?;
    Ok(())
}

/// Rows written as they come: text lines, or the elements of the JSON
/// document's `entries` array (`head`: the document up to it).
struct Rows<W: Write> {
    out: W,
    head: Option<String>,
    recursive: bool,
    n: u64,
}

impl<W: Write> Rows<W> {
    fn row(&mut self, p: &[u8], e: &Entry) -> std::io::Result<()> {
        self.n += 1;
        if let Some(head) = &self.head {
            let v = serde_json::to_string_pretty(&row_json(p, e))?;
            let sep = if self.n == 1 { head.as_str() } else { "," };
            return write!(self.out, "{sep}\n    {}", v.replace('\n', "\n    "));
        }
        let shown = if self.recursive { escape_path(p) } else { escape_path(&e.name) };
        let extra = match e.kind {
            Kind::Symlink => format!(" -> {}", escape_path(&e.target)),
            _ => String::new(),
        };
        let size = match e.kind {
            Kind::CharDev | Kind::BlockDev => format!("{},{}", libc::major(e.rdev as libc::dev_t), libc::minor(e.rdev as libc::dev_t)),
            _ => e.size.to_string(),
        };
        writeln!(self.out, "{}{} {:>6} {:>6} {:>12} {} {}{}", e.kind.letter(), mode_string(e.mode), e.uid, e.gid, size, utc(e.mtime.sec), shown, extra)
    }

    fn finish(mut self) -> std::io::Result<()> {
        if let Some(head) = &self.head {
            writeln!(self.out, "{}\n}}", if self.n == 0 { format!("{head}]") } else { "\n  ]".into() })?;
        }
        self.out.flush()
    }
}

fn row_json(p: &[u8], e: &Entry) -> serde_json::Value {
    json!({
        "path": escape_path(p),
        "kind": e.kind,
        "mode": format!("{:04o}", e.mode),
        "uid": e.uid,
        "gid": e.gid,
        "size": e.size,
        "mtime": crate::json::time_ns(e.mtime.sec, e.mtime.nsec),
        "rdev": e.rdev,
        "target": (e.kind == Kind::Symlink).then(|| escape_path(&e.target)),
        "xattrs": e.xattrs.iter().map(|(k, _)| escape_path(k)).collect::<Vec<_>>(),
        "hardlink": (e.link != 0).then(|| format!("{:016x}", e.link)),
    })
}

fn mode_string(m: u32) -> String {
    let mut s = String::with_capacity(9);
    for (i, c) in "rwxrwxrwx".chars().enumerate() {
        let bit = 1 << (8 - i);
        let mut ch = if m & bit != 0 { c } else { '-' };
        let special = match i {
            2 if m & 0o4000 != 0 => Some('s'),
            5 if m & 0o2000 != 0 => Some('s'),
            8 if m & 0o1000 != 0 => Some('t'),
            _ => None,
        };
        if let Some(sp) = special {
            ch = if m & bit != 0 { sp } else { sp.to_ascii_uppercase() };
        }
        s.push(ch);
    }
    s
}
