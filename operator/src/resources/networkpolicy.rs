//! NetworkPolicy `NAME`: ingress to the proxy port from `allowFrom` (empty: every namespace)
//! and to the admin port from `metricsFrom` and from the operator (which reads `/status`);
//! fleet peers reach each other on both ports (and on the peer port with peer fill, which
//! clients never reach). Egress only to DNS, to `egressTo` (empty: anywhere) on `egressPorts`
//! (plus the object store's port), and to peers; with `privateModules`, also to any address
//! on the Git ports (443, 22, and 80 for `insecure` entries).

use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::labels::{self, Component};
use super::{ADMIN_PORT, Context, HTTP_PORT, meta, tiers};
use crate::crd::GoModuleProxy;

/// Set by the API server on every namespace (Kubernetes 1.22+).
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

fn tcp(port: i32) -> NetworkPolicyPort {
    port_proto(port, "TCP")
}

fn port_proto(port: i32, proto: &str) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(IntOrString::Int(port)),
        protocol: Some(proto.into()),
        end_port: None,
    }
}

pub fn build(gmp: &GoModuleProxy, ctx: &Context) -> Option<NetworkPolicy> {
    let np = &gmp.spec.network_policy;
    if !np.enabled {
        return None;
    }
    let name = gmp.name_any();
    let fleet = LabelSelector {
        match_labels: Some(labels::fleet_selector(&name)),
        match_expressions: None,
    };
    let peers = vec![NetworkPolicyPeer {
        pod_selector: Some(fleet.clone()),
        ..NetworkPolicyPeer::default()
    }];
    let all_namespaces = vec![NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector::default()),
        ..NetworkPolicyPeer::default()
    }];
    let anywhere = vec![
        NetworkPolicyPeer {
            ip_block: Some(IPBlock {
                cidr: "0.0.0.0/0".into(),
                except: None,
            }),
            ..NetworkPolicyPeer::default()
        },
        NetworkPolicyPeer {
            ip_block: Some(IPBlock {
                cidr: "::/0".into(),
                except: None,
            }),
            ..NetworkPolicyPeer::default()
        },
    ];
    let mut ingress = vec![NetworkPolicyIngressRule {
        from: Some(if np.allow_from.is_empty() {
            all_namespaces
        } else {
            np.allow_from.clone()
        }),
        ports: Some(vec![tcp(HTTP_PORT)]),
    }];
    if !np.metrics_from.is_empty() {
        ingress.push(NetworkPolicyIngressRule {
            from: Some(np.metrics_from.clone()),
            ports: Some(vec![tcp(ADMIN_PORT)]),
        });
    }
    // The operator's pods, from its own namespace when known, read `/status`.
    let operator_namespaces = LabelSelector {
        match_labels: ctx.operator_namespace.as_ref().map(|ns| {
            [(NAMESPACE_NAME_LABEL.to_owned(), ns.clone())]
                .into_iter()
                .collect()
        }),
        match_expressions: None,
    };
    ingress.push(NetworkPolicyIngressRule {
        from: Some(vec![NetworkPolicyPeer {
            namespace_selector: Some(operator_namespaces),
            pod_selector: Some(LabelSelector {
                match_labels: Some(labels::operator_pod_selector()),
                match_expressions: None,
            }),
            ..NetworkPolicyPeer::default()
        }]),
        ports: Some(vec![tcp(ADMIN_PORT)]),
    });
    // Members reach each other on the client and admin ports, and with peer fill on the
    // peer port, which no other rule admits: clients never reach it.
    let mut peer_ports = vec![tcp(HTTP_PORT), tcp(ADMIN_PORT)];
    if gmp.peer_fill() {
        peer_ports.push(tcp(tiers::peer_port()));
    }
    ingress.push(NetworkPolicyIngressRule {
        from: Some(peers.clone()),
        ports: Some(peer_ports.clone()),
    });
    let egress = vec![
        // DNS, wherever the cluster's resolver runs.
        NetworkPolicyEgressRule {
            to: None,
            ports: Some(vec![port_proto(53, "UDP"), port_proto(53, "TCP")]),
        },
        NetworkPolicyEgressRule {
            to: Some(if np.egress_to.is_empty() {
                anywhere.clone()
            } else {
                np.egress_to.clone()
            }),
            ports: Some(egress_ports(gmp).into_iter().map(tcp).collect()),
        },
        NetworkPolicyEgressRule {
            to: Some(peers),
            ports: Some(peer_ports),
        },
    ];
    let egress: Vec<_> = egress
        .into_iter()
        .chain(git_egress(gmp, anywhere))
        .collect();
    Some(NetworkPolicy {
        metadata: meta(gmp, name, Component::Network, None),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(fleet),
            policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
            ingress: Some(ingress),
            egress: Some(egress),
        }),
    })
}

/// `egressPorts`, and the object store's port when it is not among them (the port of
/// `objectStore.endpoint`, else 443: the provider's HTTPS). The store must be among
/// `egressTo` when that is set (docs/operator.md).
fn egress_ports(gmp: &GoModuleProxy) -> Vec<i32> {
    let mut ports = gmp.spec.network_policy.egress_ports.clone();
    if let Some(store) = &gmp.spec.cache.object_store {
        let port = store.endpoint.as_deref().map_or(443, endpoint_port);
        if !ports.contains(&port) {
            ports.push(port);
        }
    }
    ports
}

/// The TCP port of an `http(s)://HOST[:PORT]/...` URL (the CRD admits no other endpoint).
fn endpoint_port(url: &str) -> i32 {
    let uri = url.parse::<http::Uri>().ok();
    let port = uri.as_ref().and_then(http::Uri::port_u16);
    let http = uri.as_ref().and_then(http::Uri::scheme_str) == Some("http");
    match port {
        Some(p) => i32::from(p),
        None if http => 80,
        None => 443,
    }
}

/// Private modules come from Git servers wherever they are: HTTPS and SSH (and plain HTTP
/// when an entry is `insecure`) to any address, whatever `egressTo` allows the upstreams.
fn git_egress(
    gmp: &GoModuleProxy,
    anywhere: Vec<NetworkPolicyPeer>,
) -> Option<NetworkPolicyEgressRule> {
    let private = &gmp.spec.private_modules;
    if private.is_empty() {
        return None;
    }
    let mut ports = vec![tcp(443), tcp(22)];
    if private.iter().any(|m| m.insecure) {
        ports.push(tcp(80));
    }
    Some(NetworkPolicyEgressRule {
        to: Some(anywhere),
        ports: Some(ports),
    })
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;
    use serde_json::json;

    fn ports(p: &Option<Vec<NetworkPolicyPort>>) -> Vec<(i32, String)> {
        p.iter()
            .flatten()
            .map(|p| {
                let IntOrString::Int(n) = p.port.clone().unwrap() else {
                    panic!("named port")
                };
                (n, p.protocol.clone().unwrap())
            })
            .collect()
    }

    #[test]
    fn defaults_allow_all_namespaces_in_and_anywhere_out_on_443() {
        let np = build(&minimal(), &ctx()).unwrap();
        assert_owned(&np.metadata, "network");
        let spec = np.spec.unwrap();
        assert_eq!(spec.policy_types.unwrap(), ["Ingress", "Egress"]);
        assert_eq!(
            spec.pod_selector.unwrap().match_labels.unwrap(),
            labels::fleet_selector("gomod")
        );
        let ingress = spec.ingress.unwrap();
        assert_eq!(ingress.len(), 3, "no metricsFrom rule without metricsFrom");
        let from = ingress[0].from.as_ref().unwrap();
        assert_eq!(from[0].namespace_selector, Some(LabelSelector::default()));
        assert_eq!(ports(&ingress[0].ports), [(8080, "TCP".into())]);
        // The operator, from any namespace (it did not say where it runs).
        let op = &ingress[1].from.as_ref().unwrap()[0];
        assert_eq!(op.namespace_selector, Some(LabelSelector::default()));
        assert_eq!(
            op.pod_selector
                .as_ref()
                .unwrap()
                .match_labels
                .as_ref()
                .unwrap(),
            &labels::operator_pod_selector()
        );
        assert_eq!(ports(&ingress[1].ports), [(9090, "TCP".into())]);
        // Peers on both ports, and the peer port (peer fill: on by default for PerMember).
        assert!(ingress[2].from.as_ref().unwrap()[0].pod_selector.is_some());
        assert_eq!(
            ports(&ingress[2].ports),
            [
                (8080, "TCP".into()),
                (9090, "TCP".into()),
                (7070, "TCP".into())
            ]
        );
        let egress = spec.egress.unwrap();
        assert_eq!(egress[0].to, None);
        assert_eq!(
            ports(&egress[0].ports),
            [(53, "UDP".into()), (53, "TCP".into())]
        );
        let cidrs: Vec<_> = egress[1]
            .to
            .iter()
            .flatten()
            .map(|p| p.ip_block.as_ref().unwrap().cidr.clone())
            .collect();
        assert_eq!(cidrs, ["0.0.0.0/0", "::/0"]);
        assert_eq!(ports(&egress[1].ports), [(443, "TCP".into())]);
        assert!(egress[2].to.as_ref().unwrap()[0].pod_selector.is_some());
        assert_eq!(egress.len(), 3);
    }

    #[test]
    fn explicit_peers_and_ports() {
        let g = gmp(json!({
            "upstreams": [{"url": "https://goproxy.example.com"}],
            "networkPolicy": {
                "allowFrom": [{"namespaceSelector": {"matchLabels": {"team": "ci"}}}],
                "metricsFrom": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}],
                "egressTo": [{"ipBlock": {"cidr": "10.0.0.0/8"}}],
                "egressPorts": [443, 8443]
            }
        }));
        let spec = build(&g, &ctx()).unwrap().spec.unwrap();
        let ingress = spec.ingress.unwrap();
        assert_eq!(ingress.len(), 4);
        let ns = |r: &NetworkPolicyIngressRule| {
            r.from.as_ref().unwrap()[0]
                .namespace_selector
                .clone()
                .unwrap()
                .match_labels
                .unwrap()
        };
        assert_eq!(ns(&ingress[0])["team"], "ci");
        assert_eq!(ports(&ingress[0].ports), [(8080, "TCP".into())]);
        assert_eq!(ns(&ingress[1])["name"], "monitoring");
        assert_eq!(ports(&ingress[1].ports), [(9090, "TCP".into())]);
        let egress = spec.egress.unwrap();
        assert_eq!(
            egress[1].to.as_ref().unwrap()[0]
                .ip_block
                .as_ref()
                .unwrap()
                .cidr,
            "10.0.0.0/8"
        );
        assert_eq!(
            ports(&egress[1].ports),
            [(443, "TCP".into()), (8443, "TCP".into())]
        );
    }

    #[test]
    fn the_operator_reaches_the_admin_port_from_its_own_namespace() {
        let ctx = Context {
            operator_namespace: Some("modfleet-system".into()),
            ..ctx()
        };
        let spec = build(&minimal(), &ctx).unwrap().spec.unwrap();
        let rule = &spec.ingress.unwrap()[1];
        assert_eq!(ports(&rule.ports), [(9090, "TCP".into())]);
        let peer = &rule.from.as_ref().unwrap()[0];
        // One peer with both selectors: operator pods AND in that namespace.
        let ns = peer.namespace_selector.as_ref().unwrap();
        assert_eq!(
            ns.match_labels.as_ref().unwrap()["kubernetes.io/metadata.name"],
            "modfleet-system"
        );
        let pods = peer
            .pod_selector
            .as_ref()
            .unwrap()
            .match_labels
            .as_ref()
            .unwrap();
        assert_eq!(pods["app.kubernetes.io/part-of"], "modfleet");
        assert_eq!(pods["app.kubernetes.io/component"], "operator");
        assert_eq!(pods.len(), 2);
    }

    #[test]
    fn private_modules_open_git_ports_anywhere() {
        let cidrs = |r: &NetworkPolicyEgressRule| -> Vec<String> {
            r.to.iter()
                .flatten()
                .map(|p| p.ip_block.as_ref().unwrap().cidr.clone())
                .collect()
        };
        let g = gmp(json!({
            "upstreams": [{"url": "https://goproxy.example.com"}],
            "networkPolicy": {"egressTo": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]},
            "privateModules": [{"pattern": "git.corp.example.com/*"}]
        }));
        let egress = build(&g, &ctx()).unwrap().spec.unwrap().egress.unwrap();
        assert_eq!(egress.len(), 4);
        assert_eq!(cidrs(&egress[1]), ["10.0.0.0/8"], "upstreams as before");
        assert_eq!(cidrs(&egress[3]), ["0.0.0.0/0", "::/0"]);
        assert_eq!(
            ports(&egress[3].ports),
            [(443, "TCP".into()), (22, "TCP".into())]
        );
        let mut g = g;
        g.spec.private_modules.push(
            serde_json::from_value(json!({"pattern": "git.internal/*", "insecure": true})).unwrap(),
        );
        let egress = build(&g, &ctx()).unwrap().spec.unwrap().egress.unwrap();
        assert_eq!(
            ports(&egress[3].ports),
            [(443, "TCP".into()), (22, "TCP".into()), (80, "TCP".into())]
        );
        // Without private modules: no Git rule.
        let egress = build(&minimal(), &ctx())
            .unwrap()
            .spec
            .unwrap()
            .egress
            .unwrap();
        assert_eq!(egress.len(), 3);
    }

    #[test]
    fn disabled_means_none() {
        let mut g = minimal();
        g.spec.network_policy.enabled = false;
        assert!(build(&g, &ctx()).is_none());
    }
}
