//! Writes the GoModuleProxy CRD as YAML: to the path given as the only argument, else stdout.
//! `cargo run -p modfleet-operator --bin crdgen -- crds/gomoduleproxy.yaml`

use std::process::ExitCode;

const USAGE: &str = "usage: crdgen [PATH]\n\nWrites the GoModuleProxy CustomResourceDefinition as YAML to PATH (the repository keeps it \
in crds/gomoduleproxy.yaml and charts/modfleet/crds/), or to standard output without one.";

fn main() -> anyhow::Result<ExitCode> {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let path = match args.as_slice() {
        [] => None,
        [flag] if flag == "-h" || flag == "--help" => {
            println!("{USAGE}");
            return Ok(ExitCode::SUCCESS);
        }
        // A flag is not a path: never write a file named `--something`.
        [p] if !p.to_string_lossy().starts_with('-') => Some(p),
        _ => {
            eprintln!("{USAGE}");
            return Ok(ExitCode::from(2));
        }
    };
    let yaml = modfleet_operator::crdgen::crd_yaml()?;
    match path {
        Some(path) => std::fs::write(path, yaml)?,
        None => print!("{yaml}"),
    }
    Ok(ExitCode::SUCCESS)
}
