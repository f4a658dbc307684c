//! PodDisruptionBudget `NAME` when the fleet has more than one member: voluntary
//! disruptions (drains) take at most one member at a time.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::labels::{self, Component};
use super::{Context, meta};
use crate::crd::GoModuleProxy;

pub fn build(gmp: &GoModuleProxy, _ctx: &Context) -> Option<PodDisruptionBudget> {
    if gmp.replicas() <= 1 {
        return None;
    }
    let name = gmp.name_any();
    Some(PodDisruptionBudget {
        metadata: meta(gmp, name.clone(), Component::Proxy, None),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(labels::fleet_selector(&name)),
                match_expressions: None,
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    #[test]
    fn pdb_only_with_several_members() {
        let p = build(&minimal(), &ctx()).unwrap();
        assert_owned(&p.metadata, "proxy");
        let s = p.spec.unwrap();
        assert_eq!(s.max_unavailable, Some(IntOrString::Int(1)));
        assert_eq!(
            s.selector.unwrap().match_labels.unwrap()["app.kubernetes.io/instance"],
            "gomod"
        );
        let mut one = minimal();
        one.spec.replicas = 1;
        assert!(build(&one, &ctx()).is_none());
    }
}
