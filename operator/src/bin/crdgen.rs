//! Writes the GoModuleProxy CRD as YAML: to the path given as the only argument, else stdout.
//! `cargo run -p modfleet-operator --bin crdgen -- crds/gomoduleproxy.yaml`

fn main() -> anyhow::Result<()> {
    let yaml = modfleet_operator::crdgen::crd_yaml()?;
    match std::env::args_os().nth(1) {
        Some(path) => std::fs::write(&path, yaml)?,
        None => print!("{yaml}"),
    }
    Ok(())
}
