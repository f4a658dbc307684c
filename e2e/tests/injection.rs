//! e2e: the injection webhook called by the local cluster's real kube-apiserver. A real
//! operator serves it on a loopback HTTPS port with the CA and certificate it made itself; a
//! MutatingWebhookConfiguration per test (its `clientConfig.url` to that port, the chart's
//! settings otherwise: `failurePolicy: Ignore`, `sideEffects: None`, a short timeout) is
//! scoped by a namespace label to the test's own namespaces, so parallel tests never meet it.
//! The operator fills its `caBundle`.
//!
//! Pods made directly, by a Deployment and by a Job in a selected namespace get the fleet's
//! settings (and the go command, run with the container's environment, names the fleet); an
//! unselected namespace, an opted-out Pod and a container with its own GOPROXY are left
//! alone; a second fleet selecting the same namespace reports the conflict; with the operator
//! stopped Pods are admitted unchanged. The certificates are renewed under a stream of Pod
//! creations, none of which the API server fails to get patched.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use modfleet_e2e::injection::{
    self, ANNOTATION, WEBHOOK_PATH, WebhookConfiguration, await_injection, dry_run, env,
    go_container, pod, scoped_namespace,
};
use modfleet_e2e::operator::{Operator, install_crd};
use modfleet_e2e::{Cluster, DEFAULT_TIMEOUT, Namespace, condition};
use modfleet_testkit::workspace::free_port;
use serde_json::{Value, json};

/// The operator with its webhook on `port`, managing the fleets of `fleets` (which may inject
/// anywhere), its own namespace `home`.
fn operator(
    fleets: &Namespace,
    home: &Namespace,
    port: u16,
    mwc: &str,
    extra: &[&str],
) -> Operator {
    let mut args = injection::operator_args(fleets, home, port, mwc);
    args.extend(extra.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Operator::start(fleets, "injection", &args)
}

/// `go env GOPROXY GONOSUMDB` in the container's environment (and nothing from this
/// machine's Go settings but PATH).
fn go_env(env: &BTreeMap<String, String>) -> Vec<String> {
    let dir = tempfile_dir();
    let out = modfleet_testkit::go::isolated(&dir)
        .envs(env)
        .args(["env", "GOPROXY", "GONOSUMDB"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run the go command (install Go, put it on PATH): {e}"));
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// `curl` POSTs `body` to `url` trusting `ca`; the status code and the body.
fn curl_post(ca: &std::path::Path, url: &str, body: &[u8]) -> (u16, String) {
    use std::io::Write as _;
    let mut child = Command::new("curl")
        .args(["-sS", "--max-time", "20", "--cacert"])
        .arg(ca)
        .args([
            "-H",
            "content-type: application/json",
            "--data-binary",
            "@-",
        ])
        .args(["-w", "\n%{http_code}", url])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run curl (apt-get install curl): {e}"));
    // A refused body may close the connection before all of it is read.
    let _ = child.stdin.take().unwrap().write_all(body);
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    let code = code
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("curl: {text} {}", String::from_utf8_lossy(&out.stderr)));
    (code, body.to_owned())
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "modfleet-e2e-goenv-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The Pods of `ns` whose names start with `prefix`, once there is one.
fn pods_named(ns: &Namespace, prefix: &str) -> Value {
    ns.eventually(&format!("a Pod {prefix}*"), DEFAULT_TIMEOUT, || {
        let pods = ns.get_json(&["pods"]);
        pods["items"]
            .as_array()?
            .iter()
            .find(|p| {
                p["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with(prefix))
            })
            .cloned()
    })
}

#[test]
fn build_pods_get_the_fleet_and_nothing_else_is_touched() {
    let cluster = Cluster::from_env();
    install_crd(&cluster);
    let scope = format!("inject-{}-{}", std::process::id(), free_port());
    let fleets = cluster.namespace("inj-fleets");
    let home = cluster.namespace("inj-operator");
    let builds = scoped_namespace(&cluster, "inj-builds", &scope, &["team=builds"]);
    let web = scoped_namespace(&cluster, "inj-web", &scope, &["team=web"]);
    let port = free_port();
    let mwc = WebhookConfiguration::create(&cluster, &format!("e2e-{scope}"), port, &scope);
    // Health polls every 2 s: the fleet reconciles (and refreshes status.injection) as often.
    let op = operator(
        &fleets,
        &home,
        port,
        &mwc.name,
        &["--health-poll-interval", "2s"],
    );

    fleets.apply(
        "apiVersion: modfleet.dev/v1alpha1\nkind: GoModuleProxy\nmetadata:\n  name: gomod\nspec:\n  upstreams: [{url: 'https://goproxy.example.com'}]\n  privateModules: [{pattern: 'git.corp.example.com/*'}]\n  injection:\n    namespaceSelector: {matchLabels: {team: builds}}\n    fallback: {url: 'https://mirror.example.com'}\n",
    );
    let want_goproxy = format!(
        "http://gomod.{}.svc:80,https://mirror.example.com",
        fleets.name()
    );
    // The operator fills the caBundle with its own CA.
    fleets.eventually("the operator to fill the caBundle", DEFAULT_TIMEOUT, || {
        mwc.ca_bundle().contains("BEGIN CERTIFICATE").then_some(())
    });
    await_injection(&builds);

    // A Pod made directly.
    builds.apply(&pod(
        "direct",
        json!({"app": "ci"}),
        json!([go_container("go")]),
    ));
    let direct = builds.get_json(&["pod", "direct"]);
    let vars = env(&direct, 0);
    assert_eq!(vars["GOPROXY"], want_goproxy, "{direct}");
    assert_eq!(vars["GONOSUMDB"], "git.corp.example.com/*");
    assert_eq!(
        go_env(&vars),
        [want_goproxy.clone(), "git.corp.example.com/*".into()]
    );
    let record: Value = serde_json::from_str(
        direct["metadata"]["annotations"][ANNOTATION]
            .as_str()
            .expect("the annotation"),
    )
    .unwrap();
    assert_eq!(record["fleet"], format!("{}/gomod", fleets.name()));
    assert_eq!(record["containers"]["go"], json!(["GOPROXY", "GONOSUMDB"]));

    // Through a Deployment (its ReplicaSet's Pods) and a Job.
    builds.apply(&format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: runner\nspec:\n  replicas: 1\n  selector: {{matchLabels: {{app: runner}}}}\n  template:\n    metadata: {{labels: {{app: runner}}}}\n    spec:\n      containers: [{}]\n",
        go_container("runner")
    ));
    builds.apply(&format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: build\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      initContainers: [{}]\n      containers: [{}]\n",
        go_container("fetch"),
        go_container("build")
    ));
    for prefix in ["runner-", "build-"] {
        let made = pods_named(&builds, prefix);
        let vars = env(&made, 0);
        assert_eq!(vars.get("GOPROXY"), Some(&want_goproxy), "{made}");
        assert_eq!(go_env(&vars)[0], want_goproxy);
    }
    let job_pod = pods_named(&builds, "build-");
    assert_eq!(
        job_pod["spec"]["initContainers"][0]["env"][0]["name"], "GOPROXY",
        "{job_pod}"
    );

    // Left alone: an unselected namespace, an opted-out Pod, a container's own GOPROXY
    // (its neighbour gets the fleet's).
    web.apply(&pod("web", json!({}), json!([go_container("go")])));
    assert!(env(&web.get_json(&["pod", "web"]), 0).is_empty());
    builds.apply(&pod(
        "opted-out",
        json!({"modfleet.dev/inject": "false"}),
        json!([go_container("go")]),
    ));
    let opted = builds.get_json(&["pod", "opted-out"]);
    assert!(env(&opted, 0).is_empty(), "{opted}");
    assert!(opted["metadata"]["annotations"][ANNOTATION].is_null());
    let mut own = go_container("own");
    own["env"] = json!([{"name": "GOPROXY", "value": "https://proxy.corp.example.com"}]);
    builds.apply(&pod("own", json!({}), json!([own, go_container("plain")])));
    let own = builds.get_json(&["pod", "own"]);
    // Its own GOPROXY first and unchanged; the variables it does not set are still given.
    assert_eq!(
        env(&own, 0),
        BTreeMap::from([
            ("GOPROXY".into(), "https://proxy.corp.example.com".into()),
            ("GONOSUMDB".into(), "git.corp.example.com/*".into())
        ])
    );
    assert_eq!(own["spec"]["containers"][0]["env"][0]["name"], "GOPROXY");
    assert_eq!(env(&own, 1)["GOPROXY"], want_goproxy);

    // The fleet's status: where it injects, and how many Pods (direct, the Deployment's, the
    // Job's, the neighbour: at least four).
    let status = fleets.eventually("status.injection", DEFAULT_TIMEOUT, || {
        let g = fleets.get_json(&["gmp", "gomod"]);
        let injection = g["status"]["injection"].clone();
        (injection["podsMutated"].as_i64()? >= 4).then_some(g)
    });
    assert_eq!(
        status["status"]["injection"]["namespaces"],
        json!([builds.name()]),
        "{status}"
    );
    assert_eq!(condition(&status, "Injecting")["status"], "True");
    let mutated = op
        .metric("modfleet_operator_admissions_total{result=\"mutated\"}")
        .unwrap_or_default();
    assert!(mutated >= 4.0, "{mutated}");
    assert!(
        op.metric("modfleet_operator_admissions_total{result=\"no_fleet\"}")
            .unwrap_or_default()
            >= 1.0
    );

    // The presented certificate's expiry is exported (90 days by default).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let expiry = fleets.eventually("the certificate expiry gauge", DEFAULT_TIMEOUT, || {
        op.metric("modfleet_operator_webhook_certificate_expiry_timestamp_seconds")
            .filter(|e| *e > 0.0)
    });
    assert!(expiry > now + 80.0 * 86400.0, "{expiry} vs now {now}");

    // A younger fleet selecting the same namespace loses it, and says so.
    fleets.apply(
        "apiVersion: modfleet.dev/v1alpha1\nkind: GoModuleProxy\nmetadata:\n  name: young\nspec:\n  upstreams: [{url: 'https://goproxy.example.com'}]\n  injection:\n    namespaceSelector: {matchLabels: {team: builds}}\n",
    );
    let young = fleets.eventually("the younger fleet's conflict", DEFAULT_TIMEOUT, || {
        let g = fleets.get_json(&["gmp", "young"]);
        (condition(&g, "Injecting")["reason"] == "NamespacesLost").then_some(g)
    });
    assert_eq!(
        young["status"]["injection"]["lostNamespaces"],
        json!([{"namespace": builds.name(), "fleet": format!("{}/gomod", fleets.name())}]),
        "{young}"
    );
    fleets.eventually("an Event about the conflict", DEFAULT_TIMEOUT, || {
        let events = fleets.get_json(&["events", "--field-selector", "involvedObject.name=young"]);
        events["items"]
            .as_array()?
            .iter()
            .any(|e| e["reason"] == "NamespacesLost")
            .then_some(())
    });
    builds.apply(&pod(
        "after-conflict",
        json!({}),
        json!([go_container("go")]),
    ));
    assert_eq!(
        env(&builds.get_json(&["pod", "after-conflict"]), 0)["GOPROXY"],
        want_goproxy
    );

    // netrcSecretName: the API server takes the Pod with the Secret's volume, mounted
    // read-only where NETRC points, in every container given the fleet.
    fleets.kubectl(&[
        "patch",
        "gmp",
        "gomod",
        "--type=merge",
        "-p",
        r#"{"spec": {"injection": {"netrcSecretName": "gomod-netrc"}}}"#,
    ]);
    let netrc_probe = pod("netrc", json!({}), json!([go_container("go")]));
    builds.eventually("NETRC in new Pods", DEFAULT_TIMEOUT, || {
        env(&dry_run(&builds, &netrc_probe), 0)
            .contains_key("NETRC")
            .then_some(())
    });
    builds.apply(&netrc_probe);
    let stored = builds.get_json(&["pod", "netrc"]);
    let vars = env(&stored, 0);
    assert_eq!(vars["NETRC"], "/var/run/modfleet/netrc/.netrc", "{stored}");
    let volume = stored["spec"]["volumes"]
        .as_array()
        .and_then(|v| v.iter().find(|v| v["name"] == "modfleet-netrc"))
        .unwrap_or_else(|| panic!("no netrc volume: {stored}"));
    assert_eq!(volume["secret"]["secretName"], "gomod-netrc");
    assert_eq!(volume["secret"]["optional"], true);
    let mounts = stored["spec"]["containers"][0]["volumeMounts"].to_string();
    assert!(
        mounts.contains(
            r#""mountPath":"/var/run/modfleet/netrc","name":"modfleet-netrc","readOnly":true"#
        ),
        "{mounts}"
    );

    // What is not an AdmissionReview gets a 400 saying so, over the webhook's HTTPS (its
    // CA from the caBundle), and a body larger than any the API server sends is refused.
    let ca = std::env::temp_dir().join(format!("modfleet-e2e-{scope}-ca.pem"));
    std::fs::write(&ca, mwc.ca_bundle()).unwrap();
    let url = format!("https://127.0.0.1:{port}{WEBHOOK_PATH}");
    let (code, body) = curl_post(&ca, &url, b"{\"kind\": \"not a review\"");
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("not an admission.k8s.io/v1 AdmissionReview"),
        "{body}"
    );
    let (code, _) = curl_post(&ca, &url, &vec![b' '; 9 << 20]);
    assert_eq!(code, 413);
    let _ = std::fs::remove_file(&ca);
    assert!(
        op.metric("modfleet_operator_admissions_total{result=\"bad_request\"}")
            .unwrap_or_default()
            >= 1.0
    );

    // The operator stopped: Pods are still admitted, unchanged (failurePolicy: Ignore).
    assert!(op.stop(), "the operator exits on SIGTERM");
    let started = Instant::now();
    builds.apply(&pod("unserved", json!({}), json!([go_container("go")])));
    assert!(env(&builds.get_json(&["pod", "unserved"]), 0).is_empty());
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the API server waited {:?} for a stopped webhook",
        started.elapsed()
    );
}

/// The serving certificate (10 s of 15 s) and the CA (of 40 s) renew while Pods are created
/// without pause; the API server patches every one of them: it never failed to verify the
/// webhook (with `failurePolicy: Ignore` a failed call would show as a Pod left unpatched).
#[test]
fn certificates_renew_while_the_api_server_keeps_calling() {
    let cluster = Cluster::from_env();
    install_crd(&cluster);
    let scope = format!("rotate-{}-{}", std::process::id(), free_port());
    let fleets = cluster.namespace("inj-rot-fleets");
    let home = cluster.namespace("inj-rot-operator");
    let builds = scoped_namespace(&cluster, "inj-rot-builds", &scope, &[]);
    let port = free_port();
    let mwc = WebhookConfiguration::create(&cluster, &format!("e2e-{scope}"), port, &scope);
    let _op = operator(
        &fleets,
        &home,
        port,
        &mwc.name,
        &[
            "--webhook-cert-validity",
            "15s",
            "--webhook-ca-validity",
            "40s",
        ],
    );
    fleets.apply(
        "apiVersion: modfleet.dev/v1alpha1\nkind: GoModuleProxy\nmetadata:\n  name: gomod\nspec:\n  upstreams: [{url: 'https://goproxy.example.com'}]\n  injection:\n    namespaceSelector: {}\n",
    );
    await_injection(&builds);

    let secret = |key: &str| {
        let s = home.get_json(&["secret", "webhook-tls"]);
        s["data"][key].as_str().unwrap_or_default().to_owned()
    };
    let (first_cert, first_ca) = (secret("tls.crt"), secret("ca.crt"));
    let mut certs = vec![first_cert];
    let mut bundles = vec![first_ca];
    let probe = pod("probe", json!({}), json!([go_container("go")]));
    let started = Instant::now();
    let mut created = 0;
    // Past one CA renewal (at 2/3 of 40 s) and the certificates it signs.
    while started.elapsed() < Duration::from_secs(45) {
        let patched = dry_run(&builds, &probe);
        created += 1;
        assert!(
            env(&patched, 0).contains_key("GOPROXY"),
            "Pod {created} ({:?} in) was admitted unpatched: the API server could not call the \
             webhook while its certificates renewed\n{}",
            started.elapsed(),
            _op.logs()
        );
        let (cert, ca) = (secret("tls.crt"), secret("ca.crt"));
        if certs.last() != Some(&cert) {
            certs.push(cert);
        }
        if bundles.last() != Some(&ca) {
            bundles.push(ca);
        }
    }
    assert!(
        certs.len() >= 3,
        "serving certificates seen: {}",
        certs.len()
    );
    assert!(bundles.len() >= 2, "CA bundles seen: {}", bundles.len());
    // After the CA's renewal the caBundle the API server uses holds both CAs at once.
    let both = bundles.iter().any(|b| {
        let pem = base64::engine::general_purpose::STANDARD
            .decode(b)
            .unwrap_or_default();
        String::from_utf8_lossy(&pem)
            .matches("BEGIN CERTIFICATE")
            .count()
            >= 2
    });
    assert!(both, "no bundle held the old and the new CA together");
    assert!(mwc.ca_bundle().contains("BEGIN CERTIFICATE"));
}
