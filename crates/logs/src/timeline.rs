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
//! Each change is judged incrementally. The namespace it belongs to is
//! rebuilt from objects decoded when they last changed (grouping pods into
//! workloads never crosses a namespace), the workloads whose connections
//! can differ are found (`palisade_policy::touched_in`), and only their
//! rows and columns of the connectivity matrix are computed, before and
//! after. The result equals a full diff of the two states (tests compare
//! them), at a cost that grows with the cluster once per change rather
//! than with its square. A change to a Node, which is cluster-scoped,
//! rebuilds everything.

use std::collections::{BTreeMap, BTreeSet};

use palisade_inventory::{DecodedObject, Diagnostics, Inventory};
use palisade_policy::{
    DiffEntry, MapFilter, Node, Partial, SelectionCache, Settings, Side, diff, diff_touching,
    policy_cuts, touched_in, workload_nodes,
};
use serde_json::Value;

use crate::audit::AuditEvent;

/// Where an object is rebuilt from: its namespace, or (for Nodes) the
/// cluster. A Namespace object belongs to its own namespace.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Group {
    Namespace(String),
    Cluster,
}

/// Kind and name within a group.
type ObjectKey = (String, String);

/// The connections asked about: from workloads matching `from` to those
/// matching `to`.
struct Pairs {
    from: Option<String>,
    to: Option<String>,
}

impl Pairs {
    /// Whether a change in `namespace` can alter a pair asked about: only
    /// when one of the pair's sides may be in it, because a pair's
    /// connections depend on its two workloads, their namespaces' labels
    /// and the policies of those namespaces. A side named without its
    /// namespace may be anywhere.
    fn may_involve_namespace(&self, namespace: &str) -> bool {
        let side = |side: &Option<String>| match side.as_deref().map(|f| f.split_once('/')) {
            Some(Some((ns, _))) => ns == namespace,
            _ => true,
        };
        side(&self.from) || side(&self.to)
    }

    /// Whether the workload is a side of some pair asked about.
    fn may_involve(&self, node: &Node) -> bool {
        let matches = |side: &Option<String>| side.as_ref().is_none_or(|f| node.matches_focus(f));
        matches(&self.from) || matches(&self.to)
    }
}

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
    objects: BTreeMap<Group, BTreeMap<ObjectKey, DecodedObject>>,
    inventory: Inventory,
    /// The nodes of `inventory`'s workloads, in its order.
    nodes: Vec<Node>,
    /// What each policy of `inventory` selects, kept between changes.
    selections: SelectionCache,
    /// The connections asked about, when only some are.
    pairs: Option<Pairs>,
    /// Namespaces changed since `inventory` was last brought up to date:
    /// their changes could alter no pair asked about, so their rebuild
    /// waits until a change that can needs the whole inventory.
    stale: BTreeSet<String>,
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

/// The group, kind and name of an object, as the API server would file it
/// (no namespace means `default` for namespaced kinds).
fn place(kind: &str, namespace: Option<&str>, name: &str) -> (Group, ObjectKey) {
    let group = match kind {
        "Node" => Group::Cluster,
        "Namespace" => Group::Namespace(name.to_string()),
        _ => Group::Namespace(namespace.unwrap_or("default").to_string()),
    };
    (group, (kind.to_string(), name.to_string()))
}

impl Timeline {
    /// The seed: manifest texts (name, text), multi-document YAML or JSON,
    /// `List`s expanded, read as every other command reads manifests.
    /// Problems come back as diagnostics; objects that cannot be read are
    /// also counted in `unapplied`.
    pub fn seed(texts: &[(String, String)], settings: Settings) -> (Timeline, Diagnostics) {
        let mut diagnostics = Diagnostics::default();
        let mut objects = Vec::new();
        for (name, text) in texts {
            let (decoded, problems) = Inventory::decode_text(name, text);
            diagnostics.extend(problems);
            objects.extend(decoded);
        }
        let unreadable = diagnostics.errors() as u64;
        let (mut timeline, problems) = Timeline::seed_objects(objects, settings);
        diagnostics.extend(problems);
        if unreadable > 0 {
            *timeline
                .unapplied
                .entry("seed object unreadable or invalid")
                .or_default() += unreadable;
        }
        (timeline, diagnostics)
    }

    /// The seed from objects already decoded (the live inventory's).
    pub fn seed_objects(
        objects: Vec<DecodedObject>,
        settings: Settings,
    ) -> (Timeline, Diagnostics) {
        let mut timeline = Timeline {
            objects: BTreeMap::new(),
            inventory: Inventory::default(),
            nodes: Vec::new(),
            selections: SelectionCache::default(),
            pairs: None,
            stale: BTreeSet::new(),
            settings,
            unapplied: Unapplied::new(),
            quiet: 0,
        };
        let mut diagnostics = Diagnostics::default();
        // Kinds that decide nothing (ConfigMaps, ...) and objects that
        // failed to decode; built once, for their diagnostics.
        let mut leftovers = Vec::new();
        for object in objects {
            match object.key() {
                Some((kind, namespace, name)) => {
                    let (group, key) = place(kind, Some(namespace), name);
                    timeline
                        .objects
                        .entry(group)
                        .or_default()
                        .insert(key, object);
                }
                None => leftovers.push(object),
            }
        }
        diagnostics.extend(Inventory::from_decoded(leftovers).1);
        diagnostics.extend(timeline.rebuild_all());
        let unreadable = diagnostics.errors() as u64;
        if unreadable > 0 {
            timeline
                .unapplied
                .insert("seed object unreadable or invalid", unreadable);
        }
        (timeline, diagnostics)
    }

    /// The inventory after the changes applied so far (when only some
    /// pairs are asked about, namespaces that cannot involve them may lag).
    pub fn inventory(&self) -> &Inventory {
        &self.inventory
    }

    /// How the replay reads what the NetworkPolicy API leaves open.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Only the connections from workloads matching `from` to workloads
    /// matching `to` (`ns/name` or `name`, as `--focus-workload`; `None`
    /// matches every workload) are wanted: steps may leave out every
    /// other, and changes that cannot alter these cost no engine work.
    pub fn only_pairs(&mut self, from: Option<String>, to: Option<String>) {
        self.pairs = (from.is_some() || to.is_some()).then_some(Pairs { from, to });
    }

    fn rebuild_all(&mut self) -> Diagnostics {
        let all = self.objects.values().flat_map(|objects| objects.values());
        let (inventory, diagnostics) = Inventory::from_decoded(all.cloned());
        self.stale.clear();
        self.inventory = inventory;
        self.nodes = workload_nodes(&self.inventory);
        self.selections.clear();
        diagnostics
    }

    /// Applies one audit event; the step when it changed connectivity as
    /// `filter` sees it.
    pub fn apply(&mut self, event: &AuditEvent, filter: &MapFilter) -> Option<Step> {
        let object = event.object_ref.as_ref()?;
        if !event.changed_state() || object.subresource.is_some() {
            return None;
        }
        let kind = kind_of_resource(&object.resource)?;
        let name = object.name.clone().unwrap_or_default();
        let (group, key) = place(kind, object.namespace.as_deref(), &name);
        let namespace = match &group {
            Group::Namespace(ns) if kind != "Namespace" => ns.clone(),
            _ => String::new(),
        };
        let changed = match event.verb.as_str() {
            "delete" => self
                .objects
                .get_mut(&group)
                .and_then(|objects| objects.remove(&key))
                .is_some(),
            "create" | "update" | "patch" => match stored(event, kind) {
                Ok(decoded) => {
                    self.objects
                        .entry(group.clone())
                        .or_default()
                        .insert(key, decoded);
                    true
                }
                Err(reason) => {
                    *self.unapplied.entry(reason).or_default() += 1;
                    false
                }
            },
            _ => false,
        };
        if !changed {
            return None;
        }
        let entries = match &group {
            Group::Namespace(ns)
                if self
                    .pairs
                    .as_ref()
                    .is_some_and(|p| !p.may_involve_namespace(ns)) =>
            {
                // Rebuilt when a change that matters needs the inventory.
                self.stale.insert(ns.clone());
                Vec::new()
            }
            Group::Namespace(ns) => {
                self.refresh_stale();
                self.rebuild_namespace(ns, filter)
            }
            Group::Cluster => {
                let before = std::mem::take(&mut self.inventory);
                let _ = self.rebuild_all();
                diff(&before, &self.inventory, &self.settings, filter)
            }
        };
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

    /// Rebuilds one namespace and returns what that changed: the rows and
    /// columns of the touched workloads, before and after, over the same
    /// cut of the external space.
    /// One namespace's part of the inventory, from its objects.
    fn part(&self, namespace: &str) -> Inventory {
        let group = Group::Namespace(namespace.to_string());
        let objects = self
            .objects
            .get(&group)
            .into_iter()
            .flat_map(|o| o.values());
        Inventory::from_decoded(objects.cloned()).0
    }

    /// Brings the namespaces whose changes were put off into the inventory.
    fn refresh_stale(&mut self) {
        if self.stale.is_empty() {
            return;
        }
        for namespace in std::mem::take(&mut self.stale) {
            let part = self.part(&namespace);
            self.inventory.replace_namespace(&namespace, part);
            self.selections.invalidate(&namespace);
        }
        self.nodes = workload_nodes(&self.inventory);
    }

    fn rebuild_namespace(&mut self, namespace: &str, filter: &MapFilter) -> Vec<DiffEntry> {
        let part = self.part(namespace);
        let mut touched = touched_in(&self.inventory, &part, namespace, &self.settings);
        if let Some(pairs) = &self.pairs {
            // A pair asked about changes only when one of its two sides is
            // touched: the others need not be computed.
            touched.retain(|node| pairs.may_involve(node));
        }
        let old_cuts = policy_cuts(&self.inventory.policies);
        let kept = self
            .inventory
            .policies
            .iter()
            .filter(|p| p.namespace != namespace);
        let new_cuts = policy_cuts(kept.chain(&part.policies));
        let indices = |nodes: &[Node]| -> Vec<usize> {
            (0..nodes.len())
                .filter(|&i| touched.contains(&nodes[i]))
                .collect()
        };
        let before = (!touched.is_empty()).then(|| {
            let of = indices(&self.nodes);
            Partial::with_cache(
                &self.inventory,
                &self.settings,
                &new_cuts,
                of,
                &mut self.selections,
            )
        });
        self.inventory.replace_namespace(namespace, part);
        self.selections.invalidate(namespace);
        let old_nodes = std::mem::replace(&mut self.nodes, workload_nodes(&self.inventory));
        let Some(before) = before else {
            return Vec::new();
        };
        let of = indices(&self.nodes);
        let after = Partial::with_cache(
            &self.inventory,
            &self.settings,
            &old_cuts,
            of,
            &mut self.selections,
        );
        diff_touching(
            &Side::new(&old_nodes, &before),
            &Side::new(&self.nodes, &after),
            &touched,
            filter,
        )
    }
}

/// The object as the API server stored it, decoded, when the event carries
/// it; otherwise why not.
fn stored(event: &AuditEvent, kind: &str) -> Result<DecodedObject, &'static str> {
    let is_object = |v: &&Value| {
        v.get("metadata").is_some() && v.get("kind").and_then(Value::as_str) != Some("Status")
    };
    let request = || match event.verb.as_str() {
        "create" | "update" => event.request_object.as_ref().filter(is_object),
        _ => None,
    };
    let Some(body) = event
        .response_object
        .as_ref()
        .filter(is_object)
        .or_else(request)
    else {
        return Err(match event.level.as_deref() {
            Some("Metadata") => "logged at Metadata level (no body)",
            _ => "a patch without its response object",
        });
    };
    let mut body = body.clone();
    // Audit bodies may leave out what the URL says.
    if body.get("kind").is_none() {
        body["kind"] = Value::from(kind);
    }
    let file = format!("audit log line {}", event.line);
    let (objects, _) = Inventory::decode_text(&file, &body.to_string());
    match objects.into_iter().next() {
        Some(object) if object.key().is_some() => Ok(object),
        _ => Err("the object in the event could not be decoded"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::read_audit_log;
    use palisade_inventory::yaml::compose_documents;
    use palisade_inventory::yaml::de::from_node;

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
        let (mut timeline, diagnostics) = Timeline::seed(&texts, Settings::default());
        assert!(diagnostics.is_empty(), "{:?}", diagnostics.items());
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
    fn a_bad_seed_is_reported_with_its_file_and_the_rest_is_read() {
        let texts = vec![
            (
                "broken.yaml".to_string(),
                "kind: Pod\nmetadata: [unclosed".to_string(),
            ),
            (
                "n.yaml".to_string(),
                "kind: Pod\nspec: {}\n---\n42\n".to_string(),
            ),
            ("seed.yaml".to_string(), SEED.to_string()),
        ];
        let (timeline, diagnostics) = Timeline::seed(&texts, Settings::default());
        let messages: Vec<String> = diagnostics.items().iter().map(|d| d.to_string()).collect();
        assert!(messages[0].starts_with("broken.yaml:"), "{messages:?}");
        assert!(
            messages.iter().any(|m| m.starts_with("n.yaml:")),
            "{messages:?}"
        );
        assert_eq!(
            timeline.unapplied.get("seed object unreadable or invalid"),
            Some(&(diagnostics.errors() as u64))
        );
        assert_eq!(diagnostics.errors(), 3, "{messages:?}");
        assert_eq!(timeline.inventory().workloads.len(), 4);
    }

    /// Every step of a synthetic trail over a generated cluster equals the
    /// full diff of the inventories before and after it, and the inventory
    /// rebuilt namespace by namespace equals one built from scratch.
    fn check_incremental_against_full(settings: Settings) {
        let params = palisade_gen::Params {
            namespaces: 4,
            workloads: 24,
            pods_per_workload: 2,
            policies: 30,
            seed: 7,
            host_network_percent: 10,
        };
        let seed = palisade_gen::generate(&params);
        let trail = crate::synthetic::audit_trail(&seed, 300, 11).unwrap();
        let texts = vec![("gen.yaml".to_string(), seed)];
        let (mut timeline, diagnostics) = Timeline::seed(&texts, settings.clone());
        assert_eq!(diagnostics.errors(), 0, "{:?}", diagnostics.items());
        let (mut steps, mut events) = (0, 0);
        read_audit_log(trail.as_bytes(), &mut |event| {
            events += 1;
            let before = timeline.inventory().clone();
            let step = timeline.apply(&event, &MapFilter::default());
            let expected = diff(
                &before,
                timeline.inventory(),
                &settings,
                &MapFilter::default(),
            );
            let got = step.map(|s| s.entries).unwrap_or_default();
            assert_eq!(got, expected, "event at line {}", event.line);
            steps += usize::from(!got.is_empty());
            let all = timeline.objects.values().flat_map(|o| o.values()).cloned();
            let mut scratch = Inventory::from_decoded(all).0;
            scratch.skipped_kinds = timeline.inventory().skipped_kinds.clone();
            assert!(
                scratch == *timeline.inventory(),
                "event at line {}",
                event.line
            );
        });
        assert_eq!(events, 300);
        // The trail must exercise the engine, not only quiet changes.
        assert!(steps > 50, "{steps} steps changed connectivity");
        assert!(timeline.unapplied.is_empty(), "{:?}", timeline.unapplied);
    }

    /// With only some pairs asked about, the steps hold exactly the
    /// entries of the full replay between those pairs.
    #[test]
    fn asking_about_some_pairs_gives_the_full_replays_entries_for_them() {
        let params = palisade_gen::Params {
            namespaces: 3,
            workloads: 12,
            pods_per_workload: 1,
            policies: 20,
            seed: 3,
            host_network_percent: 0,
        };
        let seed = palisade_gen::generate(&params);
        let trail = crate::synthetic::audit_trail(&seed, 400, 5).unwrap();
        let texts = vec![("gen.yaml".to_string(), seed)];
        let replay = |from: Option<&str>, to: Option<&str>| {
            let (mut timeline, _) = Timeline::seed(&texts, Settings::default());
            timeline.only_pairs(from.map(str::to_string), to.map(str::to_string));
            let mut lines = Vec::new();
            read_audit_log(trail.as_bytes(), &mut |event| {
                for e in timeline
                    .apply(&event, &MapFilter::default())
                    .map(|s| s.entries)
                    .unwrap_or_default()
                {
                    let wanted = from.is_none_or(|f| e.src.matches_focus(f))
                        && to.is_none_or(|t| e.dst.matches_focus(t));
                    if wanted {
                        lines.push(format!(
                            "{} {} {} {:?} {:?}",
                            event.line, e.src, e.dst, e.old, e.new
                        ));
                    }
                }
            });
            lines
        };
        for (from, to) in [
            (Some("ns0/app0"), Some("ns1/app1")),
            (Some("ns1/app4"), None),
            (None, Some("ns2/app2")),
        ] {
            let asked = replay(from, to);
            let full = replay(None, None)
                .into_iter()
                .filter(|l| {
                    let mut words = l.split(' ').skip(1);
                    let (src, dst) = (words.next().unwrap(), words.next().unwrap());
                    from.is_none_or(|f| src.starts_with(&format!("{f}[")))
                        && to.is_none_or(|t| dst.starts_with(&format!("{t}[")))
                })
                .collect::<Vec<_>>();
            assert_eq!(asked, full, "{from:?} -> {to:?}");
            assert!(
                !asked.is_empty(),
                "{from:?} -> {to:?} never changed: a weak test"
            );
        }
    }

    #[test]
    fn incremental_steps_equal_full_diffs_on_a_synthetic_trail() {
        check_incremental_against_full(Settings::default());
    }

    #[test]
    fn incremental_steps_equal_full_diffs_when_ipblocks_match_pods_and_host_pods_are_pods() {
        check_incremental_against_full(Settings {
            ipblock_matches_pods: true,
            host_network_pods: palisade_policy::HostNetworkPods::Pod,
        });
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
