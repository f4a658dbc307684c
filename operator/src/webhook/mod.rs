//! The injection webhook: the mutating admission webhook the API server calls for each new
//! Pod (`spec.injection`). [`certs`] keeps its serving certificate (operator-made and
//! rotated, or files such as a cert-manager Secret); the decision and the patch are the pure
//! [`crate::injection`].

pub mod certs;

/// The path the API server posts `AdmissionReview`s to (the chart's
/// MutatingWebhookConfiguration names the same).
pub const PATH: &str = "/mutate-pods";
