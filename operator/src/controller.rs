//! The reconcile loop: cache claims first, then the rest of the desired children, built once
//! and applied through a [`ChildSet`] (members rolled one at a time), then orphan removal
//! and the status. Deletion goes through the `modfleet.dev/cache-retention` finalizer so
//! cache PVCs are kept or deleted per `cache.retainPolicy`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ObjectReference, PersistentVolumeClaim, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DynamicObject, PartialObjectMeta, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{self, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::apply::{self, MANAGER};
use crate::children::{self, ChildSet, Removed, Role};
use crate::conditions::ConditionType::Progressing;
use crate::conditions::Status;
use crate::conditions::Verdict;
use crate::crd::{GoModuleProxy, GoModuleProxyStatus, InjectionStatus};
use crate::error::Error;
use crate::fleet_health::Poller;
use crate::injection::{self, status::Seen};
use crate::metrics::Metrics;
use crate::operator_token;
use crate::peer_token;
use crate::resources::access::{self, AdminToken};
use crate::resources::credentials::{self, SecretData};
use crate::resources::tiers;
use crate::resources::{self, TEMPLATE_HASH_ANNOTATION, labels, pvc};
use crate::rollout::{MemberStep, Rollout};
use crate::status::{self, CacheState, Failure, MemberState, Observed};
use crate::webhook::admission::Injection;

/// Finalizer that lets us keep or delete cache PVCs before the CR goes away.
pub const FINALIZER: &str = "modfleet.dev/cache-retention";

/// Shared state of all reconciles.
pub struct Ctx {
    pub client: Client,
    pub builder: resources::Context,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    /// Asks the members about their upstreams at every reconcile; `None`: never.
    pub health: Option<Poller>,
    /// The injection webhook's view (for `status.injection`); `None`: no webhook.
    pub injection: Option<Arc<Injection>>,
    /// Consecutive failures per object (namespace/name), for exponential backoff.
    failures: Mutex<HashMap<String, u32>>,
}

impl Ctx {
    pub fn new(
        client: Client,
        builder: resources::Context,
        metrics: Arc<Metrics>,
        health: Option<Poller>,
        injection: Option<Arc<Injection>>,
    ) -> Self {
        let reporter = Reporter {
            controller: MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Ctx {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            builder,
            metrics,
            health,
            injection,
            failures: Mutex::new(HashMap::new()),
        }
    }

    async fn event(&self, gmp: &GoModuleProxy, type_: EventType, reason: &str, note: String) {
        self.publish(gmp, type_, reason, note, None).await;
    }

    /// An Event about `gmp` that concerns one of its children. Distinct children give
    /// distinct Events (the recorder folds Events with the same key into a series).
    async fn event_about(
        &self,
        gmp: &GoModuleProxy,
        type_: EventType,
        reason: &str,
        note: String,
        related: Related<'_>,
    ) {
        self.publish(gmp, type_, reason, note, Some(related)).await;
    }

    async fn publish(
        &self,
        gmp: &GoModuleProxy,
        type_: EventType,
        reason: &str,
        note: String,
        related: Option<Related<'_>>,
    ) {
        let secondary = related.map(|r| ObjectReference {
            api_version: Some(r.api_version.into()),
            kind: Some(r.kind.into()),
            name: Some(r.name.into()),
            namespace: gmp.namespace(),
            ..ObjectReference::default()
        });
        let ev = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: reason.into(),
            secondary,
        };
        let span = apply::api_span(
            "create",
            "Event",
            &gmp.namespace().unwrap_or_default(),
            reason,
        );
        let object = gmp.object_ref(&());
        if let Err(e) = apply::traced(&span, self.recorder.publish(&ev, &object)).await {
            warn!(error = %e, reason, "cannot publish event");
        }
    }
}

/// The child an Event concerns, named with its kind's own apiVersion and kind.
#[derive(Clone, Copy, Debug)]
struct Related<'a> {
    api_version: &'static str,
    kind: &'static str,
    name: &'a str,
}

impl<'a> Related<'a> {
    fn of<K: k8s_openapi::Resource>(name: &'a str) -> Self {
        Related {
            api_version: K::API_VERSION,
            kind: K::KIND,
            name,
        }
    }

    fn removed(removed: &'a Removed) -> Self {
        Related {
            api_version: removed.kind.api_version,
            kind: removed.kind.kind,
            name: &removed.name,
        }
    }
}

fn key(gmp: &GoModuleProxy) -> String {
    format!("{}/{}", gmp.namespace().unwrap_or_default(), gmp.name_any())
}

/// Delay before retrying after `n` consecutive failures: 1s, 2s, 4s, … capped at 5 minutes.
pub fn backoff(n: u32) -> Duration {
    let secs = 1u64 << n.saturating_sub(1).min(9);
    Duration::from_secs(secs.min(300))
}

async fn reconcile(gmp: Arc<GoModuleProxy>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    // The reconcile span: its children are the API calls (apply.rs); `modfleet.changed_objects`
    // lists what this reconcile created, changed or deleted (empty: nothing to do).
    let span = info_span!(
        "reconcile",
        object = %gmp.name_any(),
        namespace = %gmp.namespace().unwrap_or_default(),
        generation = gmp.metadata.generation.unwrap_or(0),
        k8s.kind = "GoModuleProxy",
        modfleet.changes = tracing::field::Empty,
        modfleet.changed_objects = tracing::field::Empty,
        modfleet.error = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    let traced = span.clone();
    let (result, changes) = apply::tracking_changes(
        async move {
            let started = Instant::now();
            ctx.metrics.reconciles.inc();
            let ns = gmp.namespace().ok_or(Error::Missing("namespace"))?;
            let api: Api<GoModuleProxy> = Api::namespaced(ctx.client.clone(), &ns);
            let result = finalizer(&api, FINALIZER, gmp.clone(), |event| async {
                match event {
                    finalizer::Event::Apply(g) => converge(&g, &ctx).await,
                    finalizer::Event::Cleanup(g) => cleanup(&g, &ctx).await,
                }
            })
            .await
            .map_err(|e| match e {
                finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e,
                finalizer::Error::AddFinalizer(source)
                | finalizer::Error::RemoveFinalizer(source) => Error::Finalizer {
                    finalizer: FINALIZER,
                    name: gmp.name_any(),
                    source,
                },
                finalizer::Error::UnnamedObject => Error::Missing("name"),
                finalizer::Error::InvalidFinalizer => Error::Missing("valid finalizer name"),
            });
            ctx.metrics
                .observe(started.elapsed(), result.as_ref().err().map(Error::reason));
            match &result {
                Ok(_) => {
                    ctx.failures.lock().unwrap().remove(&key(&gmp));
                }
                Err(e) => {
                    warn!(error = %e, reason = e.reason(), "reconcile failed");
                    ctx.event(&gmp, EventType::Warning, e.reason(), e.to_string())
                        .await;
                }
            }
            result
        }
        .instrument(span),
    )
    .await;
    traced.record("modfleet.changes", changes.len() as i64);
    traced.record("modfleet.changed_objects", changes.join(", "));
    if let Err(e) = &result {
        apply::record_error(&traced, e);
    }
    result
}

fn error_policy(gmp: Arc<GoModuleProxy>, _err: &Error, ctx: Arc<Ctx>) -> Action {
    let mut failures = ctx.failures.lock().unwrap();
    let n = failures.entry(key(&gmp)).or_insert(0);
    *n += 1;
    Action::requeue(backoff(*n))
}

/// Brings the children in line with the spec and writes the status.
async fn converge(gmp: &GoModuleProxy, ctx: &Ctx) -> Result<Action, Error> {
    let mut observed = Observed::default();
    let mut admin_token = None;
    let result = apply_children(gmp, ctx, &mut observed, &mut admin_token).await;
    observed.error = result.as_ref().err().map(|e| Failure {
        kind: e.failure_kind(),
        message: e.to_string(),
    });
    if let Some(poller) = &ctx.health {
        observed.health = Some(poller.poll(&ctx.client, gmp, admin_token.as_ref()).await);
    }
    if gmp.spec.injection.is_some() {
        observed.injection = Some(injection_status(gmp, ctx));
    }
    let Some(new_status) = update_status(gmp, ctx, &observed).await? else {
        // Our read of the fleet was behind: the newer version's watch event reconciles again.
        result?;
        return Ok(Action::requeue(STALE_READ_RETRY));
    };
    result?;
    let settled = Progressing.status_in(Some(&new_status)) == Some(Status::False);
    let mut after = requeue_after(settled, ctx.health.as_ref().map(|p| p.interval));
    if gmp.spec.injection.is_some() {
        // Namespaces come and go and change labels without touching the fleet.
        after = after.min(INJECTION_REFRESH);
    }
    Ok(Action::requeue(after))
}

/// Safety net after a status write refused for a stale read (the watch event of the newer
/// version normally comes first).
const STALE_READ_RETRY: Duration = Duration::from_secs(2);

/// How often a fleet with `spec.injection` refreshes `status.injection` at most.
const INJECTION_REFRESH: Duration = Duration::from_secs(60);

/// `status.injection` and `Injecting` from the webhook's caches.
fn injection_status(gmp: &GoModuleProxy, ctx: &Ctx) -> (Option<InjectionStatus>, Verdict) {
    let Some(webhook) = &ctx.injection else {
        return injection::status::status(Seen::WebhookOff);
    };
    if !webhook.is_ready() {
        return injection::status::status(Seen::NotReady);
    }
    let namespaces = webhook.namespaces();
    let namespaces: Vec<_> = namespaces.iter().map(|(n, l)| (n.as_str(), l)).collect();
    let report = injection::namespace_report(gmp, &namespaces, &webhook.fleets(), &webhook.policy);
    injection::status::status(Seen::Report {
        report,
        pods_mutated: webhook.mutated(&injection::fleet_name(gmp)),
    })
}

/// When to reconcile again without a change. Owned-object watches wake us on every change
/// of the children, so for them the requeue is a safety net; upstream health changes
/// nowhere the API server sees, so it is refreshed by requeueing every poll interval. (A
/// reconcile of a settled fleet re-applies unchanged objects, which the API server answers
/// without writing anything.)
pub fn requeue_after(settled: bool, health_poll: Option<Duration>) -> Duration {
    let safety_net = if settled {
        Duration::from_secs(300)
    } else {
        Duration::from_secs(15)
    };
    health_poll.map_or(safety_net, |p| p.min(safety_net))
}

/// Applies the fleet, top to bottom: cache claims, then everything else built once for the
/// volumes the members really have, members last and one template update at a time, then
/// the removal of what is no longer wanted.
/// `admin_token` gets the operator's token for the members' `/status` (with `spec.access`).
async fn apply_children(
    gmp: &GoModuleProxy,
    ctx: &Ctx,
    observed: &mut Observed,
    admin_token: &mut Option<AdminToken>,
) -> Result<(), Error> {
    let mut children = ChildSet::new(&ctx.client, gmp)?;

    // Cache claims first: the proxy config must fit the volumes the members really have.
    let mut smallest_cache_bytes = None;
    for want in resources::cache_claims(gmp, &ctx.builder) {
        let claim = apply_cache(gmp, ctx, &mut children, want).await?;
        let bytes = pvc::effective_bytes(&claim);
        smallest_cache_bytes = smallest_cache_bytes.into_iter().chain(bytes).min();
        observed.caches.push(CacheState::from_pvc(&claim));
    }
    // The operator's own token Secret (with spec.access), made before the Secrets are read:
    // the members mount its line.
    *admin_token = match operator_token::ensure(gmp, &mut children).await {
        Ok(token) => token,
        Err(e) => return Err(report_running(gmp, &children, observed, e).await),
    };
    // The Secrets of upstreams, privateModules, tls and access, checked before anything is
    // rendered from them. When one is missing or lacks a key, nothing changes under the
    // members: they are reported as they run, and the Secret's creation (watched)
    // reconciles again.
    // The peer token Secret (with peer fill), made before the members mount it.
    let peer_token = match peer_token::ensure(gmp, &mut children).await {
        Ok(token) => token,
        Err(e) => return Err(report_running(gmp, &children, observed, e).await),
    };
    let secrets = read_secrets(gmp, ctx).await?;
    let checked = credentials::check(gmp, &secrets)
        .map_err(Error::from)
        .and_then(|c| Ok((c, access::check(gmp, &secrets)?)))
        .and_then(|(c, a)| Ok((c, a, tiers::check(gmp, &secrets, peer_token.as_ref())?)));
    let (credentials, access, tiers) = match checked {
        Ok(checked) => checked,
        Err(e) => return Err(report_running(gmp, &children, observed, e).await),
    };
    let builder = resources::Context {
        smallest_cache_bytes,
        credentials,
        access,
        tiers,
        ..ctx.builder.clone()
    };
    let desired = resources::desired(gmp, &builder);

    // What the members need first: config, identity, Services, policies.
    children.apply(&desired.config_map).await?;
    children.apply(&desired.service_account).await?;
    for service in &desired.services {
        children.apply(service).await?;
    }
    if let Some(pdb) = &desired.pdb {
        children.apply(pdb).await?;
    }
    if let Some(network_policy) = &desired.network_policy {
        children.apply(network_policy).await?;
    }
    if let Some((role, binding)) = &desired.membership {
        children.apply(role).await?;
        children.apply(binding).await?;
    }

    // Members in order, so a bad config takes down one member, not the fleet.
    let mut rollout = Rollout::default();
    for want in &desired.deployments {
        let member = apply_member(gmp, ctx, &mut children, &mut rollout, want).await?;
        observed.members.push(member);
    }

    // Remove what is ours but no longer wanted.
    for kind in &children::KINDS {
        for removed in children.remove_orphans(kind).await? {
            removal_event(gmp, ctx, &removed).await;
        }
    }
    Ok(())
}

/// Reports the members as they run when the reconcile stops before rendering them (nothing
/// was changed under them), and gives back `e`.
async fn report_running(
    gmp: &GoModuleProxy,
    children: &ChildSet,
    observed: &mut Observed,
    e: Error,
) -> Error {
    for name in resources::member_deployments(gmp) {
        match children.get::<Deployment>(&name).await {
            Ok(Some(current)) => {
                let hash = template_hash(&current).unwrap_or_default().to_owned();
                observed
                    .members
                    .push(MemberState::from_deployment(&current, &hash));
            }
            Ok(None) => {}
            Err(read) => return read,
        }
    }
    e
}

/// Every Secret `gmp` names: its upstreams', private modules', `tls`'s, `access`'s (the
/// operator's own token Secret included) and `cache.objectStore`'s, each once.
fn referenced_secrets(gmp: &GoModuleProxy) -> Vec<String> {
    let mut names = credentials::referenced_secrets(gmp);
    names.extend(access::referenced_secrets(gmp));
    names.extend(tiers::referenced_secrets(gmp));
    names.sort();
    names.dedup();
    names
}

/// The data of the Secrets `gmp` references (`None`: no such Secret). Held only for
/// [`credentials::check`] and [`access::check`]; never logged.
async fn read_secrets(gmp: &GoModuleProxy, ctx: &Ctx) -> Result<SecretData, Error> {
    let ns = gmp.namespace().ok_or(Error::Missing("namespace"))?;
    let mut data = SecretData::new();
    for name in referenced_secrets(gmp) {
        let secret: Option<Secret> = apply::get(&ctx.client, &ns, &name).await?;
        let keys = secret.map(|s| {
            s.data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect()
        });
        data.insert(name, keys);
    }
    Ok(data)
}

/// The fleets in `secret`'s namespace that reference it.
fn fleets_referencing(
    fleets: &[Arc<GoModuleProxy>],
    secret: &PartialObjectMeta<Secret>,
) -> Vec<ObjectRef<GoModuleProxy>> {
    let (ns, name) = (secret.namespace(), secret.name_any());
    fleets
        .iter()
        .filter(|g| g.namespace() == ns && referenced_secrets(g).contains(&name))
        .map(|g| ObjectRef::from_obj(g.as_ref()))
        .collect()
}

/// Applies one member Deployment, unless the rollout holds its template update back, and
/// says what it reports.
async fn apply_member(
    gmp: &GoModuleProxy,
    ctx: &Ctx,
    children: &mut ChildSet,
    rollout: &mut Rollout,
    want: &Deployment,
) -> Result<MemberState, Error> {
    let name = want.name_any();
    let hash = template_hash(want).unwrap_or_default().to_owned();
    let current: Option<Deployment> = children.get(&name).await?;
    let step = rollout.step(current.as_ref().map(template_hash), &hash);
    let state = match (step, current) {
        (MemberStep::Hold, Some(current)) => {
            info!(member = %name, "holding member until the previous one is Ready");
            children.keep::<Deployment>(name);
            MemberState::from_deployment(&current, &hash)
        }
        (step, _) => {
            let applied = children.apply(want).await?;
            let note = match step {
                MemberStep::Create => Some(("CreatedMember", format!("Created Deployment {name}"))),
                MemberStep::Update => Some((
                    "RollingMember",
                    format!("Updating {name} to the current configuration"),
                )),
                MemberStep::Apply | MemberStep::Hold => None,
            };
            if let Some((reason, note)) = note {
                let related = Related::of::<Deployment>(&name);
                ctx.event_about(gmp, EventType::Normal, reason, note, related)
                    .await;
            }
            MemberState::from_deployment(&applied, &hash)
        }
    };
    rollout.observe(&state);
    Ok(state)
}

/// The template hash annotation of a member Deployment.
fn template_hash(d: &Deployment) -> Option<&str> {
    d.annotations()
        .get(TEMPLATE_HASH_ANNOTATION)
        .map(String::as_str)
}

/// Applies one cache claim: created, kept as it is, or grown when `cache.size` grew.
async fn apply_cache(
    gmp: &GoModuleProxy,
    ctx: &Ctx,
    children: &mut ChildSet,
    mut want: PersistentVolumeClaim,
) -> Result<PersistentVolumeClaim, Error> {
    let name = want.name_any();
    let existing: Option<PersistentVolumeClaim> = children.get(&name).await?;
    let grow = existing
        .as_ref()
        .is_some_and(|e| pvc::wants_growth(&want, e));
    if let Some(existing) = &existing {
        pvc::keep_existing_spec(&mut want, existing, grow);
    }
    let related = Related::of::<PersistentVolumeClaim>(&name);
    match children.apply(&want).await {
        Ok(applied) => {
            if existing.is_none() {
                let note = format!("Created cache PersistentVolumeClaim {name}");
                ctx.event_about(gmp, EventType::Normal, "CreatedCache", note, related)
                    .await;
            } else if grow {
                let note = format!(
                    "Expanding cache PersistentVolumeClaim {name} to {}",
                    gmp.spec.cache.size
                );
                ctx.event_about(gmp, EventType::Normal, "ExpandingCache", note, related)
                    .await;
            }
            Ok(applied)
        }
        // The StorageClass cannot expand volumes: keep the old size, say so, go on.
        Err(e) if grow && e.is_refusal() => {
            if let Some(existing) = &existing {
                pvc::keep_existing_spec(&mut want, existing, false);
            }
            let note = format!(
                "Cannot expand cache PersistentVolumeClaim {name} to {} (its StorageClass may not allow expansion); it keeps its size: {e}",
                gmp.spec.cache.size
            );
            ctx.event_about(gmp, EventType::Warning, "CacheResizeRefused", note, related)
                .await;
            children.apply(&want).await
        }
        Err(e) => Err(e),
    }
}

/// The Event about a child that left the fleet.
async fn removal_event(gmp: &GoModuleProxy, ctx: &Ctx, removed: &Removed) {
    let (kind, name) = (removed.kind.kind, &removed.name);
    let (reason, note) = match (removed.kind.role, removed.released) {
        (Role::Member, _) => ("DeletedMember", format!("Deleted {kind} {name}")),
        (Role::Cache, false) => (
            "DeletedCache",
            format!("Deleted cache {kind} {name} (retainPolicy: Delete)"),
        ),
        (Role::Cache, true) => (
            "RetainedCache",
            format!(
                "Kept cache {kind} {name} and removed its owner reference (retainPolicy: Retain)"
            ),
        ),
        (Role::Fleet, _) => (
            "DeletedOrphan",
            format!("Deleted {kind} {name}: no longer part of the fleet"),
        ),
    };
    let related = Related::removed(removed);
    ctx.event_about(gmp, EventType::Normal, reason, note, related)
        .await;
}

/// Computes the status and patches it only when it changed. `None`: the fleet changed since
/// it was read, so nothing was written (see [`patch_status`]).
async fn update_status(
    gmp: &GoModuleProxy,
    ctx: &Ctx,
    observed: &Observed,
) -> Result<Option<GoModuleProxyStatus>, Error> {
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let new = status::compute(gmp, observed, now);
    if gmp.status.as_ref() == Some(&new) {
        return Ok(Some(new));
    }
    let ns = gmp.namespace().ok_or(Error::Missing("namespace"))?;
    let api: Api<GoModuleProxy> = Api::namespaced(ctx.client.clone(), &ns);
    match patch_status(&api, gmp, &new).await {
        Ok(StatusWrite::Written) => {}
        Ok(StatusWrite::Stale) => {
            debug!(
                read = gmp.resource_version(),
                "fleet changed since it was read; status not written"
            );
            return Ok(None);
        }
        Err(source) => {
            let name = gmp.name_any();
            return Err(Error::Status { name, source });
        }
    }
    for notice in status::notices(gmp.status.as_ref(), &new) {
        let type_ = if notice.warning {
            EventType::Warning
        } else {
            EventType::Normal
        };
        ctx.event(gmp, type_, &notice.reason, notice.message).await;
    }
    Ok(Some(new))
}

/// What became of a status write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusWrite {
    Written,
    /// Refused: the fleet is no longer the version the status was computed from.
    Stale,
}

/// Merge-patches `status` onto the fleet on condition that it is still the version `read`
/// (its resourceVersion is the patch's precondition). A reconcile's object comes from the
/// watch cache and can be behind our own last status write; a status computed from it takes
/// an old condition as the previous one, so it would restart `lastTransitionTime` and
/// announce a flip again as an Event.
pub async fn patch_status(
    api: &Api<GoModuleProxy>,
    read: &GoModuleProxy,
    status: &GoModuleProxyStatus,
) -> Result<StatusWrite, kube::Error> {
    let name = read.name_any();
    let span = apply::api_span(
        "patch status",
        "GoModuleProxy",
        &read.namespace().unwrap_or_default(),
        &name,
    );
    let patch = Patch::Merge(json!({
        "metadata": { "resourceVersion": read.resource_version() },
        "status": status,
    }));
    match apply::traced(
        &span,
        api.patch_status(&name, &PatchParams::default(), &patch),
    )
    .await
    {
        Ok(_) => {
            span.record("modfleet.changed", true);
            Ok(StatusWrite::Written)
        }
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(StatusWrite::Stale),
        Err(e) => Err(e),
    }
}

/// CR deletion: keep or delete the cache PVCs, then let the finalizer go (the garbage
/// collector removes the other children through their owner references).
async fn cleanup(gmp: &GoModuleProxy, ctx: &Ctx) -> Result<Action, Error> {
    // Nothing is wanted any more.
    let children = ChildSet::new(&ctx.client, gmp)?;
    for kind in children::KINDS.iter().filter(|k| k.role == Role::Cache) {
        for removed in children.remove_orphans(kind).await? {
            removal_event(gmp, ctx, &removed).await;
        }
    }
    let policy = gmp.spec.cache.retain_policy;
    info!(retain_policy = ?policy, "GoModuleProxy deleted; caches handled");
    Ok(Action::await_change())
}

/// Runs the controller for one namespace (`None`: all) until `shutdown` is cancelled. It
/// wakes on every change of the GoModuleProxies and of their children of each kind in
/// [`children::KINDS`], and of the Secrets they reference (upstreams, private modules,
/// `tls`, `access`).
pub async fn run(ctx: Arc<Ctx>, namespace: Option<String>, shutdown: CancellationToken) {
    let client = ctx.client.clone();
    let fleets: Api<GoModuleProxy> = match &namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let controller = Controller::new(fleets, watcher::Config::default().any_semantic());
    // Children are watched through our managed-by label only: cheaper than all objects.
    let owned =
        watcher::Config::default().labels(&format!("{}={}", labels::MANAGED_BY, labels::MANAGER));
    let controller = children::KINDS.iter().fold(controller, |controller, kind| {
        let resource = kind.api_resource();
        let api: Api<DynamicObject> = match &namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
            None => Api::all_with(client.clone(), &resource),
        };
        controller.owns_with(api, resource, owned.clone())
    });
    // Secrets by metadata only (`PartialObjectMeta` asks the API server for metadata, so no
    // Secret's data streams to the operator; a change of the data changes the
    // resourceVersion): a change reconciles the fleets that reference the Secret.
    let secrets: Api<PartialObjectMeta<Secret>> = match &namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let fleets_store = controller.store();
    let controller = controller.watches(secrets, watcher::Config::default(), move |secret| {
        fleets_referencing(&fleets_store.state(), &secret)
    });
    let stop = shutdown.clone();
    controller
        .graceful_shutdown_on(async move { stop.cancelled_owned().await })
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            match res {
                Ok((obj, _)) => tracing::debug!(object = %obj, "reconciled"),
                Err(e) => tracing::debug!(error = %e, "reconcile error"),
            }
        })
        .await;
    info!(namespace = ?namespace, "controller stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_polling_sets_the_requeue_interval() {
        let s = Duration::from_secs;
        assert_eq!(requeue_after(true, None), s(300));
        assert_eq!(requeue_after(false, None), s(15));
        assert_eq!(requeue_after(true, Some(s(30))), s(30));
        assert_eq!(requeue_after(false, Some(s(30))), s(15));
        assert_eq!(requeue_after(true, Some(s(1))), s(1));
    }

    #[test]
    fn a_secret_maps_to_the_fleets_of_its_namespace_that_name_it() {
        use crate::resources::credentials::tests::private_fleet;
        let in_ns = |ns: &str, name: &str| {
            let mut g = private_fleet();
            g.metadata.namespace = Some(ns.into());
            g.metadata.name = Some(name.into());
            Arc::new(g)
        };
        let mut plain = crate::resources::testutil::minimal();
        plain.metadata.name = Some("plain".into());
        let fleets = [in_ns("team-a", "a"), in_ns("team-b", "b"), Arc::new(plain)];
        let secret = |ns: &str, name: &str| {
            let mut s = PartialObjectMeta::<Secret>::default();
            s.metadata.namespace = Some(ns.into());
            s.metadata.name = Some(name.into());
            s
        };
        let names = |refs: Vec<ObjectRef<GoModuleProxy>>| -> Vec<String> {
            refs.into_iter().map(|r| r.name).collect()
        };
        assert_eq!(
            names(fleets_referencing(&fleets, &secret("team-a", "git-ssh"))),
            ["a"]
        );
        assert_eq!(
            names(fleets_referencing(&fleets, &secret("team-b", "git-basic"))),
            ["b"]
        );
        assert!(fleets_referencing(&fleets, &secret("team-a", "other")).is_empty());
        // An upstream's Secret is watched the same way.
        let mut upstreams = crate::resources::credentials::tests::upstream_fleet();
        upstreams.metadata.namespace = Some("team-a".into());
        upstreams.metadata.name = Some("u".into());
        let fleets = [fleets[0].clone(), Arc::new(upstreams)];
        assert_eq!(
            names(fleets_referencing(&fleets, &secret("team-a", "up-token"))),
            ["u"]
        );
        assert!(fleets_referencing(&fleets, &secret("team-c", "git-ssh")).is_empty());
    }

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(5), Duration::from_secs(16));
        assert_eq!(backoff(30), Duration::from_secs(300));
    }
}
