//! Naming endpoints: `ns/workload`, `ns/pod`, `workload` or an IP address,
//! resolved against the inventory, and the views the evaluators take.

use std::net::IpAddr;

use palisade_inventory::{Inventory, Labels, Protocol, Workload};

use crate::Settings;
use crate::compiled::{EndpointRef, Engine};
use crate::reference::{Endpoint, PodView};

static NO_LABELS: std::sync::LazyLock<Labels> = std::sync::LazyLock::new(Labels::new);

/// The reference evaluator's view of a workload: its template stands for its
/// pods; its pods' addresses are its addresses.
pub fn workload_view<'a>(
    inventory: &'a Inventory,
    settings: &Settings,
    workload: &'a Workload,
    ips: &'a [IpAddr],
) -> PodView<'a> {
    PodView {
        namespace: &workload.namespace,
        namespace_labels: inventory
            .namespace(&workload.namespace)
            .map(|n| &n.labels)
            .unwrap_or(&NO_LABELS),
        labels: &workload.template.labels,
        template: &workload.template,
        ips,
        outside_policy: settings.outside_policy(&workload.template),
    }
}

/// The reference evaluator's decision between two resolved endpoints.
pub fn decide(
    inventory: &Inventory,
    settings: &Settings,
    src: &Resolved,
    dst: &Resolved,
    protocol: Protocol,
    port: u16,
) -> crate::Decision {
    let (src_ips, dst_ips) = (src.ips(inventory), dst.ips(inventory));
    crate::reference::evaluate(
        inventory,
        settings,
        src.reference_endpoint(inventory, settings, &src_ips),
        dst.reference_endpoint(inventory, settings, &dst_ips),
        protocol,
        port,
    )
}

/// What a command-line endpoint names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolved {
    /// A workload, and the pod within it when a pod was named.
    Workload {
        index: usize,
        pod: Option<usize>,
    },
    Ip(IpAddr),
}

/// Resolves `ns/name` (workload or pod), a bare workload name when it is
/// unique, or an IP address (a pod IP resolves to its pod).
pub fn resolve(inventory: &Inventory, text: &str) -> Result<Resolved, String> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        for (index, w) in inventory.workloads.iter().enumerate() {
            if let Some(pod) = w.pods.iter().position(|p| p.ips.contains(&ip)) {
                return Ok(Resolved::Workload {
                    index,
                    pod: Some(pod),
                });
            }
        }
        return Ok(Resolved::Ip(ip));
    }
    let (namespace, name) = match text.split_once('/') {
        Some((ns, name)) => (Some(ns), name),
        None => (None, text),
    };
    let in_ns = |w: &Workload| namespace.is_none_or(|ns| w.namespace == ns);
    let workloads: Vec<usize> = (0..inventory.workloads.len())
        .filter(|&i| in_ns(&inventory.workloads[i]) && inventory.workloads[i].name == name)
        .collect();
    match workloads.as_slice() {
        [index] => {
            return Ok(Resolved::Workload {
                index: *index,
                pod: None,
            });
        }
        [] => {}
        _ => {
            return Err(format!(
                "{text:?} names several workloads; use namespace/name"
            ));
        }
    }
    for (index, w) in inventory.workloads.iter().enumerate() {
        if !in_ns(w) {
            continue;
        }
        if let Some(pod) = w.pods.iter().position(|p| p.name == name) {
            return Ok(Resolved::Workload {
                index,
                pod: Some(pod),
            });
        }
    }
    Err(format!(
        "{text:?} is neither a workload, a pod nor an IP address in the inventory"
    ))
}

impl Resolved {
    pub fn endpoint_ref(&self, engine: &Engine<'_>) -> EndpointRef {
        match self {
            Resolved::Workload { index, .. } => EndpointRef::Workload(*index),
            Resolved::Ip(ip) => engine.endpoint_of_ip(*ip),
        }
    }

    /// The addresses the reference evaluator should use for ipBlock matching.
    pub fn ips(&self, inventory: &Inventory) -> Vec<IpAddr> {
        match self {
            Resolved::Workload {
                index,
                pod: Some(p),
            } => inventory.workloads[*index].pods[*p].ips.clone(),
            Resolved::Workload { index, pod: None } => inventory.workloads[*index].ips().collect(),
            Resolved::Ip(ip) => vec![*ip],
        }
    }

    pub fn reference_endpoint<'a>(
        &self,
        inventory: &'a Inventory,
        settings: &Settings,
        ips: &'a [IpAddr],
    ) -> Endpoint<'a> {
        match self {
            Resolved::Workload { index, pod } => {
                let w = &inventory.workloads[*index];
                let mut view = workload_view(inventory, settings, w, ips);
                // A named pod is judged by its own labels (they may carry
                // more than the template, e.g. pod-template-hash).
                if let Some(p) = pod {
                    view.labels = &w.pods[*p].labels;
                }
                Endpoint::Pod(view)
            }
            Resolved::Ip(ip) => Endpoint::External(*ip),
        }
    }

    pub fn display(&self, inventory: &Inventory) -> String {
        match self {
            Resolved::Workload {
                index,
                pod: Some(p),
            } => {
                let w = &inventory.workloads[*index];
                format!(
                    "{}/{} (pod of {})",
                    w.namespace,
                    w.pods[*p].name,
                    w.display_name()
                )
            }
            Resolved::Workload { index, pod: None } => inventory.workloads[*index].display_name(),
            Resolved::Ip(ip) => ip.to_string(),
        }
    }
}
