//! One-at-a-time rollouts of the member Deployments: a member whose template changed is
//! updated only when every member before it is Ready on the current template, so a bad
//! config takes down one member, not the fleet.

use crate::status::MemberState;

/// What to do with one member Deployment in this reconcile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberStep {
    /// It does not exist: create it (new members never wait).
    Create,
    /// It has the desired template: re-apply, which repairs drift in fields we own.
    Apply,
    /// Its template is outdated and every member before it is Ready: update it now.
    Update,
    /// Its template is outdated but an earlier member is not Ready yet: leave it alone.
    Hold,
}

/// One-at-a-time rollouts: members are visited in order, and the first member that is not
/// Ready on the current template holds back the template updates of all members after it.
#[derive(Debug, Default)]
pub struct Rollout {
    holding: bool,
}

impl Rollout {
    /// `current_hash`: `None` when the Deployment does not exist, else its template hash
    /// annotation (if any).
    pub fn step(&self, current_hash: Option<Option<&str>>, desired_hash: &str) -> MemberStep {
        match current_hash {
            None => MemberStep::Create,
            Some(Some(h)) if h == desired_hash => MemberStep::Apply,
            Some(_) if self.holding => MemberStep::Hold,
            Some(_) => MemberStep::Update,
        }
    }

    /// Records the member's state after its step.
    pub fn observe(&mut self, state: &MemberState) {
        if !state.up_to_date || state.ready < state.replicas {
            self.holding = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(up_to_date: bool, ready: bool) -> MemberState {
        MemberState {
            name: "m".into(),
            replicas: 1,
            ready: i32::from(ready),
            up_to_date,
            failure: None,
        }
    }

    /// Simulates reconciles of a 3-member fleet after a template change from "old" to
    /// "new", where an updated member becomes Ready one reconcile later.
    #[test]
    fn rollout_updates_one_member_per_ready_predecessor() {
        let mut hashes = ["old", "old", "old"];
        let mut ready = [true, true, true];
        let mut history = Vec::new();
        for _ in 0..10 {
            let mut r = Rollout::default();
            let mut steps = Vec::new();
            let mut next_ready = ready;
            for i in 0..3 {
                let step = r.step(Some(Some(hashes[i])), "new");
                if step == MemberStep::Update {
                    hashes[i] = "new";
                    next_ready[i] = false;
                }
                if step == MemberStep::Apply && !ready[i] {
                    next_ready[i] = true; // the new pod turned Ready since last time
                }
                steps.push(step);
                r.observe(&state(
                    hashes[i] == "new",
                    ready[i] && step != MemberStep::Update,
                ));
            }
            ready = next_ready;
            history.push(steps);
            if hashes == ["new"; 3] && ready == [true; 3] {
                break;
            }
        }
        use MemberStep::*;
        assert_eq!(
            history,
            [
                vec![Update, Hold, Hold],
                vec![Apply, Hold, Hold],
                vec![Apply, Update, Hold],
                vec![Apply, Apply, Hold],
                vec![Apply, Apply, Update],
                vec![Apply, Apply, Apply],
            ]
        );
    }

    #[test]
    fn missing_members_are_created_and_drift_is_repaired_even_while_holding() {
        let mut r = Rollout::default();
        r.observe(&state(false, false));
        assert_eq!(r.step(None, "new"), MemberStep::Create);
        assert_eq!(r.step(Some(Some("new")), "new"), MemberStep::Apply);
        assert_eq!(r.step(Some(None), "new"), MemberStep::Hold);
        assert_eq!(
            Rollout::default().step(Some(None), "new"),
            MemberStep::Update
        );
        // An up-to-date member that is not Ready also holds the next ones.
        let mut r = Rollout::default();
        r.observe(&state(true, false));
        assert_eq!(r.step(Some(Some("old")), "new"), MemberStep::Hold);
    }
}
