//! What the cluster tests of a fleet's Secrets share (tests/private_modules.rs,
//! upstream_credentials.rs, access.rs): a namespace under the restricted Pod Security
//! Standard with the operator running in it, the Secret volumes and mounts of a member, and
//! the two behaviours every referenced Secret has: a change rolls the members (through the
//! pod template's `modfleet.dev/credentials-hash`), and a missing one makes the fleet
//! `Degraded` (`CredentialsMissing`) without touching the members.

use std::time::Duration;

use serde_json::Value;

use crate::operator::{Operator, install_crd};
use crate::{Cluster, DEFAULT_TIMEOUT, Namespace, condition};

/// The pod template annotation that follows the mounted Secrets' contents.
pub const CREDENTIALS_HASH: &str = "modfleet.dev/credentials-hash";

/// The operator in a fresh namespace, for one fleet; on drop, the fleet's finalizer is
/// lifted so the namespace can go once the operator is gone.
pub struct SecretsEnv {
    pub op: Operator,
    pub ns: Namespace,
    fleet: String,
}

impl Drop for SecretsEnv {
    fn drop(&mut self) {
        self.op.stop();
        self.ns.lift_finalizers();
    }
}

impl SecretsEnv {
    /// A namespace named from `prefix` where the API server itself refuses pods that break
    /// the restricted standard, and an operator without health polling: its requeue (every
    /// poll interval) would reconcile a changed Secret anyway; without it the next requeue is
    /// minutes away, so the Secret watch is what acts.
    pub fn start(prefix: &str, fleet: &str) -> SecretsEnv {
        SecretsEnv::start_with(prefix, fleet, &["--health-poll-interval", "0s"])
    }

    /// [`SecretsEnv::start`] with other operator flags (e.g. health polling on).
    pub fn start_with(prefix: &str, fleet: &str, operator_args: &[&str]) -> SecretsEnv {
        let cluster = Cluster::from_env();
        install_crd(&cluster);
        let ns = cluster.namespace(prefix);
        ns.kubectl(&[
            "label",
            "namespace",
            ns.name(),
            "pod-security.kubernetes.io/enforce=restricted",
            "pod-security.kubernetes.io/enforce-version=latest",
        ]);
        let op = Operator::start(&ns, "op", operator_args);
        SecretsEnv {
            op,
            ns,
            fleet: fleet.to_owned(),
        }
    }

    /// The fleet's `Degraded` condition.
    pub fn degraded(&self) -> Value {
        condition(&self.ns.get_json(&["gmp", &self.fleet]), "Degraded")
    }

    /// An annotation of each member Deployment (`template`: of its pod template), in member
    /// order.
    fn annotation(&self, members: usize, template: bool, key: &str) -> Vec<Value> {
        (0..members)
            .map(|i| {
                let d = self
                    .ns
                    .get_json(&["deployment", &format!("{}-{i}", self.fleet)]);
                let meta = if template {
                    &d["spec"]["template"]["metadata"]
                } else {
                    &d["metadata"]
                };
                meta["annotations"][key].clone()
            })
            .collect()
    }

    /// The pod template's credentials hash of each member.
    pub fn credentials_hashes(&self, members: usize) -> Vec<Value> {
        self.annotation(members, true, CREDENTIALS_HASH)
    }

    /// The template hash of each member (what the operator last applied to it).
    pub fn template_hashes(&self, members: usize) -> Vec<Value> {
        self.annotation(members, false, "modfleet.dev/template-hash")
    }

    /// `rotate` changes a mounted Secret: every member gets a new credentials hash (within
    /// 180 s, less than the 5-minute requeue of a settled fleet, so only the Secret watch can
    /// do it), one rollout Event each, and the config stays as it was (it names files, not
    /// contents). Returns once the fleet is Ready again.
    pub fn assert_rotation_rolls(&self, members: usize, rotate: impl FnOnce()) {
        let ns = &self.ns;
        let before = self.credentials_hashes(members);
        assert!(before.iter().all(Value::is_string), "{before:?}");
        assert!(before.iter().all(|h| *h == before[0]), "{before:?}");
        let config = format!("{}-config", self.fleet);
        let config_before = ns.get_json(&["configmap", &config])["data"]["config.yaml"].clone();
        rotate();
        let after = ns.eventually(
            "every member on a new credentials hash",
            Duration::from_secs(180),
            || {
                let now = self.credentials_hashes(members);
                now.iter()
                    .all(|h| h.is_string() && *h != before[0])
                    .then_some(now)
            },
        );
        assert!(after.iter().all(|h| *h == after[0]), "{after:?}");
        ns.wait(
            &format!("gmp/{}", self.fleet),
            "condition=Ready",
            DEFAULT_TIMEOUT,
        );
        assert_eq!(
            ns.get_json(&["configmap", &config])["data"]["config.yaml"],
            config_before,
            "the config names files, not contents"
        );
        let rolled = ns.kubectl(&["get", "events", "-o", "jsonpath={.items[*].message}"]);
        for i in 0..members {
            let member = format!("{}-{i}", self.fleet);
            assert!(
                rolled.contains(&format!("Updating {member} to the current configuration")),
                "no rollout event for {member}: {rolled}"
            );
        }
    }

    /// Deleting `secret` makes the fleet `Degraded=True` (`CredentialsMissing`) with a
    /// message containing `want`, and nothing changes under the members. Returns the message.
    pub fn assert_missing_secret_degrades(
        &self,
        members: usize,
        secret: &str,
        want: &str,
    ) -> String {
        let running = self.template_hashes(members);
        self.ns.kubectl(&["delete", "secret", secret]);
        let d = self
            .ns
            .eventually("Degraded=True CredentialsMissing", DEFAULT_TIMEOUT, || {
                let d = self.degraded();
                (d["status"] == "True").then_some(d)
            });
        assert_eq!(d["reason"], "CredentialsMissing", "{d}");
        let msg = d["message"].as_str().unwrap_or_default().to_owned();
        assert!(msg.contains(want), "want {want:?} in {msg}");
        assert_eq!(
            self.template_hashes(members),
            running,
            "nothing changed under the members"
        );
        msg
    }

    /// Waits until the message of `Degraded` contains `want`.
    pub fn await_degraded_message(&self, want: &str) {
        self.ns.eventually(
            &format!("Degraded naming {want:?}"),
            DEFAULT_TIMEOUT,
            || {
                self.degraded()["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(want))
                    .then_some(())
            },
        );
    }

    /// Waits for `Degraded=False` and `Ready` (the fleet converged without a change to the
    /// GoModuleProxy).
    pub fn await_whole(&self) {
        self.ns.eventually("Degraded=False", DEFAULT_TIMEOUT, || {
            (self.degraded()["status"] == "False").then_some(())
        });
        self.ns.wait(
            &format!("gmp/{}", self.fleet),
            "condition=Ready",
            DEFAULT_TIMEOUT,
        );
    }

    /// Nothing the operator writes where people and tools read it (the GoModuleProxy, the
    /// ConfigMap, the Deployments, the Events, its own log) holds any of `secrets`.
    pub fn assert_not_shown(&self, secrets: &[&str]) {
        let ns = &self.ns;
        let places = [
            (
                "the GoModuleProxy",
                ns.kubectl(&["get", "gmp", &self.fleet, "-o", "json"]),
            ),
            (
                "the ConfigMap",
                ns.kubectl(&[
                    "get",
                    "configmap",
                    &format!("{}-config", self.fleet),
                    "-o",
                    "json",
                ]),
            ),
            (
                "the Deployments",
                ns.kubectl(&["get", "deployments", "-o", "json"]),
            ),
            ("the Events", ns.kubectl(&["get", "events", "-o", "json"])),
            ("the operator's log", self.op.logs()),
        ];
        for (what, text) in places {
            for secret in secrets {
                assert!(!text.contains(secret), "{what} contains a secret: {text}");
            }
        }
    }
}

/// A member's pod template spec.
pub fn pod_spec(ns: &Namespace, deployment: &str) -> Value {
    ns.get_json(&["deployment", deployment])["spec"]["template"]["spec"].clone()
}

/// The Secret volume `name` of `pod`: (Secret, defaultMode, its items as (key, path)).
pub fn secret_volume(pod: &Value, name: &str) -> (String, i64, Vec<(String, String)>) {
    let v = pod["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("no volume {name}: {pod}"));
    let s = &v["secret"];
    let items = s["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            let field = |k: &str| i[k].as_str().unwrap_or_default().to_owned();
            (field("key"), field("path"))
        })
        .collect();
    (
        s["secretName"].as_str().unwrap_or_default().to_owned(),
        s["defaultMode"].as_i64().unwrap_or(-1),
        items,
    )
}

/// The keys of a Secret volume's items.
pub fn item_keys(items: &[(String, String)]) -> Vec<&str> {
    items.iter().map(|(k, _)| k.as_str()).collect()
}

/// The proxy container's mounts whose volume name `select` picks: (volume, path, readOnly).
pub fn mounts(pod: &Value, select: impl Fn(&str) -> bool) -> Vec<(String, String, bool)> {
    pod["containers"][0]["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| select(m["name"].as_str().unwrap_or_default()))
        .map(|m| {
            (
                m["name"].as_str().unwrap_or_default().to_owned(),
                m["mountPath"].as_str().unwrap_or_default().to_owned(),
                m["readOnly"] == true,
            )
        })
        .collect()
}
