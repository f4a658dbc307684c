//! The Chaos Mesh experiments in `chaos/` are valid against Chaos Mesh's own CRDs (installed
//! by `hack/cluster.sh up` from ../shared/third-party-crds/chaos-mesh): the API server accepts
//! each with `kubectl apply --dry-run=server` and strict field validation, and rejects a broken
//! one — so the check is real. The same experiments run for real, locally, in
//! proxy/tests/chaos.rs.

use std::path::PathBuf;

use modfleet_e2e::Cluster;

fn chaos_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../chaos")
}

#[test]
fn every_chaos_manifest_is_accepted_by_the_chaos_mesh_crds() {
    let cluster = Cluster::from_env();
    let ns = cluster.namespace("chaos");
    let mut files: Vec<PathBuf> = std::fs::read_dir(chaos_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let kinds: Vec<String> = files
        .iter()
        .map(|f| {
            let yaml = std::fs::read_to_string(f).unwrap();
            let out = ns.try_kubectl(&[
                "apply",
                "--dry-run=server",
                "--validate=strict",
                "-f",
                f.to_str().unwrap(),
            ]);
            assert!(
                out.status.success(),
                "{} was rejected: {}",
                f.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(String::from_utf8_lossy(&out.stdout).contains("(server dry run)"));
            yaml.lines()
                .find_map(|l| l.strip_prefix("kind: "))
                .unwrap()
                .to_string()
        })
        .collect();
    for kind in ["NetworkChaos", "PodChaos", "Workflow"] {
        assert!(
            kinds.iter().any(|k| k == kind),
            "no {kind} in chaos/: {kinds:?}"
        );
    }
    assert_eq!(files.len(), 5, "four experiments and the workflow");

    // A manifest the CRD does not allow is refused: the validation above is not a no-op.
    let broken = std::fs::read_to_string(chaos_dir().join("01-delay-primary.yaml"))
        .unwrap()
        .replace("action: delay", "action: explode");
    let out = ns.cluster().try_kubectl_stdin(
        &["apply", "--dry-run=server", "-n", ns.name(), "-f", "-"],
        &broken,
    );
    assert!(!out.status.success(), "an invalid action was accepted");
    assert!(String::from_utf8_lossy(&out.stderr).contains("explode"));
}
