//! The labels every child carries (docs/operator.md, "What it creates"). Selectors use only
//! the stable subset, because a Deployment's selector is immutable.

use std::collections::BTreeMap;

pub const NAME: &str = "app.kubernetes.io/name";
pub const INSTANCE: &str = "app.kubernetes.io/instance";
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const COMPONENT: &str = "app.kubernetes.io/component";
pub const PART_OF: &str = "app.kubernetes.io/part-of";
pub const MEMBER: &str = "modfleet.dev/member";

pub const APP: &str = "modfleet-proxy";
pub const MANAGER: &str = "modfleet-operator";

/// What a child is for (`app.kubernetes.io/component`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Component {
    Proxy,
    Cache,
    Config,
    Network,
    /// The operator's own token for the members' admin port (`NAME-operator-token`).
    Access,
}

impl Component {
    pub fn as_str(self) -> &'static str {
        match self {
            Component::Proxy => "proxy",
            Component::Cache => "cache",
            Component::Config => "config",
            Component::Network => "network",
            Component::Access => "access",
        }
    }
}

/// Labels of a child object of the fleet `instance`.
pub fn labels(
    instance: &str,
    component: Component,
    member: Option<usize>,
) -> BTreeMap<String, String> {
    let mut l = BTreeMap::from([
        (NAME.to_owned(), APP.to_owned()),
        (INSTANCE.to_owned(), instance.to_owned()),
        (MANAGED_BY.to_owned(), MANAGER.to_owned()),
        (COMPONENT.to_owned(), component.as_str().to_owned()),
    ]);
    if let Some(i) = member {
        l.insert(MEMBER.to_owned(), i.to_string());
    }
    l
}

/// Selector of every proxy pod of the fleet (Services, PDB, NetworkPolicy).
pub fn fleet_selector(instance: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (NAME.to_owned(), APP.to_owned()),
        (INSTANCE.to_owned(), instance.to_owned()),
        (COMPONENT.to_owned(), Component::Proxy.as_str().to_owned()),
    ])
}

/// Selector of one member's pods (PerMember mode) or of all pods (Shared mode).
pub fn member_selector(instance: &str, member: Option<usize>) -> BTreeMap<String, String> {
    let mut s = fleet_selector(instance);
    if let Some(i) = member {
        s.insert(MEMBER.to_owned(), i.to_string());
    }
    s
}

/// Labels that pick out the operator's own pods (the Helm chart sets them on its pod
/// template): the fleet NetworkPolicy admits these pods to the members' admin port, so the
/// operator can read `/status`. Neither depends on the release name or `nameOverride`.
pub fn operator_pod_selector() -> BTreeMap<String, String> {
    BTreeMap::from([
        (PART_OF.to_owned(), "modfleet".to_owned()),
        (COMPONENT.to_owned(), "operator".to_owned()),
    ])
}

/// Label selector string of `selector`'s labels (`k=v,k=v`).
pub fn selector_string(selector: &BTreeMap<String, String>) -> String {
    selector
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Label selector string that finds every object of the fleet managed by us.
pub fn owned_selector(instance: &str) -> String {
    format!("{NAME}={APP},{INSTANCE}={instance},{MANAGED_BY}={MANAGER}")
}

/// Whether `labels` say the object belongs to fleet `instance` and is managed by us.
pub fn is_ours(labels: Option<&BTreeMap<String, String>>, instance: &str) -> bool {
    labels.is_some_and(|l| {
        l.get(NAME).map(String::as_str) == Some(APP)
            && l.get(INSTANCE).map(String::as_str) == Some(instance)
            && l.get(MANAGED_BY).map(String::as_str) == Some(MANAGER)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_follow_the_conventions() {
        let l = labels("gomod", Component::Cache, Some(2));
        assert_eq!(l[NAME], "modfleet-proxy");
        assert_eq!(l[INSTANCE], "gomod");
        assert_eq!(l[MANAGED_BY], "modfleet-operator");
        assert_eq!(l[COMPONENT], "cache");
        assert_eq!(l[MEMBER], "2");
        assert!(is_ours(Some(&l), "gomod"));
        assert!(!is_ours(Some(&l), "other"));
        assert!(!is_ours(None, "gomod"));
        assert_eq!(
            owned_selector("gomod"),
            "app.kubernetes.io/name=modfleet-proxy,app.kubernetes.io/instance=gomod,app.kubernetes.io/managed-by=modfleet-operator"
        );
    }
}
