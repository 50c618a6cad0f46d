//! What an import leaves out: `--exclude PATTERN` and `--one-file-system`.
//!
//! Pattern syntax (docs/operations.md): a pattern without `/` is matched
//! against each entry's name, at any depth; a pattern with `/` against the
//! entry's whole path from the import's root (a leading `/` is optional). `*`
//! matches any run of bytes but `/`, `**` any run including `/`, `?` one
//! byte but `/`, `[abc]`/`[a-z]`/`[!a-z]` one byte of (not of) a set, and `\`
//! makes the next byte literal. A trailing `/` is ignored. An excluded
//! directory is left out with everything below it. Matching runs a set of
//! pattern positions over the input (no backtracking, no recursion): linear
//! in the path's length.

use crate::error::{Error, Result};

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Lit(u8),
    Any,
    Star,
    DoubleStar,
    Class { ranges: Vec<(u8, u8)>, negated: bool },
}

/// One `--exclude` pattern.
#[derive(Clone, Debug)]
pub struct Pattern {
    toks: Vec<Tok>,
    /// Matched against the whole relative path, not the name.
    anchored: bool,
}

impl Pattern {
    pub fn new(p: &[u8]) -> Result<Pattern> {
        let bad = |why| Error::BadPattern { pattern: String::from_utf8_lossy(p).into_owned(), why };
        let mut s = p;
        while s.len() > 1 && s.ends_with(b"/") {
            s = &s[..s.len() - 1];
        }
        let anchored = s.contains(&b'/');
        let s = s.strip_prefix(b"/").unwrap_or(s);
        if s.is_empty() {
            return Err(bad("empty"));
        }
        let mut toks = Vec::new();
        let mut i = 0;
        while i < s.len() {
            match s[i] {
                b'*' if s.get(i + 1) == Some(&b'*') => {
                    toks.push(Tok::DoubleStar);
                    i += 2;
                    continue;
                }
                b'*' => toks.push(Tok::Star),
                b'?' => toks.push(Tok::Any),
                b'\\' => {
                    i += 1;
                    toks.push(Tok::Lit(*s.get(i).ok_or_else(|| bad("ends with '\\'"))?));
                }
                b'[' => {
                    let mut j = i + 1;
                    let negated = matches!(s.get(j), Some(b'!' | b'^'));
                    if negated {
                        j += 1;
                    }
                    let mut ranges = Vec::new();
                    let mut first = true;
                    loop {
                        let Some(&c) = s.get(j) else { return Err(bad("'[' without ']'")) };
                        if c == b']' && !first {
                            break;
                        }
                        first = false;
                        if s.get(j + 1) == Some(&b'-') && s.get(j + 2).is_some_and(|&e| e != b']') {
                            ranges.push((c, s[j + 2]));
                            j += 3;
                        } else {
                            ranges.push((c, c));
                            j += 1;
                        }
                    }
                    toks.push(Tok::Class { ranges, negated });
                    i = j;
                }
                c => toks.push(Tok::Lit(c)),
            }
            i += 1;
        }
        Ok(Pattern { toks, anchored })
    }

    /// Whether `s` matches the whole pattern.
    fn matches(&self, s: &[u8]) -> bool {
        let n = self.toks.len();
        let mut cur = vec![false; n + 1];
        let mut next = vec![false; n + 1];
        cur[0] = true;
        self.close(&mut cur);
        for &c in s {
            next.iter_mut().for_each(|x| *x = false);
            for (i, t) in self.toks.iter().enumerate() {
                if !cur[i] {
                    continue;
                }
                match t {
                    Tok::Lit(l) if *l == c => next[i + 1] = true,
                    Tok::Any if c != b'/' => next[i + 1] = true,
                    Tok::Class { ranges, negated } if c != b'/' && ranges.iter().any(|&(a, b)| a <= c && c <= b) != *negated => next[i + 1] = true,
                    Tok::Star if c != b'/' => next[i] = true,
                    Tok::DoubleStar => next[i] = true,
                    _ => {}
                }
            }
            self.close(&mut next);
            if !next.iter().any(|&x| x) {
                return false;
            }
            std::mem::swap(&mut cur, &mut next);
        }
        cur[n]
    }

    /// Stars match the empty string: add the positions after them.
    fn close(&self, set: &mut [bool]) {
        for (i, t) in self.toks.iter().enumerate() {
            if set[i] && matches!(t, Tok::Star | Tok::DoubleStar) {
                set[i + 1] = true;
            }
        }
    }
}

/// What an import leaves out.
#[derive(Clone, Debug, Default)]
pub struct ImportFilter {
    pub exclude: Vec<Pattern>,
    /// A directory import does not descend into directories on another
    /// filesystem than the source's (each is kept, empty, as `tar
    /// --one-file-system` keeps mount points).
    pub one_file_system: bool,
}

impl ImportFilter {
    /// Whether the entry at `path` (relative to the import's root, `/`
    /// separated, no leading `/`) is left out by a pattern. Its parents are
    /// not looked at: the caller does not descend into excluded directories.
    pub fn excludes(&self, path: &[u8]) -> bool {
        let name = path.rsplit(|&b| b == b'/').next().unwrap_or(path);
        self.exclude.iter().any(|p| p.matches(if p.anchored { path } else { name }))
    }

    /// Whether `path` or one of its parents is left out (for tar input,
    /// whose entries come in any order).
    pub fn excludes_within(&self, comps: &[&[u8]]) -> bool {
        if self.exclude.is_empty() {
            return false;
        }
        let mut path = Vec::new();
        comps.iter().any(|c| {
            if !path.is_empty() {
                path.push(b'/');
            }
            path.extend_from_slice(c);
            self.excludes(&path)
        })
    }

    pub fn is_empty(&self) -> bool {
        self.exclude.is_empty() && !self.one_file_system
    }
}

#[cfg(test)]
mod tests {
    use super::{ImportFilter, Pattern};

    fn f(pats: &[&str]) -> ImportFilter {
        ImportFilter { exclude: pats.iter().map(|p| Pattern::new(p.as_bytes()).unwrap()).collect(), one_file_system: false }
    }

    #[test]
    fn names_match_at_any_depth() {
        let x = f(&["*.log", "cache"]);
        assert!(x.excludes(b"a.log") && x.excludes(b"var/log/syslog.log") && x.excludes(b"home/u/cache"));
        assert!(!x.excludes(b"var/log") && !x.excludes(b"a.log.1") && !x.excludes(b"caches"));
    }

    #[test]
    fn paths_are_anchored() {
        let x = f(&["/var/cache", "tmp/*", "usr/**/*.pyc"]);
        assert!(x.excludes(b"var/cache") && !x.excludes(b"x/var/cache"));
        assert!(x.excludes(b"tmp/a") && !x.excludes(b"tmp/a/b") && !x.excludes(b"tmp"));
        assert!(x.excludes(b"usr/lib/python3/x.pyc") && !x.excludes(b"usr/a.pyc") && x.excludes(b"usr/a/a.pyc"));
    }

    #[test]
    fn classes_escapes_and_parents() {
        let x = f(&["[0-9]*.tmp", "[!a]b", "a\\*"]);
        assert!(x.excludes(b"7x.tmp") && !x.excludes(b"x7.tmp"));
        assert!(x.excludes(b"cb") && !x.excludes(b"ab"));
        assert!(x.excludes(b"a*") && !x.excludes(b"ab"));
        let y = f(&["/var/cache/"]);
        assert!(y.excludes_within(&[b"var", b"cache", b"apt", b"x.deb"]) && !y.excludes_within(&[b"var", b"lib"]));
        assert!(Pattern::new(b"").is_err() && Pattern::new(b"[ab").is_err() && Pattern::new(b"a\\").is_err());
    }

    #[test]
    fn long_paths_are_linear() {
        let x = f(&["**/z"]);
        let long: Vec<u8> = b"a/".repeat(100_000).into_iter().chain(*b"z").collect();
        assert!(x.excludes(&long));
    }
}
