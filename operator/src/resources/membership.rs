//! Role and RoleBinding `NAME-peers` (with peer fill): the members read the fleet's
//! membership, the `NAME-peers` Service's EndpointSlices, with their Pod's service account
//! (the ServiceAccount `NAME`). Read-only, in the fleet's namespace, EndpointSlices only.
//! (The operator may grant this only because it holds these permissions itself: the chart's
//! ClusterRole has them, as the RBAC escalation rule requires.)

use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kube::ResourceExt;

use super::labels::Component;
use super::{Context, meta, names};
use crate::crd::GoModuleProxy;

/// The API group of EndpointSlices.
pub const DISCOVERY_GROUP: &str = "discovery.k8s.io";

/// Role `NAME-peers`: get, list and watch EndpointSlices in the namespace. (RBAC cannot
/// narrow `list` and `watch` to the one Service's slices: they are selected by label.)
pub fn role(gmp: &GoModuleProxy, _ctx: &Context) -> Role {
    Role {
        metadata: meta(gmp, names::peers(&gmp.name_any()), Component::Proxy, None),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![DISCOVERY_GROUP.into()]),
            resources: Some(vec!["endpointslices".into()]),
            verbs: vec!["get".into(), "list".into(), "watch".into()],
            ..PolicyRule::default()
        }]),
    }
}

/// RoleBinding `NAME-peers` of [`role`] to the fleet's ServiceAccount.
pub fn role_binding(gmp: &GoModuleProxy, _ctx: &Context) -> RoleBinding {
    let name = gmp.name_any();
    RoleBinding {
        metadata: meta(gmp, names::peers(&name), Component::Proxy, None),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: names::peers(&name),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: names::service_account(&name),
            namespace: gmp.namespace(),
            api_group: None,
        }]),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    #[test]
    fn members_may_read_endpointslices_of_their_namespace_only() {
        let g = minimal();
        let r = role(&g, &ctx());
        assert_owned(&r.metadata, "proxy");
        assert_eq!(r.metadata.name.as_deref(), Some("gomod-peers"));
        let rules = r.rules.unwrap();
        assert_eq!(rules.len(), 1);
        assert_eq!(
            rules[0].api_groups.as_deref(),
            Some(&["discovery.k8s.io".to_owned()][..])
        );
        assert_eq!(
            rules[0].resources.as_deref(),
            Some(&["endpointslices".to_owned()][..])
        );
        assert_eq!(rules[0].verbs, ["get", "list", "watch"]);
        assert!(rules[0].resource_names.is_none());

        let b = role_binding(&g, &ctx());
        assert_owned(&b.metadata, "proxy");
        assert_eq!(b.metadata.name.as_deref(), Some("gomod-peers"));
        assert_eq!(
            (b.role_ref.kind.as_str(), b.role_ref.name.as_str()),
            ("Role", "gomod-peers")
        );
        let s = &b.subjects.unwrap()[0];
        assert_eq!(
            (s.kind.as_str(), s.name.as_str(), s.namespace.as_deref()),
            ("ServiceAccount", "gomod", Some("team-a"))
        );
    }
}
