//! Policy advice: least-privilege NetworkPolicies from a baseline, one per
//! workload, and the proof that they mean what was observed. The proof
//! loads the generated YAML through the same loader users' manifests go
//! through, replaces the inventory's policies with it, and compares the
//! engine's connectivity with the observed graph pair by pair.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use palisade_inventory::{Inventory, Labels, NAMESPACE_NAME_LABEL, Protocol};
use palisade_policy::{ConnSet, EndpointRef, Engine, Settings};
use serde::Serialize;
use serde_json::{Value, json};

use crate::baseline::Baseline;
use crate::describe::{service_backends, target_port};

/// Labels that differ between pods of one workload or between revisions;
/// selecting on them would break at the next rollout.
const VOLATILE_LABELS: [&str; 5] = [
    "pod-template-hash",
    "controller-revision-hash",
    "statefulset.kubernetes.io/pod-name",
    "pod-template-generation",
    "batch.kubernetes.io/controller-uid",
];

/// DNS is allowed to kube-dns only, even when the baseline missed it
/// (resolvers cache, so a short capture often holds no lookup).
const DNS_PORT: u16 = 53;

/// A peer of a generated rule.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Peer {
    Workload(usize),
    Address(IpAddr),
}

/// The observed graph at the level policies speak: workloads and outside
/// addresses, protocol and port.
#[derive(Default)]
struct Graph {
    /// (src, dst) → (protocol, port).
    edges: BTreeMap<(Peer, Peer), BTreeSet<(Protocol, u16)>>,
    notes: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Proof {
    /// Ordered pairs of endpoints compared.
    pub pairs_checked: usize,
    /// Observed edges (pair, protocol, port) the generated policies allow.
    pub observed_allowed: usize,
    pub observed_total: usize,
    /// Observed connections the policies would deny (should be none).
    pub denied_but_observed: Vec<String>,
    /// Connections the policies allow although never observed, beyond DNS
    /// to kube-dns (should be none).
    pub allowed_but_not_observed: Vec<String>,
    /// The generated YAML's load diagnostics (should be none).
    pub load_errors: Vec<String>,
}

impl Proof {
    pub fn holds(&self) -> bool {
        self.denied_but_observed.is_empty()
            && self.allowed_but_not_observed.is_empty()
            && self.load_errors.is_empty()
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Advice {
    /// Multi-document YAML, one NetworkPolicy per workload.
    pub yaml: String,
    pub policies: usize,
    /// Edges or workloads that could not be expressed, and why.
    pub notes: Vec<String>,
    pub proof: Proof,
}

pub fn advise(inventory: &Inventory, baseline: &Baseline, settings: &Settings) -> Advice {
    let mut graph = build_graph(inventory, baseline);
    let dns = kube_dns(inventory);
    let covered = covered_workloads(inventory, &graph, &mut graph.notes.clone());
    let (covered, skip_notes) = covered;
    graph.notes.extend(skip_notes);
    let mut documents = Vec::new();
    for &w in &covered {
        documents.push(policy_for(inventory, &graph, w, dns, &covered));
    }
    let yaml = documents
        .iter()
        .map(|doc| serde_saphyr::to_string(doc).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("---\n");
    let proof = prove(inventory, settings, &graph, &covered, dns, &yaml);
    Advice {
        policies: documents.len(),
        yaml,
        notes: graph.notes,
        proof,
    }
}

fn build_graph(inventory: &Inventory, baseline: &Baseline) -> Graph {
    let by_name: HashMap<String, usize> = inventory
        .workloads
        .iter()
        .enumerate()
        .map(|(i, w)| (w.display_name(), i))
        .collect();
    let services: HashMap<String, usize> = inventory
        .services
        .iter()
        .enumerate()
        .map(|(i, s)| (format!("{}/{}[Service]", s.namespace, s.name), i))
        .collect();
    let mut graph = Graph::default();
    for edge in &baseline.edges {
        let Some(protocol) = Protocol::parse_k8s(&edge.protocol.to_ascii_uppercase()) else {
            graph.notes.push(format!(
                "{} -> {} {}: NetworkPolicy cannot allow this protocol alone; left out",
                edge.src, edge.dst, edge.protocol
            ));
            continue;
        };
        let Some(port) = edge.port else { continue };
        let Some(src) = peer_of(&by_name, &edge.src) else {
            graph
                .notes
                .push(format!("{}: not in the inventory; edge left out", edge.src));
            continue;
        };
        if let Some(&service) = services.get(&edge.dst) {
            for backend in service_backends(inventory, service) {
                let target = target_port(
                    inventory,
                    service,
                    backend,
                    protocol_transport(protocol),
                    Some(port),
                );
                if let Some(target) = target {
                    graph.add(src.clone(), Peer::Workload(backend), protocol, target);
                }
            }
            continue;
        }
        match peer_of(&by_name, &edge.dst) {
            Some(dst) => graph.add(src, dst, protocol, port),
            None => graph
                .notes
                .push(format!("{}: not in the inventory; edge left out", edge.dst)),
        }
    }
    graph
}

impl Graph {
    fn add(&mut self, src: Peer, dst: Peer, protocol: Protocol, port: u16) {
        if src != dst {
            self.edges
                .entry((src, dst))
                .or_default()
                .insert((protocol, port));
        }
    }
}

fn protocol_transport(protocol: Protocol) -> palisade_flow::Transport {
    match protocol {
        Protocol::Tcp => palisade_flow::Transport::Tcp,
        Protocol::Udp => palisade_flow::Transport::Udp,
        Protocol::Sctp => palisade_flow::Transport::Sctp,
    }
}

/// Baseline names: `ns/name[Kind]` for workloads, `node/<x>` and plain
/// addresses for everything reached by address.
fn peer_of(by_name: &HashMap<String, usize>, name: &str) -> Option<Peer> {
    if let Some(&w) = by_name.get(name) {
        return Some(Peer::Workload(w));
    }
    let address = name.strip_prefix("node/").unwrap_or(name);
    address.parse().ok().map(Peer::Address)
}

/// The kube-dns workload, found by its conventional label.
fn kube_dns(inventory: &Inventory) -> Option<usize> {
    inventory.workloads.iter().position(|w| {
        w.namespace == "kube-system"
            && w.template.labels.get("k8s-app").map(String::as_str) == Some("kube-dns")
    })
}

fn stable_labels(labels: &Labels) -> Labels {
    labels
        .iter()
        .filter(|(k, _)| !VOLATILE_LABELS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Workloads that get a policy: those in the graph that a selector on their
/// own labels picks out alone within their namespace.
fn covered_workloads(
    inventory: &Inventory,
    graph: &Graph,
    _notes: &mut Vec<String>,
) -> (Vec<usize>, Vec<String>) {
    let mut seen = BTreeSet::new();
    for (src, dst) in graph.edges.keys() {
        for peer in [src, dst] {
            if let Peer::Workload(w) = peer {
                seen.insert(*w);
            }
        }
    }
    let mut notes = Vec::new();
    let mut covered = Vec::new();
    for w in seen {
        let workload = &inventory.workloads[w];
        let labels = stable_labels(&workload.template.labels);
        let alike = inventory.workloads.iter().enumerate().filter(|(i, other)| {
            *i != w
                && other.namespace == workload.namespace
                && labels
                    .iter()
                    .all(|(k, v)| other.template.labels.get(k) == Some(v))
        });
        if workload.template.host_network {
            notes.push(format!(
                "{}: hostNetwork pods are not selected by NetworkPolicy; no policy generated",
                workload.display_name()
            ));
        } else if labels.is_empty() || alike.count() > 0 {
            notes.push(format!(
                "{}: its labels do not single it out in its namespace; no policy generated (add a distinguishing label)",
                workload.display_name()
            ));
        } else {
            covered.push(w);
        }
    }
    (covered, notes)
}

fn policy_for(
    inventory: &Inventory,
    graph: &Graph,
    w: usize,
    dns: Option<usize>,
    covered: &[usize],
) -> Value {
    let workload = &inventory.workloads[w];
    let mut ingress = Vec::new();
    let mut egress = Vec::new();
    for ((src, dst), ports) in &graph.edges {
        if *dst == Peer::Workload(w) {
            ingress.push(json!({
                "from": [peer_json(inventory, src)],
                "ports": ports_json(inventory, Some(w), ports),
            }));
        }
        if *src == Peer::Workload(w) {
            let target = match dst {
                Peer::Workload(t) => Some(*t),
                Peer::Address(_) => None,
            };
            egress.push(json!({
                "to": [peer_json(inventory, dst)],
                "ports": ports_json(inventory, target, ports),
            }));
        }
    }
    if let Some(dns) = dns.filter(|&d| d != w) {
        let dns_ports: BTreeSet<(Protocol, u16)> =
            [(Protocol::Udp, DNS_PORT), (Protocol::Tcp, DNS_PORT)].into();
        egress.push(json!({
            "to": [peer_json(inventory, &Peer::Workload(dns))],
            "ports": ports_json(inventory, None, &dns_ports),
        }));
    }
    if dns == Some(w) && covered.contains(&w) {
        // kube-dns serves every pod: its own policy admits DNS from all.
        ingress.push(json!({
            "from": [{"namespaceSelector": {}}],
            "ports": [{"protocol": "UDP", "port": DNS_PORT}, {"protocol": "TCP", "port": DNS_PORT}],
        }));
    }
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": format!("palisade-{}", workload.name),
            "namespace": workload.namespace,
            "labels": {"app.kubernetes.io/managed-by": "palisade"},
            "annotations": {"palisade.io/generated-from": "baseline"},
        },
        "spec": {
            "podSelector": {"matchLabels": stable_labels(&workload.template.labels)},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": ingress,
            "egress": egress,
        },
    })
}

fn peer_json(inventory: &Inventory, peer: &Peer) -> Value {
    match peer {
        Peer::Workload(t) => {
            let target = &inventory.workloads[*t];
            json!({
                "namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: target.namespace}},
                "podSelector": {"matchLabels": stable_labels(&target.template.labels)},
            })
        }
        Peer::Address(ip) => {
            let bits = if ip.is_ipv4() { 32 } else { 128 };
            json!({"ipBlock": {"cidr": format!("{ip}/{bits}")}})
        }
    }
}

/// Ports by number, or by the destination's container port name when that
/// name means exactly this number (names survive port renumbering).
fn ports_json(
    inventory: &Inventory,
    dst: Option<usize>,
    ports: &BTreeSet<(Protocol, u16)>,
) -> Value {
    let entries: Vec<Value> = ports
        .iter()
        .map(|&(protocol, port)| {
            let name = dst.and_then(|d| port_name(inventory, d, protocol, port));
            match name {
                Some(name) => json!({"protocol": protocol.as_str(), "port": name}),
                None => json!({"protocol": protocol.as_str(), "port": port}),
            }
        })
        .collect();
    Value::Array(entries)
}

fn port_name(
    inventory: &Inventory,
    workload: usize,
    protocol: Protocol,
    port: u16,
) -> Option<String> {
    let template = &inventory.workloads[workload].template;
    template
        .all_containers()
        .flat_map(|c| &c.ports)
        .filter(|p| p.port == port && p.protocol == protocol)
        .find_map(|p| p.name.clone())
        .filter(|name| template.named_port(name, protocol) == [port])
}

/// Applies the engine to the generated policies: every observed edge must
/// be allowed, and nothing else (DNS to kube-dns aside) for any pair that
/// involves a covered workload.
fn prove(
    inventory: &Inventory,
    settings: &Settings,
    graph: &Graph,
    covered: &[usize],
    dns: Option<usize>,
    yaml: &str,
) -> Proof {
    let mut proof = Proof::default();
    let (generated, diagnostics) = Inventory::from_texts([("advice.yaml", yaml)]);
    proof.load_errors = diagnostics.items().iter().map(|d| d.to_string()).collect();
    let mut candidate = inventory.clone();
    candidate.policies = generated.policies;
    let engine = Engine::new(&candidate, settings);
    let expected = expected_conns(&engine, graph, dns);
    count_observed(&engine, graph, &mut proof);
    let covered: BTreeSet<usize> = covered.iter().copied().collect();
    let endpoints: Vec<EndpointRef> = (0..inventory.workloads.len())
        .map(EndpointRef::Workload)
        .chain((0..engine.externals().len()).map(EndpointRef::External))
        .collect();
    let none = ConnSet::none();
    for &c in &covered {
        let c = EndpointRef::Workload(c);
        for &e in &endpoints {
            for (src, dst) in [(c, e), (e, c)] {
                if src == dst
                    || (src == e
                        && matches!(e, EndpointRef::Workload(w) if covered.contains(&w) && src != c))
                {
                    continue;
                }
                proof.pairs_checked += 1;
                let want = expected.get(&(src, dst)).unwrap_or(&none);
                let have = engine.conns(src, dst);
                compare(&engine, src, dst, want, have, &mut proof);
            }
        }
    }
    proof
}

fn engine_endpoint(engine: &Engine<'_>, peer: &Peer) -> EndpointRef {
    match peer {
        Peer::Workload(w) => EndpointRef::Workload(*w),
        Peer::Address(ip) => engine.endpoint_of_ip(*ip),
    }
}

/// How many observed (pair, protocol, port) edges the policies allow.
fn count_observed(engine: &Engine<'_>, graph: &Graph, proof: &mut Proof) {
    for ((src, dst), ports) in &graph.edges {
        let (src, dst) = (engine_endpoint(engine, src), engine_endpoint(engine, dst));
        for &(protocol, port) in ports {
            proof.observed_total += 1;
            proof.observed_allowed += usize::from(engine.allowed(src, dst, protocol, port));
        }
    }
}

fn expected_conns(
    engine: &Engine<'_>,
    graph: &Graph,
    dns: Option<usize>,
) -> HashMap<(EndpointRef, EndpointRef), ConnSet> {
    let endpoint = |peer: &Peer| engine_endpoint(engine, peer);
    let mut expected: HashMap<(EndpointRef, EndpointRef), ConnSet> = HashMap::new();
    for ((src, dst), ports) in &graph.edges {
        let set = expected
            .entry((endpoint(src), endpoint(dst)))
            .or_insert_with(ConnSet::none);
        for &(protocol, port) in ports {
            set.add(protocol, port, port);
        }
    }
    if let Some(dns) = dns {
        // Pod selectors never match hostNetwork pods, so they get no DNS
        // rule (and need none: they are never isolated).
        let workloads = engine.inventory().workloads.iter().enumerate();
        for (w, _) in workloads.filter(|(w, wl)| *w != dns && !wl.template.host_network) {
            let set = expected
                .entry((EndpointRef::Workload(w), EndpointRef::Workload(dns)))
                .or_insert_with(ConnSet::none);
            set.add(Protocol::Udp, DNS_PORT, DNS_PORT);
            set.add(Protocol::Tcp, DNS_PORT, DNS_PORT);
        }
    }
    expected
}

/// Where `have` and `want` differ; at most 20 examples of each kind.
fn compare(
    engine: &Engine<'_>,
    src: EndpointRef,
    dst: EndpointRef,
    want: &ConnSet,
    have: &ConnSet,
    proof: &mut Proof,
) {
    let name = |e: EndpointRef| match e {
        EndpointRef::Workload(w) => engine.workload(w).display_name(),
        EndpointRef::External(x) => {
            let r = engine.externals().ranges()[x];
            format!("{}-{}", r.first(), r.last())
        }
    };
    let missing = want.difference(have);
    let extra = have.difference(want);
    if !missing.is_empty() && proof.denied_but_observed.len() < 20 {
        proof
            .denied_but_observed
            .push(format!("{} => {} : {missing}", name(src), name(dst)));
    }
    if !extra.is_empty() && proof.allowed_but_not_observed.len() < 20 {
        proof
            .allowed_but_not_observed
            .push(format!("{} => {} : {extra}", name(src), name(dst)));
    }
}
