//! The reference evaluator: the Kubernetes NetworkPolicy rules transcribed
//! literally, one connection at a time, recording why. Slow and obviously
//! right; the compiled engine must agree with it (see the property tests).
//!
//! Rules (networking.k8s.io/v1, and the API reference's NetworkPolicySpec):
//! - A connection is allowed iff the source's egress AND the destination's
//!   ingress allow it.
//! - A pod is isolated for a direction iff some policy in its namespace
//!   selects it and has that policy type; a non-isolated side allows all.
//! - An isolated side allows what the union of the selecting policies' rules
//!   of that direction allow; there is no deny rule.
//! - hostNetwork pods are not selected by pod selectors, so they are never
//!   isolated and never match a pod/namespace peer.

use std::net::IpAddr;

use palisade_inventory::{
    Cidr, Direction, Family, Inventory, Labels, NetworkPolicy, Peer, PodTemplate, PolicyPort,
    PortRef, Protocol, Rule,
};

use crate::Settings;

/// One side of a connection as the rules see it.
#[derive(Clone, Copy, Debug)]
pub enum Endpoint<'a> {
    Pod(PodView<'a>),
    External(IpAddr),
}

#[derive(Clone, Copy, Debug)]
pub struct PodView<'a> {
    pub namespace: &'a str,
    pub namespace_labels: &'a Labels,
    pub labels: &'a Labels,
    pub template: &'a PodTemplate,
    /// The pod's addresses; used only when ipBlocks match pod IPs.
    pub ips: &'a [IpAddr],
    /// A hostNetwork pod read as its node ([`crate::HostNetworkPods::Node`]):
    /// never selected, never isolated.
    pub outside_policy: bool,
}

/// A rule that allowed the connection on one side.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RuleMatch {
    /// `namespace/name` of the policy.
    pub policy: String,
    pub direction: String,
    /// Index of the rule in the policy's `ingress` or `egress` list.
    pub rule_index: usize,
    /// The peer that matched, or `all peers` for a rule without peers.
    pub peer: String,
    /// The port entry that matched, or `all ports`.
    pub port: String,
}

/// The verdict of one side (the source's egress or the destination's ingress).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SideDecision {
    pub direction: String,
    pub allowed: bool,
    pub isolated: bool,
    /// Policies that select the endpoint for this direction (`ns/name`).
    pub selected_by: Vec<String>,
    pub allowed_by: Vec<RuleMatch>,
    /// Why the side has no policy say at all (external, hostNetwork).
    pub note: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Decision {
    pub allowed: bool,
    pub egress: SideDecision,
    pub ingress: SideDecision,
}

pub fn evaluate(
    inventory: &Inventory,
    settings: &Settings,
    src: Endpoint<'_>,
    dst: Endpoint<'_>,
    protocol: Protocol,
    port: u16,
) -> Decision {
    let ctx = Context {
        inventory,
        settings,
        protocol,
        port,
    };
    let egress = ctx.side(Direction::Egress, src, dst);
    let ingress = ctx.side(Direction::Ingress, dst, src);
    Decision {
        allowed: egress.allowed && ingress.allowed,
        egress,
        ingress,
    }
}

struct Context<'a> {
    inventory: &'a Inventory,
    settings: &'a Settings,
    protocol: Protocol,
    port: u16,
}

impl Context<'_> {
    /// Evaluates `subject`'s policies of `direction` for traffic with `peer`.
    /// The destination (whose named ports count) is `peer` for egress and
    /// `subject` for ingress.
    fn side(
        &self,
        direction: Direction,
        subject: Endpoint<'_>,
        peer: Endpoint<'_>,
    ) -> SideDecision {
        let open = |note: &str| SideDecision {
            direction: direction.to_string(),
            allowed: true,
            isolated: false,
            selected_by: Vec::new(),
            allowed_by: Vec::new(),
            note: Some(note.to_string()),
        };
        let pod = match subject {
            Endpoint::External(_) => {
                return open("external endpoint: not governed by NetworkPolicy");
            }
            Endpoint::Pod(p) if p.outside_policy => {
                return open("hostNetwork pod: never selected by NetworkPolicy, never isolated");
            }
            Endpoint::Pod(p) => p,
        };
        let destination = match direction {
            Direction::Egress => peer,
            Direction::Ingress => subject,
        };
        let selecting: Vec<&NetworkPolicy> = self
            .inventory
            .policies
            .iter()
            .filter(|p| p.affects(direction) && selects(p, &pod))
            .collect();
        let mut allowed_by = Vec::new();
        for policy in &selecting {
            for (index, rule) in policy.rules(direction).iter().enumerate() {
                if let Some(m) = self.rule_match(policy, direction, index, rule, peer, destination)
                {
                    allowed_by.push(m);
                }
            }
        }
        let isolated = !selecting.is_empty();
        SideDecision {
            direction: direction.to_string(),
            allowed: !isolated || !allowed_by.is_empty(),
            isolated,
            selected_by: selecting.iter().map(|p| p.qualified_name()).collect(),
            allowed_by,
            note: None,
        }
    }

    fn rule_match(
        &self,
        policy: &NetworkPolicy,
        direction: Direction,
        rule_index: usize,
        rule: &Rule,
        peer: Endpoint<'_>,
        destination: Endpoint<'_>,
    ) -> Option<RuleMatch> {
        // An empty `from`/`to` matches every peer; otherwise any one peer.
        let peer_text = if rule.peers.is_empty() {
            "all peers".to_string()
        } else {
            rule.peers
                .iter()
                .find(|p| self.peer_matches(p, &policy.namespace, peer))?
                .to_string()
        };
        // Empty `ports` matches every port; otherwise any one entry.
        let port_text = if rule.ports.is_empty() {
            "all ports".to_string()
        } else {
            rule.ports
                .iter()
                .find(|p| self.port_matches(p, destination))?
                .to_string()
        };
        Some(RuleMatch {
            policy: policy.qualified_name(),
            direction: direction.to_string(),
            rule_index,
            peer: peer_text,
            port: port_text,
        })
    }

    fn peer_matches(&self, peer: &Peer, policy_namespace: &str, endpoint: Endpoint<'_>) -> bool {
        match (peer, endpoint) {
            (Peer::Pods { .. }, Endpoint::Pod(pod)) => {
                peer_selects_pod(peer, policy_namespace, &pod)
            }
            (Peer::Pods { .. }, Endpoint::External(_)) => false,
            (Peer::IpBlock { cidr, except }, Endpoint::External(ip)) => {
                cidr.contains(ip) && !except.iter().any(|e| e.contains(ip))
            }
            (Peer::IpBlock { cidr, except }, Endpoint::Pod(pod)) => {
                // CNI-dependent; see `Settings::ipblock_matches_pods`.
                self.settings.ipblock_matches_pods && ip_block_covers(cidr, except, pod.ips)
            }
        }
    }

    fn port_matches(&self, port: &PolicyPort, destination: Endpoint<'_>) -> bool {
        if port.protocol != self.protocol {
            return false;
        }
        match (&port.port, port.end_port) {
            (None, _) => true,
            (Some(PortRef::Number(p)), None) => *p == self.port,
            (Some(PortRef::Number(p)), Some(end)) => (*p..=end).contains(&self.port),
            // A named port resolves on the destination pod's containers,
            // protocol included; on an external address it resolves nowhere.
            (Some(PortRef::Name(name)), _) => match destination {
                Endpoint::Pod(pod) => pod
                    .template
                    .named_port(name, self.protocol)
                    .contains(&self.port),
                Endpoint::External(_) => false,
            },
        }
    }
}

/// Whether a pod/namespace peer of a policy in `policy_namespace` selects
/// `pod`. A peer without namespaceSelector means the policy's own namespace;
/// podSelector and namespaceSelector are ANDed; hostNetwork pods are never
/// selected. ipBlock peers select no pod here (see `ip_block_covers`).
pub fn peer_selects_pod(peer: &Peer, policy_namespace: &str, pod: &PodView<'_>) -> bool {
    let Peer::Pods {
        namespace_selector,
        pod_selector,
    } = peer
    else {
        return false;
    };
    let namespace_ok = match namespace_selector {
        None => pod.namespace == policy_namespace,
        Some(sel) => sel.matches(pod.namespace_labels),
    };
    let pod_ok = pod_selector.as_ref().is_none_or(|s| s.matches(pod.labels));
    !pod.outside_policy && namespace_ok && pod_ok
}

/// Whether an ipBlock matches a pod (or workload) with these addresses: all
/// of its addresses of the block's family are inside the block and outside
/// its holes, and it has at least one. Only the block's family counts, so a
/// dual-stack pod matches an IPv4 block by its IPv4 address.
pub fn ip_block_covers(cidr: &Cidr, except: &[Cidr], ips: &[IpAddr]) -> bool {
    let mut same_family = ips
        .iter()
        .filter(|ip| Family::of(**ip) == cidr.family)
        .peekable();
    same_family.peek().is_some()
        && same_family.all(|ip| cidr.contains(*ip) && !except.iter().any(|e| e.contains(*ip)))
}

/// Whether `policy` selects `pod`: same namespace, selector matches, and the
/// pod is not left out as its node's traffic.
pub fn selects(policy: &NetworkPolicy, pod: &PodView<'_>) -> bool {
    policy.namespace == pod.namespace
        && !pod.outside_policy
        && policy.pod_selector.matches(pod.labels)
}
