//! The operator reads `/status` from the fleet's members and shows upstream health in the
//! GoModuleProxy status (`status.upstreams`, condition `UpstreamsHealthy`), end to end: a
//! real operator, the local cluster's API server, and for each kwok pod a real
//! `modfleet-proxy` listening on that pod's IP, which `hack/cluster.sh` makes a loopback
//! address. The proxies' upstreams are the CR's: a live origin the test runs and a closed
//! port that later comes alive.

use std::net::SocketAddr;

use modfleet_e2e::operator::OperatorEnv;
use modfleet_e2e::proxy::{ProxyProcess, member_pods};
use modfleet_e2e::{DEFAULT_TIMEOUT, condition, upstreams};
use modfleet_testkit::upstream::{Reply, Upstream};
use modfleet_testkit::workspace::closed_port;

/// The operator, stopped before the namespace goes; then the finalizers it would have
/// removed are lifted so the namespace can be deleted.
#[test]
fn upstreams_healthy_follows_what_the_members_report() {
    let env = OperatorEnv::polling("upstream-health");
    let ns = &env.ns;

    // Alive for the members' health probes: any path answers an empty 200.
    let alive = || Upstream::builder().route("*", Reply::Body(Vec::new()));
    let live = alive().start();
    let dead_port = closed_port();
    let live_url = live.url.clone();
    let dead_url = format!("http://127.0.0.1:{dead_port}");
    ns.apply(&format!(
        "apiVersion: modfleet.dev/v1alpha1\nkind: GoModuleProxy\nmetadata:\n  name: uh\nspec:\n  replicas: 2\n  upstreams:\n    - url: {live_url}/\n    - url: {dead_url}\n  cache: {{size: 1Gi}}\n"
    ));
    ns.wait("gmp/uh", "condition=Ready", DEFAULT_TIMEOUT);
    let pods = member_pods(ns, "uh");
    assert_eq!(pods.len(), 2, "{pods:?}");
    // Until the members' proxies run, nobody answers: not reporting, not unhealthy.
    ns.eventually(
        "UpstreamsHealthy=Unknown (NoMemberReports)",
        DEFAULT_TIMEOUT,
        || {
            let c = condition(&ns.get_json(&["gmp", "uh"]), "UpstreamsHealthy");
            (c["reason"] == "NoMemberReports").then_some(c)
        },
    );

    let upstream_urls = [live_url.clone(), dead_url.clone()];
    let mut proxies: Vec<ProxyProcess> = pods
        .iter()
        .map(|(_, ip)| ProxyProcess::start(*ip, &upstream_urls))
        .collect();
    // The proxies themselves say the dead upstream is down (what the operator will read).
    let status = proxies[0]
        .admin_get("/status")
        .expect("the proxy's /status");
    assert!(status.contains(&dead_url), "{status}");

    // Each proxy marks the dead upstream down after two failed probes; wait for both.
    let want_down = [(live_url.clone(), 2, 2), (dead_url.clone(), 0, 2)];
    let (g, down) = ns.eventually(
        "the dead upstream down on 0/2 members",
        DEFAULT_TIMEOUT,
        || {
            let g = ns.get_json(&["gmp", "uh"]);
            let c = condition(&g, "UpstreamsHealthy");
            (upstreams(&g) == want_down).then_some((g, c))
        },
    );
    assert_eq!(down["status"], "False", "{down}");
    assert_eq!(down["reason"], "UpstreamDown", "{down}");
    let message = down["message"].as_str().unwrap();
    assert_eq!(
        message,
        format!("{dead_url} is healthy on 0/2 members"),
        "names the dead upstream with its counts"
    );
    let last_error = g["status"]["upstreams"][1]["lastError"]
        .as_str()
        .unwrap_or("");
    assert!(
        !last_error.is_empty(),
        "the dead upstream's last error: {g}"
    );
    assert!(g["status"]["upstreams"][0]["lastError"].is_null());
    // Cached artifacts still serve: Ready does not follow upstream health.
    assert_eq!(condition(&g, "Ready")["status"], "True");
    assert_eq!(condition(&g, "Degraded")["status"], "False");
    let went_down = down["lastTransitionTime"].clone();

    // The dead upstream comes alive on its port.
    let revived = alive()
        .bind(SocketAddr::from(([127, 0, 0, 1], dead_port)))
        .start();
    let want_up = [(live_url.clone(), 2, 2), (dead_url.clone(), 2, 2)];
    let (g, up) = ns.eventually("UpstreamsHealthy=True", DEFAULT_TIMEOUT, || {
        let g = ns.get_json(&["gmp", "uh"]);
        let c = condition(&g, "UpstreamsHealthy");
        (c["status"] == "True").then_some((g, c))
    });
    assert_eq!(upstreams(&g), want_up);
    assert_eq!(up["reason"], "AllUpstreamsHealthy");
    assert_eq!(
        up["message"],
        "Every upstream is healthy on all 2 members that reported"
    );
    // The flip is stamped anew (RFC 3339 in UTC: comparable as strings; whole seconds).
    let came_up = up["lastTransitionTime"].as_str().unwrap();
    assert!(
        came_up >= went_down.as_str().unwrap(),
        "{came_up} < {went_down}"
    );
    assert!(g["status"]["upstreams"][1]["lastError"].is_null());
    let reasons = ns.kubectl(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.kind=GoModuleProxy,involvedObject.name=uh",
        "-o",
        "jsonpath={.items[*].reason}",
    ]);
    for want in ["UpstreamDown", "AllUpstreamsHealthy"] {
        assert!(reasons.contains(want), "no {want} event in {reasons}");
    }

    // A member whose admin port stops answering is not reporting; the upstreams stay
    // healthy on the member that does report.
    proxies[1].kill();
    let gone = &pods[1].0;
    let c = ns.eventually("member 1 not reporting", DEFAULT_TIMEOUT, || {
        let g = ns.get_json(&["gmp", "uh"]);
        let c = condition(&g, "UpstreamsHealthy");
        (upstreams(&g) == [(live_url.clone(), 1, 1), (dead_url.clone(), 1, 1)]).then_some(c)
    });
    assert_eq!(c["status"], "True", "{c}");
    let message = c["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("1 of 2 Ready members not reporting: {gone} (")),
        "{message}"
    );
    drop(revived);
    drop(live);
}
