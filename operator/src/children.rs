//! The fleet's children as one set, after stackable operator-rs's `ClusterResources`: every
//! kind of child is registered once, in [`KINDS`], with its kind and apiVersion taken from
//! the type itself. A reconcile applies each desired object through a [`ChildSet`], which
//! records what it applied, then removes the orphans of each kind in [`KINDS`]; the
//! controller watches the same kinds. A child is removed only when it carries our labels
//! for this fleet AND a controller owner reference with the fleet's uid, so objects a person
//! created with look-alike labels are never touched.

use std::collections::BTreeSet;
use std::fmt::Debug;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role as RbacRole, RoleBinding};
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, ListParams, ObjectMeta, Patch, PatchParams,
    Preconditions,
};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use tracing::Instrument;

use crate::apply::{self, Namespaced, api_span, note_change, record_error, traced};
use crate::crd::{GoModuleProxy, RetainPolicy};
use crate::error::Error;
use crate::resources::labels;

/// What a kind of child is to the fleet, which decides how an orphan of it goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Member Deployments: an orphan is a member scaled away (deleted).
    Member,
    /// Cache claims: an orphan is deleted or released per `cache.retainPolicy`.
    Cache,
    /// One object of the fleet as a whole (its config, identity, Services, policies): an
    /// orphan is deleted.
    Fleet,
}

/// One kind of child: its API coordinates, read from the type, and its role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChildKind {
    pub api_version: &'static str,
    group: &'static str,
    version: &'static str,
    pub kind: &'static str,
    plural: &'static str,
    pub role: Role,
}

impl ChildKind {
    const fn of<K: k8s_openapi::Resource<Scope = NamespaceResourceScope>>(role: Role) -> Self {
        ChildKind {
            api_version: K::API_VERSION,
            group: K::GROUP,
            version: K::VERSION,
            kind: K::KIND,
            plural: K::URL_PATH_SEGMENT,
            role,
        }
    }

    /// What a dynamic `Api` needs to list, watch and delete this kind.
    pub fn api_resource(&self) -> ApiResource {
        ApiResource {
            group: self.group.into(),
            version: self.version.into(),
            api_version: self.api_version.into(),
            kind: self.kind.into(),
            plural: self.plural.into(),
        }
    }
}

/// Every kind of child, the one list: orphans are removed in this order (members first, so
/// their cache claims are no longer in use), and the controller watches each kind.
pub const KINDS: [ChildKind; 10] = [
    ChildKind::of::<Deployment>(Role::Member),
    ChildKind::of::<PersistentVolumeClaim>(Role::Cache),
    ChildKind::of::<ConfigMap>(Role::Fleet),
    ChildKind::of::<ServiceAccount>(Role::Fleet),
    ChildKind::of::<Service>(Role::Fleet),
    ChildKind::of::<PodDisruptionBudget>(Role::Fleet),
    ChildKind::of::<NetworkPolicy>(Role::Fleet),
    // The operator's token Secret (with spec.access) and the peer token Secret (with peer
    // fill): the only Secrets the operator writes.
    ChildKind::of::<Secret>(Role::Fleet),
    // With peer fill: the members' right to read their membership (EndpointSlices).
    ChildKind::of::<RbacRole>(Role::Fleet),
    ChildKind::of::<RoleBinding>(Role::Fleet),
];

/// A child that is gone from the fleet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Removed {
    pub kind: ChildKind,
    pub name: String,
    /// A cache claim kept under `retainPolicy: Retain`: only our owner reference was
    /// removed, so the claim (and the cached modules) outlive the member and are adopted
    /// again if it comes back.
    pub released: bool,
}

/// The children of one fleet that one reconcile wants.
pub struct ChildSet {
    client: Client,
    namespace: String,
    instance: String,
    uid: String,
    retain_policy: RetainPolicy,
    /// `(kind, name)` of every child applied or kept.
    wanted: BTreeSet<(&'static str, String)>,
}

impl ChildSet {
    pub fn new(client: &Client, gmp: &GoModuleProxy) -> Result<ChildSet, Error> {
        Ok(ChildSet {
            client: client.clone(),
            namespace: gmp.namespace().ok_or(Error::Missing("namespace"))?,
            instance: gmp.name_any(),
            uid: gmp.uid().ok_or(Error::Missing("uid"))?,
            retain_policy: gmp.spec.cache.retain_policy,
            wanted: BTreeSet::new(),
        })
    }

    /// Server-side applies `obj` (a child of a kind in [`KINDS`]) and keeps it.
    pub async fn apply<K>(&mut self, obj: &K) -> Result<K, Error>
    where
        K: k8s_openapi::Resource<Scope = NamespaceResourceScope> + Namespaced,
    {
        let applied = apply::apply(&self.client, &self.namespace, obj).await?;
        self.keep::<K>(obj.name_any());
        Ok(applied)
    }

    /// Creates `obj` (a child made once and never overwritten, like the operator's token
    /// Secret) and keeps it.
    pub async fn create<K>(&mut self, obj: &K) -> Result<K, Error>
    where
        K: k8s_openapi::Resource<Scope = NamespaceResourceScope> + Namespaced,
    {
        let created = apply::create(&self.client, &self.namespace, obj).await?;
        self.keep::<K>(obj.name_any());
        Ok(created)
    }

    /// Deletes exactly the child `meta` of kind `K` (uid precondition), when it is ours.
    pub async fn delete_child<K: k8s_openapi::Resource>(
        &self,
        meta: &ObjectMeta,
    ) -> Result<(), Error> {
        let kind = KINDS
            .iter()
            .find(|k| k.kind == K::KIND)
            .expect("a kind of children::KINDS");
        if !is_ours(meta, &self.instance, &self.uid) {
            return Ok(());
        }
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &self.namespace, &kind.api_resource());
        self.delete(&api, kind, meta).await
    }

    /// Keeps the child `name` of kind `K` as it is (a member the rollout holds back).
    pub fn keep<K: k8s_openapi::Resource>(&mut self, name: String) {
        debug_assert!(
            KINDS.iter().any(|k| k.kind == K::KIND),
            "{} is not in children::KINDS, so its orphans would never be removed",
            K::KIND
        );
        self.wanted.insert((K::KIND, name));
    }

    /// The child `name` of kind `K`, or `None` when it does not exist.
    pub async fn get<K>(&self, name: &str) -> Result<Option<K>, Error>
    where
        K: Namespaced,
    {
        apply::get(&self.client, &self.namespace, name).await
    }

    /// Removes the children of `kind` that are ours but not wanted: deletes them, or for
    /// cache claims under `retainPolicy: Retain` releases them.
    pub async fn remove_orphans(&self, kind: &ChildKind) -> Result<Vec<Removed>, Error> {
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &self.namespace, &kind.api_resource());
        let mut removed = Vec::new();
        for meta in self.list_ours(&api, kind).await? {
            let name = meta.name.clone().unwrap_or_default();
            if self.wanted.contains(&(kind.kind, name.clone())) || meta.deletion_timestamp.is_some()
            {
                continue;
            }
            let released = kind.role == Role::Cache && self.retain_policy == RetainPolicy::Retain;
            if released {
                self.release(&api, kind, &meta).await?;
            } else {
                self.delete(&api, kind, &meta).await?;
            }
            removed.push(Removed {
                kind: *kind,
                name,
                released,
            });
        }
        Ok(removed)
    }

    /// The metadata of our children of `kind`: listed by our labels, then checked for our
    /// owner reference too.
    async fn list_ours(
        &self,
        api: &Api<DynamicObject>,
        kind: &ChildKind,
    ) -> Result<Vec<ObjectMeta>, Error> {
        let selector = labels::owned_selector(&self.instance);
        let span = api_span("list", kind.kind, &self.namespace, &selector);
        let list = traced(
            &span,
            api.list_metadata(&ListParams::default().labels(&selector)),
        )
        .await
        .map_err(|source| Error::List {
            kind: kind.kind.into(),
            instance: self.instance.clone(),
            source,
        })?;
        Ok(list
            .items
            .into_iter()
            .map(|o| o.metadata)
            .filter(|m| is_ours(m, &self.instance, &self.uid))
            .collect())
    }

    async fn delete(
        &self,
        api: &Api<DynamicObject>,
        kind: &ChildKind,
        meta: &ObjectMeta,
    ) -> Result<(), Error> {
        let name = meta.name.clone().unwrap_or_default();
        // The uid precondition makes sure we delete exactly the object we checked.
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                uid: meta.uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::background()
        };
        let span = api_span("delete", kind.kind, &self.namespace, &name);
        match api.delete(&name, &dp).instrument(span.clone()).await {
            Ok(_) => {
                span.record("modfleet.changed", true);
                note_change(format!("delete {}/{name}", kind.kind));
                Ok(())
            }
            // Gone already: what we wanted.
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(source) => {
                record_error(&span, &source);
                Err(Error::Delete {
                    kind: kind.kind.into(),
                    name,
                    source,
                })
            }
        }
    }

    /// Removes our owner reference from a cache claim, which keeps it (and its labels).
    async fn release(
        &self,
        api: &Api<DynamicObject>,
        kind: &ChildKind,
        meta: &ObjectMeta,
    ) -> Result<(), Error> {
        let name = meta.name.clone().unwrap_or_default();
        let remaining: Vec<_> = meta
            .owner_references
            .iter()
            .flatten()
            .filter(|o| o.uid != self.uid)
            .cloned()
            .collect();
        let patch = json!({
            "metadata": {
                // Optimistic lock: fail rather than drop someone else's change.
                "resourceVersion": meta.resource_version,
                "ownerReferences": remaining,
            }
        });
        let span = api_span("release", kind.kind, &self.namespace, &name);
        let (params, patch) = (PatchParams::default(), Patch::Merge(&patch));
        traced(&span, api.patch(&name, &params, &patch))
            .await
            .map_err(|source| Error::Release {
                name: name.clone(),
                source,
            })?;
        span.record("modfleet.changed", true);
        note_change(format!("release {}/{name}", kind.kind));
        Ok(())
    }
}

/// Whether `meta` has a controller owner reference to the object with `uid`.
pub fn owned_by(meta: &ObjectMeta, uid: &str) -> bool {
    meta.owner_references
        .iter()
        .flatten()
        .any(|o| o.uid == uid && o.controller == Some(true))
}

/// Whether we may remove this object: our labels for the fleet `instance` and our owner
/// reference.
pub fn is_ours(meta: &ObjectMeta, instance: &str, uid: &str) -> bool {
    labels::is_ours(meta.labels.as_ref(), instance) && owned_by(meta, uid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::testutil::{ctx, minimal};
    use crate::resources::{configmap, labels as l};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    #[test]
    fn ownership_needs_labels_and_controller_owner_ref() {
        let g = minimal();
        let cm = configmap::build(&g, &ctx());
        assert!(is_ours(&cm.metadata, "gomod", "1234-uid"));
        // Someone else's uid.
        assert!(!is_ours(&cm.metadata, "gomod", "other-uid"));
        // Our labels but no owner reference (e.g. a released PVC, or a look-alike).
        let mut m = cm.metadata.clone();
        m.owner_references = None;
        assert!(!is_ours(&m, "gomod", "1234-uid"));
        // Our owner reference but not a controller one.
        let mut m = cm.metadata.clone();
        m.owner_references = Some(vec![OwnerReference {
            controller: None,
            ..m.owner_references.unwrap()[0].clone()
        }]);
        assert!(!is_ours(&m, "gomod", "1234-uid"));
        // Owner reference but labels of another manager.
        let mut m = cm.metadata.clone();
        m.labels
            .as_mut()
            .unwrap()
            .insert(l::MANAGED_BY.into(), "helm".into());
        assert!(!is_ours(&m, "gomod", "1234-uid"));
    }

    #[test]
    fn kinds_come_from_the_types() {
        let deployments = KINDS[0].api_resource();
        assert_eq!(
            (deployments.api_version.as_str(), deployments.kind.as_str()),
            ("apps/v1", "Deployment")
        );
        assert_eq!(deployments.plural, "deployments");
        let pdb = KINDS
            .iter()
            .find(|k| k.kind == "PodDisruptionBudget")
            .unwrap();
        assert_eq!((pdb.api_version, pdb.role), ("policy/v1", Role::Fleet));
        let roles: Vec<Role> = KINDS.iter().map(|k| k.role).collect();
        assert_eq!(roles[..2], [Role::Member, Role::Cache], "members go first");
        let mut kinds: Vec<&str> = KINDS.iter().map(|k| k.kind).collect();
        kinds.sort_unstable();
        kinds.dedup();
        assert_eq!(kinds.len(), KINDS.len(), "each kind once");
    }
}
