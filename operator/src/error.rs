//! What a reconcile can fail with, in one place (kube-rs's controller-rs keeps its `Error`
//! at the crate root): every API call of a reconcile returns it, and [`Error::reason`] is
//! what metrics and Events count failures by.

use crate::status::FailureKind;

/// Errors a reconcile can end with. Each names the object and what we tried to do, so the
/// message in the `Degraded` condition and in Events is enough to act on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("applying {kind} {name}: {source}")]
    Apply {
        kind: String,
        name: String,
        source: kube::Error,
    },
    #[error("reading {kind} {name}: {source}")]
    Get {
        kind: String,
        name: String,
        source: kube::Error,
    },
    #[error("listing {kind} of {instance}: {source}")]
    List {
        kind: String,
        instance: String,
        source: kube::Error,
    },
    #[error("deleting {kind} {name}: {source}")]
    Delete {
        kind: String,
        name: String,
        source: kube::Error,
    },
    #[error("releasing PersistentVolumeClaim {name} (removing our owner reference): {source}")]
    Release { name: String, source: kube::Error },
    #[error("updating the status of GoModuleProxy {name}: {source}")]
    Status { name: String, source: kube::Error },
    #[error("managing finalizer {finalizer} of GoModuleProxy {name}: {source}")]
    Finalizer {
        finalizer: &'static str,
        name: String,
        source: kube::Error,
    },
    #[error("GoModuleProxy has no {0} (the API server always sets it; is this a real object?)")]
    Missing(&'static str),
    /// A Secret of `upstreams` or `privateModules` is missing or lacks a key: nothing is rendered from it
    /// until it is fixed (the members keep running as they are).
    #[error(transparent)]
    Credentials(#[from] crate::resources::credentials::CredentialsError),
    /// A Secret of `tls` or `access` is missing or lacks a key, or a tokens file cannot be
    /// read: nothing is rendered from them until it is fixed (as for `Credentials`).
    #[error(transparent)]
    Access(#[from] crate::resources::access::AccessError),
    /// A Secret named as the operator's token Secret exists and is not the fleet's.
    #[error(
        "Secret {name} exists but is not this fleet's (no owner reference to it); the operator keeps its token for the members' /status there: rename or delete that Secret"
    )]
    OperatorSecretTaken { name: String },
    /// A Secret named as the fleet's peer token Secret exists and is not the fleet's.
    #[error(
        "Secret {name} exists but is not this fleet's (no owner reference to it); the operator keeps the members' peer token there: rename or delete that Secret"
    )]
    PeerSecretTaken { name: String },
    /// The Secret of `cache.objectStore` is missing or lacks a key: nothing is rendered from
    /// it until it is fixed (as for `Credentials`).
    #[error(transparent)]
    Tiers(#[from] crate::resources::tiers::TiersError),
    #[error("creating {kind} {name}: {source}")]
    Create {
        kind: String,
        name: String,
        source: kube::Error,
    },
}

impl Error {
    /// The API server refused the write as forbidden or invalid (not a transient failure).
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            Error::Apply { source: kube::Error::Api(s), .. } if s.code == 403 || s.code == 422
        )
    }

    /// Short CamelCase reason for metrics and Events.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Apply { .. } => "ApplyFailed",
            Error::Get { .. } => "GetFailed",
            Error::List { .. } => "ListFailed",
            Error::Delete { .. } => "DeleteFailed",
            Error::Release { .. } => "ReleaseFailed",
            Error::Status { .. } => "StatusUpdateFailed",
            Error::Finalizer { .. } => "FinalizerFailed",
            Error::Missing(_) => "InvalidObject",
            Error::Credentials(_) | Error::Access(_) | Error::Tiers(_) => "CredentialsMissing",
            Error::OperatorSecretTaken { .. } => "OperatorSecretTaken",
            Error::PeerSecretTaken { .. } => "PeerSecretTaken",
            Error::Create { .. } => "CreateFailed",
        }
    }

    /// What kind of failure the `Degraded` condition reports: the person who can fix a
    /// Secret is told so; every failure of the API server is a failed reconcile.
    pub fn failure_kind(&self) -> FailureKind {
        match self {
            Error::Credentials(_)
            | Error::Access(_)
            | Error::Tiers(_)
            | Error::OperatorSecretTaken { .. }
            | Error::PeerSecretTaken { .. } => FailureKind::Credentials,
            _ => FailureKind::Reconcile,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_name_the_object() {
        let e = Error::Missing("uid");
        assert_eq!(e.reason(), "InvalidObject");
        assert!(e.to_string().contains("no uid"));
    }
}
