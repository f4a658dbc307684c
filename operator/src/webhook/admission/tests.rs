//! The admission decision on `AdmissionReview`s shaped as the API server sends them.

use super::*;
use serde_json::{Value, json};

fn fleet() -> GoModuleProxy {
    serde_json::from_value(json!({
        "apiVersion": "modfleet.dev/v1alpha1",
        "kind": "GoModuleProxy",
        "metadata": {"name": "gomod", "namespace": "build", "uid": "u1",
                     "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {
            "upstreams": [{"url": "https://goproxy.example.com"}],
            "injection": {"namespaceSelector": {"matchLabels": {"team": "builds"}}},
        },
    }))
    .unwrap()
}

fn policy() -> Policy {
    Policy {
        operator_namespace: Some("modfleet-system".into()),
        fleet_namespaces: vec!["build".into()],
    }
}

/// An admission.k8s.io/v1 request for `operation` on `pod` in namespace `ci`.
fn review_of(operation: &str, pod: Value) -> AdmissionRequest<Pod> {
    let review: kube::core::admission::AdmissionReview<Pod> = serde_json::from_value(json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "name": "",
            "namespace": "ci",
            "operation": operation,
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": pod,
            "oldObject": null,
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        },
    }))
    .unwrap();
    review.try_into().unwrap()
}

fn build_pod() -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"generateName": "build-", "namespace": "ci"},
           "spec": {"containers": [{"name": "go", "image": "golang"}]}})
}

fn builds() -> BTreeMap<String, String> {
    [("team".to_owned(), "builds".to_owned())].into()
}

#[test]
fn a_selected_pod_create_is_patched_and_the_answer_carries_the_patch() {
    let request = review_of("CREATE", build_pod());
    let (pod, namespace) = pod_create(&request).unwrap();
    let decision = decide(pod, namespace, &builds(), &[fleet()], &policy());
    assert_eq!(decision.outcome, Outcome::Mutated);
    assert_eq!(decision.fleet.as_deref(), Some("build/gomod"));
    let response = respond(&request, decision);
    assert!(response.allowed);
    assert_eq!(response.uid, request.uid);
    let review = serde_json::to_value(response.into_review()).unwrap();
    let answer = &review["response"];
    assert_eq!(answer["patchType"], "JSONPatch");
    // kube-rs writes the bytes as a JSON array of numbers, which the API server's decoder
    // reads as well as base64 (e2e/tests/injection.rs has the real API server apply it).
    let patch: Vec<u8> = serde_json::from_value(answer["patch"].clone()).unwrap();
    let patch: Value = serde_json::from_slice(&patch).unwrap();
    assert_eq!(patch[0]["path"], "/spec/containers/0/env");
    assert_eq!(patch[0]["value"][0]["name"], "GOPROXY");
    assert_eq!(review["apiVersion"], "admission.k8s.io/v1");
}

#[test]
fn what_is_not_selected_is_admitted_without_a_patch() {
    let request = review_of("CREATE", build_pod());
    let (pod, _) = pod_create(&request).unwrap();
    let other: BTreeMap<String, String> = BTreeMap::new();
    let decision = decide(pod, "ci", &other, &[fleet()], &policy());
    assert_eq!(decision.outcome, Outcome::NoFleet);
    let response = respond(&request, decision);
    assert!(response.allowed);
    assert!(response.patch.is_none());
    let decision = decide(pod, "modfleet-system", &builds(), &[fleet()], &policy());
    assert_eq!(decision.outcome, Outcome::Protected);
    // A container that sets GOPROXY itself: selected, nothing to change.
    let mut own = build_pod();
    own["spec"]["containers"][0]["env"] = json!([{"name": "GOPROXY", "value": "off"}]);
    let request = review_of("CREATE", own);
    let (pod, _) = pod_create(&request).unwrap();
    let decision = decide(pod, "ci", &builds(), &[fleet()], &policy());
    assert_eq!(decision.outcome, Outcome::Unchanged);
    assert!(respond(&request, decision).patch.is_none());
}

/// Only Pod CREATEs are ours: an UPDATE, another kind or a subresource is let be.
#[test]
fn only_pod_creates_are_considered() {
    assert!(pod_create(&review_of("UPDATE", build_pod())).is_none());
    let mut binding = review_of("CREATE", build_pod());
    binding.sub_resource = Some("binding".into());
    assert!(pod_create(&binding).is_none());
    let mut other = review_of("CREATE", build_pod());
    other.kind.group = "apps".into();
    assert!(pod_create(&other).is_none());
    let mut no_namespace = review_of("CREATE", build_pod());
    no_namespace.namespace = None;
    assert!(pod_create(&no_namespace).is_none());
}
