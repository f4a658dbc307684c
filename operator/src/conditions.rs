//! The conditions of a `GoModuleProxy`'s status as types. Each condition is decided in one
//! function ([`crate::status`] for `Ready`, `Progressing` and `Degraded`,
//! [`crate::fleet_health::summarize`] for `UpstreamsHealthy`,
//! [`crate::store_health::summarize`] for `StoreHealthy`, [`crate::peer_health::summarize`]
//! for `PeersHealthy`, [`crate::injection::status`] for
//! `Injecting`) as a [`Verdict`] built with
//! [`ConditionType::true_because`] and its siblings; [`Verdict::into_condition`] turns it into
//! the API's `Condition`, keeping `lastTransitionTime` unless the status flipped, so watchers
//! (`kubectl wait`, alerting) see real transitions only.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::crd::GoModuleProxyStatus;

/// The conditions a `GoModuleProxy` reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionType {
    /// Every member is Ready on the current template and every cache volume is bound.
    Ready,
    /// The fleet is scaling or rolling out.
    Progressing,
    /// The reconcile failed, a cache volume was lost or a member Deployment failed.
    Degraded,
    /// What the members say about their upstreams (only while the operator polls them).
    UpstreamsHealthy,
    /// With `spec.cache.objectStore`: what the members say about the store (only while the
    /// operator polls them). False is degraded, not down: clients still get answers.
    StoreHealthy,
    /// With peer fill: every member reads the fleet's membership (only while the operator
    /// polls them). False is degraded, not down: those members fetch their misses themselves.
    PeersHealthy,
    /// With `spec.injection`: new Pods in every namespace the fleet selects get it (False:
    /// the webhook is off, or namespaces went to an older fleet).
    Injecting,
}

impl ConditionType {
    /// The condition's `type` in the API.
    pub const fn as_str(self) -> &'static str {
        match self {
            ConditionType::Ready => "Ready",
            ConditionType::Progressing => "Progressing",
            ConditionType::Degraded => "Degraded",
            ConditionType::UpstreamsHealthy => "UpstreamsHealthy",
            ConditionType::StoreHealthy => "StoreHealthy",
            ConditionType::PeersHealthy => "PeersHealthy",
            ConditionType::Injecting => "Injecting",
        }
    }

    /// This condition with status `True`.
    pub fn true_because(self, reason: &'static str, message: impl Into<String>) -> Verdict {
        self.with(Status::True, reason, message)
    }

    /// This condition with status `False`.
    pub fn false_because(self, reason: &'static str, message: impl Into<String>) -> Verdict {
        self.with(Status::False, reason, message)
    }

    /// This condition with status `Unknown`.
    pub fn unknown_because(self, reason: &'static str, message: impl Into<String>) -> Verdict {
        self.with(Status::Unknown, reason, message)
    }

    fn with(self, status: Status, reason: &'static str, message: impl Into<String>) -> Verdict {
        Verdict {
            type_: self,
            status,
            reason,
            message: message.into(),
        }
    }

    /// This condition in `status`, if it is there.
    pub fn find(self, status: &GoModuleProxyStatus) -> Option<&Condition> {
        status.conditions.iter().find(|c| c.type_ == self.as_str())
    }

    /// This condition's status in `status` (`None`: no status, no such condition, or a
    /// status that is not `True`, `False` or `Unknown`).
    pub fn status_in(self, status: Option<&GoModuleProxyStatus>) -> Option<Status> {
        Status::parse(&self.find(status?)?.status)
    }
}

/// A condition's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    True,
    False,
    Unknown,
}

impl Status {
    /// The status as the API writes it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Status::True => "True",
            Status::False => "False",
            Status::Unknown => "Unknown",
        }
    }

    /// Reads a status as the API writes it (ours, or another object's such as a
    /// Deployment's or a Pod's).
    pub fn parse(s: &str) -> Option<Status> {
        [Status::True, Status::False, Status::Unknown]
            .into_iter()
            .find(|status| status.as_str() == s)
    }
}

/// What one condition says this reconcile: its type, status, reason (CamelCase, also the
/// reason of Events about it) and a message for people.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub type_: ConditionType,
    pub status: Status,
    pub reason: &'static str,
    pub message: String,
}

impl Verdict {
    /// The API's form, for the object at `generation`. `lastTransitionTime` is the previous
    /// one when the previous status had this condition with the same status, else `now`.
    pub fn into_condition(
        self,
        previous: &[Condition],
        generation: Option<i64>,
        now: &Time,
    ) -> Condition {
        let (type_, status) = (self.type_.as_str(), self.status.as_str());
        let last_transition_time = previous
            .iter()
            .find(|p| p.type_ == type_ && p.status == status)
            .map_or_else(|| now.clone(), |p| p.last_transition_time.clone());
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: self.reason.into(),
            message: self.message,
            observed_generation: generation,
            last_transition_time,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn t(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).unwrap())
    }

    #[test]
    fn builders_write_the_api_form() {
        let c = ConditionType::Ready
            .true_because("AllMembersReady", "3/3 members are ready")
            .into_condition(&[], Some(4), &t(10));
        assert_eq!(c.type_, "Ready");
        assert_eq!(c.status, "True");
        assert_eq!(c.reason, "AllMembersReady");
        assert_eq!(c.message, "3/3 members are ready");
        assert_eq!(c.observed_generation, Some(4));
        assert_eq!(c.last_transition_time, t(10));
        let u = ConditionType::UpstreamsHealthy.unknown_because("NoReadyMembers", "");
        assert_eq!(u.into_condition(&[], None, &t(1)).status, "Unknown");
    }

    #[test]
    fn the_transition_time_moves_only_when_the_status_flips() {
        let before = [ConditionType::Degraded
            .false_because("AsExpected", "No failures observed")
            .into_condition(&[], Some(1), &t(100))];
        let same = ConditionType::Degraded.false_because("AsExpected", "another message");
        assert_eq!(
            same.into_condition(&before, Some(2), &t(200))
                .last_transition_time,
            t(100)
        );
        let flipped = ConditionType::Degraded.true_because("MemberFailed", "gomod-1 failed");
        assert_eq!(
            flipped
                .into_condition(&before, Some(2), &t(200))
                .last_transition_time,
            t(200)
        );
    }

    #[test]
    fn statuses_read_back() {
        for s in [Status::True, Status::False, Status::Unknown] {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
        assert_eq!(Status::parse("true"), None);
        let status = GoModuleProxyStatus {
            conditions: vec![
                ConditionType::Progressing
                    .false_because("RolloutComplete", "")
                    .into_condition(&[], None, &t(1)),
            ],
            ..GoModuleProxyStatus::default()
        };
        assert_eq!(
            ConditionType::Progressing.status_in(Some(&status)),
            Some(Status::False)
        );
        assert_eq!(ConditionType::Ready.status_in(Some(&status)), None);
        assert_eq!(ConditionType::Ready.status_in(None), None);
    }
}
