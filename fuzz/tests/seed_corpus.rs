//! Every fuzz target over its seed corpus (`seeds/<target>/`, kept in git; `corpus/` is
//! cargo-fuzz's working corpus and is not), on a stable toolchain: the
//! targets keep building and their properties keep holding between fuzzing campaigns.

use std::path::Path;

fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("seeds")
        .join(target);
    let mut seeds: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("no seed corpus in {}: {e}", dir.display()))
        .map(|e| {
            let path = e.unwrap().path();
            (path.display().to_string(), std::fs::read(&path).unwrap())
        })
        .collect();
    seeds.sort();
    assert!(seeds.len() >= 20, "too few seeds in {}", dir.display());
    seeds
}

#[test]
fn parse_request_holds_over_its_seeds() {
    for (name, data) in seeds("parse_request") {
        let result = std::panic::catch_unwind(|| modfleet_proxy_fuzz::parse_request(&data));
        assert!(result.is_ok(), "the property failed on {name}");
    }
}
