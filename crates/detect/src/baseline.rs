//! Baselines: the communication graph learned from traffic (who talks to
//! whom, on which protocol and port, how often and how much), stored as a
//! versioned YAML file a reviewer can read; and the deviations from it.

use std::collections::BTreeMap;

use palisade_flow::{Flow, Micros};
use palisade_inventory::Inventory;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::alert::{Alert, AlertEndpoint, Evidence, MAX_RECORDS, Rule, rfc3339};
use crate::describe::describe_place;
use crate::resolve::Place;
use crate::verify::Judged;

pub const BASELINE_VERSION: u32 = 1;

/// One edge of the graph. Endpoints are named as `palisade reach` names
/// them: `ns/name[Kind]` for workloads, `ns/name[Service]` for a Service
/// address, `node/<name or address>` for nodes, an IP address for the
/// outside world.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Edge {
    pub src: String,
    pub dst: String,
    pub protocol: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    pub connections: u64,
    /// Bytes both ways over all connections.
    pub bytes: u64,
    /// The largest single connection, in bytes both ways.
    pub max_bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_seen: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Baseline {
    pub version: u32,
    /// Connections learned and flows left out (did not get through, or an
    /// endpoint unknown to the inventory).
    pub learned_connections: u64,
    pub skipped_flows: u64,
    pub edges: Vec<Edge>,
}

impl Baseline {
    pub fn to_yaml(&self) -> String {
        let header = "# Palisade baseline: the communication graph learned from traffic.\n\
                      # Review it like code; `palisade flows advise` turns it into policies.\n";
        match serde_saphyr::to_string(self) {
            Ok(yaml) => format!("{header}{yaml}"),
            // Serializing plain strings and numbers cannot fail; keep the
            // function total anyway.
            Err(e) => format!("{header}# serialization failed: {e}\n"),
        }
    }

    pub fn from_yaml(text: &str) -> Result<Baseline, String> {
        let baseline: Baseline = palisade_inventory::yaml::from_str(text)?;
        if baseline.version != BASELINE_VERSION {
            return Err(format!(
                "baseline version {} is not supported (this Palisade reads version {BASELINE_VERSION})",
                baseline.version
            ));
        }
        Ok(baseline)
    }

    fn index(&self) -> FxHashMap<EdgeKey, &Edge> {
        self.edges
            .iter()
            .map(|e| {
                (
                    (e.src.clone(), e.dst.clone(), e.protocol.clone(), e.port),
                    e,
                )
            })
            .collect()
    }
}

type EdgeKey = (String, String, String, Option<u16>);

/// The name an endpoint has in a baseline; `None` for unknown endpoints.
pub fn endpoint_name(inventory: &Inventory, place: &Place) -> Option<String> {
    Some(match place {
        Place::Workload { index, .. } => inventory.workloads[*index].display_name(),
        Place::Service { index } => {
            let s = &inventory.services[*index];
            format!("{}/{}[Service]", s.namespace, s.name)
        }
        Place::Node { index: Some(n), .. } => format!("node/{}", inventory.nodes[*n].name),
        Place::Node { index: None, ip } => format!("node/{ip}"),
        Place::External(ip) => ip.to_string(),
        Place::Unknown(_) => return None,
    })
}

fn flow_bytes(flow: &Flow) -> u64 {
    flow.bytes[0].saturating_add(flow.bytes[1])
}

#[derive(Default)]
struct EdgeStats {
    connections: u64,
    bytes: u64,
    max_bytes: u64,
    first: Option<Micros>,
    last: Option<Micros>,
}

/// Learns a baseline from judged flows.
#[derive(Default)]
pub struct Learner {
    edges: BTreeMap<EdgeKey, EdgeStats>,
    learned: u64,
    skipped: u64,
}

impl Learner {
    /// Only traffic that reached its destination is normal behaviour;
    /// attempts that failed, records that show only the source's side, and
    /// unknown endpoints are counted as skipped.
    pub fn observe(&mut self, inventory: &Inventory, flow: &Flow, judged: &Judged) {
        let names =
            endpoint_name(inventory, &judged.src).zip(endpoint_name(inventory, &judged.dst));
        let Some((src, dst)) = names.filter(|_| flow.reached_destination()) else {
            self.skipped += 1;
            return;
        };
        let key = (src, dst, flow.transport.to_string(), flow.dst.port);
        let stats = self.edges.entry(key).or_default();
        let n = flow.connections.max(1);
        stats.connections += n;
        stats.bytes = stats.bytes.saturating_add(flow_bytes(flow));
        stats.max_bytes = stats.max_bytes.max(flow_bytes(flow) / n);
        stats.first = [stats.first, flow.first_seen].into_iter().flatten().min();
        stats.last = [stats.last, flow.last_seen.or(flow.first_seen)]
            .into_iter()
            .flatten()
            .max();
        self.learned += n;
    }

    pub fn finish(self) -> Baseline {
        let edges = self
            .edges
            .into_iter()
            .map(|((src, dst, protocol, port), s)| Edge {
                src,
                dst,
                protocol,
                port,
                connections: s.connections,
                bytes: s.bytes,
                max_bytes: s.max_bytes,
                first_seen: s.first.map(rfc3339),
                last_seen: s.last.map(rfc3339),
            })
            .collect();
        Baseline {
            version: BASELINE_VERSION,
            learned_connections: self.learned,
            skipped_flows: self.skipped,
            edges,
        }
    }
}

/// Volume thresholds: a connection is a spike when it moves more than
/// `factor` times the largest connection the baseline saw on its edge, and
/// at least `min_bytes` (small edges jitter).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeviationOptions {
    pub volume_factor: u64,
    pub volume_min_bytes: u64,
}

impl Default for DeviationOptions {
    fn default() -> DeviationOptions {
        DeviationOptions {
            volume_factor: 10,
            volume_min_bytes: 1 << 20,
        }
    }
}

struct Deviation {
    src: AlertEndpoint,
    dst: AlertEndpoint,
    flow: Flow,
    records: Vec<palisade_flow::RecordRef>,
    connections: u64,
    first: Option<Micros>,
    last: Option<Micros>,
    peak_bytes: u64,
    baseline_max: u64,
}

/// Raises deviations from a baseline, one alert per new edge (with a count).
pub struct DeviationDetector<'b> {
    edges: FxHashMap<EdgeKey, &'b Edge>,
    pairs: std::collections::HashSet<(String, String)>,
    options: DeviationOptions,
    found: BTreeMap<(Rule, EdgeKey), Deviation>,
}

impl<'b> DeviationDetector<'b> {
    pub fn new(baseline: &'b Baseline, options: DeviationOptions) -> DeviationDetector<'b> {
        DeviationDetector {
            edges: baseline.index(),
            pairs: baseline
                .edges
                .iter()
                .map(|e| (e.src.clone(), e.dst.clone()))
                .collect(),
            options,
            found: BTreeMap::new(),
        }
    }

    pub fn observe(&mut self, inventory: &Inventory, flow: &Flow, judged: &Judged) {
        if !flow.reached_destination() {
            return;
        }
        let (Some(src), Some(dst)) = (
            endpoint_name(inventory, &judged.src),
            endpoint_name(inventory, &judged.dst),
        ) else {
            return;
        };
        let key = (src, dst, flow.transport.to_string(), flow.dst.port);
        let bytes = flow_bytes(flow) / flow.connections.max(1);
        let rule = match self.edges.get(&key) {
            Some(edge) => {
                let limit = edge.max_bytes.saturating_mul(self.options.volume_factor);
                if bytes <= limit.max(self.options.volume_min_bytes) {
                    return;
                }
                Rule::VolumeSpike
            }
            None if self.pairs.contains(&(key.0.clone(), key.1.clone())) => Rule::NewPort,
            None if matches!(judged.dst, Place::External(_)) => Rule::NewExternal,
            None => Rule::NewEdge,
        };
        let baseline_max = self.edges.get(&key).map_or(0, |e| e.max_bytes);
        let deviation = self.found.entry((rule, key)).or_insert_with(|| Deviation {
            src: describe_place(inventory, &judged.src, flow.src.ip),
            dst: describe_place(inventory, &judged.dst, flow.dst.ip),
            flow: flow.clone(),
            records: Vec::new(),
            connections: 0,
            first: flow.first_seen,
            last: flow.last_seen,
            peak_bytes: 0,
            baseline_max,
        });
        deviation.connections += flow.connections.max(1);
        deviation.peak_bytes = deviation.peak_bytes.max(bytes);
        deviation.first = [deviation.first, flow.first_seen]
            .into_iter()
            .flatten()
            .min();
        deviation.last = [deviation.last, flow.last_seen].into_iter().flatten().max();
        if deviation.records.len() < MAX_RECORDS {
            deviation.records.push(flow.evidence.clone());
        }
    }

    pub fn finish(self) -> Vec<Alert> {
        self.found
            .into_iter()
            .map(|((rule, (src, dst, protocol, port)), d)| {
                let port_text = port.map_or(String::new(), |p| format!(" {p}"));
                let what = match rule {
                    Rule::NewPort => "a protocol/port not in the baseline for this pair",
                    Rule::NewExternal => "an outside address not in the baseline",
                    Rule::VolumeSpike => "far more bytes than the baseline's largest connection",
                    _ => "a pair that never talked in the baseline",
                };
                let mut summary = format!(
                    "{src} -> {dst} {protocol}{port_text}: {what} ({} connection{})",
                    d.connections,
                    if d.connections == 1 { "" } else { "s" }
                );
                let mut figures = BTreeMap::new();
                if rule == Rule::VolumeSpike {
                    summary.push_str(&format!(
                        "; {} bytes against a baseline maximum of {}",
                        d.peak_bytes, d.baseline_max
                    ));
                    figures.insert("bytes", d.peak_bytes);
                    figures.insert("baseline_max_bytes", d.baseline_max);
                }
                Alert {
                    time: d.first.map(rfc3339),
                    rule: rule.id().into(),
                    name: rule.name().into(),
                    severity: rule.severity(),
                    summary,
                    src: d.src,
                    dst: d.dst,
                    protocol,
                    port,
                    connections: d.connections,
                    first_seen: d.first.map(rfc3339),
                    last_seen: d.last.map(rfc3339),
                    process: None,
                    actor: None,
                    object: None,
                    evidence: Evidence {
                        snapshot: None,
                        flow: Some(d.flow),
                        records: d.records,
                        decision: None,
                        figures,
                    },
                }
            })
            .collect()
    }
}
