//! Talking to the API server: server-side apply with our field manager, reads, and the span
//! of each call, which records whether the call changed anything; [`tracking_changes`]
//! collects those changes per reconcile for its span.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Debug;
use std::future::Future;
use std::sync::Mutex;

use k8s_openapi::NamespaceResourceScope;
use kube::api::{ObjectMeta, Patch, PatchParams};
use kube::{Api, Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::Instrument;
use tracing::field::Empty;

use crate::error::Error;

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

pub(crate) fn note_change(change: String) {
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

/// A namespaced object as kube's typed `Api` reads and writes it: one name for the bound every
/// function here (and `ClusterResources`) needs.
pub trait Namespaced:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Serialize
    + DeserializeOwned
    + Clone
    + Debug
{
}

impl<K> Namespaced for K where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Serialize
        + DeserializeOwned
        + Clone
        + Debug
{
}

/// Server-side apply of `obj` (forcing ownership of the fields we set).
pub async fn apply<K>(client: &Client, ns: &str, obj: &K) -> Result<K, Error>
where
    K: Namespaced,
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

/// Creates `obj`; fails if it exists (for objects made once and never overwritten).
pub async fn create<K>(client: &Client, ns: &str, obj: &K) -> Result<K, Error>
where
    K: Namespaced,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    let kind = kind::<K>();
    let span = api_span("create", &kind, ns, &name);
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let params = kube::api::PostParams {
        field_manager: Some(MANAGER.into()),
        ..kube::api::PostParams::default()
    };
    match traced(&span, api.create(&params, obj)).await {
        Ok(created) => {
            span.record("modfleet.changed", true);
            note_change(format!("create {kind}/{name}"));
            Ok(created)
        }
        Err(source) => Err(Error::Create { kind, name, source }),
    }
}

/// The object, or `None` when it does not exist.
pub async fn get<K>(client: &Client, ns: &str, name: &str) -> Result<Option<K>, Error>
where
    K: Namespaced,
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

#[cfg(test)]
mod tests {
    use super::*;

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
