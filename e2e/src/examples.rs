//! The example manifests under `examples/`, as the tests find them.

use std::path::{Path, PathBuf};

use modfleet_testkit::workspace::workspace_root;

pub fn examples_dir() -> PathBuf {
    workspace_root().join("examples")
}

/// Every `.yaml` file under examples/, sorted.
pub fn example_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&examples_dir(), &mut out);
    out.sort();
    out
}

/// `p` relative to the repository root, for messages.
pub fn rel(p: &Path) -> String {
    p.strip_prefix(workspace_root())
        .unwrap_or(p)
        .display()
        .to_string()
}
