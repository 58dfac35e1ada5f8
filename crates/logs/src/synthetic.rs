//! A synthetic audit trail over a seed snapshot, for the timeline's
//! benchmark and its equivalence tests: changes of every kind the timeline
//! replays (a Deployment's pod template relabelled, a pod relabelled,
//! deleted and created again, a NetworkPolicy edited, deleted and
//! restored, a Namespace relabelled), as `audit.k8s.io/v1` JSON lines with
//! the stored object in `responseObject`, the way the log backend writes
//! them at RequestResponse level.

use std::fmt::Write as _;

use palisade_inventory::yaml::compose_documents;
use palisade_inventory::yaml::de::from_node;
use serde_json::{Value, json};

/// A small deterministic generator (xorshift64*), so that a trail is the
/// same for the same seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n.max(1)
    }
}

/// The objects a trail changes, by kind.
#[derive(Default)]
struct Objects {
    namespaces: Vec<Value>,
    deployments: Vec<Value>,
    pods: Vec<Value>,
    policies: Vec<Value>,
    /// Policies and pods deleted so far, to be created again.
    deleted: Vec<Value>,
}

const TIERS: [&str; 5] = ["web", "api", "db", "cache", "batch"];

/// `changes` audit events over the objects of `seed` (YAML or JSON text);
/// an error when the seed cannot be read.
pub fn audit_trail(seed: &str, changes: usize, rng_seed: u64) -> Result<String, String> {
    let mut objects = Objects::default();
    let composed = compose_documents(seed);
    if let Some(problem) = composed.error {
        return Err(problem.message);
    }
    for node in &composed.documents {
        let (value, _) = from_node::<Value>(node).map_err(|e| e.to_string())?;
        match value.get("kind").and_then(Value::as_str) {
            Some("Namespace") => objects.namespaces.push(value),
            Some("Deployment") => objects.deployments.push(value),
            Some("Pod") => objects.pods.push(value),
            Some("NetworkPolicy") => objects.policies.push(value),
            _ => {}
        }
    }
    let mut rng = Rng(rng_seed | 1);
    let mut out = String::new();
    for n in 0..changes {
        if let Some((verb, object)) = change(&mut objects, &mut rng) {
            write_event(&mut out, n, verb, &object);
        }
    }
    Ok(out)
}

/// One change, applied to `objects`: the verb and the object as stored
/// after it (as deleted, for a delete).
fn change(objects: &mut Objects, rng: &mut Rng) -> Option<(&'static str, Value)> {
    let tier = TIERS[rng.below(TIERS.len())];
    Some(match rng.below(20) {
        0..=5 => {
            let d = pick(&mut objects.deployments, rng)?;
            d["spec"]["template"]["metadata"]["labels"]["tier"] = json!(tier);
            ("patch", d.clone())
        }
        6..=8 => {
            let p = pick(&mut objects.pods, rng)?;
            p["metadata"]["labels"]["tier"] = json!(tier);
            ("patch", p.clone())
        }
        9..=12 => {
            let p = pick(&mut objects.policies, rng)?;
            p["spec"]["podSelector"] = json!({"matchLabels": {"tier": tier}});
            ("update", p.clone())
        }
        13..=15 if !objects.deleted.is_empty() => {
            let i = rng.below(objects.deleted.len());
            let object = objects.deleted.swap_remove(i);
            match object["kind"].as_str() {
                Some("Pod") => objects.pods.push(object.clone()),
                _ => objects.policies.push(object.clone()),
            }
            ("create", object)
        }
        13..=17 => {
            let list = match rng.below(2) {
                0 => &mut objects.pods,
                _ => &mut objects.policies,
            };
            if list.is_empty() {
                return None;
            }
            let object = list.swap_remove(rng.below(list.len()));
            objects.deleted.push(object.clone());
            ("delete", object)
        }
        _ => {
            let team = objects
                .namespaces
                .get(rng.below(objects.namespaces.len()))?
                .pointer("/metadata/labels/team")
                .cloned()
                .unwrap_or(json!("none"));
            let ns = pick(&mut objects.namespaces, rng)?;
            ns["metadata"]["labels"]["team"] = team;
            ("patch", ns.clone())
        }
    })
}

fn pick<'o>(list: &'o mut [Value], rng: &mut Rng) -> Option<&'o mut Value> {
    if list.is_empty() {
        return None;
    }
    let i = rng.below(list.len());
    list.get_mut(i)
}

fn write_event(out: &mut String, n: usize, verb: &str, object: &Value) {
    let kind = object["kind"].as_str().unwrap_or_default();
    let (resource, group) = match kind {
        "Namespace" => ("namespaces", ""),
        "Deployment" => ("deployments", "apps"),
        "Pod" => ("pods", ""),
        _ => ("networkpolicies", "networking.k8s.io"),
    };
    let mut object_ref = json!({
        "resource": resource,
        "name": object.pointer("/metadata/name"),
        "apiVersion": "v1",
    });
    if let Some(ns) = object.pointer("/metadata/namespace") {
        object_ref["namespace"] = ns.clone();
    }
    if !group.is_empty() {
        object_ref["apiGroup"] = json!(group);
    }
    let response = match verb {
        "delete" => json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
        _ => object.clone(),
    };
    let (minute, second) = (n / 60 % 60, n % 60);
    let event = json!({
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "RequestResponse",
        "auditID": format!("00000000-0000-4000-8000-{n:012x}"),
        "stage": "ResponseComplete",
        "requestURI": format!("/synthetic/{resource}"),
        "verb": verb,
        "user": {"username": format!("user{}", n % 7), "groups": ["system:authenticated"]},
        "sourceIPs": [format!("192.0.2.{}", n % 250 + 1)],
        "userAgent": "kubectl/v1.31.0",
        "objectRef": object_ref,
        "responseStatus": {"metadata": {}, "code": 200},
        "responseObject": response,
        "requestReceivedTimestamp": format!("2026-11-30T{:02}:{minute:02}:{second:02}.000000Z", n / 3600 % 24),
        "stageTimestamp": format!("2026-11-30T{:02}:{minute:02}:{second:02}.001000Z", n / 3600 % 24),
    });
    let _ = writeln!(out, "{event}");
}
