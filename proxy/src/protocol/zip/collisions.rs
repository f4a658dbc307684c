//! x/mod/zip's `collisionChecker`: no two paths equal under Go's case folding, no path both a
//! file and a directory, no file twice.
//!
//! Go keeps a map from each path's `strToFold` to the first path seen, and checks a path and
//! then every parent directory. That costs the square of a path's depth in time and memory; this
//! keeps the same facts as a tree of path elements instead (an element's fold is a prefix of the
//! path's fold, as folding goes rune by rune), so a path costs its length. Since any collision
//! rejects the whole zip, stopping at the first one gives Go's verdict.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher, RandomState};

use super::super::unicode;

/// Why a path collides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Collision {
    /// Equal under case folding to this earlier path.
    Case(String),
    /// Both a file and a directory (this path, or one of its parents, is the other kind).
    FileAndDirectory(String),
    /// A file seen twice.
    Duplicate,
}

/// A path element seen so far: 16 bytes, its name left where the central directory put it.
struct Node {
    parent: u32,
    /// Where the element, as first seen, is in the names.
    start: u32,
    /// The next node whose key hashes alike, or `NONE`.
    next: u32,
    len: u16,
    is_dir: bool,
}

const NONE: u32 = u32::MAX;
const ROOT: u32 = 0;

/// The paths of one zip, whose names are all in `names`.
pub struct Collisions<'a> {
    names: &'a [u8],
    nodes: Vec<Node>,
    /// Keyed hash of (parent, folded element) → first node with that hash.
    by_hash: HashMap<u32, u32>,
    keys: RandomState,
}

/// Whether two elements are equal under Go's case folding.
fn same_fold(a: &str, b: &str) -> bool {
    a.chars()
        .map(unicode::fold)
        .eq(b.chars().map(unicode::fold))
}

impl<'a> Collisions<'a> {
    pub fn new(names: &'a [u8]) -> Self {
        let root = Node {
            parent: NONE,
            start: 0,
            next: NONE,
            len: 0,
            is_dir: true,
        };
        Collisions {
            names,
            nodes: vec![root],
            by_hash: HashMap::new(),
            keys: RandomState::new(),
        }
    }

    fn hash(&self, parent: u32, elem: &str) -> u32 {
        let mut h = self.keys.build_hasher();
        h.write_u32(parent);
        for c in elem.chars() {
            h.write_u32(u32::from(unicode::fold(c)));
        }
        h.finish() as u32
    }

    fn name(&self, n: &Node) -> &'a str {
        let start = n.start as usize;
        std::str::from_utf8(&self.names[start..start + usize::from(n.len)])
            .expect("only checked UTF-8 paths are recorded")
    }

    /// The node for `elem` (up to folding) under `parent`.
    fn find(&self, hash: u32, parent: u32, elem: &str) -> Option<u32> {
        let mut at = *self.by_hash.get(&hash)?;
        while at != NONE {
            let n = &self.nodes[at as usize];
            if n.parent == parent && same_fold(self.name(n), elem) {
                return Some(at);
            }
            at = n.next;
        }
        None
    }

    /// The path of a node, as first seen.
    fn path(&self, mut at: u32) -> String {
        let mut elems = Vec::new();
        while at != ROOT {
            let n = &self.nodes[at as usize];
            elems.push(self.name(n));
            at = n.parent;
        }
        elems.reverse();
        elems.join("/")
    }

    /// Records the path at `offset` in the names, `len` bytes long (clean, valid, relative,
    /// no trailing slash), as a file or a directory.
    pub fn check(&mut self, offset: usize, len: usize, is_dir: bool) -> Result<(), Collision> {
        let path = std::str::from_utf8(&self.names[offset..offset + len])
            .expect("paths are checked UTF-8 first");
        let mut parent = ROOT;
        let mut elem_start = offset;
        let mut elems = path.split('/').peekable();
        while let Some(elem) = elems.next() {
            let last = elems.peek().is_none();
            let want_dir = !last || is_dir;
            let hash = self.hash(parent, elem);
            match self.find(hash, parent, elem) {
                Some(at) => {
                    let n = &self.nodes[at as usize];
                    if self.name(n) != elem {
                        return Err(Collision::Case(self.path(at)));
                    }
                    if n.is_dir != want_dir {
                        return Err(Collision::FileAndDirectory(self.path(at)));
                    }
                    if !want_dir {
                        return Err(Collision::Duplicate);
                    }
                    parent = at;
                }
                None => {
                    let at = u32::try_from(self.nodes.len()).expect("entries are bounded");
                    let next = self.by_hash.insert(hash, at).unwrap_or(NONE);
                    self.nodes.push(Node {
                        parent,
                        start: u32::try_from(elem_start).expect("names are bounded"),
                        next,
                        len: u16::try_from(elem.len()).expect("names are at most 64 KiB"),
                        is_dir: want_dir,
                    });
                    parent = at;
                }
            }
            elem_start += elem.len() + 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(paths: &[(&str, bool)]) -> Result<(), Collision> {
        let names: String = paths.iter().map(|(p, _)| *p).collect();
        let mut c = Collisions::new(names.as_bytes());
        let mut at = 0;
        for &(p, is_dir) in paths {
            c.check(at, p.len(), is_dir)?;
            at += p.len();
        }
        Ok(())
    }

    #[test]
    fn distinct_paths_pass() {
        run(&[
            ("a/b.go", false),
            ("a/c.go", false),
            ("a", true),
            ("a", true),
            ("b/a/b.go", false),
            ("ab", false),
        ])
        .unwrap();
    }

    #[test]
    fn folding_collisions_name_the_first_path() {
        assert_eq!(
            run(&[("s.go", false), ("ſ.go", false)]),
            Err(Collision::Case("s.go".into()))
        );
        assert_eq!(
            run(&[("Sub/a.go", false), ("sub/b.go", false)]),
            Err(Collision::Case("Sub".into()))
        );
        assert_eq!(
            run(&[("x/σ", false), ("x/ς", false)]),
            Err(Collision::Case("x/σ".into()))
        );
    }

    #[test]
    fn files_and_directories_cannot_share_a_path() {
        for paths in [
            [("a", false), ("a/b", false)],
            [("a/b", false), ("a", false)],
            [("a", true), ("a", false)],
            [("a", false), ("a", true)],
        ] {
            assert_eq!(
                run(&paths),
                Err(Collision::FileAndDirectory("a".into())),
                "{paths:?}"
            );
        }
        assert_eq!(
            run(&[("a", false), ("a", false)]),
            Err(Collision::Duplicate)
        );
    }

    #[test]
    fn deep_paths_cost_their_length() {
        let deep = "a/".repeat(30_000) + "x";
        let names = deep.repeat(2);
        let mut c = Collisions::new(names.as_bytes());
        c.check(0, deep.len(), false).unwrap();
        assert_eq!(c.nodes.len(), 30_002);
        assert_eq!(
            c.check(deep.len(), deep.len(), false),
            Err(Collision::Duplicate)
        );
    }
}
