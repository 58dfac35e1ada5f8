//! Turning resolved places into the endpoints alerts show, and the Service
//! facts (backends, target ports) that VIP traffic needs.

use std::net::IpAddr;

use palisade_flow::Transport;
use palisade_inventory::Inventory;

use crate::alert::AlertEndpoint;
use crate::resolve::Place;

pub fn describe_place(inventory: &Inventory, place: &Place, ip: Option<IpAddr>) -> AlertEndpoint {
    match place {
        Place::Workload { index, pod } => {
            let w = &inventory.workloads[*index];
            let pod = pod.and_then(|p| w.pods.get(p));
            AlertEndpoint {
                kind: if pod.is_some() { "pod" } else { "workload" },
                ip,
                namespace: Some(w.namespace.clone()),
                pod: pod.map(|p| p.name.clone()),
                workload: Some(w.display_name()),
                node: pod.and_then(|p| p.node_name.clone()),
                labels: w.template.labels.clone(),
                note: w
                    .template
                    .host_network
                    .then(|| "hostNetwork: shares its node's address".to_string()),
            }
        }
        Place::Node { index, ip } => AlertEndpoint {
            kind: "node",
            ip: Some(*ip),
            node: index.map(|n| inventory.nodes[n].name.clone()),
            note: Some("a node's own address (host processes, kubelet, hostNetwork pods)".into()),
            ..AlertEndpoint::default()
        },
        Place::Service { index } => {
            let s = &inventory.services[*index];
            AlertEndpoint {
                kind: "service",
                ip,
                namespace: Some(s.namespace.clone()),
                workload: Some(format!("{}/{}[Service]", s.namespace, s.name)),
                note: Some("a Service virtual IP (capture taken before DNAT)".into()),
                ..AlertEndpoint::default()
            }
        }
        Place::External(ip) => AlertEndpoint {
            kind: "external",
            ip: Some(*ip),
            ..AlertEndpoint::default()
        },
        Place::Unknown(reason) => AlertEndpoint {
            kind: "unknown",
            ip,
            note: Some(reason.clone()),
            ..AlertEndpoint::default()
        },
    }
}

/// Workloads a Service selects: same namespace, template labels matching
/// the selector (a Service without a selector has no known backends).
pub fn service_backends(inventory: &Inventory, service: usize) -> Vec<usize> {
    let s = &inventory.services[service];
    match &s.selector {
        Some(selector) => inventory.service_backends(&s.namespace, selector),
        None => Vec::new(),
    }
}

/// The backend port a VIP port maps to: the Service port's `targetPort`
/// (a number, or a container port name resolved on the backend), or the
/// same port when the Service does not list it.
pub fn target_port(
    inventory: &Inventory,
    service: usize,
    backend: usize,
    transport: Transport,
    port: Option<u16>,
) -> Option<u16> {
    let port = port?;
    let s = &inventory.services[service];
    let protocol = transport.policy_protocol()?;
    let Some(sp) = s
        .ports
        .iter()
        .find(|sp| sp.port == port && sp.protocol == protocol)
    else {
        return Some(port);
    };
    match sp.target_port.as_deref() {
        None => Some(port),
        Some(target) => match target.parse::<u16>() {
            Ok(n) => Some(n),
            Err(_) => inventory.workloads[backend]
                .template
                .named_port(target, protocol)
                .first()
                .copied(),
        },
    }
}
