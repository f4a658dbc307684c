//! `status.injection` and the `Injecting` condition of a fleet with `spec.injection`, from
//! what the webhook's caches show (pure: the controller gathers, this decides).

use crate::conditions::{ConditionType::Injecting, Verdict};
use crate::crd::{InjectionStatus, LostNamespace};

use super::NamespaceReport;

/// Namespaces listed in the status at most (the count is exact).
pub const MAX_LISTED: usize = 100;

/// What the controller saw of the webhook for one fleet.
#[derive(Debug, PartialEq)]
pub enum Seen<'n> {
    /// The operator runs without `--webhook-listen`.
    WebhookOff,
    /// The webhook's caches are not filled yet.
    NotReady,
    /// Where the fleet injects, and the Pods this replica mutated for it.
    Report {
        report: NamespaceReport<'n>,
        pods_mutated: u64,
    },
}

/// The fleet's `status.injection` (none until the caches are filled) and `Injecting`.
pub fn status(seen: Seen<'_>) -> (Option<InjectionStatus>, Verdict) {
    let (mut report, pods_mutated) = match seen {
        Seen::WebhookOff => {
            return (
                None,
                Injecting.false_because(
                    "WebhookDisabled",
                    "the operator runs without its injection webhook (--webhook-listen; the \
                     chart's injection.enabled): no Pod gets this fleet's settings",
                ),
            );
        }
        Seen::NotReady => {
            return (
                None,
                Injecting.unknown_because(
                    "CachesNotReady",
                    "the webhook is still reading the fleets and namespaces",
                ),
            );
        }
        Seen::Report {
            report,
            pods_mutated,
        } => (report, pods_mutated),
    };
    report.selected.sort_unstable();
    report.lost.sort_unstable();
    let status = InjectionStatus {
        namespaces: report
            .selected
            .iter()
            .take(MAX_LISTED)
            .map(|n| (*n).to_owned())
            .collect(),
        namespace_count: i32::try_from(report.selected.len()).unwrap_or(i32::MAX),
        lost_namespaces: report
            .lost
            .iter()
            .take(MAX_LISTED)
            .map(|(namespace, fleet)| LostNamespace {
                namespace: (*namespace).to_owned(),
                fleet: fleet.clone(),
            })
            .collect(),
        pods_mutated: i64::try_from(pods_mutated).unwrap_or(i64::MAX),
    };
    let verdict = if report.lost.is_empty() {
        Injecting.true_because(
            "Injecting",
            format!(
                "new Pods in {} namespace(s) get this fleet{}",
                report.selected.len(),
                listed(report.selected.iter().map(|n| (*n).to_owned()))
            ),
        )
    } else {
        Injecting.false_because(
            "NamespacesLost",
            format!(
                "{} namespace(s) this fleet selects are selected by an older fleet too, whose \
                 settings their Pods get{}; narrow spec.injection.namespaceSelector or remove \
                 the other fleet's",
                report.lost.len(),
                listed(
                    report
                        .lost
                        .iter()
                        .map(|(ns, fleet)| format!("{ns} (to {fleet})"))
                )
            ),
        )
    };
    (Some(status), verdict)
}

/// `: a, b, c` (the first ten, then `, ...`), or nothing.
fn listed(items: impl Iterator<Item = String>) -> String {
    let items: Vec<String> = items.collect();
    if items.is_empty() {
        return String::new();
    }
    let mut s = format!(": {}", items[..items.len().min(10)].join(", "));
    if items.len() > 10 {
        s.push_str(", ...");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conditions::Status;

    #[test]
    fn a_fleet_that_lost_namespaces_says_which_and_to_whom() {
        let report = NamespaceReport {
            selected: vec!["web", "ci"],
            lost: vec![("tools", "build/old".to_owned())],
        };
        let (status, verdict) = status(Seen::Report {
            report,
            pods_mutated: 7,
        });
        let status = status.unwrap();
        assert_eq!(status.namespaces, ["ci", "web"]);
        assert_eq!(status.namespace_count, 2);
        assert_eq!(
            status.lost_namespaces,
            [LostNamespace {
                namespace: "tools".into(),
                fleet: "build/old".into()
            }]
        );
        assert_eq!(status.pods_mutated, 7);
        assert_eq!(
            (verdict.status, verdict.reason),
            (Status::False, "NamespacesLost")
        );
        assert!(
            verdict.message.contains("tools (to build/old)"),
            "{}",
            verdict.message
        );
    }

    #[test]
    fn a_fleet_that_lost_nothing_injects() {
        let report = NamespaceReport {
            selected: vec!["ci"],
            lost: Vec::new(),
        };
        let (status, verdict) = status(Seen::Report {
            report,
            pods_mutated: 0,
        });
        assert_eq!(status.unwrap().namespaces, ["ci"]);
        assert_eq!(
            (verdict.status, verdict.reason),
            (Status::True, "Injecting")
        );
        assert!(verdict.message.ends_with(": ci"), "{}", verdict.message);
    }

    #[test]
    fn without_the_webhook_or_its_caches_there_is_no_report() {
        let (report, verdict) = status(Seen::WebhookOff);
        assert_eq!((report, verdict.status), (None, Status::False));
        assert!(verdict.message.contains("--webhook-listen"));
        let (report, verdict) = status(Seen::NotReady);
        assert_eq!((report, verdict.status), (None, Status::Unknown));
    }

    /// Hundreds of namespaces: the list is bounded, the count is not.
    #[test]
    fn long_lists_are_bounded() {
        let names: Vec<String> = (0..250).map(|i| format!("ns-{i:03}")).collect();
        let report = NamespaceReport {
            selected: names.iter().map(String::as_str).collect(),
            lost: Vec::new(),
        };
        let (status, verdict) = status(Seen::Report {
            report,
            pods_mutated: 0,
        });
        let status = status.unwrap();
        assert_eq!(status.namespaces.len(), MAX_LISTED);
        assert_eq!(status.namespace_count, 250);
        assert!(verdict.message.ends_with(", ..."));
    }
}
