//! Policy coverage and strength, judged with the engine's semantics: which
//! namespaces and workloads are isolated, which rules admit everyone, what
//! really reaches the metadata service, which selectors and named ports
//! match nothing.

use std::net::IpAddr;

use palisade_inventory::{
    Cidr, Direction, Family, Inventory, NetworkPolicy, Peer, PortRef, Protocol, Rule,
};
use palisade_policy::compiled::resolve_ports;
use palisade_policy::endpoint::workload_view;
use palisade_policy::reference::{PodView, peer_selects_pod, selects};
use palisade_policy::{EndpointRef, Engine, Settings};

use crate::bypass::workload_resource;
use crate::checks::*;
use crate::finding::{Finding, Resource};

/// Addresses the API server is known to answer on: the `kubernetes`
/// Service's cluster IPs.
pub fn api_server_addresses(inventory: &Inventory) -> Vec<IpAddr> {
    inventory
        .services
        .iter()
        .filter(|s| s.namespace == "default" && s.name == "kubernetes")
        .flat_map(|s| s.cluster_ips.iter().copied())
        .collect()
}

/// Cloud instance metadata addresses (AWS, GCP, Azure on IPv4; AWS IPv6).
const METADATA_ADDRESSES: [&str; 2] = ["169.254.169.254", "fd00:ec2::254"];

/// What every check needs about the cluster, computed once: each
/// workload's view for the policy rules, which policies select which
/// workloads, and which workloads are isolated per direction.
pub struct Facts<'a> {
    pub views: Vec<PodView<'a>>,
    /// Per policy (same order as `Inventory::policies`), selected workloads.
    pub selected: Vec<Vec<usize>>,
    pub isolated_ingress: Vec<bool>,
    pub isolated_egress: Vec<bool>,
    /// Pod and service CIDRs known from Node specs and the caller, each
    /// with what it is.
    pub cluster_cidrs: Vec<(Cidr, &'static str)>,
    /// The views of each namespace, as index ranges (workloads are sorted
    /// by namespace), so that a peer's namespace selector is matched once
    /// per namespace rather than once per workload.
    namespace_ranges: Vec<std::ops::Range<usize>>,
}

impl<'a> Facts<'a> {
    pub fn new(inventory: &'a Inventory, settings: &Settings) -> Facts<'a> {
        let views: Vec<PodView<'a>> = inventory
            .workloads
            .iter()
            .map(|w| workload_view(inventory, settings, w, &[]))
            .collect();
        let mut isolated_ingress = vec![false; views.len()];
        let mut isolated_egress = vec![false; views.len()];
        let selected: Vec<Vec<usize>> = inventory
            .policies
            .iter()
            .map(|p| {
                let chosen: Vec<usize> = (0..views.len())
                    .filter(|&i| selects(p, &views[i]))
                    .collect();
                for &i in &chosen {
                    isolated_ingress[i] |= p.affects(Direction::Ingress);
                    isolated_egress[i] |= p.affects(Direction::Egress);
                }
                chosen
            })
            .collect();
        let cluster_cidrs = inventory
            .nodes
            .iter()
            .flat_map(|n| n.pod_cidrs.iter().map(|c| (*c, "pod CIDR")))
            .collect();
        let mut namespace_ranges: Vec<std::ops::Range<usize>> = Vec::new();
        for (i, v) in views.iter().enumerate() {
            match namespace_ranges.last_mut() {
                Some(r) if views[r.start].namespace == v.namespace => r.end = i + 1,
                _ => namespace_ranges.push(i..i + 1),
            }
        }
        Facts {
            views,
            selected,
            isolated_ingress,
            isolated_egress,
            cluster_cidrs,
            namespace_ranges,
        }
    }

    /// The workloads `peer` of a policy in `policy_namespace` selects: what
    /// `peer_selects_pod` says of each view, namespace by namespace.
    pub fn peer_workloads<'s>(
        &'s self,
        peer: &'s Peer,
        policy_namespace: &'s str,
    ) -> impl Iterator<Item = usize> + 's {
        let namespace_ok = move |first: &PodView<'_>| match peer {
            Peer::Pods {
                namespace_selector: None,
                ..
            } => first.namespace == policy_namespace,
            Peer::Pods {
                namespace_selector: Some(sel),
                ..
            } => sel.matches(first.namespace_labels),
            Peer::IpBlock { .. } => false,
        };
        self.namespace_ranges
            .iter()
            .filter(move |r| namespace_ok(&self.views[r.start]))
            .flat_map(|r| r.clone())
            .filter(move |&i| peer_selects_pod(peer, policy_namespace, &self.views[i]))
    }

    /// Whether some policy isolates workload `w` for `direction`.
    pub fn isolated(&self, w: usize, direction: Direction) -> bool {
        match direction {
            Direction::Ingress => self.isolated_ingress[w],
            Direction::Egress => self.isolated_egress[w],
        }
    }
}

fn policy_resource(p: &NetworkPolicy) -> Resource {
    Resource {
        kind: "NetworkPolicy".into(),
        namespace: p.namespace.clone(),
        name: p.name.clone(),
        container: None,
    }
}

pub fn check(
    inventory: &Inventory,
    engine: &Engine<'_>,
    facts: &Facts<'_>,
    out: &mut Vec<Finding>,
) {
    namespaces(inventory, out);
    workloads(inventory, engine, facts, out);
    for (p, policy) in inventory.policies.iter().enumerate() {
        policy_checks(inventory, facts, p, policy, out);
    }
}

fn namespaces(inventory: &Inventory, out: &mut Vec<Finding>) {
    for ns in &inventory.namespaces {
        if !inventory.workloads.iter().any(|w| w.namespace == ns.name) {
            continue;
        }
        let resource = Resource {
            kind: "Namespace".into(),
            namespace: String::new(),
            name: ns.name.clone(),
            container: None,
        };
        for (direction, check) in [
            (Direction::Ingress, &NO_DEFAULT_DENY_INGRESS),
            (Direction::Egress, &NO_DEFAULT_DENY_EGRESS),
        ] {
            // Only an empty podSelector also covers pods created later.
            let covered = inventory.policies.iter().any(|p| {
                p.namespace == ns.name && p.affects(direction) && p.pod_selector.is_empty()
            });
            if !covered {
                out.push(check.finding(
                    resource.clone(),
                    "metadata.name".into(),
                    format!(
                        "no policy in namespace {} selects all pods for {direction}",
                        ns.name
                    ),
                    ns.source.clone(),
                ));
            }
        }
    }
}

fn workloads(
    inventory: &Inventory,
    engine: &Engine<'_>,
    facts: &Facts<'_>,
    out: &mut Vec<Finding>,
) {
    let metadata: Vec<(IpAddr, EndpointRef)> = METADATA_ADDRESSES
        .iter()
        .filter_map(|a| a.parse().ok())
        .map(|ip| (ip, engine.endpoint_of_ip(ip)))
        .collect();
    let n = inventory.workloads.len();
    for (i, w) in inventory.workloads.iter().enumerate() {
        // hostNetwork workloads are reported once, as a bypass (BYP-001).
        if w.template.host_network {
            continue;
        }
        let resource = workload_resource(w, None);
        for (direction, check) in [
            (Direction::Ingress, &WORKLOAD_NOT_ISOLATED_INGRESS),
            (Direction::Egress, &WORKLOAD_NOT_ISOLATED_EGRESS),
        ] {
            if !facts.isolated(i, direction) {
                out.push(check.finding(
                    resource.clone(),
                    "metadata.labels".into(),
                    format!("no {direction} policy selects {}", w.display_name()),
                    w.source.clone(),
                ));
            }
        }
        let reached: Vec<String> = metadata
            .iter()
            .filter(|(_, ext)| !engine.conns(EndpointRef::Workload(i), *ext).is_empty())
            .map(|(ip, ext)| format!("{ip} ({})", engine.conns(EndpointRef::Workload(i), *ext)))
            .collect();
        if !reached.is_empty() {
            let how = if facts.isolated(i, Direction::Egress) {
                "an egress rule allows it"
            } else {
                "its egress is not restricted"
            };
            out.push(METADATA_EGRESS.finding(
                resource.clone(),
                "metadata.labels".into(),
                format!(
                    "{} can reach {}: {how}",
                    w.display_name(),
                    reached.join(", ")
                ),
                w.source.clone(),
            ));
        }
        if facts.isolated(i, Direction::Egress) {
            let api: Vec<String> = api_server_addresses(inventory)
                .into_iter()
                .filter(|ip| {
                    !engine
                        .conns(EndpointRef::Workload(i), engine.endpoint_of_ip(*ip))
                        .is_empty()
                })
                .map(|ip| ip.to_string())
                .collect();
            if !api.is_empty() {
                out.push(API_SERVER_EGRESS.finding(
                    resource.clone(),
                    "metadata.labels".into(),
                    format!(
                        "{}'s egress rules allow the API server at {}",
                        w.display_name(),
                        api.join(", ")
                    ),
                    w.source.clone(),
                ));
            }
        }
        let exposed = facts.isolated(i, Direction::Ingress)
            && n > 1
            && (0..n).filter(|&s| s != i).all(|s| {
                engine
                    .conns(EndpointRef::Workload(s), EndpointRef::Workload(i))
                    .is_all()
            });
        if exposed {
            out.push(EXPOSED_EVERYWHERE.finding(
                resource,
                "metadata.labels".into(),
                format!(
                    "every other workload may connect to {} on every port and protocol",
                    w.display_name()
                ),
                w.source.clone(),
            ));
        }
    }
}

fn policy_checks(
    inventory: &Inventory,
    facts: &Facts<'_>,
    p: usize,
    policy: &NetworkPolicy,
    out: &mut Vec<Finding>,
) {
    let selected = &facts.selected[p];
    let resource = policy_resource(policy);
    if selected.is_empty() {
        out.push(POLICY_SELECTS_NOTHING.finding(
            resource.clone(),
            "spec.podSelector".into(),
            format!(
                "policy {} selects no workload (podSelector {})",
                policy.qualified_name(),
                policy.pod_selector.describe()
            ),
            policy.source.clone(),
        ));
    }
    for direction in [Direction::Ingress, Direction::Egress] {
        if !policy.affects(direction) {
            continue;
        }
        let section = direction.to_string();
        for (r, rule) in policy.rules(direction).iter().enumerate() {
            let path = format!("spec.{section}[{r}]");
            rule_checks(
                inventory, facts, policy, selected, direction, rule, &path, out,
            );
        }
    }
}

/// Whether a peer list admits everyone: no peers, an ipBlock of a whole
/// address family, or a bare `namespaceSelector: {}` (every pod).
fn admits_everyone(rule: &Rule) -> Option<String> {
    if rule.peers.is_empty() {
        return Some("has no peers (every pod and address)".into());
    }
    rule.peers.iter().find_map(|peer| match peer {
        Peer::IpBlock { cidr, except } if cidr.prefix == 0 && except.is_empty() => Some(format!(
            "admits ipBlock {cidr} (every {} address)",
            if cidr.family == Family::V4 {
                "IPv4"
            } else {
                "IPv6"
            }
        )),
        Peer::Pods {
            namespace_selector: Some(ns),
            pod_selector,
        } if ns.is_empty() && pod_selector.as_ref().is_none_or(|p| p.is_empty()) => {
            Some("admits namespaceSelector {} (every pod of every namespace)".into())
        }
        _ => None,
    })
}

fn is_dns_only(rule: &Rule) -> bool {
    let conns = resolve_ports(&rule.ports, None);
    !rule.ports.is_empty()
        && (conns.contains(Protocol::Udp, 53) || conns.contains(Protocol::Tcp, 53))
        && Protocol::ALL.iter().all(|p| {
            conns
                .ports(*p)
                .ranges()
                .iter()
                .all(|&(lo, hi)| lo == 53 && hi == 53)
        })
}

#[allow(clippy::too_many_arguments)] // the rule and where it sits
fn rule_checks(
    inventory: &Inventory,
    facts: &Facts<'_>,
    policy: &NetworkPolicy,
    selected: &[usize],
    direction: Direction,
    rule: &Rule,
    path: &str,
    out: &mut Vec<Finding>,
) {
    let resource = policy_resource(policy);
    let name = policy.qualified_name();
    let ports = if rule.ports.is_empty() {
        "every port".to_string()
    } else {
        rule.ports
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let peer_field = if direction == Direction::Ingress {
        "from"
    } else {
        "to"
    };
    if let Some(why) = admits_everyone(rule) {
        let check = match direction {
            Direction::Ingress => &ALLOW_ALL_SOURCES,
            Direction::Egress if is_dns_only(rule) => &DNS_ANY_DESTINATION,
            Direction::Egress => &ALLOW_ALL_DESTINATIONS,
        };
        out.push(check.finding(
            resource.clone(),
            format!("{path}.{peer_field}"),
            format!("{direction} rule of {name} {why} on {ports}"),
            policy.source.clone(),
        ));
    }
    for (j, peer) in rule.peers.iter().enumerate() {
        let peer_path = format!("{path}.{peer_field}[{j}]");
        if let Peer::IpBlock { cidr, .. } = peer {
            let overlaps: Vec<String> = facts
                .cluster_cidrs
                .iter()
                .filter(|(c, _)| {
                    c.range().start <= cidr.range().end
                        && cidr.range().start <= c.range().end
                        && c.family == cidr.family
                })
                .map(|(c, what)| format!("{what} {c}"))
                .collect();
            if !overlaps.is_empty() {
                out.push(IPBLOCK_OVERLAPS_CLUSTER.finding(
                    resource.clone(),
                    format!("{peer_path}.ipBlock.cidr"),
                    format!("ipBlock {cidr} of {name} overlaps {}", overlaps.join(", ")),
                    policy.source.clone(),
                ));
            }
            continue;
        }
        if let Peer::Pods {
            namespace_selector: Some(ns),
            ..
        } = peer
        {
            let mutable: Vec<String> = ns
                .match_labels
                .keys()
                .chain(ns.match_expressions.iter().map(|r| &r.key))
                .filter(|k| k.as_str() != palisade_inventory::NAMESPACE_NAME_LABEL)
                .cloned()
                .collect();
            if direction == Direction::Ingress && !mutable.is_empty() {
                out.push(MUTABLE_NAMESPACE_LABEL.finding(
                    resource.clone(),
                    format!("{peer_path}.namespaceSelector"),
                    format!(
                        "{name} admits pods from any namespace labelled {} (label keys: {})",
                        ns.describe(),
                        mutable.join(", ")
                    ),
                    policy.source.clone(),
                ));
            }
        }
        if facts
            .peer_workloads(peer, &policy.namespace)
            .next()
            .is_none()
        {
            out.push(PEER_SELECTS_NOTHING.finding(
                resource.clone(),
                format!("{path}.{peer_field}[{j}]"),
                format!("peer {peer} of {name} matches no workload"),
                policy.source.clone(),
            ));
        }
    }
    // Named ports resolve on the destination: the selected pods for
    // ingress, the peers' pods for egress. Only computed when a port is
    // named.
    let named = rule
        .ports
        .iter()
        .any(|p| matches!(p.port, Some(PortRef::Name(_))));
    if !named {
        return;
    }
    let destinations: Vec<usize> = match direction {
        Direction::Ingress => selected.to_vec(),
        Direction::Egress if rule.peers.is_empty() => (0..facts.views.len()).collect(),
        Direction::Egress => {
            let mut all: Vec<usize> = rule
                .peers
                .iter()
                .flat_map(|p| facts.peer_workloads(p, &policy.namespace))
                .collect();
            all.sort_unstable();
            all.dedup();
            all
        }
    };
    for (k, port) in rule.ports.iter().enumerate() {
        let Some(PortRef::Name(port_name)) = &port.port else {
            continue;
        };
        let resolves = destinations.iter().any(|&i| {
            !inventory.workloads[i]
                .template
                .named_port(port_name, port.protocol)
                .is_empty()
        });
        if !resolves && !destinations.is_empty() {
            out.push(NAMED_PORT_UNRESOLVED.finding(
                resource.clone(),
                format!("{path}.ports[{k}].port"),
                format!(
                    "{direction} rule of {name}: no destination pod declares a {} port named {port_name:?}, so the rule allows nothing there",
                    port.protocol
                ),
                policy.source.clone(),
            ));
        }
    }
}
