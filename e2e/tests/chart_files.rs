//! The Helm chart's files, checked without a cluster: strict lint of every values file, the
//! schema's refusals and their messages, the tracing values becoming the operator's OTEL_*
//! environment, and its CRD identical to `crds/` (crdgen's output). Needs `helm` (`MODFLEET_HELM`,
//! or on PATH: `hack/cluster/build.sh helm` fetches the pinned one); without it every test fails.

use modfleet_e2e::helm::{self, chart_dir, schema_failures, template, template_objects, try_helm};
use modfleet_testkit::workspace::workspace_root as repo_root;
use serde_json::{Value, json};

#[test]
fn chart_lints_strictly_with_defaults_and_every_ci_values_file() {
    let chart = chart_dir();
    let chart = chart.to_str().unwrap();
    helm::helm(None, &["lint", "--strict", chart]);
    let mut files: Vec<_> = std::fs::read_dir(chart_dir().join("ci"))
        .expect("charts/modfleet/ci exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no values files in charts/modfleet/ci");
    for f in files {
        helm::helm(
            None,
            &["lint", "--strict", chart, "-f", f.to_str().unwrap()],
        );
    }
}

#[test]
fn chart_crd_is_identical_to_the_top_level_crd() {
    let top = repo_root().join("crds").join("gomoduleproxy.yaml");
    let chart = chart_dir().join("crds").join("gomoduleproxy.yaml");
    let a = std::fs::read(&top).unwrap_or_else(|e| panic!("{}: {e}", top.display()));
    let b = std::fs::read(&chart).unwrap_or_else(|e| panic!("{}: {e}", chart.display()));
    assert!(
        a == b,
        "charts/modfleet/crds/gomoduleproxy.yaml differs from crds/gomoduleproxy.yaml: \
         run `cp crds/gomoduleproxy.yaml charts/modfleet/crds/` (crdgen writes the top-level one)"
    );
}

#[test]
fn schema_rejects_wrong_values_with_its_message() {
    // (--set value, where the schema's message points)
    let cases: &[(&str, &str)] = &[
        (
            "logFormat=xml",
            "at '/logFormat': value must be one of 'json', 'text'",
        ),
        ("replicaCount=-1", "at '/replicaCount'"),
        ("replicaCount=many", "at '/replicaCount'"),
        ("metricsPort=80", "at '/metricsPort'"),
        ("image.pullPolicy=Sometimes", "at '/image/pullPolicy'"),
        ("image.digest=latest", "at '/image/digest'"),
        ("image.repository=", "at '/image/repository'"),
        ("watchNamespaces[0]=Team_A", "at '/watchNamespaces/0'"),
        (
            "leaderElection.leaseDuration=forever",
            "at '/leaderElection/leaseDuration'",
        ),
        ("leaderElection.enabled=yes", "at '/leaderElection/enabled'"),
        ("tracing.protocol=http", "at '/tracing/protocol'"),
        (
            "tracing.otlpEndpoint=otel:4317",
            "at '/tracing/otlpEndpoint'",
        ),
        ("tracing.samplingRatio=2", "at '/tracing/samplingRatio'"),
        ("exampleFleet.name=Gomod", "at '/exampleFleet/name'"),
        (
            "monitoring.fleets.podMonitor.interval=often",
            "at '/monitoring/fleets/podMonitor/interval'",
        ),
        (
            "replicaCont=2",
            "additional properties 'replicaCont' not allowed",
        ),
        (
            "rbac.create=true,rbac.extra=1",
            "additional properties 'extra' not allowed",
        ),
        // The API server takes 1 to 30 seconds.
        (
            "injection.timeoutSeconds=0",
            "at '/injection/timeoutSeconds'",
        ),
        (
            "injection.timeoutSeconds=31",
            "at '/injection/timeoutSeconds'",
        ),
        (
            "injection.timeoutSeconds=5s",
            "at '/injection/timeoutSeconds'",
        ),
        ("injection.port=443", "at '/injection/port'"),
        ("injection.enabled=maybe", "at '/injection/enabled'"),
        (
            "injection.fleetNamespaces[0]=Team_A",
            "at '/injection/fleetNamespaces/0'",
        ),
        (
            "injection.certManager.enabled=yes",
            "at '/injection/certManager/enabled'",
        ),
        (
            "injection.namespaceSelector.matchExpressions[0].key=a,injection.namespaceSelector.matchExpressions[0].operator=Equals",
            "at '/injection/namespaceSelector/matchExpressions/0/operator'",
        ),
        (
            "injection.enabled=true,injection.url=x",
            "additional properties 'url' not allowed",
        ),
    ];
    let mut failures = schema_failures(cases);
    // Several replicas without leader election would all reconcile.
    let chart = chart_dir();
    let out = try_helm(
        None,
        &[
            "template",
            "t",
            chart.to_str().unwrap(),
            "--set",
            "replicaCount=3,leaderElection.enabled=false",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    if out.status.success() || !err.contains("at '/leaderElection/enabled': value must be true") {
        failures.push(format!(
            "replicaCount=3 without leader election: expected a schema error, got: {err}"
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // And a valid variation renders.
    template("t", "default", &["--set", "replicaCount=2,logFormat=text"]);
}

#[test]
fn tracing_values_become_the_operators_otel_environment() {
    let off = template("t", "default", &[]);
    assert!(!off.contains("OTEL_"), "no tracing by default:\n{off}");
    let on = template(
        "t",
        "default",
        &[
            "--set",
            "tracing.otlpEndpoint=http://otel.obs:4318,tracing.protocol=http/protobuf",
            "--set",
            "tracing.samplingRatio=0.25",
            "--set-string",
            "tracing.headers=x-api-key=abc",
        ],
    );
    for (name, value) in [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://otel.obs:4318"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
        ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
        ("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=abc"),
    ] {
        let rendered = on
            .lines()
            .skip_while(|l| l.trim() != format!("- name: {name}"))
            .nth(1)
            .map(|l| {
                l.trim()
                    .trim_start_matches("value:")
                    .trim()
                    .trim_matches('"')
            });
        assert_eq!(rendered, Some(value), "{name} in:\n{on}");
    }
}

fn find<'a>(objs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objs.iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} rendered"))
}

fn of_kind<'a>(objs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objs.iter().filter(|o| o["kind"] == kind).collect()
}

/// The operator container's args.
fn operator_args(objs: &[Value]) -> Vec<String> {
    of_kind(objs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect()
}

/// The value of `--NAME=VALUE` in `args`.
fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    let prefix = format!("--{name}=");
    args.iter().find_map(|a| a.strip_prefix(&prefix))
}

/// `modfleet_operator::webhook::PATH`, read from its source (the e2e crate does not build the
/// operator crate): the path the operator serves and the chart's webhook posts to.
fn operator_webhook_path() -> String {
    let file = repo_root().join("operator/src/webhook/mod.rs");
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let line = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("pub const PATH: &str = "))
        .unwrap_or_else(|| panic!("{}: no `pub const PATH: &str = \"...\";`", file.display()));
    line.trim_end_matches(';').trim_matches('"').to_owned()
}

/// The selector requirements that keep kube-system, the release namespace and opted-out
/// namespaces and Pods from ever reaching the webhook.
const OPT_OUT: &str = "modfleet.dev/inject";

#[test]
fn injection_webhook_is_rendered_for_the_operators_flags() {
    let objs = template_objects("rel", "ops", &[]);
    let mwc = find(
        &objs,
        "MutatingWebhookConfiguration",
        "rel-modfleet-injection",
    );
    let hooks = mwc["webhooks"].as_array().expect("webhooks");
    assert_eq!(hooks.len(), 1, "{mwc}");
    let hook = &hooks[0];
    assert_eq!(hook["name"], "pods.injection.modfleet.dev");
    assert_eq!(hook["failurePolicy"], "Ignore", "an outage must admit Pods");
    assert_eq!(hook["sideEffects"], "None");
    assert_eq!(hook["admissionReviewVersions"], json!(["v1"]));
    assert_eq!(hook["timeoutSeconds"], 5);
    assert_eq!(hook["matchPolicy"], "Equivalent");
    assert_eq!(hook["reinvocationPolicy"], "IfNeeded");
    assert_eq!(
        hook["rules"],
        json!([{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                "resources": ["pods"], "scope": "Namespaced"}])
    );
    let opted_out =
        json!({"key": OPT_OUT, "operator": "NotIn", "values": ["false", "False", "FALSE"]});
    assert_eq!(
        hook["namespaceSelector"],
        json!({"matchExpressions": [
            {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system", "ops"]},
            opted_out,
        ]})
    );
    assert_eq!(
        hook["objectSelector"],
        json!({"matchExpressions": [opted_out]})
    );
    // No caBundle: the operator owns it (and a Helm upgrade leaves it alone); no cert-manager.
    assert_eq!(
        hook["clientConfig"],
        json!({"service": {"name": "rel-modfleet-webhook", "namespace": "ops", "port": 443,
                           "path": operator_webhook_path()}})
    );
    assert!(mwc["metadata"]["annotations"].is_null(), "{mwc}");

    // The Service reaches the operator pods' webhook port.
    let svc = find(&objs, "Service", "rel-modfleet-webhook");
    assert_eq!(
        svc["spec"]["ports"],
        json!([{"name": "webhook", "port": 443, "targetPort": "webhook", "protocol": "TCP"}])
    );
    let dep = &of_kind(&objs, "Deployment")[0];
    assert_eq!(
        svc["spec"]["selector"],
        dep["spec"]["selector"]["matchLabels"]
    );
    let ports = &dep["spec"]["template"]["spec"]["containers"][0]["ports"];
    assert!(
        ports
            .as_array()
            .unwrap()
            .contains(&json!({"name": "webhook", "containerPort": 9443, "protocol": "TCP"})),
        "{ports}"
    );

    // The flags name exactly these objects, and the Secret the RBAC lets the operator write.
    let args = operator_args(&objs);
    assert_eq!(
        flag(&args, "webhook-listen"),
        Some("0.0.0.0:9443"),
        "{args:?}"
    );
    assert_eq!(flag(&args, "webhook-certs"), Some("operator"), "{args:?}");
    assert_eq!(
        flag(&args, "webhook-configuration-name"),
        Some("rel-modfleet-injection")
    );
    assert_eq!(
        flag(&args, "webhook-hosts"),
        Some("rel-modfleet-webhook.ops.svc,rel-modfleet-webhook.ops.svc.cluster.local")
    );
    assert_eq!(
        flag(&args, "webhook-secret-name"),
        Some("rel-modfleet-webhook-tls")
    );
    assert_eq!(flag(&args, "webhook-cert-dir"), None);
    // Default: only fleets in the operator's namespace (--operator-namespace) inject anywhere.
    assert_eq!(flag(&args, "injection-fleet-namespaces"), None, "{args:?}");
    let env = &dep["spec"]["template"]["spec"]["containers"][0]["env"];
    assert!(
        env.as_array()
            .unwrap()
            .contains(&json!({"name": "MODFLEET_OPERATOR_NAMESPACE",
            "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}})),
        "the webhook's Secret lives in --operator-namespace: {env}"
    );
    let role = find(&objs, "Role", "rel-modfleet-injection");
    assert!(
        role["rules"]
            .to_string()
            .contains("\"rel-modfleet-webhook-tls\""),
        "{role}"
    );
    let cluster_role = find(&objs, "ClusterRole", "rel-modfleet-injection");
    assert!(
        cluster_role["rules"]
            .to_string()
            .contains("\"rel-modfleet-injection\""),
        "{cluster_role}"
    );

    // The values reach the objects.
    let objs = template_objects(
        "rel",
        "ops",
        &[
            "--set",
            "injection.port=10443,injection.timeoutSeconds=12",
            "--set",
            "injection.fleetNamespaces={ops,platform}",
            "--set-json",
            r#"injection.namespaceSelector={"matchLabels":{"ci":"true"},"matchExpressions":[{"key":"tier","operator":"In","values":["build"]}]}"#,
        ],
    );
    let args = operator_args(&objs);
    assert_eq!(flag(&args, "webhook-listen"), Some("0.0.0.0:10443"));
    assert_eq!(
        flag(&args, "injection-fleet-namespaces"),
        Some("ops,platform")
    );
    let dep = &of_kind(&objs, "Deployment")[0];
    assert!(
        dep["spec"]["template"]["spec"]["containers"][0]["ports"]
            .to_string()
            .contains("10443")
    );
    let hook = &find(
        &objs,
        "MutatingWebhookConfiguration",
        "rel-modfleet-injection",
    )["webhooks"][0];
    assert_eq!(hook["timeoutSeconds"], 12);
    assert_eq!(hook["clientConfig"]["service"]["port"], 443);
    let sel = &hook["namespaceSelector"];
    assert_eq!(sel["matchLabels"], json!({"ci": "true"}));
    let exprs = sel["matchExpressions"].as_array().unwrap();
    assert_eq!(exprs.len(), 3, "the built-in exclusions stay: {sel}");
    assert_eq!(
        exprs[2],
        json!({"key": "tier", "operator": "In", "values": ["build"]})
    );
}

#[test]
fn injection_disabled_renders_no_webhook_objects_and_no_flag() {
    for extra in [
        &["--set", "injection.enabled=false"][..],
        &[
            "--set",
            "injection.enabled=false,injection.certManager.enabled=true",
        ][..],
        &["--set", "injection.enabled=false,watchNamespaces={a}"][..],
    ] {
        let yaml = template("rel", "ops", extra);
        for absent in [
            "MutatingWebhookConfiguration",
            "cert-manager.io",
            "--webhook",
            "--injection",
            "-injection",
            "9443",
            "mutate-pods",
            "namespaces\"]",
        ] {
            assert!(
                !yaml.contains(absent),
                "{extra:?}: {absent:?} rendered:\n{yaml}"
            );
        }
        let objs = template_objects("rel", "ops", extra);
        assert!(
            !objs.iter().any(|o| o["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.contains("webhook"))),
            "{extra:?}: a webhook object"
        );
    }
    // And it is on by default.
    assert!(template("rel", "ops", &[]).contains("MutatingWebhookConfiguration"));
}

#[test]
fn injection_with_cert_manager_renders_the_ca_chain_and_the_files_flags() {
    let objs = template_objects(
        "rel",
        "ops",
        &["--set", "injection.certManager.enabled=true"],
    );
    // selfsigned Issuer -> CA Certificate -> CA Issuer -> serving Certificate.
    let issuers = of_kind(&objs, "Issuer");
    let certs = of_kind(&objs, "Certificate");
    assert_eq!((issuers.len(), certs.len()), (2, 2));
    for o in issuers.iter().chain(&certs) {
        assert_eq!(o["apiVersion"], "cert-manager.io/v1");
        assert_eq!(o["metadata"]["namespace"], "ops");
    }
    let selfsigned = find(&objs, "Issuer", "rel-modfleet-webhook-selfsigned");
    assert_eq!(selfsigned["spec"], json!({"selfSigned": {}}));
    let ca = find(&objs, "Certificate", "rel-modfleet-webhook-ca");
    assert_eq!(ca["spec"]["isCA"], true);
    assert_eq!(
        ca["spec"]["issuerRef"],
        json!({"group": "cert-manager.io", "kind": "Issuer", "name": "rel-modfleet-webhook-selfsigned"})
    );
    let ca_issuer = find(&objs, "Issuer", "rel-modfleet-webhook-ca");
    assert_eq!(
        ca_issuer["spec"]["ca"]["secretName"],
        ca["spec"]["secretName"]
    );
    let serving = find(&objs, "Certificate", "rel-modfleet-webhook");
    assert_eq!(
        serving["spec"]["issuerRef"],
        json!({"group": "cert-manager.io", "kind": "Issuer", "name": "rel-modfleet-webhook-ca"})
    );
    assert!(serving["spec"]["isCA"].is_null());
    assert_eq!(
        serving["spec"]["dnsNames"],
        json!([
            "rel-modfleet-webhook.ops.svc",
            "rel-modfleet-webhook.ops.svc.cluster.local"
        ])
    );
    assert!(
        serving["spec"]["usages"]
            .as_array()
            .unwrap()
            .contains(&json!("server auth"))
    );

    // The CA injector fills the caBundle from the serving Certificate.
    let mwc = find(
        &objs,
        "MutatingWebhookConfiguration",
        "rel-modfleet-injection",
    );
    assert_eq!(
        mwc["metadata"]["annotations"],
        json!({"cert-manager.io/inject-ca-from": "ops/rel-modfleet-webhook"})
    );
    assert!(mwc["webhooks"][0]["clientConfig"]["caBundle"].is_null());

    // Its Secret is mounted where --webhook-cert-dir points.
    let args = operator_args(&objs);
    assert_eq!(flag(&args, "webhook-certs"), Some("files"), "{args:?}");
    let dir = flag(&args, "webhook-cert-dir").expect("--webhook-cert-dir");
    for gone in [
        "webhook-secret-name",
        "webhook-configuration-name",
        "webhook-hosts",
    ] {
        assert_eq!(
            flag(&args, gone),
            None,
            "--{gone} with cert-manager: {args:?}"
        );
    }
    let pod = &of_kind(&objs, "Deployment")[0]["spec"]["template"]["spec"];
    assert_eq!(
        pod["volumes"],
        json!([{"name": "webhook-tls", "secret": {"secretName": serving["spec"]["secretName"]}}])
    );
    assert_eq!(
        pod["containers"][0]["volumeMounts"],
        json!([{"name": "webhook-tls", "mountPath": dir, "readOnly": true}])
    );
    // Nothing to write: no Secret Role, no right on the MutatingWebhookConfiguration.
    assert!(
        !objs
            .iter()
            .any(|o| o["kind"] == "Role" && o["metadata"]["name"] == "rel-modfleet-injection")
    );
    let cluster_role = find(&objs, "ClusterRole", "rel-modfleet-injection");
    assert_eq!(
        cluster_role["rules"],
        json!([{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]}])
    );
}

/// In namespaced-only mode the operator sees fleets only in watched namespaces: a fleet
/// namespace it cannot see is refused with the fix.
#[test]
fn injection_fleet_namespaces_must_be_watched_in_namespaced_mode() {
    let chart = chart_dir();
    let out = try_helm(
        None,
        &[
            "template",
            "t",
            chart.to_str().unwrap(),
            "--set",
            "watchNamespaces={team-a}",
            "--set",
            "injection.fleetNamespaces={team-b}",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "an unwatched fleet namespace was accepted"
    );
    assert!(
        err.contains("injection.fleetNamespaces names team-b, which is not among watchNamespaces"),
        "{err}"
    );
    let args = operator_args(&template_objects(
        "t",
        "ops",
        &[
            "--set",
            "watchNamespaces={team-a,team-b}",
            "--set",
            "injection.fleetNamespaces={team-b}",
        ],
    ));
    assert_eq!(flag(&args, "injection-fleet-namespaces"), Some("team-b"));
}
