//! Cache PVCs: `NAME-cache-i` (ReadWriteOnce, PerMember) or `NAME-cache` (ReadWriteMany,
//! Shared). Kept or deleted on scale-down and CR deletion per `cache.retainPolicy`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimSpec, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::ResourceExt;

use super::labels::Component;
use super::{Context, meta, names};
use crate::crd::GoModuleProxy;

/// PVC for `member` (PerMember) or the shared one (`None`).
pub fn build(gmp: &GoModuleProxy, _ctx: &Context, member: Option<usize>) -> PersistentVolumeClaim {
    let name = gmp.name_any();
    let (pvc_name, access) = match member {
        Some(i) => (names::member_cache(&name, i), "ReadWriteOnce"),
        None => (names::shared_cache(&name), "ReadWriteMany"),
    };
    PersistentVolumeClaim {
        metadata: meta(gmp, pvc_name, Component::Cache, member),
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec![access.to_owned()]),
            storage_class_name: gmp
                .spec
                .cache
                .storage_class_name
                .clone()
                .filter(|s| !s.is_empty()),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_owned(),
                    Quantity(gmp.spec.cache.size.clone()),
                )])),
                limits: None,
            }),
            volume_mode: Some("Filesystem".to_owned()),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    }
}

/// The storage request of a claim in bytes.
pub fn requested_bytes(p: &PersistentVolumeClaim) -> Option<u64> {
    let q = p
        .spec
        .as_ref()?
        .resources
        .as_ref()?
        .requests
        .as_ref()?
        .get("storage")?;
    super::quantity_bytes(&q.0)
}

/// The size a claim really offers: the smaller of its request and its capacity (during an
/// expansion the request is already larger than the volume).
pub fn effective_bytes(p: &PersistentVolumeClaim) -> Option<u64> {
    let capacity = p
        .status
        .as_ref()
        .and_then(|s| s.capacity.as_ref())
        .and_then(|c| c.get("storage"))
        .and_then(|q| super::quantity_bytes(&q.0));
    match (requested_bytes(p), capacity) {
        (Some(r), Some(c)) => Some(r.min(c)),
        (r, c) => r.or(c),
    }
}

/// Whether `cache.size` grew past what the existing claim requests. Claims can only grow,
/// and only where the StorageClass allows expansion.
pub fn wants_growth(desired: &PersistentVolumeClaim, existing: &PersistentVolumeClaim) -> bool {
    matches!(
        (requested_bytes(desired), requested_bytes(existing)),
        (Some(d), Some(e)) if d > e
    )
}

/// A PVC's spec is immutable once created except for growing the request, so for an
/// existing claim we re-apply what it already has, with the larger size when `grow`.
pub fn keep_existing_spec(
    desired: &mut PersistentVolumeClaim,
    existing: &PersistentVolumeClaim,
    grow: bool,
) {
    if let (Some(d), Some(e)) = (desired.spec.as_mut(), existing.spec.as_ref()) {
        if !grow {
            d.resources = e.resources.clone();
        }
        d.storage_class_name = e.storage_class_name.clone();
        d.access_modes = e.access_modes.clone();
        d.volume_mode = e.volume_mode.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;
    use serde_json::json;

    #[test]
    fn member_pvc_is_rwo() {
        let p = build(&minimal(), &ctx(), Some(2));
        assert_owned(&p.metadata, "cache");
        assert_eq!(p.metadata.name.as_deref(), Some("gomod-cache-2"));
        let s = p.spec.as_ref().unwrap();
        assert_eq!(s.access_modes.as_ref().unwrap(), &["ReadWriteOnce"]);
        assert_eq!(s.storage_class_name, None, "default class");
        assert_eq!(
            s.resources.as_ref().unwrap().requests.as_ref().unwrap()["storage"].0,
            "20Gi"
        );
    }

    #[test]
    fn shared_pvc_is_rwx_with_the_class() {
        let g = gmp(json!({
            "upstreams": [{"url": "https://goproxy.example.com"}],
            "cache": {"mode": "Shared", "storageClassName": "modfleet-rwx", "size": "5Gi"}
        }));
        let p = build(&g, &ctx(), None);
        assert_eq!(p.metadata.name.as_deref(), Some("gomod-cache"));
        let s = p.spec.as_ref().unwrap();
        assert_eq!(s.access_modes.as_ref().unwrap(), &["ReadWriteMany"]);
        assert_eq!(s.storage_class_name.as_deref(), Some("modfleet-rwx"));
    }

    #[test]
    fn existing_spec_is_kept_unless_growing() {
        let old = build(&minimal(), &ctx(), Some(0));
        let mut g = minimal();
        g.spec.cache.size = "50Gi".into();
        let mut new = build(&g, &ctx(), Some(0));
        assert!(wants_growth(&new, &old));
        let mut kept = new.clone();
        keep_existing_spec(&mut kept, &old, false);
        assert_eq!(kept.spec, old.spec);
        keep_existing_spec(&mut new, &old, true);
        assert_eq!(requested_bytes(&new), Some(50 << 30));
        // Shrinking is never asked for.
        g.spec.cache.size = "1Gi".into();
        assert!(!wants_growth(&build(&g, &ctx(), Some(0)), &old));
    }
}
