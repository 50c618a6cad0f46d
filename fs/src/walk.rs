//! Depth-first walks over stored trees, and the path escaping used wherever a
//! byte path is shown to a person.

use crate::digest::TreeId;
use crate::error::Result;
use crate::object::ObjectStore;
use crate::tree::{load_root, Content, Entry, Tree};

/// Visit every entry below root tree `root` in pre-order (parents before
/// children, names in byte order). The root itself comes first with path `/`;
/// other paths are `/`-joined with a leading `/`.
pub fn walk(store: &dyn ObjectStore, root: &TreeId, f: &mut dyn FnMut(&[u8], &Entry) -> Result<()>) -> Result<()> {
    let r = load_root(store, root)?;
    f(b"/", &r)?;
    walk_entry(store, &r, b"", f)
}

/// Visit the children of directory entry `dir` (at `path`, without trailing `/`).
/// Iterative: the listings being walked are on an explicit stack, so the
/// depth of a tree costs heap, never call stack.
pub fn walk_entry(store: &dyn ObjectStore, dir: &Entry, path: &[u8], f: &mut dyn FnMut(&[u8], &Entry) -> Result<()>) -> Result<()> {
    let Content::Tree(tid) = dir.content else { return Ok(()) };
    let mut p = path.to_vec();
    // Per open directory: its remaining entries and the length of its path.
    let mut stack = vec![(Tree::load(store, &tid)?.entries.into_iter(), p.len())];
    while let Some((entries, base)) = stack.last_mut() {
        let base = *base;
        let Some(e) = entries.next() else {
            stack.pop();
            continue;
        };
        p.truncate(base);
        p.push(b'/');
        p.extend_from_slice(&e.name);
        f(&p, &e)?;
        if let Content::Tree(t) = e.content {
            stack.push((Tree::load(store, &t)?.entries.into_iter(), p.len()));
        }
    }
    Ok(())
}

/// The `/`-joined names from arena node `i` up to the root (index 0, not
/// named), without a leading `/`, for arenas that keep parent links instead
/// of paths: `up(i)` is node `i`'s name and parent.
pub(crate) fn path_up<'a>(mut i: usize, up: impl Fn(usize) -> (&'a [u8], usize)) -> Vec<u8> {
    let mut names = Vec::new();
    while i != 0 {
        let (name, parent) = up(i);
        names.push(name);
        i = parent;
    }
    names.reverse();
    names.join(&b'/')
}

/// Show a byte path to a person: printable ASCII and valid UTF-8 as is, a
/// backslash as `\\`, control characters and invalid bytes as `\xNN`. Lossless
/// and one line, whatever the name holds.
pub fn escape_path(p: &[u8]) -> String {
    let mut out = String::with_capacity(p.len());
    for chunk in p.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                c if c.is_control() => {
                    let mut b = [0u8; 4];
                    for byte in c.encode_utf8(&mut b).bytes() {
                        out.push_str(&format!("\\x{byte:02x}"));
                    }
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes_are_one_line_and_lossless_in_spirit() {
        assert_eq!(super::escape_path(b"a\nb\xff\\c"), "a\\x0ab\\xff\\\\c");
        assert_eq!(super::escape_path("naïve".as_bytes()), "naïve");
    }
}
