//! Talking to the API server about children: server-side apply with our field manager, and
//! removal of children we no longer want. An object is only ever deleted (or released) when
//! it carries our labels AND a controller owner reference with the CR's uid, so objects a
//! person created with look-alike labels are never touched.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::fmt::Debug;
use std::future::Future;
use std::sync::Mutex;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, Preconditions};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use tracing::Instrument;
use tracing::field::Empty;

use crate::crd::{GoModuleProxy, RetainPolicy};
use crate::error::Error;
use crate::resources::labels;

/// Field manager of every write.
pub const MANAGER: &str = "modfleet-operator";

fn kind<K: Resource<DynamicType = ()>>() -> String {
    K::kind(&()).into_owned()
}

/// The span of one API call, a child of the reconcile span: named `{verb} {Kind}` (e.g.
/// `apply Deployment`), with the object and, for writes, whether it changed.
pub fn api_span(verb: &'static str, kind: &str, ns: &str, name: &str) -> tracing::Span {
    tracing::info_span!(
        "api call",
        otel.name = format!("{verb} {kind}"),
        otel.kind = "client",
        otel.status_code = Empty,
        k8s.verb = verb,
        k8s.kind = kind,
        k8s.namespace = ns,
        k8s.name = name,
        modfleet.changed = Empty,
        modfleet.error = Empty,
    )
}

/// Marks an API call's span as failed.
pub fn record_error(span: &tracing::Span, error: &dyn std::fmt::Display) {
    span.record("otel.status_code", "ERROR");
    span.record("modfleet.error", error.to_string());
}

/// Runs one API call in `span`; a failure marks the span failed.
pub async fn traced<T, E: std::fmt::Display>(
    span: &tracing::Span,
    call: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let result = call.instrument(span.clone()).await;
    if let Err(e) = &result {
        record_error(span, e);
    }
    result
}

tokio::task_local! {
    /// Children changed during the current reconcile (`apply Deployment/web-0`, ...).
    static CHANGES: RefCell<Vec<String>>;
}

/// Runs `fut` (a reconcile) and returns what it changed, for the reconcile span.
pub async fn tracking_changes<F: Future>(fut: F) -> (F::Output, Vec<String>) {
    CHANGES
        .scope(RefCell::new(Vec::new()), async {
            let out = fut.await;
            (out, CHANGES.with(|c| c.take()))
        })
        .await
}

fn note_change(change: String) {
    // Outside a reconcile (e.g. a test) there is nothing to note it in.
    let _ = CHANGES.try_with(|c| c.borrow_mut().push(change));
}

/// When our last apply changed each child, as its managedFields entry of our manager says.
/// The API server moves that time only when our apply changes the object (not when another
/// controller writes status), so an apply that leaves it where it was changed nothing.
static LAST_CHANGE: Mutex<Option<HashMap<String, String>>> = Mutex::new(None);

/// The time of our field manager's Apply entry (RFC 3339, whole seconds).
fn our_apply_time(meta: &ObjectMeta) -> Option<String> {
    meta.managed_fields
        .iter()
        .flatten()
        .find(|m| {
            m.manager.as_deref() == Some(MANAGER)
                && m.operation.as_deref() == Some("Apply")
                && m.subresource.as_deref().unwrap_or("").is_empty()
        })
        .and_then(|m| m.time.as_ref())
        .map(|t| t.0.to_string())
}

/// Whether the apply that returned `meta` changed the object. The first time a child is seen
/// in this process there is nothing to compare with: then a change within the last few
/// seconds counts (the clocks of operator and API server agree to that much). Two changes
/// within the same second look like one.
fn changed_by_apply(key: String, meta: &ObjectMeta, now: jiff::Timestamp) -> bool {
    let Some(time) = our_apply_time(meta) else {
        return true;
    };
    let mut seen = LAST_CHANGE.lock().unwrap_or_else(|e| e.into_inner());
    match seen
        .get_or_insert_with(HashMap::new)
        .insert(key, time.clone())
    {
        Some(before) => before != time,
        None => time
            .parse::<jiff::Timestamp>()
            .is_ok_and(|t| (now - t).get_seconds().abs() <= 5),
    }
}

/// Server-side apply of `obj` (forcing ownership of the fields we set).
pub async fn apply<K>(client: &Client, ns: &str, obj: &K) -> Result<K, Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Serialize
        + DeserializeOwned
        + Clone
        + Debug,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    let kind = kind::<K>();
    let span = api_span("apply", &kind, ns, &name);
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let patch = PatchParams::apply(MANAGER).force();
    let applied = match traced(&span, api.patch(&name, &patch, &Patch::Apply(obj))).await {
        Ok(applied) => applied,
        Err(source) => return Err(Error::Apply { kind, name, source }),
    };
    let key = format!("{kind}/{ns}/{name}");
    let changed = changed_by_apply(key, applied.meta(), jiff::Timestamp::now());
    span.record("modfleet.changed", changed);
    if changed {
        note_change(format!("apply {kind}/{name}"));
    }
    Ok(applied)
}

/// The object, or `None` when it does not exist.
pub async fn get<K>(client: &Client, ns: &str, name: &str) -> Result<Option<K>, Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + DeserializeOwned
        + Clone
        + Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let span = api_span("get", &kind::<K>(), ns, name);
    traced(&span, api.get_opt(name))
        .await
        .map_err(|source| Error::Get {
            kind: kind::<K>(),
            name: name.to_owned(),
            source,
        })
}

/// Whether `meta` has a controller owner reference to the object with `uid`.
pub fn owned_by(meta: &ObjectMeta, uid: &str) -> bool {
    meta.owner_references
        .iter()
        .flatten()
        .any(|o| o.uid == uid && o.controller == Some(true))
}

/// Whether we may remove this object: our labels for this fleet and our owner reference.
pub fn is_ours(meta: &ObjectMeta, gmp: &GoModuleProxy, uid: &str) -> bool {
    labels::is_ours(meta.labels.as_ref(), &gmp.name_any()) && owned_by(meta, uid)
}

async fn list_ours<K>(client: &Client, gmp: &GoModuleProxy) -> Result<Vec<K>, Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + DeserializeOwned
        + Clone
        + Debug,
{
    let ns = gmp.namespace().ok_or(Error::Missing("namespace"))?;
    let uid = gmp.uid().ok_or(Error::Missing("uid"))?;
    let api: Api<K> = Api::namespaced(client.clone(), &ns);
    let selector = labels::owned_selector(&gmp.name_any());
    let span = api_span("list", &kind::<K>(), &ns, &selector);
    let list = traced(&span, api.list(&ListParams::default().labels(&selector)))
        .await
        .map_err(|source| Error::List {
            kind: kind::<K>(),
            instance: gmp.name_any(),
            source,
        })?;
    Ok(list
        .items
        .into_iter()
        .filter(|o| is_ours(o.meta(), gmp, &uid))
        .collect())
}

async fn delete<K>(client: &Client, ns: &str, obj: &K) -> Result<(), Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + DeserializeOwned
        + Clone
        + Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let name = obj.name_any();
    // The uid precondition makes sure we delete exactly the object we checked.
    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            uid: obj.uid(),
            resource_version: None,
        }),
        ..DeleteParams::background()
    };
    let span = api_span("delete", &kind::<K>(), ns, &name);
    match api.delete(&name, &dp).instrument(span.clone()).await {
        Ok(_) => {
            span.record("modfleet.changed", true);
            note_change(format!("delete {}/{name}", kind::<K>()));
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(source) => {
            record_error(&span, &source);
            Err(Error::Delete {
                kind: kind::<K>(),
                name,
                source,
            })
        }
    }
}

/// Deletes children of kind `K` that are ours but not in `keep`; returns their names.
pub async fn delete_orphans<K>(
    client: &Client,
    gmp: &GoModuleProxy,
    keep: &BTreeSet<String>,
) -> Result<Vec<String>, Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + DeserializeOwned
        + Clone
        + Debug,
{
    let ns = gmp.namespace().ok_or(Error::Missing("namespace"))?;
    let mut deleted = Vec::new();
    for obj in list_ours::<K>(client, gmp).await? {
        let name = obj.name_any();
        if keep.contains(&name) || obj.meta().deletion_timestamp.is_some() {
            continue;
        }
        delete(client, &ns, &obj).await?;
        deleted.push(name);
    }
    Ok(deleted)
}

/// What happened to a cache PVC that is no longer wanted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PvcOutcome {
    Deleted(String),
    /// Our owner reference was removed: the claim (and the cached modules) outlive the fleet
    /// member and are adopted again if the member comes back.
    Released(String),
}

/// Handles our cache PVCs not in `keep` per `policy`.
pub async fn retire_pvcs(
    client: &Client,
    gmp: &GoModuleProxy,
    keep: &BTreeSet<String>,
    policy: RetainPolicy,
) -> Result<Vec<PvcOutcome>, Error> {
    let ns = gmp.namespace().ok_or(Error::Missing("namespace"))?;
    let uid = gmp.uid().ok_or(Error::Missing("uid"))?;
    let mut out = Vec::new();
    for pvc in list_ours::<PersistentVolumeClaim>(client, gmp).await? {
        let name = pvc.name_any();
        if keep.contains(&name) || pvc.meta().deletion_timestamp.is_some() {
            continue;
        }
        match policy {
            RetainPolicy::Delete => {
                delete(client, &ns, &pvc).await?;
                out.push(PvcOutcome::Deleted(name));
            }
            RetainPolicy::Retain => {
                let remaining: Vec<_> = pvc
                    .owner_references()
                    .iter()
                    .filter(|o| o.uid != uid)
                    .cloned()
                    .collect();
                let patch = json!({
                    "metadata": {
                        // Optimistic lock: fail rather than drop someone else's change.
                        "resourceVersion": pvc.resource_version(),
                        "ownerReferences": remaining,
                    }
                });
                let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
                let span = api_span("release", "PersistentVolumeClaim", &ns, &name);
                let (params, patch) = (PatchParams::default(), Patch::Merge(&patch));
                traced(&span, api.patch(&name, &params, &patch))
                    .await
                    .map_err(|source| Error::Release {
                        name: name.clone(),
                        source,
                    })?;
                span.record("modfleet.changed", true);
                note_change(format!("release PersistentVolumeClaim/{name}"));
                out.push(PvcOutcome::Released(name));
            }
        }
    }
    Ok(out)
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
        assert!(is_ours(&cm.metadata, &g, "1234-uid"));
        // Someone else's uid.
        assert!(!is_ours(&cm.metadata, &g, "other-uid"));
        // Our labels but no owner reference (e.g. a released PVC, or a look-alike).
        let mut m = cm.metadata.clone();
        m.owner_references = None;
        assert!(!is_ours(&m, &g, "1234-uid"));
        // Our owner reference but not a controller one.
        let mut m = cm.metadata.clone();
        m.owner_references = Some(vec![OwnerReference {
            controller: None,
            ..m.owner_references.unwrap()[0].clone()
        }]);
        assert!(!is_ours(&m, &g, "1234-uid"));
        // Owner reference but labels of another manager.
        let mut m = cm.metadata.clone();
        m.labels
            .as_mut()
            .unwrap()
            .insert(l::MANAGED_BY.into(), "helm".into());
        assert!(!is_ours(&m, &g, "1234-uid"));
    }

    #[tokio::test]
    async fn changes_are_collected_per_reconcile() {
        let ((), changes) = tracking_changes(async {
            note_change("apply ConfigMap/web-config".into());
            note_change("delete Deployment/web-2".into());
        })
        .await;
        assert_eq!(
            changes,
            ["apply ConfigMap/web-config", "delete Deployment/web-2"]
        );
        note_change("outside a reconcile: ignored".into());
    }

    fn applied_at(time: &str, others: &[(&str, &str)]) -> ObjectMeta {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, Time};
        let entry = |manager: &str, operation: &str, time: &str| ManagedFieldsEntry {
            manager: Some(manager.into()),
            operation: Some(operation.into()),
            time: Some(Time(time.parse().unwrap())),
            ..ManagedFieldsEntry::default()
        };
        let mut fields = vec![entry(MANAGER, "Apply", time)];
        fields.extend(others.iter().map(|(m, t)| entry(m, "Update", t)));
        ObjectMeta {
            managed_fields: Some(fields),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn an_apply_changed_the_object_only_when_our_entry_moved() {
        let now: jiff::Timestamp = "2026-11-21T10:00:03Z".parse().unwrap();
        let key = || "Deployment/test-ns/unit-test".to_string();
        // Created just now.
        assert!(changed_by_apply(
            key(),
            &applied_at("2026-11-21T10:00:02Z", &[]),
            now
        ));
        // Re-applied unchanged while the controller-manager updated the status.
        let status = [("kube-controller-manager", "2026-11-21T10:00:09Z")];
        assert!(!changed_by_apply(
            key(),
            &applied_at("2026-11-21T10:00:02Z", &status),
            now
        ));
        // Our apply changed the spec.
        assert!(changed_by_apply(
            key(),
            &applied_at("2026-11-21T10:05:00Z", &status),
            now
        ));
        // First seen in this process and untouched for an hour: not changed by this apply.
        let other = || "Service/test-ns/unit-test".to_string();
        assert!(!changed_by_apply(
            other(),
            &applied_at("2026-11-21T09:00:00Z", &[]),
            now
        ));
    }
}
