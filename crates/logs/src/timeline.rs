//! The connectivity timeline: a seed snapshot of the cluster, then each
//! change of the audit trail applied in order, with the connections each
//! change made possible or impossible and who made it.
//!
//! Only events that changed state count (`ResponseComplete` with a 2xx
//! answer). A delete removes the object its `objectRef` names. A create,
//! update or patch puts in the object the API server stored, which is the
//! `responseObject`. A create or update logged at Request level has only
//! the `requestObject`, and that is used instead. A patch without its
//! response cannot be applied, because its body is only a patch: it is
//! counted as unreadable, and so is every change logged at Metadata level.
//!
//! This first version judges each change by recomputing the whole
//! connectivity map before and after it (`palisade_policy::diff`). That
//! is exact, and its cost grows with the cluster times the number of
//! changes. Recomputing only the workloads a change touches is the next
//! step.

use std::collections::BTreeMap;

use palisade_inventory::Inventory;
use palisade_inventory::yaml::compose_documents;
use palisade_inventory::yaml::de::from_node;
use palisade_policy::{DiffEntry, MapFilter, Settings, diff};
use serde_json::Value;

use crate::audit::AuditEvent;

/// Kind, namespace (empty for cluster-scoped kinds) and name.
type ObjectKey = (String, String, String);

/// One change and the connectivity it changed.
#[derive(Clone, Debug)]
pub struct Step {
    pub time: Option<String>,
    /// The audit log line of the change.
    pub line: u64,
    pub user: String,
    pub groups: Vec<String>,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    pub verb: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub entries: Vec<DiffEntry>,
}

/// What the replay could not apply, counted by reason.
pub type Unapplied = BTreeMap<&'static str, u64>;

pub struct Timeline {
    objects: BTreeMap<ObjectKey, Value>,
    inventory: Inventory,
    settings: Settings,
    pub unapplied: Unapplied,
    /// Changes applied that changed no connection.
    pub quiet: u64,
}

/// The kinds whose objects decide connectivity, by audit resource name.
fn kind_of_resource(resource: &str) -> Option<&'static str> {
    Some(match resource {
        "networkpolicies" => "NetworkPolicy",
        "pods" => "Pod",
        "namespaces" => "Namespace",
        "services" => "Service",
        "deployments" => "Deployment",
        "statefulsets" => "StatefulSet",
        "daemonsets" => "DaemonSet",
        "replicasets" => "ReplicaSet",
        "jobs" => "Job",
        "cronjobs" => "CronJob",
        "nodes" => "Node",
        _ => return None,
    })
}

fn key_of(object: &Value) -> Option<ObjectKey> {
    let kind = object.get("kind")?.as_str()?;
    let metadata = object.get("metadata")?;
    let name = metadata.get("name")?.as_str()?;
    let cluster_scoped = matches!(kind, "Namespace" | "Node");
    let namespace = match metadata.get("namespace").and_then(Value::as_str) {
        _ if cluster_scoped => "",
        Some(ns) => ns,
        None => "default",
    };
    Some((kind.to_string(), namespace.to_string(), name.to_string()))
}

impl Timeline {
    /// The seed: manifest texts (name, text), multi-document YAML or JSON,
    /// `List`s expanded.
    pub fn seed(texts: &[(String, String)], settings: Settings) -> Result<Timeline, String> {
        let mut objects = BTreeMap::new();
        let mut unapplied = Unapplied::new();
        for (name, text) in texts {
            let composed = compose_documents(text);
            if let Some(problem) = composed.error {
                return Err(format!("{name}: {}", problem.message));
            }
            for node in &composed.documents {
                let (value, _) = from_node::<Value>(node).map_err(|e| format!("{name}: {e}"))?;
                let items = match value.get("items") {
                    Some(Value::Array(items)) => items.clone(),
                    _ => vec![value],
                };
                for item in items {
                    match key_of(&item) {
                        Some(key) => {
                            objects.insert(key, item);
                        }
                        None => {
                            *unapplied
                                .entry("seed object without kind or name")
                                .or_default() += 1
                        }
                    }
                }
            }
        }
        let mut timeline = Timeline {
            objects,
            inventory: Inventory::default(),
            settings,
            unapplied,
            quiet: 0,
        };
        timeline.inventory = timeline.build();
        Ok(timeline)
    }

    pub fn inventory(&self) -> &Inventory {
        &self.inventory
    }

    fn build(&self) -> Inventory {
        let texts: Vec<(String, String)> = self
            .objects
            .iter()
            .map(|((kind, ns, name), object)| (format!("{kind}/{ns}/{name}"), object.to_string()))
            .collect();
        Inventory::from_texts(texts.iter().map(|(n, t)| (n.as_str(), t.as_str()))).0
    }

    /// Applies one audit event; the step when it changed connectivity as
    /// `filter` sees it.
    pub fn apply(&mut self, event: &AuditEvent, filter: &MapFilter) -> Option<Step> {
        let object = event.object_ref.as_ref()?;
        if !event.changed_state() || object.subresource.is_some() {
            return None;
        }
        let kind = kind_of_resource(&object.resource)?;
        let namespace = match kind {
            "Namespace" | "Node" => String::new(),
            _ => object.namespace.clone().unwrap_or_else(|| "default".into()),
        };
        let name = object.name.clone().unwrap_or_default();
        let key = (kind.to_string(), namespace.clone(), name.clone());
        let changed = match event.verb.as_str() {
            "delete" => self.objects.remove(&key).is_some(),
            "create" | "update" | "patch" => match self.stored(event) {
                Some(mut stored) => {
                    // Audit bodies may leave out what the URL says.
                    if stored.get("kind").is_none() {
                        stored["kind"] = Value::from(kind);
                    }
                    self.objects.insert(key, stored);
                    true
                }
                None => {
                    let reason = match event.level.as_deref() {
                        Some("Metadata") => "logged at Metadata level (no body)",
                        _ => "a patch without its response object",
                    };
                    *self.unapplied.entry(reason).or_default() += 1;
                    false
                }
            },
            _ => false,
        };
        if !changed {
            return None;
        }
        let after = self.build();
        let entries = diff(&self.inventory, &after, &self.settings, filter);
        self.inventory = after;
        if entries.is_empty() {
            self.quiet += 1;
            return None;
        }
        Some(Step {
            time: event
                .stage_timestamp
                .clone()
                .or(event.request_received.clone()),
            line: event.line,
            user: event.user.username.clone(),
            groups: event.user.groups.clone(),
            source_ip: event.source_ip().map(str::to_string),
            user_agent: event.user_agent.clone(),
            verb: event.verb.clone(),
            kind: kind.to_string(),
            namespace,
            name,
            entries,
        })
    }

    /// The object as the API server stored it, when the event carries it.
    fn stored(&self, event: &AuditEvent) -> Option<Value> {
        let is_object = |v: &&Value| {
            v.get("metadata").is_some() && v.get("kind").and_then(Value::as_str) != Some("Status")
        };
        if let Some(response) = event.response_object.as_ref().filter(is_object) {
            return Some(response.clone());
        }
        match event.verb.as_str() {
            "create" | "update" => event.request_object.as_ref().filter(is_object).cloned(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::read_audit_log;

    const SEED: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {team: shop}}
---
apiVersion: v1
kind: Namespace
metadata: {name: other, labels: {team: other}}
---
apiVersion: v1
kind: Pod
metadata: {name: frontend, namespace: shop, labels: {app: frontend}}
spec: {containers: [{name: c, image: nginx}]}
---
apiVersion: v1
kind: Pod
metadata: {name: debug, namespace: shop, labels: {app: debug}}
spec: {containers: [{name: c, image: nginx}]}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: shop, labels: {app: db}}
spec: {containers: [{name: c, image: postgres}]}
---
apiVersion: v1
kind: Pod
metadata: {name: intruder, namespace: other, labels: {app: x}}
spec: {containers: [{name: c, image: nginx}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-ingress, namespace: shop}
spec:
  podSelector: {matchLabels: {app: db}}
  policyTypes: [Ingress]
  ingress:
  - from:
    - podSelector: {matchLabels: {app: frontend}}
    - namespaceSelector: {matchLabels: {team: trusted}}
    ports: [{protocol: TCP, port: 5432}]
"#;

    /// The policy as a JSON object, for the restore's response.
    fn policy_json() -> String {
        let composed = compose_documents(SEED);
        let (value, _) = from_node::<Value>(composed.documents.last().unwrap()).unwrap();
        value.to_string()
    }

    fn event(n: u32, user: &str, verb: &str, object_ref: &str, response: &str) -> String {
        format!(
            r#"{{"auditID":"{n}","stage":"ResponseComplete","level":"RequestResponse","verb":"{verb}","user":{{"username":"{user}","groups":["system:authenticated"]}},"sourceIPs":["10.0.0.{n}"],"userAgent":"kubectl/v1.30","objectRef":{object_ref},"responseStatus":{{"code":200}},"responseObject":{response},"stageTimestamp":"2026-11-30T10:00:0{n}Z"}}"#
        )
    }

    /// Each step as `time user verb object: change src -> dst +gained -lost`.
    fn replay(trail: &str) -> (Vec<String>, Timeline) {
        let texts = vec![("seed.yaml".to_string(), SEED.to_string())];
        let mut timeline = Timeline::seed(&texts, Settings::default()).unwrap();
        let mut steps = Vec::new();
        read_audit_log(trail.as_bytes(), &mut |event| {
            if let Some(step) = timeline.apply(&event, &MapFilter::default()) {
                for e in &step.entries {
                    steps.push(format!(
                        "{} {} {} {}/{}/{}: {} {} -> {} +[{}] -[{}]",
                        step.time.as_deref().unwrap_or("-"),
                        step.user,
                        step.verb,
                        step.kind,
                        step.namespace,
                        step.name,
                        e.change.as_str(),
                        e.src,
                        e.dst,
                        e.gained(),
                        e.lost()
                    ));
                }
            }
        });
        (steps, timeline)
    }

    #[test]
    fn a_policy_deleted_then_restored_a_relabel_and_a_namespace_label_change() {
        let policy_ref = r#"{"resource":"networkpolicies","namespace":"shop","name":"db-ingress","apiGroup":"networking.k8s.io"}"#;
        let pod_ref = r#"{"resource":"pods","namespace":"shop","name":"debug"}"#;
        let ns_ref = r#"{"resource":"namespaces","name":"other"}"#;
        let trail = [
            event(1, "mallory", "delete", policy_ref, r#"{"kind":"Status","status":"Success"}"#),
            event(2, "admin", "create", policy_ref, &policy_json()),
            event(3, "mallory", "patch", pod_ref, r#"{"kind":"Pod","apiVersion":"v1","metadata":{"name":"debug","namespace":"shop","labels":{"app":"frontend"}},"spec":{"containers":[{"name":"c","image":"nginx"}]}}"#),
            event(4, "mallory", "patch", ns_ref, r#"{"kind":"Namespace","apiVersion":"v1","metadata":{"name":"other","labels":{"team":"trusted"}}}"#),
        ]
        .join("\n");
        let (steps, timeline) = replay(&trail);
        let all_but_5432 = "SCTP 1-65535,TCP 1-5431,5433-65535,UDP 1-65535";
        let deleted = "2026-11-30T10:00:01Z mallory delete NetworkPolicy/shop/db-ingress";
        let restored = "2026-11-30T10:00:02Z admin create NetworkPolicy/shop/db-ingress";
        let expected = [
            // db is no longer isolated: everyone reaches it on every port.
            format!("{deleted}: changed shop/frontend[Pod] -> shop/db[Pod] +[{all_but_5432}] -[No Connections]"),
            format!("{deleted}: added 0.0.0.0-255.255.255.255[External] -> shop/db[Pod] +[All Connections] -[No Connections]"),
            format!("{deleted}: added other/intruder[Pod] -> shop/db[Pod] +[All Connections] -[No Connections]"),
            format!("{deleted}: added shop/debug[Pod] -> shop/db[Pod] +[All Connections] -[No Connections]"),
            format!("{restored}: changed shop/frontend[Pod] -> shop/db[Pod] +[No Connections] -[{all_but_5432}]"),
            format!("{restored}: removed 0.0.0.0-255.255.255.255[External] -> shop/db[Pod] +[No Connections] -[All Connections]"),
            format!("{restored}: removed other/intruder[Pod] -> shop/db[Pod] +[No Connections] -[All Connections]"),
            format!("{restored}: removed shop/debug[Pod] -> shop/db[Pod] +[No Connections] -[All Connections]"),
            // The relabel slips debug into the allowed set.
            "2026-11-30T10:00:03Z mallory patch Pod/shop/debug: added shop/debug[Pod] -> shop/db[Pod] +[TCP 5432] -[No Connections]".to_string(),
            // The namespace label lets every pod of `other` in.
            "2026-11-30T10:00:04Z mallory patch Namespace//other: added other/intruder[Pod] -> shop/db[Pod] +[TCP 5432] -[No Connections]".to_string(),
        ];
        assert_eq!(steps, expected);
        assert_eq!(timeline.quiet, 0);
        assert!(timeline.unapplied.is_empty());
    }

    #[test]
    fn a_bad_seed_is_an_error_naming_the_file_and_nameless_objects_are_counted() {
        let broken = vec![(
            "broken.yaml".to_string(),
            "kind: Pod\nmetadata: [unclosed".to_string(),
        )];
        let error = Timeline::seed(&broken, Settings::default()).err().unwrap();
        assert!(error.starts_with("broken.yaml: "), "{error}");
        let nameless = vec![(
            "n.yaml".to_string(),
            "kind: Pod\nspec: {}\n---\n42\n".to_string(),
        )];
        let timeline = Timeline::seed(&nameless, Settings::default()).unwrap();
        assert_eq!(
            timeline.unapplied.get("seed object without kind or name"),
            Some(&2)
        );
    }

    #[test]
    fn changes_that_cannot_be_applied_are_counted_and_quiet_ones_too() {
        let pod_ref = r#"{"resource":"pods","namespace":"shop","name":"debug"}"#;
        let metadata =
            event(1, "u", "patch", pod_ref, "null").replace("RequestResponse", "Metadata");
        let no_response = event(2, "u", "patch", pod_ref, "null");
        // A label no policy looks at changes nothing.
        let quiet = event(
            3,
            "u",
            "patch",
            pod_ref,
            r#"{"kind":"Pod","metadata":{"name":"debug","namespace":"shop","labels":{"app":"debug","tier":"x"}},"spec":{"containers":[{"name":"c","image":"nginx"}]}}"#,
        );
        let refused =
            event(4, "u", "delete", pod_ref, "null").replace("\"code\":200", "\"code\":403");
        let (steps, timeline) = replay(&[metadata, no_response, quiet, refused].join("\n"));
        assert!(steps.is_empty(), "{steps:?}");
        assert_eq!(timeline.quiet, 1);
        let unapplied: Vec<(&str, u64)> =
            timeline.unapplied.iter().map(|(k, v)| (*k, *v)).collect();
        assert_eq!(
            unapplied,
            [
                ("a patch without its response object", 1),
                ("logged at Metadata level (no body)", 1)
            ]
        );
    }
}
