//! `spec.tls` and `spec.access`: HTTPS on the client port and who may fetch what. The proxy's
//! own keys (`tls`, `access`: `modfleet_contract::access`) with Secrets instead of files; the
//! operator mounts the Secrets and renders the files' paths (resources/access.rs).

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// Serve the client port over HTTPS.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TlsSpec {
    /// A `kubernetes.io/tls` Secret in the fleet's namespace (`tls.crt`: the PEM certificate
    /// chain, `tls.key`: its key), e.g. the one a cert-manager Certificate writes. Mounted
    /// read-only into the members; the proxy reads it again when it changes, so a renewal
    /// takes effect without a restart (it does not roll the fleet).
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new(
        "self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')"
    ).message("tls.secretName must be the name of a Secret (a DNS subdomain: lowercase letters, digits, '-' and '.')"))]
    pub secret_name: String,
}

/// Client authentication and authorization. Unset: every client may fetch every module and
/// the admin port's `/status` and `/admin/*` are open.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AccessSpec {
    /// Secrets in the fleet's namespace, each holding a tokens file (lines as
    /// `modfleet-proxy hash-token` prints them: `IDENTITY sha256:HEX [GROUP,...]`; hashes,
    /// never tokens) under `key`. Mounted read-only into the members; a change rolls them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub token_secret_refs: Vec<TokenSecretRef>,

    /// Module path rules; the first whose `modules` matches a request's module path decides.
    /// A path no rule matches is refused (401 without credentials, 403 with): end with
    /// `{modules: ['*'], allow: [anonymous]}` to keep other modules open.
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("size(self) >= 1").message(
        "access.rules needs at least one rule (a path no rule matches is refused), e.g. rules: [{modules: ['*'], allow: [anonymous]}]"
    ))]
    pub rules: Vec<AccessRuleSpec>,

    /// Who may use the admin port's `/status` and `/admin/*` (`/healthz`, `/readyz` and
    /// `/metrics` stay open). The operator adds its own identity, `modfleet-operator`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(min = 1, max = 70)))]
    #[x_kube(validation = principals_rule("access.admin"))]
    pub admin: Vec<String>,
}

/// A Secret holding a tokens file.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TokenSecretRef {
    /// The Secret's name.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new(
        "self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')"
    ).message("access.tokenSecretRefs[].name must be the name of a Secret (a DNS subdomain: lowercase letters, digits, '-' and '.')"))]
    pub name: String,
    /// The key of the tokens file in the Secret.
    #[serde(default = "default_tokens_key")]
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self.matches('^[-._a-zA-Z0-9]+$')").message(
        "access.tokenSecretRefs[].key must be a Secret key (letters, digits, '-', '_' and '.')"
    ))]
    pub key: String,
}

/// The key of a tokens file when `key` is unset.
pub const DEFAULT_TOKENS_KEY: &str = "tokens";

fn default_tokens_key() -> String {
    DEFAULT_TOKENS_KEY.to_owned()
}

/// One rule: the modules and who may fetch them.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AccessRuleSpec {
    /// GOPRIVATE globs, e.g. `git.corp.example.com` (the host and everything below it), or
    /// `*` for every module.
    #[schemars(length(max = 32), inner(length(min = 1, max = 256)))]
    #[x_kube(validation = Rule::new(
        "size(self) >= 1 && self.all(m, !m.contains(',') && !m.contains(' '))"
    ).message(
        "access.rules[].modules needs at least one GOPRIVATE glob without commas or spaces, e.g. [git.corp.example.com/*] or ['*']"
    ))]
    pub modules: Vec<String>,

    /// Who may fetch them: `anonymous` (everyone), `authenticated` (any identity of the
    /// tokens files), `group:NAME` or an identity's `NAME`. Empty: nobody (a rule that
    /// refuses its modules, before broader rules).
    #[serde(default)]
    #[schemars(length(max = 16), inner(length(min = 1, max = 70)))]
    #[x_kube(validation = principals_rule("access.rules[].allow"))]
    pub allow: Vec<String>,
}

/// Every entry a principal as the contract reads it (`modfleet_contract::access::Principal`):
/// `anonymous`, `authenticated`, `group:NAME` or `NAME`, names of 1 to 64 of `A-Za-z0-9._@-`,
/// `anonymous` and `authenticated` never a name.
fn principals_rule(field: &str) -> kube::core::Rule {
    kube::core::Rule::new(
        "self.all(p, p.matches('^(anonymous|authenticated|(group:)?[A-Za-z0-9._@-]{1,64})$') \
         && !(p in ['group:anonymous', 'group:authenticated']))",
    )
    .message(kube::core::Message::Message(format!(
        "{field} entries are anonymous, authenticated, group:NAME or NAME (names: 1 to 64 letters, digits, '.', '_', '@' or '-'; not anonymous or authenticated)"
    )))
}
