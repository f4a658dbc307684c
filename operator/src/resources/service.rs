//! Services: `NAME` for clients (port → `http`, or `https` with `spec.tls`) and headless `NAME-peers` so members can
//! find each other (it publishes not-ready addresses: peers need each other while starting;
//! with peer fill it has the port `peer`, whose EndpointSlices are the fleet's membership).

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::labels::{self, Component};
use super::{ADMIN_PORT, Context, HTTP_PORT, meta, names, tiers};
use crate::crd::GoModuleProxy;
use modfleet_contract::defaults;

/// Client Service `NAME`.
pub fn build(gmp: &GoModuleProxy, _ctx: &Context) -> Service {
    let name = gmp.name_any();
    let mut metadata = meta(gmp, names::service(&name), Component::Proxy, None);
    if !gmp.spec.service.annotations.is_empty() {
        metadata.annotations = Some(gmp.spec.service.annotations.clone());
    }
    Service {
        metadata,
        spec: Some(ServiceSpec {
            type_: Some(gmp.spec.service.type_.as_str().to_owned()),
            selector: Some(labels::fleet_selector(&name)),
            ports: Some(vec![ServicePort {
                name: Some(client_port_name(gmp).into()),
                port: gmp.spec.service.port,
                target_port: Some(IntOrString::String(client_port_name(gmp).into())),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// Headless Service `NAME-peers`.
pub fn build_peers(gmp: &GoModuleProxy, _ctx: &Context) -> Service {
    let name = gmp.name_any();
    let port = |n: &str, p: i32| ServicePort {
        name: Some(n.into()),
        port: p,
        target_port: Some(IntOrString::String(n.into())),
        protocol: Some("TCP".into()),
        ..ServicePort::default()
    };
    Service {
        metadata: meta(gmp, names::peers(&name), Component::Proxy, None),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            selector: Some(labels::fleet_selector(&name)),
            publish_not_ready_addresses: Some(true),
            ports: Some(
                [
                    port(client_port_name(gmp), HTTP_PORT),
                    port("admin", ADMIN_PORT),
                ]
                .into_iter()
                // The members find each other's peer port by this name (peerFill's
                // endpointSlices.port); never on the client Service.
                .chain(
                    gmp.peer_fill()
                        .then(|| port(defaults::PEER_PORT_NAME, tiers::peer_port())),
                )
                .collect(),
            ),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// The name of the client port (container, Services): `https` with `spec.tls`, else
/// `http`, so that what it speaks is what it says.
pub fn client_port_name(gmp: &GoModuleProxy) -> &'static str {
    if gmp.spec.tls.is_some() {
        "https"
    } else {
        "http"
    }
}

/// `http://NAME.NAMESPACE.svc:PORT` (`https://` with `spec.tls`), the fleet's GOPROXY URL
/// inside the cluster.
pub fn endpoint(gmp: &GoModuleProxy) -> String {
    format!(
        "{}://{}.{}.svc:{}",
        client_port_name(gmp),
        gmp.name_any(),
        gmp.namespace().unwrap_or_default(),
        gmp.spec.service.port
    )
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;
    use serde_json::json;

    #[test]
    fn client_service() {
        let g = gmp(json!({
            "upstreams": [{"url": "https://goproxy.example.com"}],
            "service": {"type": "LoadBalancer", "port": 8000, "annotations": {"lb": "internal"}}
        }));
        let s = build(&g, &ctx());
        assert_owned(&s.metadata, "proxy");
        assert_eq!(s.metadata.name.as_deref(), Some("gomod"));
        assert_eq!(s.metadata.annotations.as_ref().unwrap()["lb"], "internal");
        let spec = s.spec.unwrap();
        assert_eq!(spec.type_.as_deref(), Some("LoadBalancer"));
        let p = &spec.ports.unwrap()[0];
        assert_eq!(p.port, 8000);
        assert_eq!(p.target_port, Some(IntOrString::String("http".into())));
        assert_eq!(
            spec.selector.unwrap()["app.kubernetes.io/component"],
            "proxy"
        );
        assert_eq!(endpoint(&g), "http://gomod.team-a.svc:8000");
    }

    #[test]
    fn default_client_service_is_cluster_ip_port_80() {
        let s = build(&minimal(), &ctx()).spec.unwrap();
        assert_eq!(s.type_.as_deref(), Some("ClusterIP"));
        assert_eq!(s.ports.unwrap()[0].port, 80);
    }

    /// With `spec.tls` the endpoint says `https://` and the client port is named `https` on
    /// the Services and the container alike.
    #[test]
    fn tls_fleets_are_https() {
        let g = gmp(json!({
            "upstreams": [{"url": "https://goproxy.example.com"}],
            "service": {"port": 443},
            "tls": {"secretName": "proxy-tls"}
        }));
        assert_eq!(endpoint(&g), "https://gomod.team-a.svc:443");
        let p = &build(&g, &ctx()).spec.unwrap().ports.unwrap()[0];
        assert_eq!(
            (p.name.as_deref(), p.port, p.target_port.clone()),
            (
                Some("https"),
                443,
                Some(IntOrString::String("https".into()))
            )
        );
        let peers: Vec<_> = build_peers(&g, &ctx())
            .spec
            .unwrap()
            .ports
            .unwrap()
            .into_iter()
            .map(|p| (p.name.unwrap(), p.port))
            .collect();
        assert_eq!(
            peers,
            [
                ("https".into(), 8080),
                ("admin".into(), 9090),
                ("peer".into(), 7070)
            ]
        );
    }

    #[test]
    fn peers_service_is_headless() {
        let s = build_peers(&minimal(), &ctx());
        assert_owned(&s.metadata, "proxy");
        assert_eq!(s.metadata.name.as_deref(), Some("gomod-peers"));
        let spec = s.spec.unwrap();
        assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
        assert_eq!(spec.publish_not_ready_addresses, Some(true));
        let ports: Vec<_> = spec.ports.unwrap().iter().map(|p| p.port).collect();
        // 7070: peer fill, on by default for PerMember fleets.
        assert_eq!(ports, [8080, 9090, 7070]);
    }
}
