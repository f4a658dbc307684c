//! `--webhook-certs=operator`: every replica runs this loop on the one Secret. Each pass
//! reads the Secret, presents what it holds, and takes at most one step of [`pki::plan`],
//! written with the resourceVersion it read (a conflict means another replica moved first:
//! read again). The order of steps keeps the API server able to verify what is presented:
//! a new CA enters ca.crt behind nothing (the serving certificate, signed by the old CA,
//! stays, and so does the old CA in the bundle); every webhook's caBundle is set to ca.crt;
//! only then is a serving certificate signed by the new CA written.
//!
//! Permissions: Secrets in the operator namespace: get, create, update, delete (delete only
//! to replace a Secret of another type); the MutatingWebhookConfiguration: get, update.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::{DeleteParams, PostParams, Preconditions};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::pki::{self, Plan, Stored};
use super::{OperatorSettings, ServingCert, pause, unix_now};
use crate::resources::labels;

/// Secret type the API server checks for tls.crt and tls.key.
const TLS_TYPE: &str = "kubernetes.io/tls";
pub const CA_CRT: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";
pub const TLS_CRT: &str = "tls.crt";
pub const TLS_KEY: &str = "tls.key";
/// Label value of `app.kubernetes.io/component` on the Secret.
const COMPONENT: &str = "webhook";
/// Backoff after API errors: doubles from the first to the last.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(500), Duration::from_secs(30));
/// Steps in a row without a pause; more means someone keeps undoing them.
const MAX_STEPS_IN_A_ROW: u32 = 8;

#[derive(Debug, thiserror::Error)]
enum StepError {
    #[error("Kubernetes API: {0}")]
    Api(#[from] kube::Error),
    #[error("making a certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
}

/// What a pass asks of the loop.
enum Next {
    /// Something was written (or lost a race): read again now.
    Again,
    /// Nothing due for this long.
    Sleep(Duration),
}

struct Ctx {
    s: OperatorSettings,
    secrets: Api<Secret>,
    configurations: Api<MutatingWebhookConfiguration>,
    cert: ServingCert,
    /// Last warning about the MutatingWebhookConfiguration, logged once per change.
    configuration_note: Option<String>,
}

/// Runs until `stop`; never returns an error (API errors are retried).
pub(super) async fn run(
    client: kube::Client,
    s: OperatorSettings,
    cert: ServingCert,
    stop: CancellationToken,
    poll: Duration,
) {
    let mut ctx = Ctx {
        secrets: Api::namespaced(client.clone(), &s.namespace),
        configurations: Api::all(client),
        s,
        cert,
        configuration_note: None,
    };
    let mut backoff = BACKOFF.0;
    let mut steps = 0;
    loop {
        if stop.is_cancelled() {
            return;
        }
        let wait = match pass(&mut ctx, unix_now()).await {
            Ok(Next::Again) if steps < MAX_STEPS_IN_A_ROW => {
                steps += 1;
                backoff = BACKOFF.0;
                continue;
            }
            Ok(Next::Again) => {
                warn!(
                    secret = %ctx.s.secret_name,
                    "the webhook's Secret changed under every write {MAX_STEPS_IN_A_ROW} times in a row; pausing"
                );
                poll
            }
            Ok(Next::Sleep(d)) => {
                backoff = BACKOFF.0;
                d.min(poll)
            }
            Err(e) => {
                warn!(
                    error = %e,
                    namespace = %ctx.s.namespace,
                    secret = %ctx.s.secret_name,
                    configuration = %ctx.s.configuration_name,
                    retry_in = ?backoff,
                    "cannot maintain the webhook's certificate (the operator needs get, create, update and delete on this Secret and get and update on the MutatingWebhookConfiguration)"
                );
                let d = backoff;
                backoff = (backoff * 2).min(BACKOFF.1);
                d
            }
        };
        steps = 0;
        if !pause(&stop, wait).await {
            return;
        }
    }
}

fn stored(secret: &Secret) -> Stored {
    let get = |k: &str| {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(k))
            .map(|b| b.0.clone())
            .unwrap_or_default()
    };
    Stored {
        ca_crt: get(CA_CRT),
        ca_key: get(CA_KEY),
        tls_crt: get(TLS_CRT),
        tls_key: get(TLS_KEY),
    }
}

/// One read, one step.
async fn pass(ctx: &mut Ctx, now: i64) -> Result<Next, StepError> {
    let secret = ctx.secrets.get_opt(&ctx.s.secret_name).await?;
    if let Some(sec) = &secret
        && sec.type_.as_deref() != Some(TLS_TYPE)
    {
        // The type cannot be changed in place; delete exactly what was read.
        warn!(
            secret = %ctx.s.secret_name,
            found = ?sec.type_,
            "the webhook's Secret is not of type {TLS_TYPE}; deleting it to make a new one"
        );
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                resource_version: sec.metadata.resource_version.clone(),
                uid: sec.metadata.uid.clone(),
            }),
            ..DeleteParams::default()
        };
        return match ctx.secrets.delete(&ctx.s.secret_name, &dp).await {
            Ok(_) => Ok(Next::Again),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(Next::Again),
            Err(e) => Err(e.into()),
        };
    }
    let stored = secret.as_ref().map(stored);
    let assessed = pki::assess(stored.as_ref(), &ctx.s.hosts, ctx.s.life, now);
    if let Ok(m) = &assessed
        && let Ok(serving) = &m.serving
    {
        present(&ctx.cert, serving);
    }
    let plan = pki::plan(&assessed, stored.as_ref(), ctx.s.life, now);
    let (Some(stored), Ok(m)) = (stored, assessed) else {
        let Plan::NewCa { reason } = plan else {
            unreachable!("plan answers NewCa when nothing is usable")
        };
        return new_ca(ctx, secret.as_ref(), &reason, now).await;
    };
    let secret = secret.expect("stored came from it");
    match plan {
        Plan::NewCa { reason } => new_ca(ctx, Some(&secret), &reason, now).await,
        Plan::RotateCa => {
            let pair = pki::new_ca(ctx.s.life, now)?;
            let mut next = stored.clone();
            next.ca_crt = format!("{}{}", pair.cert_pem, m.bundle_pem).into_bytes();
            next.ca_key = pair.key_pem.into_bytes();
            if write(ctx, Some(&secret), next).await? {
                info!(secret = %ctx.s.secret_name, old_ca_until = m.ca.cert.not_after, "renewed the webhook's CA (the old one stays in ca.crt)");
            }
            Ok(Next::Again)
        }
        Plan::RewriteBundle => {
            let mut next = stored.clone();
            next.ca_crt = m.bundle_pem.clone().into_bytes();
            if write(ctx, Some(&secret), next).await? {
                info!(secret = %ctx.s.secret_name, dropped = ?m.dropped, "pruned the webhook's CA bundle");
            }
            Ok(Next::Again)
        }
        Plan::Issue { reason } => {
            if !publish_bundle(ctx, &m.bundle_pem).await? {
                return Ok(Next::Again);
            }
            let pair = pki::issue(&m.ca, &ctx.s.hosts, ctx.s.life, now)?;
            let mut next = stored.clone();
            next.tls_crt = pair.cert_pem.into_bytes();
            next.tls_key = pair.key_pem.into_bytes();
            if write(ctx, Some(&secret), next).await? {
                info!(secret = %ctx.s.secret_name, %reason, "issued the webhook's serving certificate");
            }
            Ok(Next::Again)
        }
        Plan::Wait { until } => {
            if !publish_bundle(ctx, &m.bundle_pem).await? {
                return Ok(Next::Again);
            }
            let secs = u64::try_from(until.saturating_sub(now)).unwrap_or(0);
            // Wake just after the due second (certificate times are whole seconds).
            Ok(Next::Sleep(
                Duration::from_secs(secs) + Duration::from_millis(100),
            ))
        }
    }
}

/// Presents `serving` unless it is already presented.
fn present(cert: &ServingCert, serving: &pki::Serving) {
    let same = cert
        .get()
        .is_some_and(|c| c.cert.first() == serving.certified.cert.first());
    if !same {
        info!(
            not_after = serving.cert.not_after,
            "presenting the webhook's serving certificate from the Secret"
        );
        cert.set(serving.certified.clone());
    }
}

async fn new_ca(
    ctx: &mut Ctx,
    secret: Option<&Secret>,
    reason: &str,
    now: i64,
) -> Result<Next, StepError> {
    let pair = pki::new_ca(ctx.s.life, now)?;
    let next = Stored {
        ca_crt: pair.cert_pem.into_bytes(),
        ca_key: pair.key_pem.into_bytes(),
        // The serving certificate follows once the caBundle holds the new CA.
        tls_crt: Vec::new(),
        tls_key: Vec::new(),
    };
    if write(ctx, secret, next).await? {
        if secret.is_some() {
            warn!(secret = %ctx.s.secret_name, %reason, "replaced the webhook's Secret with a new CA");
        } else {
            info!(secret = %ctx.s.secret_name, "created the webhook's CA");
        }
    }
    Ok(Next::Again)
}

/// Creates the Secret (none was read) or replaces the one read, conditional on its
/// resourceVersion. `false` on a conflict, which is not an error: another replica wrote
/// first (the caller reads again).
async fn write(ctx: &Ctx, read: Option<&Secret>, data: Stored) -> Result<bool, StepError> {
    let mut labels_ = read
        .and_then(|s| s.metadata.labels.clone())
        .unwrap_or_default();
    labels_.insert(labels::MANAGED_BY.to_owned(), labels::MANAGER.to_owned());
    labels_.insert(labels::COMPONENT.to_owned(), COMPONENT.to_owned());
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(ctx.s.secret_name.clone()),
            namespace: Some(ctx.s.namespace.clone()),
            labels: Some(labels_),
            annotations: read.and_then(|s| s.metadata.annotations.clone()),
            resource_version: read.and_then(|s| s.metadata.resource_version.clone()),
            ..ObjectMeta::default()
        },
        type_: Some(TLS_TYPE.to_owned()),
        data: Some(BTreeMap::from([
            (CA_CRT.to_owned(), ByteString(data.ca_crt)),
            (CA_KEY.to_owned(), ByteString(data.ca_key)),
            (TLS_CRT.to_owned(), ByteString(data.tls_crt)),
            (TLS_KEY.to_owned(), ByteString(data.tls_key)),
        ])),
        ..Secret::default()
    };
    let pp = PostParams::default();
    let res = match read {
        None => ctx.secrets.create(&pp, &secret).await,
        Some(_) => ctx.secrets.replace(&ctx.s.secret_name, &pp, &secret).await,
    };
    match res {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Sets every webhook's caBundle in the MutatingWebhookConfiguration to `bundle`. `true`
/// when they all hold it (or there is no such object: then nobody verifies anything and the
/// serving certificate may as well be made); `false` when the write lost a race.
async fn publish_bundle(ctx: &mut Ctx, bundle: &str) -> Result<bool, StepError> {
    let name = &ctx.s.configuration_name;
    let Some(mut mwc) = ctx.configurations.get_opt(name).await? else {
        let note = format!(
            "MutatingWebhookConfiguration {name} does not exist (the chart makes it; or set \
             --webhook-configuration-name): its caBundle cannot be kept in sync"
        );
        if ctx.configuration_note.as_ref() != Some(&note) {
            warn!("{note}");
            ctx.configuration_note = Some(note);
        }
        return Ok(true);
    };
    ctx.configuration_note = None;
    let want = ByteString(bundle.as_bytes().to_vec());
    let mut changed = 0;
    for hook in mwc.webhooks.iter_mut().flatten() {
        if hook.client_config.ca_bundle.as_ref() != Some(&want) {
            hook.client_config.ca_bundle = Some(want.clone());
            changed += 1;
        }
    }
    if changed == 0 {
        return Ok(true);
    }
    match ctx
        .configurations
        .replace(name, &PostParams::default(), &mwc)
        .await
    {
        Ok(_) => {
            info!(configuration = %name, webhooks = changed, "set the webhooks' caBundle to the CA bundle");
            Ok(true)
        }
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e.into()),
    }
}
