//! The Helm chart `charts/modfleet`: lint, schema, rendering accepted by the real API server,
//! least-privilege RBAC, and the proof that the RBAC is enough: after `helm install`, the
//! operator binary running locally with nothing but a token of the chart's ServiceAccount
//! reconciles a GoModuleProxy (`examples/small-cache.yaml`) to Ready and deletes it again.
//!
//! Needs the local cluster (`hack/cluster.sh up`, `eval "$(hack/cluster.sh env)"`) and helm;
//! without them every test fails, none is skipped.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use modfleet_e2e::argocd;
use modfleet_e2e::helm::{
    self, Release, chart_dir, service_account_kubeconfig, template, template_objects, try_helm,
    yaml_to_objects,
};
use modfleet_e2e::operator::Operator;
use modfleet_e2e::{Cluster, DEFAULT_TIMEOUT, Namespace};
use modfleet_testkit::workspace::workspace_root as repo_root;
use serde_json::Value;

const CRD_NAME: &str = "gomoduleproxies.modfleet.dev";

/// One permission: API group, resource, verb, and the resource names it is limited to.
type Perm = (String, String, String, Option<String>);

fn perms(list: &[(&str, &[&str], &[&str])], names: Option<&str>) -> BTreeSet<Perm> {
    let mut out = BTreeSet::new();
    for (group, resources, verbs) in list {
        for r in *resources {
            for v in *verbs {
                out.insert((
                    (*group).to_owned(),
                    (*r).to_owned(),
                    (*v).to_owned(),
                    names.map(str::to_owned),
                ));
            }
        }
    }
    out
}

const CHILD_VERBS: &[&str] = &["list", "watch", "create", "patch", "delete"];
const READ_CHILD_VERBS: &[&str] = &["get", "list", "watch", "create", "patch", "delete"];

/// Everything the operator may do in a namespace it manages (cluster-wide in a ClusterRole,
/// or per watched namespace in a Role) and nothing else. Each line is an API call the
/// operator makes: see the comments in charts/modfleet/templates/_helpers.tpl.
fn fleet_perms() -> BTreeSet<Perm> {
    perms(
        &[
            (
                "modfleet.dev",
                &["gomoduleproxies"],
                &["list", "watch", "patch"],
            ),
            ("modfleet.dev", &["gomoduleproxies/status"], &["patch"]),
            ("apps", &["deployments"], READ_CHILD_VERBS),
            ("", &["persistentvolumeclaims"], READ_CHILD_VERBS),
            (
                "",
                &["configmaps", "services", "serviceaccounts"],
                CHILD_VERBS,
            ),
            ("policy", &["poddisruptionbudgets"], CHILD_VERBS),
            ("networking.k8s.io", &["networkpolicies"], CHILD_VERBS),
            (
                "rbac.authorization.k8s.io",
                &["roles", "rolebindings"],
                CHILD_VERBS,
            ),
            (
                "discovery.k8s.io",
                &["endpointslices"],
                &["get", "list", "watch"],
            ),
            ("", &["pods"], &["list"]),
            (
                "",
                &["secrets"],
                &["get", "list", "watch", "create", "delete"],
            ),
            ("events.k8s.io", &["events"], &["create", "patch"]),
        ],
        None,
    )
}

/// The leader election Role in the release namespace.
fn lease_perms(lease: &str) -> BTreeSet<Perm> {
    let mut p = perms(&[("coordination.k8s.io", &["leases"], &["create"])], None);
    p.extend(perms(
        &[("coordination.k8s.io", &["leases"], &["get", "update"])],
        Some(lease),
    ));
    p
}

/// The injection webhook's ClusterRole: Namespace labels, and (with the operator's own
/// certificates) the caBundle of its one MutatingWebhookConfiguration.
fn injection_cluster_perms(mwc: &str, operator_certs: bool) -> BTreeSet<Perm> {
    let mut p = perms(&[("", &["namespaces"], &["list", "watch"])], None);
    if operator_certs {
        p.extend(perms(
            &[(
                "admissionregistration.k8s.io",
                &["mutatingwebhookconfigurations"],
                &["get", "update"],
            )],
            Some(mwc),
        ));
    }
    p
}

/// The Role in the release namespace for the operator's webhook certificate Secret.
fn injection_secret_perms(secret: &str) -> BTreeSet<Perm> {
    let mut p = perms(&[("", &["secrets"], &["create"])], None);
    p.extend(perms(
        &[("", &["secrets"], &["get", "update", "delete"])],
        Some(secret),
    ));
    p
}

fn find<'a>(objs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objs.iter()
        .find(|o| kind_of(o) == kind && name_of(o) == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

/// The permissions a Role or ClusterRole grants, checking on the way that none uses a
/// wildcard or a non-resource URL.
fn granted(role: &Value) -> BTreeSet<Perm> {
    let name = role["metadata"]["name"].as_str().unwrap_or("?");
    assert!(
        role["aggregationRule"].is_null(),
        "{name}: aggregated roles grant whatever others add"
    );
    let mut out = BTreeSet::new();
    let strs = |v: &Value, field: &str| -> Vec<String> {
        let items: Vec<String> = v[field]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|s| s.as_str().expect("strings").to_owned())
                    .collect()
            })
            .unwrap_or_default();
        for s in &items {
            assert!(
                !s.contains('*'),
                "{name}: wildcard {s:?} in {field} of rule {v}"
            );
        }
        items
    };
    for rule in role["rules"].as_array().expect("rules") {
        assert!(
            rule["nonResourceURLs"].is_null(),
            "{name}: nonResourceURLs in {rule}"
        );
        let groups = strs(rule, "apiGroups");
        let resources = strs(rule, "resources");
        let verbs = strs(rule, "verbs");
        let names = strs(rule, "resourceNames");
        assert!(
            !groups.is_empty() && !resources.is_empty() && !verbs.is_empty(),
            "{name}: incomplete rule {rule}"
        );
        for g in &groups {
            for r in &resources {
                for v in &verbs {
                    if names.is_empty() {
                        out.insert((g.clone(), r.clone(), v.clone(), None));
                    } else {
                        for n in &names {
                            out.insert((g.clone(), r.clone(), v.clone(), Some(n.clone())));
                        }
                    }
                }
            }
        }
    }
    out
}

fn kind_of(o: &Value) -> &str {
    o["kind"].as_str().unwrap_or("")
}

fn name_of(o: &Value) -> &str {
    o["metadata"]["name"].as_str().unwrap_or("")
}

fn ns_of(o: &Value) -> &str {
    o["metadata"]["namespace"].as_str().unwrap_or("")
}

/// A short unique suffix for cluster-scoped names, taken from a test namespace's name.
fn suffix(ns: &Namespace) -> String {
    ns.name().rsplit('-').next().unwrap_or("x").to_owned()
}

/// Makes sure the GoModuleProxy CRD exists (from the chart's crds/), for tests that apply
/// GoModuleProxies without installing the chart.
fn ensure_crd(cluster: &Cluster) {
    if !cluster
        .try_kubectl(&["get", "crd", CRD_NAME])
        .status
        .success()
    {
        let path = chart_dir().join("crds").join("gomoduleproxy.yaml");
        let out = cluster.try_kubectl(&["create", "-f", path.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() || err.contains("AlreadyExists"),
            "creating the CRD: {err}"
        );
    }
    cluster.kubectl(&[
        "wait",
        "crd",
        CRD_NAME,
        "--for=condition=Established",
        "--timeout=60s",
    ]);
}

#[test]
fn schema_rejects_a_wrong_value_at_install() {
    let cluster = Cluster::from_env();
    let ns = cluster.namespace("chart-bad");
    let chart = chart_dir();
    let out = try_helm(
        Some(&cluster),
        &[
            "install",
            "bad",
            chart.to_str().unwrap(),
            "--namespace",
            ns.name(),
            "--set",
            "logFormat=yaml",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "helm install accepted logFormat=yaml"
    );
    assert!(err.contains("at '/logFormat'"), "{err}");
    let list = helm::helm(Some(&cluster), &["list", "--namespace", ns.name(), "-q"]);
    assert!(list.trim().is_empty(), "a release was left behind: {list}");
}

#[test]
fn rendered_chart_passes_server_side_dry_run() {
    let cluster = Cluster::from_env();
    ensure_crd(&cluster);
    let ops = cluster.namespace("chart-dry");
    let team_a = cluster.namespace("chart-dry-a");
    let team_b = cluster.namespace("chart-dry-b");
    let everything = chart_dir().join("ci").join("everything-values.yaml");
    let watch = format!("watchNamespaces={{{},{}}}", team_a.name(), team_b.name());
    let example_ns = format!("exampleFleet.namespace={}", team_a.name());
    let fleet_ns = format!("injection.fleetNamespaces={{{}}}", team_a.name());
    let release = format!("dry{}", suffix(&ops));
    let variants: Vec<(&str, Vec<&str>)> = vec![
        ("defaults (cluster-wide)", vec![]),
        (
            "namespaced, everything on (cert-manager for the webhook)",
            vec![
                "-f",
                everything.to_str().unwrap(),
                "--set",
                &watch,
                "--set",
                &example_ns,
                "--set",
                &fleet_ns,
            ],
        ),
        (
            "cluster-wide, injection with cert-manager",
            vec!["--set", "injection.certManager.enabled=true"],
        ),
        (
            "cluster-wide, injection off",
            vec!["--set", "injection.enabled=false"],
        ),
        (
            "cluster-wide, no leader election, example fleet, fleet monitors",
            vec![
                "--set",
                "leaderElection.enabled=false,exampleFleet.enabled=true",
                "--set",
                "monitoring.fleets.serviceMonitor.enabled=true",
            ],
        ),
    ];
    for (what, extra) in variants {
        let rendered = template(&release, ops.name(), &extra);
        // The local cluster has no cert-manager CRDs: its objects (checked by
        // tests/chart_files.rs) are left out here, everything else goes to the API server.
        let (cert_manager, yaml) = without_cert_manager(&rendered);
        let cert_manager_on = extra.iter().any(|a| a.contains("certManager.enabled=true"))
            || extra.iter().any(|a| a.ends_with("everything-values.yaml"));
        assert_eq!(cert_manager, if cert_manager_on { 4 } else { 0 }, "{what}");
        let out = cluster.try_kubectl_stdin(&["apply", "--dry-run=server", "-f", "-"], &yaml);
        assert!(
            out.status.success(),
            "{what}: kubectl apply --dry-run=server rejected the rendered chart: {}\n{yaml}",
            String::from_utf8_lossy(&out.stderr)
        );
        let applied = String::from_utf8_lossy(&out.stdout);
        assert!(applied.contains("deployment.apps/"), "{what}: {applied}");
        let injection_on = !extra.contains(&"injection.enabled=false");
        assert_eq!(
            applied.contains("mutatingwebhookconfiguration.admissionregistration.k8s.io/"),
            injection_on,
            "{what}: {applied}"
        );
    }
    // The CRD from crds/ too (server-side: it is too big for the last-applied annotation).
    let crd = chart_dir().join("crds").join("gomoduleproxy.yaml");
    cluster.kubectl(&[
        "apply",
        "--server-side",
        "--dry-run=server",
        "--force-conflicts",
        "--field-manager=modfleet-e2e-dry-run",
        "-f",
        crd.to_str().unwrap(),
    ]);
}

/// `yaml` (helm's output) without its cert-manager.io objects, and how many there were.
fn without_cert_manager(yaml: &str) -> (usize, String) {
    let mut docs = vec![String::new()];
    for line in yaml.lines() {
        if line == "---" {
            docs.push(String::new());
        } else {
            let doc = docs.last_mut().unwrap();
            doc.push_str(line);
            doc.push('\n');
        }
    }
    let before = docs.len();
    docs.retain(|d| {
        !d.lines()
            .any(|l| l.starts_with("apiVersion: cert-manager.io/"))
    });
    (before - docs.len(), docs.join("---\n"))
}

#[test]
fn rendered_rbac_is_exactly_what_the_operator_uses() {
    let cluster = Cluster::from_env();
    // Cluster-wide (default): one ClusterRole with the fleet permissions, one for the
    // injection webhook, the Lease Role and the webhook Secret's Role.
    let objs = yaml_to_objects(&cluster, &template("rel", "ops", &[]));
    let lease = "rel-modfleet";
    let (mwc, secret) = ("rel-modfleet-injection", "rel-modfleet-webhook-tls");
    let names = |objs: &[Value], kind: &str| -> BTreeSet<String> {
        objs.iter()
            .filter(|o| kind_of(o) == kind)
            .map(|o| format!("{}/{}", ns_of(o), name_of(o)))
            .collect()
    };
    assert_eq!(
        names(&objs, "ClusterRole"),
        ["/rel-modfleet", "/rel-modfleet-injection"]
            .map(String::from)
            .into()
    );
    assert_eq!(
        granted(find(&objs, "ClusterRole", "rel-modfleet")),
        fleet_perms()
    );
    assert_eq!(
        granted(find(&objs, "ClusterRole", "rel-modfleet-injection")),
        injection_cluster_perms(mwc, true)
    );
    assert_eq!(
        names(&objs, "Role"),
        [
            "ops/rel-modfleet-leader-election",
            "ops/rel-modfleet-injection"
        ]
        .map(String::from)
        .into()
    );
    assert_eq!(
        granted(find(&objs, "Role", "rel-modfleet-leader-election")),
        lease_perms(lease)
    );
    assert_eq!(
        granted(find(&objs, "Role", "rel-modfleet-injection")),
        injection_secret_perms(secret)
    );
    check_bindings(&objs, "ops", "rel-modfleet");

    // Namespaced-only: a Role per watched namespace, nothing cluster-wide.
    let objs = yaml_to_objects(
        &cluster,
        &template("rel", "ops", &["--set", "watchNamespaces={team-a,team-b}"]),
    );
    // Nothing cluster-wide but the injection webhook's ClusterRole: Namespaces and the
    // MutatingWebhookConfiguration are cluster-scoped by nature.
    for kind in ["ClusterRole", "ClusterRoleBinding"] {
        assert_eq!(
            names(&objs, kind),
            ["/rel-modfleet-injection".to_owned()].into(),
            "namespaced mode grants cluster-wide only what the injection webhook needs"
        );
    }
    assert_eq!(
        granted(find(&objs, "ClusterRole", "rel-modfleet-injection")),
        injection_cluster_perms(mwc, true)
    );
    let mut seen = BTreeSet::new();
    for role in objs.iter().filter(|o| kind_of(o) == "Role") {
        let perms = granted(role);
        if ns_of(role) == "ops" {
            let want = if name_of(role) == "rel-modfleet-injection" {
                injection_secret_perms(secret)
            } else {
                lease_perms(lease)
            };
            assert_eq!(perms, want, "Role {}", name_of(role));
        } else {
            assert_eq!(
                perms,
                fleet_perms(),
                "Role {} in {}",
                name_of(role),
                ns_of(role)
            );
        }
        seen.insert(ns_of(role).to_owned());
    }
    assert_eq!(
        seen,
        ["ops", "team-a", "team-b"].map(String::from).into(),
        "Roles exactly in the watched namespaces and the release namespace"
    );
    check_bindings(&objs, "ops", "rel-modfleet");

    // Without leader election there is no Lease Role; without injection, no webhook RBAC
    // (in either mode); with cert-manager, no Secret Role and no right on the
    // MutatingWebhookConfiguration; with rbac.create=false, no RBAC.
    let objs = yaml_to_objects(
        &cluster,
        &template(
            "rel",
            "ops",
            &[
                "--set",
                "leaderElection.enabled=false,injection.enabled=false",
            ],
        ),
    );
    assert!(!objs.iter().any(|o| kind_of(o) == "Role"));
    assert_eq!(
        names(&objs, "ClusterRole"),
        ["/rel-modfleet".to_owned()].into()
    );
    let objs = yaml_to_objects(
        &cluster,
        &template(
            "rel",
            "ops",
            &["--set", "injection.enabled=false,watchNamespaces={team-a}"],
        ),
    );
    assert!(
        !objs
            .iter()
            .any(|o| matches!(kind_of(o), "ClusterRole" | "ClusterRoleBinding")),
        "namespaced mode without injection must not grant anything cluster-wide"
    );
    // (Parsed without kubectl: the local cluster has no cert-manager CRDs.)
    let objs = template_objects(
        "rel",
        "ops",
        &["--set", "injection.certManager.enabled=true"],
    );
    assert_eq!(
        granted(find(&objs, "ClusterRole", "rel-modfleet-injection")),
        injection_cluster_perms(mwc, false)
    );
    assert_eq!(
        names(&objs, "Role"),
        ["ops/rel-modfleet-leader-election".to_owned()].into()
    );
    check_bindings(&objs, "ops", "rel-modfleet");
    let objs = yaml_to_objects(
        &cluster,
        &template("rel", "ops", &["--set", "rbac.create=false"]),
    );
    assert!(
        !objs.iter().any(|o| kind_of(o).contains("Role")),
        "rbac.create=false still rendered RBAC"
    );
}

/// Every binding binds only the chart's ServiceAccount, to a role of the chart.
fn check_bindings(objs: &[Value], ns: &str, sa: &str) {
    let roles: BTreeSet<(String, String)> = objs
        .iter()
        .filter(|o| kind_of(o).ends_with("Role"))
        .map(|o| (kind_of(o).to_owned(), name_of(o).to_owned()))
        .collect();
    let bindings: Vec<_> = objs
        .iter()
        .filter(|o| kind_of(o).ends_with("RoleBinding"))
        .collect();
    assert!(!bindings.is_empty());
    for b in bindings {
        let subjects = b["subjects"].as_array().expect("subjects");
        assert_eq!(subjects.len(), 1, "{b}");
        assert_eq!(subjects[0]["kind"], "ServiceAccount");
        assert_eq!(subjects[0]["name"], sa);
        assert_eq!(subjects[0]["namespace"], ns);
        let role = (
            b["roleRef"]["kind"].as_str().unwrap().to_owned(),
            b["roleRef"]["name"].as_str().unwrap().to_owned(),
        );
        assert!(
            roles.contains(&role),
            "{} binds {role:?}, not a role of the chart",
            name_of(b)
        );
    }
}

#[test]
fn chart_pod_security_is_restricted() {
    let cluster = Cluster::from_env();
    let objs = yaml_to_objects(&cluster, &template("rel", "ops", &[]));
    let dep = objs
        .iter()
        .find(|o| kind_of(o) == "Deployment")
        .expect("a Deployment");
    let pod = &dep["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert_ne!(pod["securityContext"]["runAsUser"], 0);
    for c in pod["containers"].as_array().unwrap() {
        let sc = &c["securityContext"];
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{c}");
        assert_eq!(
            sc["capabilities"]["drop"],
            serde_json::json!(["ALL"]),
            "{c}"
        );
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{c}");
    }
    // The API server's own Pod Security admission agrees: in a namespace that enforces and
    // warns at "restricted", the rendered chart draws no warning (a Deployment whose pod
    // template violates the level is admitted with "would violate PodSecurity").
    let ns = cluster.namespace("chart-psa");
    ns.kubectl(&[
        "label",
        "namespace",
        ns.name(),
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/warn=restricted",
        "--overwrite",
    ]);
    let yaml = template("psa", ns.name(), &["--set", "rbac.create=false"]);
    let out = cluster.try_kubectl_stdin(&["apply", "--dry-run=server", "-f", "-"], &yaml);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("violate PodSecurity"), "{err}");
    // The check has teeth: the same chart with privilege escalation allowed draws it.
    let bad = yaml.replace(
        "allowPrivilegeEscalation: false",
        "allowPrivilegeEscalation: true",
    );
    assert_ne!(bad, yaml);
    let out = cluster.try_kubectl_stdin(&["apply", "--dry-run=server", "-f", "-"], &bad);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("violate PodSecurity"), "{err}");
}

#[test]
fn default_images_match_the_dockerfile() {
    let dockerfile = std::fs::read_to_string(repo_root().join("Dockerfile")).expect("Dockerfile");
    // `# image: NAME` right before `FROM ... AS STAGE`.
    let mut images = std::collections::BTreeMap::new();
    let mut pending: Option<String> = None;
    for line in dockerfile.lines() {
        let l = line.trim();
        if let Some(name) = l.strip_prefix("# image:") {
            pending = Some(name.trim().to_owned());
        } else if l.starts_with("FROM ")
            && let (Some(img), Some(stage)) = (pending.take(), l.split_whitespace().last())
        {
            images.insert(stage.to_owned(), img);
        }
    }
    assert_eq!(
        images.len(),
        2,
        "Dockerfile: `# image:` lines for proxy and operator: {images:?}"
    );
    let cluster = Cluster::from_env();
    let objs = yaml_to_objects(&cluster, &template("rel", "ops", &[]));
    let dep = objs.iter().find(|o| kind_of(o) == "Deployment").unwrap();
    let c = &dep["spec"]["template"]["spec"]["containers"][0];
    let app_version = "0.1.0";
    assert_eq!(
        c["image"].as_str().unwrap(),
        format!("{}:{app_version}", images["operator"])
    );
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(
        args.contains(&format!("--proxy-image={}:{app_version}", images["proxy"]).as_str()),
        "{args:?}"
    );
    // The documented build commands use the same names and the chart's appVersion.
    for (stage, img) in &images {
        let cmd = format!("--target {stage}");
        let line = dockerfile
            .lines()
            .find(|l| l.contains("docker build") && l.contains(&cmd))
            .unwrap_or_else(|| panic!("Dockerfile documents no `docker build {cmd}`"));
        assert!(line.contains(&format!("-t {img}:{app_version}")), "{line}");
        assert!(
            !img.contains('.') && !img.contains(':'),
            "{img}: no registry host in default image names"
        );
    }
    let chart_yaml = std::fs::read_to_string(chart_dir().join("Chart.yaml")).unwrap();
    assert!(chart_yaml.contains(&format!("appVersion: \"{app_version}\"")));
    // Non-root numeric USER in the runtime image.
    assert!(
        dockerfile.lines().any(|l| l.trim() == "USER 65532:65532"),
        "Dockerfile: runtime image must run as USER 65532:65532"
    );
}

/// The value of `--NAME=VALUE` in `args`.
fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    let prefix = format!("--{name}=");
    args.iter().find_map(|a| a.strip_prefix(&prefix))
}

fn condition<'a>(gmp: &'a Value, type_: &str) -> Option<&'a Value> {
    gmp["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

/// helm install, then the operator binary with only the chart ServiceAccount's token
/// reconciles examples/small-cache.yaml to Ready, and handles its deletion.
fn operator_with_chart_identity_reconciles(namespaced: bool) {
    let cluster = Cluster::from_env();
    let ops = cluster.namespace(if namespaced {
        "chart-ops-ns"
    } else {
        "chart-ops-cl"
    });
    let fleet = cluster.namespace("chart-fleet");
    let release = format!("rbac{}", suffix(&ops));
    let fullname = format!("{release}-modfleet");
    let watch = format!("watchNamespaces={{{}}}", fleet.name());
    let mut extra: Vec<&str> = vec![];
    if namespaced {
        extra.extend(["--set", &watch]);
    }
    let rel = Release::install(&ops, &release, &extra);
    assert!(rel.manifest().contains(&format!("name: {fullname}")));
    // NOTES.txt tells the user the next step, in the namespace they can use.
    let target = if namespaced {
        fleet.name()
    } else {
        "NAMESPACE"
    };
    for want in [
        "Next step: create a fleet".to_owned(),
        format!("kubectl apply -n {target} -f gomod.yaml"),
        format!("rollout status deployment/{fullname}"),
    ] {
        assert!(
            rel.output.contains(&want),
            "NOTES lack {want:?}:\n{}",
            rel.output
        );
    }
    ops.wait(
        &format!("deployment/{fullname}"),
        "condition=Available",
        DEFAULT_TIMEOUT,
    );
    cluster.kubectl(&[
        "wait",
        "crd",
        CRD_NAME,
        "--for=condition=Established",
        "--timeout=60s",
    ]);

    // The flags exactly as the chart gives them to the operator container (but
    // --metrics-listen: Operator::start_with picks a free loopback port).
    let dep = ops.get_json(&["deployment", &fullname]);
    let spec = &dep["spec"]["template"]["spec"];
    let sa = spec["serviceAccountName"]
        .as_str()
        .expect("serviceAccountName");
    let mut args: Vec<String> = spec["containers"][0]["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    assert!(
        args.iter().any(|a| a == "--leader-election=true"),
        "{args:?}"
    );
    if namespaced {
        assert!(
            args.contains(&format!("--watch-namespaces={}", fleet.name())),
            "{args:?}"
        );
    } else {
        assert!(
            !args.iter().any(|a| a.starts_with("--watch-namespaces")),
            "{args:?}"
        );
        // This process must not touch GoModuleProxies of other tests running on the same
        // cluster, so it watches the test's namespace; its cluster-wide rights are checked
        // below with `kubectl auth can-i`.
        args.push(format!("--watch-namespaces={}", fleet.name()));
    }

    // What the identity may and may not do, as the API server's authorizer answers.
    let user = format!("system:serviceaccount:{}:{sa}", ops.name());
    let f = Some(fleet.name());
    for (verb, res) in [
        ("watch", "gomoduleproxies.modfleet.dev"),
        ("patch", "gomoduleproxies.modfleet.dev/status"),
        ("create", "deployments.apps"),
        ("delete", "persistentvolumeclaims"),
        ("create", "events.events.k8s.io"),
        // The Secrets a fleet names, read and watched; its own token Secret created and
        // deleted (never patched or updated).
        ("get", "secrets"),
        ("watch", "secrets"),
        ("create", "secrets"),
        ("delete", "secrets"),
        // Peer fill: the members' Role and RoleBinding NAME-peers, which the operator may
        // grant because it holds what they grant (EndpointSlices, read-only) itself.
        ("create", "roles.rbac.authorization.k8s.io"),
        ("create", "rolebindings.rbac.authorization.k8s.io"),
        ("list", "endpointslices.discovery.k8s.io"),
    ] {
        assert!(
            cluster.can_i(&user, verb, res, f),
            "{user} cannot {verb} {res}"
        );
    }
    for (verb, res) in [
        ("patch", "secrets"),
        ("update", "secrets"),
        ("create", "pods"),
        ("delete", "gomoduleproxies.modfleet.dev"),
        ("update", "deployments.apps"),
        // Never more than it holds: no escalate or bind, no writes of EndpointSlices.
        ("escalate", "roles.rbac.authorization.k8s.io"),
        ("bind", "roles.rbac.authorization.k8s.io"),
        ("create", "endpointslices.discovery.k8s.io"),
        ("create", "clusterroles.rbac.authorization.k8s.io"),
        ("delete", "customresourcedefinitions.apiextensions.k8s.io"),
    ] {
        assert!(
            !cluster.can_i(&user, verb, res, f),
            "{user} may {verb} {res}"
        );
    }
    assert_eq!(
        cluster.can_i(&user, "list", "gomoduleproxies.modfleet.dev", None),
        !namespaced,
        "listing GoModuleProxies in all namespaces"
    );
    assert_eq!(
        cluster.can_i(&user, "create", "deployments.apps", Some("default")),
        !namespaced,
        "creating Deployments outside the watched namespaces"
    );

    // The injection webhook (on by default, with the operator's own certificates), in both
    // modes: Namespace labels, and its own MutatingWebhookConfiguration and Secret by name.
    let mwc = format!("{fullname}-injection");
    let secret = format!("{fullname}-webhook-tls");
    assert_eq!(flag(&args, "webhook-certs"), Some("operator"), "{args:?}");
    assert_eq!(
        flag(&args, "webhook-configuration-name"),
        Some(mwc.as_str())
    );
    assert_eq!(flag(&args, "webhook-secret-name"), Some(secret.as_str()));
    ops.kubectl(&["get", "service", &format!("{fullname}-webhook")]);
    let installed = cluster.get_json(&["mutatingwebhookconfiguration", &mwc]);
    assert_eq!(
        installed["webhooks"][0]["clientConfig"]["service"]["namespace"],
        ops.name()
    );
    let mwcs = "mutatingwebhookconfigurations.admissionregistration.k8s.io";
    let mwc_res = format!("{mwcs}/{mwc}");
    let secret_res = format!("secrets/{secret}");
    let o = Some(ops.name());
    for (verb, res, ns) in [
        ("list", "namespaces", None),
        ("watch", "namespaces", None),
        ("get", mwc_res.as_str(), None),
        ("update", mwc_res.as_str(), None),
        ("create", "secrets", o),
        ("get", secret_res.as_str(), o),
        ("update", secret_res.as_str(), o),
        ("delete", secret_res.as_str(), o),
    ] {
        assert!(
            cluster.can_i(&user, verb, res, ns),
            "{user} cannot {verb} {res} in {ns:?}"
        );
    }
    let other_mwc = format!("{mwcs}/someone-elses");
    for (verb, res, ns) in [
        ("get", "namespaces", None),
        ("patch", "namespaces", None),
        ("update", "namespaces", None),
        ("list", mwcs, None),
        ("create", mwcs, None),
        ("patch", mwc_res.as_str(), None),
        ("delete", mwc_res.as_str(), None),
        ("update", other_mwc.as_str(), None),
        (
            "patch",
            "validatingwebhookconfigurations.admissionregistration.k8s.io",
            None,
        ),
        ("patch", secret_res.as_str(), o),
        ("update", "secrets/someone-elses", o),
        ("update", secret_res.as_str(), f),
    ] {
        assert!(
            !cluster.can_i(&user, verb, res, ns),
            "{user} may {verb} {res} in {ns:?}"
        );
    }
    assert_eq!(
        cluster.can_i(&user, "get", "secrets/someone-elses", o),
        !namespaced,
        "reading other Secrets of the release namespace"
    );
    // Every rule the identity holds, as the API server lists them: no wildcard anywhere.
    for ns in [ops.name(), fleet.name()] {
        let list = cluster.kubectl(&["auth", "can-i", "--list", "--as", &user, "--namespace", ns]);
        let resource_rows: Vec<&str> = list
            .lines()
            .skip(1)
            .filter(|l| !l.starts_with(' '))
            .collect();
        for row in &resource_rows {
            assert!(
                !row.contains('*'),
                "{user} in {ns}: wildcard in {row:?}\n{list}"
            );
        }
        let row = |resource: &str| {
            resource_rows
                .iter()
                .find(|r| r.split_whitespace().next() == Some(resource))
                .unwrap_or_else(|| panic!("{user} in {ns}: no rule on {resource}:\n{list}"))
                .to_owned()
        };
        assert!(row("namespaces").ends_with("[list watch]"), "{list}");
        let m = row(mwcs);
        assert!(
            m.contains(&format!("[{mwc}]")) && m.ends_with("[get update]"),
            "{m}"
        );
    }

    // The webhook listens on a free loopback port (the chart's 0.0.0.0:9443 would collide
    // between tests), and the namespace the chart gives by the downward API
    // (MODFLEET_OPERATOR_NAMESPACE: where the webhook's Secret lives) is given as the flag.
    let env = spec["containers"][0]["env"].to_string();
    assert!(
        env.contains(r#""name":"MODFLEET_OPERATOR_NAMESPACE","valueFrom":{"fieldRef":{"fieldPath":"metadata.namespace"}}"#)
            || env.contains(r#""name":"MODFLEET_OPERATOR_NAMESPACE","valueFrom":{"fieldRef":{"apiVersion":"v1","fieldPath":"metadata.namespace"}}"#),
        "{env}"
    );
    let listen = args
        .iter_mut()
        .find(|a| a.starts_with("--webhook-listen="))
        .expect("--webhook-listen");
    *listen = "--webhook-listen=127.0.0.1:0".to_owned();
    args.push(format!("--operator-namespace={}", ops.name()));

    // Run the operator with nothing but the ServiceAccount's token.
    let dir = std::env::temp_dir();
    let kubeconfig = service_account_kubeconfig(
        &cluster,
        ops.name(),
        sa,
        &dir.join(format!("{}-sa-kubeconfig.json", ops.name())),
    );
    let op = Operator::start_with(&kubeconfig, "modfleet-e2e-local-operator", &args);

    // Every fleet example: one member, three members with a PDB, private modules with
    // retainPolicy Delete, metrics (its ServiceMonitor applied by us, as a user would),
    // access control (its TLS Secret made here, as cert-manager would; the operator creates
    // its own token Secret with the chart's permissions).
    let examples: &[(&str, &str, i64, bool)] = &[
        // (file, GoModuleProxy name, members, caches retained on delete)
        ("small-cache.yaml", "gomod", 1, true),
        ("ha-fleet.yaml", "gomod-ha", 3, true),
        ("private-modules.yaml", "gomod-private", 2, false),
        ("metrics.yaml", "gomod-metrics", 2, true),
        ("access-control.yaml", "gomod-access", 2, false),
    ];
    fleet.apply(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: gomod-access-tls\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: \"-----BEGIN CERTIFICATE-----\"\n  tls.key: \"-----BEGIN PRIVATE KEY-----\"\n",
    );
    for (file, _, _, _) in examples {
        let text = std::fs::read_to_string(repo_root().join("examples").join(file))
            .unwrap_or_else(|e| panic!("examples/{file}: {e}"));
        fleet.apply(&text);
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    for (file, name, members, _) in examples {
        let ready = loop {
            op.assert_running();
            let g = fleet.get_json(&["gmp", name]);
            let gen_ok = g["status"]["observedGeneration"] == g["metadata"]["generation"];
            if gen_ok && condition(&g, "Ready").is_some_and(|c| c["status"] == "True") {
                break g;
            }
            let forbidden = condition(&g, "Degraded").is_some_and(|c| {
                c["status"] == "True"
                    && c["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("forbidden"))
            });
            if forbidden || Instant::now() > deadline {
                panic!(
                    "GoModuleProxy {name} (examples/{file}) did not become Ready with the chart's permissions: {}\n--- operator log ({}):\n{}\n{}",
                    g["status"],
                    op.log.display(),
                    op.logs(),
                    fleet.diagnostics(&format!("gmp/{name}"))
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        };
        assert_eq!(ready["status"]["readyMembers"], *members, "{name}");
        // Argo CD's view of the real object, through the shipped health check.
        let (health, message) = argocd::argocd_health(&ready);
        assert_eq!(health, "Healthy", "{name}: {message}");
        let endpoint = if ready["spec"]["tls"].is_null() {
            format!("http://{name}.{}.svc:80", fleet.name())
        } else {
            format!("https://{name}.{}.svc:443", fleet.name())
        };
        assert_eq!(ready["status"]["endpoint"], endpoint);
        assert_eq!(condition(&ready, "Degraded").unwrap()["status"], "False");
        // It could list the fleet's pods to ask them about upstream health (nothing listens
        // on the kwok pods' IPs, so the answer itself is Unknown).
        let upstreams = condition(&ready, "UpstreamsHealthy").expect("UpstreamsHealthy");
        assert_ne!(upstreams["reason"], "PodListFailed", "{name}: {upstreams}");
        // Its children, created by this identity.
        let mut want = vec![
            format!("service/{name}"),
            format!("service/{name}-peers"),
            format!("configmap/{name}-config"),
        ];
        for i in 0..*members {
            want.push(format!("deployment/{name}-{i}"));
            want.push(format!("pvc/{name}-cache-{i}"));
        }
        if !ready["spec"]["access"].is_null() {
            want.push(format!("secret/{name}-operator-token"));
        }
        for obj in &want {
            let out = fleet.try_kubectl(&["get", obj]);
            assert!(
                out.status.success(),
                "{obj} missing: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let selector = format!("app.kubernetes.io/instance={name}");
        let count = |kind: &str| {
            fleet.get_json(&[kind, "-l", &selector])["items"]
                .as_array()
                .map_or(0, Vec::len)
        };
        assert_eq!(count("networkpolicy"), 1, "{name}: NetworkPolicy");
        assert_eq!(
            count("poddisruptionbudget"),
            usize::from(*members > 1),
            "{name}: a PDB exactly for multi-member fleets"
        );
    }
    // Leader election went through the chart's Lease Role.
    let lease = ops.get_json(&["lease", &fullname]);
    assert_eq!(
        lease["spec"]["holderIdentity"],
        "modfleet-e2e-local-operator"
    );
    // The fleets' Events were published (events.k8s.io create).
    let events = fleet.get_json(&["events.events.k8s.io"]);
    assert!(
        events["items"].as_array().is_some_and(|a| a
            .iter()
            .any(|e| e["reportingController"] == "modfleet-operator")),
        "no Events from the operator: {events}"
    );
    // The injection webhook's certificates, made with the chart's permissions: its Secret
    // in the release namespace (create, then get/update by name) and the caBundle of the
    // chart's MutatingWebhookConfiguration (get/update by name).
    let secret = flag(&args, "webhook-secret-name").expect("--webhook-secret-name");
    let mwc = flag(&args, "webhook-configuration-name").expect("--webhook-configuration-name");
    ops.eventually(
        "the webhook's Secret and caBundle made under the chart's ServiceAccount",
        Duration::from_secs(60),
        || {
            let s = ops.try_kubectl(&["get", "secret", secret, "-o", "json"]);
            let s: Value = serde_json::from_slice(&s.stdout).ok()?;
            let m = cluster.get_json(&["mutatingwebhookconfiguration", mwc]);
            let bundle = m["webhooks"][0]["clientConfig"]["caBundle"].as_str()?;
            (s["data"]["tls.crt"].is_string() && s["data"]["ca.crt"].as_str() == Some(bundle))
                .then_some(())
        },
    );

    // Access control off: the operator deletes its own token Secret (delete secrets).
    fleet.kubectl(&[
        "patch",
        "gmp",
        "gomod-access",
        "--type=json",
        "-p",
        r#"[{"op": "remove", "path": "/spec/access"}]"#,
    ]);
    fleet.eventually(
        "the operator's token Secret deleted once spec.access is gone",
        Duration::from_secs(120),
        || {
            let out = fleet.try_kubectl(&["get", "secret", "gomod-access-operator-token"]);
            (!out.status.success()).then_some(())
        },
    );

    // Deletion through the finalizer: Retain keeps the caches (released from their owner),
    // Delete removes them.
    for (_, name, members, retained) in examples {
        fleet.kubectl(&["delete", "gmp", name, "--wait=true", "--timeout=120s"]);
        for i in 0..*members {
            let pvc = format!("{name}-cache-{i}");
            if *retained {
                let p = fleet.get_json(&["pvc", &pvc]);
                assert!(
                    p["metadata"]["ownerReferences"]
                        .as_array()
                        .is_none_or(|refs| refs.iter().all(|r| r["kind"] != "GoModuleProxy")),
                    "retained cache PVC {pvc} still owned by the deleted GoModuleProxy: {p}"
                );
            } else {
                fleet.eventually(
                    &format!("PVC {pvc} deleted (retainPolicy: Delete)"),
                    Duration::from_secs(60),
                    || {
                        let out = fleet.try_kubectl(&["get", "pvc", &pvc, "-o", "json"]);
                        let gone = !out.status.success()
                            || serde_json::from_slice::<Value>(&out.stdout)
                                .is_ok_and(|p| p["metadata"]["deletionTimestamp"].is_string());
                        gone.then_some(())
                    },
                );
            }
        }
    }

    op.assert_running();
    assert!(op.stop(), "operator did not stop on SIGTERM");
    let text = op.logs();
    let lower = text.to_lowercase();
    assert!(
        !lower.contains("forbidden") && !lower.contains("\"code\":403"),
        "the operator was refused something with the chart's permissions:\n{text}"
    );
    drop(rel);
}

#[test]
fn helm_install_namespaced_then_operator_with_only_its_service_account_reconciles_to_ready() {
    operator_with_chart_identity_reconciles(true);
}

#[test]
fn helm_install_cluster_wide_then_operator_with_only_its_service_account_reconciles_to_ready() {
    operator_with_chart_identity_reconciles(false);
}

/// `helm upgrade` switches a release from cluster-wide to namespaced-only RBAC (the
/// ClusterRole goes, Roles come) and `helm uninstall` removes everything of the release but
/// keeps the CRD, as docs/install.md says.
#[test]
fn helm_upgrade_to_namespaced_mode_and_uninstall_keep_the_crd() {
    let cluster = Cluster::from_env();
    let ops = cluster.namespace("chart-upgrade");
    let team = cluster.namespace("chart-upgrade-team");
    let release = format!("up{}", suffix(&ops));
    let fullname = format!("{release}-modfleet");
    let rel = Release::install(&ops, &release, &[]);
    cluster.kubectl(&["get", "clusterrole", &fullname]);
    cluster.kubectl(&["get", "clusterrolebinding", &fullname]);
    // The operator fills the webhook's caBundle (here by hand: this test runs no operator).
    // The chart leaves the field out, so an upgrade must keep it.
    let mwc = format!("{fullname}-injection");
    let ca_bundle = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==";
    cluster.kubectl(&[
        "patch",
        "mutatingwebhookconfiguration",
        &mwc,
        "--type=json",
        "-p",
        &format!(
            r#"[{{"op": "add", "path": "/webhooks/0/clientConfig/caBundle", "value": "{ca_bundle}"}}]"#
        ),
    ]);

    let watch = format!("watchNamespaces={{{}}}", team.name());
    rel.upgrade(&[&watch, "replicaCount=2"]);
    assert!(
        !cluster
            .try_kubectl(&["get", "clusterrole", &fullname])
            .status
            .success(),
        "the ClusterRole survived the switch to namespaced mode"
    );
    team.kubectl(&["get", "role", &fullname]);
    team.kubectl(&["get", "rolebinding", &fullname]);
    let dep = ops.get_json(&["deployment", &fullname]);
    assert_eq!(dep["spec"]["replicas"], 2);
    let args = dep["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
    assert!(
        args.contains(&format!("--watch-namespaces={}", team.name())),
        "{args}"
    );
    let hook = &cluster.get_json(&["mutatingwebhookconfiguration", &mwc])["webhooks"][0];
    assert_eq!(
        hook["clientConfig"]["caBundle"], ca_bundle,
        "helm upgrade dropped the operator's caBundle"
    );
    cluster.kubectl(&["get", "clusterrole", &mwc]);

    // injection.enabled=false takes the webhook away: configuration, Service, port, RBAC.
    rel.upgrade(&["injection.enabled=false"]);
    for (ns, obj) in [
        (None, format!("mutatingwebhookconfiguration/{mwc}")),
        (None, format!("clusterrole/{mwc}")),
        (None, format!("clusterrolebinding/{mwc}")),
        (Some(ops.name()), format!("service/{fullname}-webhook")),
        (Some(ops.name()), format!("role/{mwc}")),
    ] {
        let mut args = vec!["get", obj.as_str()];
        if let Some(ns) = ns {
            args.extend(["--namespace", ns]);
        }
        let out = cluster.try_kubectl(&args);
        assert!(
            !out.status.success(),
            "{obj} survived injection.enabled=false"
        );
    }
    let dep = ops.get_json(&["deployment", &fullname]);
    let container = dep["spec"]["template"]["spec"]["containers"][0].to_string();
    assert!(
        !container.contains("--webhook") && !container.contains("\"webhook\""),
        "{container}"
    );

    drop(rel); // helm uninstall --wait
    for (ns, obj) in [
        (ops.name(), format!("deployment/{fullname}")),
        (ops.name(), format!("serviceaccount/{fullname}")),
        (ops.name(), format!("role/{fullname}-leader-election")),
        (team.name(), format!("role/{fullname}")),
        (team.name(), format!("rolebinding/{fullname}")),
    ] {
        let out = cluster.try_kubectl(&["get", "--namespace", ns, &obj]);
        assert!(
            !out.status.success(),
            "{obj} in {ns} survived helm uninstall"
        );
    }
    cluster.kubectl(&["get", "crd", CRD_NAME]);
}
