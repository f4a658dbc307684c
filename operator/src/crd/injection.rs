//! `spec.injection`: which new Pods get the go command's settings for this fleet (`GOPROXY`,
//! `GONOSUMDB`), set by the operator's mutating webhook. What is set, and how a Pod's fleet is
//! chosen, is the pure `crate::injection`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Set `GOPROXY` (and `GONOSUMDB`) in the containers of new Pods. Unset: no Pod is changed.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct InjectionSpec {
    /// The namespaces whose new Pods use this fleet (`{}`: every namespace). `kube-system`
    /// and the operator's own namespace are never changed. When several fleets select a
    /// Pod, the oldest fleet wins (then the lower namespace/name).
    pub namespace_selector: LabelSelector,

    /// Of those namespaces' Pods, only the ones with these labels. Unset: all of them. A Pod
    /// or namespace labelled `modfleet.dev/inject: "false"` is never changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,

    /// What the go command tries after the fleet. Unset: nothing (`GOPROXY` is the fleet
    /// alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<InjectionFallback>,

    /// For a fleet with `spec.access`: a Secret, in each namespace whose Pods get this fleet,
    /// holding the build's credentials as key `.netrc` (a line `machine HOST login IDENTITY
    /// password TOKEN`, HOST being the fleet's Service host, with `:PORT` when the port is
    /// not the scheme's default). It is mounted read-only into every injected container and
    /// named by `NETRC`. Optional in the Pod: where the Secret is missing, Pods still start and
    /// the fleet answers their go commands 401.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub netrc_secret_name: Option<String>,
}

/// A second module proxy, after the fleet in `GOPROXY` with a comma: the go command asks it
/// only when the fleet answers 404 or 410 ("no such module"). Any other failure of the fleet
/// (refused connection, timeout, 5xx) fails the build instead: an outage of the fleet is never
/// silently bypassed. A private module path the fleet does not have is asked of it too.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct InjectionFallback {
    /// The proxy's URL (http or https), e.g. your organisation's public mirror.
    #[schemars(length(max = 2048))]
    #[x_kube(
        validation = Rule::new(
            "isURL(self) && url(self).getScheme() in ['http', 'https'] && url(self).getHostname() != ''"
        ).message("injection.fallback.url must be an absolute http:// or https:// URL, e.g. https://goproxy.example.com"),
        validation = Rule::new("!self.contains(',') && !self.contains('|') && !self.contains(' ')").message(
            "injection.fallback.url is one proxy URL: no ',', '|' or spaces (the go command would read them as more GOPROXY entries)"
        ),
        validation = Rule::new("!self.matches('^[a-zA-Z][-a-zA-Z0-9+.]*://[^/?#]*@')").message(
            "injection.fallback.url must not hold a user name or password (every build pod would see them)"
        )
    )]
    pub url: String,
}

/// Where the fleet injects (`status.injection`), refreshed at each reconcile.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InjectionStatus {
    /// Namespaces whose new Pods get this fleet (the first 100, sorted).
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// How many namespaces that is in all.
    #[serde(default)]
    pub namespace_count: i32,
    /// Namespaces this fleet selects whose Pods get an older fleet instead (the first 100).
    #[serde(default)]
    pub lost_namespaces: Vec<LostNamespace>,
    /// Pods this operator's webhook replicas patched for the fleet since they started (the
    /// replica that writes the status counts its own).
    #[serde(default)]
    pub pods_mutated: i64,
}

/// A namespace lost to an older fleet.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LostNamespace {
    pub namespace: String,
    /// The fleet whose Pods it gets instead, `NAMESPACE/NAME`.
    pub fleet: String,
}
