//! The dashboard's connectivity graph: workloads grouped by namespace,
//! edges for what the declared policies allow (when the server was given
//! the manifests) and for what was observed (the classes of the alerts in
//! the window), each observed edge with the policy decision of its latest
//! alert. A cluster with more workloads than the browser can lay out is
//! shown per namespace.

use std::collections::{BTreeMap, BTreeSet};

use palisade_inventory::Inventory;
use palisade_policy::{ConnectivityMap, Engine, MapFilter, Node, Settings};
use palisade_store::StoredAlert;
use serde::Serialize;
use serde_json::Value;

/// One allowed connection of the declared policies.
#[derive(Clone, Debug)]
pub struct DeclaredEdge {
    src: String,
    dst: String,
    src_group: String,
    dst_group: String,
    conns: String,
}

/// What the policies allow, computed once per inventory.
#[derive(Clone, Debug, Default)]
pub struct Declared {
    edges: Vec<DeclaredEdge>,
    /// Every workload, also those that talk to nobody.
    nodes: BTreeMap<String, String>,
    /// The inventory's version, as alerts judged against it name it in
    /// `evidence.snapshot`.
    pub version: String,
    /// What the inventory held, in counts.
    summary: Value,
}

/// Above this many workloads the graph is drawn, and kept, per namespace.
pub const MAX_WORKLOAD_NODES: usize = 300;

impl Declared {
    pub fn new(inventory: &Inventory, settings: &Settings, version: String) -> Declared {
        let engine = Engine::new(inventory, settings);
        let map = ConnectivityMap::from_engine(&engine, &MapFilter::default());
        let pods: usize = inventory.workloads.iter().map(|w| w.pods.len()).sum();
        let mut declared = Declared {
            version,
            summary: serde_json::json!({
                "namespaces": inventory.namespaces.len(),
                "workloads": inventory.workloads.len(),
                "pods": pods,
                "policies": inventory.policies.len(),
            }),
            ..Declared::default()
        };
        for w in &inventory.workloads {
            let node = Node::workload(w);
            declared.nodes.insert(node.to_string(), w.namespace.clone());
        }
        for entry in map.entries() {
            declared.edges.push(DeclaredEdge {
                src: entry.src_name.to_string(),
                dst: entry.dst_name.to_string(),
                src_group: group_of(entry.src),
                dst_group: group_of(entry.dst),
                conns: entry.conn.to_string(),
            });
        }
        declared
    }
}

impl Declared {
    /// What the store keeps of this version: its counts and what its
    /// policies allow, as the dashboard's graph shows it (per namespace
    /// above [`MAX_WORKLOAD_NODES`] workloads).
    pub fn snapshot(&self, taken_us: i64) -> palisade_store::Snapshot {
        let graph = build(Some(self), &[], MAX_WORKLOAD_NODES, None);
        let doc = serde_json::json!({
            "version": self.version,
            "summary": self.summary,
            "graph": graph,
        });
        palisade_store::Snapshot {
            version: self.version.clone(),
            taken_us,
            doc: doc.to_string(),
        }
    }
}

fn group_of(node: &Node) -> String {
    match node {
        Node::Workload { namespace, .. } => namespace.clone(),
        Node::External(_) => EXTERNAL.to_string(),
    }
}

const EXTERNAL: &str = "(external)";

#[derive(Serialize, Debug, Clone)]
pub struct GraphNode {
    id: String,
    label: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent: Option<String>,
    /// `namespace`, `workload`, `external`.
    kind: &'static str,
}

#[derive(Serialize, Debug, Clone)]
pub struct GraphEdge {
    id: String,
    source: String,
    target: String,
    /// `declared`, `bypass`, `blocked-attempt`, `unexpected-drop`,
    /// `unresolved`.
    class: String,
    label: String,
    /// Connections observed (alerts' counts), or declared entries merged.
    count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    alert_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    summary: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    decision: Option<Value>,
}

#[derive(Serialize, Debug, Default)]
pub struct Graph {
    /// `workload` or `namespace` (aggregated).
    pub level: &'static str,
    pub nodes: Vec<GraphNode>,
    pub edges: Vec<GraphEdge>,
}

/// One endpoint of an alert as a graph node id and its group.
fn alert_side(doc: &Value, side: &str) -> (String, String) {
    let text = |k: &str| doc.get(side).and_then(|s| s.get(k)).and_then(Value::as_str);
    match (text("workload"), text("namespace")) {
        (Some(w), Some(ns)) => (w.to_string(), ns.to_string()),
        _ => {
            let id = text("node")
                .map(|n| format!("node/{n}"))
                .or_else(|| text("ip").map(str::to_string))
                .unwrap_or_else(|| "(unknown)".into());
            (id, EXTERNAL.to_string())
        }
    }
}

struct Observed {
    src: String,
    dst: String,
    src_group: String,
    dst_group: String,
    class: String,
    port: String,
    count: u64,
    latest: StoredAlert,
    doc: Value,
}

fn observed(alerts: &[StoredAlert]) -> Vec<Observed> {
    // Newest first: the first alert of a group is its latest.
    let mut groups: BTreeMap<(String, String, String, String), Observed> = BTreeMap::new();
    for stored in alerts {
        let Some(class) = stored.record.class.clone() else {
            continue;
        };
        let doc: Value = serde_json::from_str(&stored.record.doc).unwrap_or(Value::Null);
        let (src, src_group) = alert_side(&doc, "src");
        let (dst, dst_group) = alert_side(&doc, "dst");
        let port = match stored.record.port {
            Some(p) => format!("{}/{p}", stored.record.protocol),
            None => stored.record.protocol.clone(),
        };
        let key = (src.clone(), dst.clone(), class.clone(), port.clone());
        match groups.get_mut(&key) {
            Some(group) => group.count += stored.record.connections,
            None => {
                groups.insert(
                    key,
                    Observed {
                        src,
                        dst,
                        src_group,
                        dst_group,
                        class,
                        port,
                        count: stored.record.connections,
                        latest: stored.clone(),
                        doc,
                    },
                );
            }
        }
    }
    groups.into_values().collect()
}

/// The graph of `declared` (if any) and `alerts`, per workload when there
/// are at most `max_nodes` of them, else per namespace.
pub fn build(
    declared: Option<&Declared>,
    alerts: &[StoredAlert],
    max_nodes: usize,
    namespace: Option<&str>,
) -> Graph {
    let observed = observed(alerts);
    let in_scope = |a: &str, b: &str| namespace.is_none_or(|ns| a == ns || b == ns);
    let mut workloads: BTreeMap<String, String> = BTreeMap::new();
    if let Some(d) = declared {
        for (w, ns) in &d.nodes {
            if namespace.is_none_or(|n| n == ns) {
                workloads.insert(w.clone(), ns.clone());
            }
        }
        for e in d
            .edges
            .iter()
            .filter(|e| in_scope(&e.src_group, &e.dst_group))
        {
            workloads.insert(e.src.clone(), e.src_group.clone());
            workloads.insert(e.dst.clone(), e.dst_group.clone());
        }
    }
    for o in observed
        .iter()
        .filter(|o| in_scope(&o.src_group, &o.dst_group))
    {
        workloads.insert(o.src.clone(), o.src_group.clone());
        workloads.insert(o.dst.clone(), o.dst_group.clone());
    }
    let aggregate = workloads.len() > max_nodes;
    let mut graph = Graph {
        level: if aggregate { "namespace" } else { "workload" },
        ..Graph::default()
    };
    let groups: BTreeSet<&String> = workloads.values().collect();
    for g in groups {
        graph.nodes.push(GraphNode {
            id: format!("ns:{g}"),
            label: g.clone(),
            parent: None,
            kind: if g == EXTERNAL {
                "external"
            } else {
                "namespace"
            },
        });
    }
    if !aggregate {
        for (w, ns) in &workloads {
            graph.nodes.push(GraphNode {
                id: w.clone(),
                label: short_label(w),
                parent: Some(format!("ns:{ns}")),
                kind: if ns == EXTERNAL {
                    "external"
                } else {
                    "workload"
                },
            });
        }
    }
    let node = |id: &str, group: &str| {
        if aggregate {
            format!("ns:{group}")
        } else {
            id.to_string()
        }
    };
    let mut edges: BTreeMap<(String, String, String), GraphEdge> = BTreeMap::new();
    if let Some(d) = declared {
        for e in d
            .edges
            .iter()
            .filter(|e| in_scope(&e.src_group, &e.dst_group))
        {
            let (s, t) = (node(&e.src, &e.src_group), node(&e.dst, &e.dst_group));
            merge(&mut edges, s, t, "declared", &e.conns, 1, None);
        }
    }
    for o in observed
        .iter()
        .filter(|o| in_scope(&o.src_group, &o.dst_group))
    {
        let (s, t) = (node(&o.src, &o.src_group), node(&o.dst, &o.dst_group));
        merge(&mut edges, s, t, &o.class, &o.port, o.count, Some(o));
    }
    graph.edges = edges.into_values().collect();
    graph
}

fn merge(
    edges: &mut BTreeMap<(String, String, String), GraphEdge>,
    source: String,
    target: String,
    class: &str,
    label: &str,
    count: u64,
    observed: Option<&Observed>,
) {
    // Workload edges keep one edge per port; namespace edges one per class.
    let key = (source.clone(), target.clone(), class.to_string());
    match edges.get_mut(&key) {
        Some(edge) => {
            edge.count += count;
            if !edge.label.split(", ").any(|l| l == label) && edge.label.len() < 80 {
                edge.label = format!("{}, {label}", edge.label);
            }
        }
        None => {
            edges.insert(
                key,
                GraphEdge {
                    id: format!("{class}:{source}->{target}"),
                    source,
                    target,
                    class: class.to_string(),
                    label: label.to_string(),
                    count,
                    alert_id: observed.map(|o| o.latest.record.id.clone()),
                    summary: observed.map(|o| o.latest.record.summary.clone()),
                    decision: observed.and_then(|o| o.doc.pointer("/evidence/decision").cloned()),
                },
            );
        }
    }
}

/// `ns/name[Kind]` → `name`; other ids stay.
fn short_label(id: &str) -> String {
    let name = id.split_once('/').map_or(id, |(_, rest)| rest);
    name.split('[').next().unwrap_or(name).to_string()
}
