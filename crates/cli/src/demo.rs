//! `palisade demo`: the main job on the bundled example cluster, a small
//! shop with a few deliberate weaknesses. The example is compiled into the
//! binary so the demo runs from anywhere.
//!
//! The "what a reviewer should catch" section is a preview built on the
//! engine; the full posture audit (`palisade audit`) will own these checks.

use std::fmt::Write;
use std::net::IpAddr;

use anyhow::Result;
use palisade_inventory::{Inventory, PortRef, Protocol};
use palisade_policy::endpoint::resolve;
use palisade_policy::reference;
use palisade_policy::{ConnectivityMap, EndpointRef, Engine, MapFilter, Settings};

use crate::Outcome;
use crate::render::{self, MapFormat};

const EXAMPLE: [(&str, &str); 3] = [
    (
        "examples/shop/namespaces.yaml",
        include_str!("../../../examples/shop/namespaces.yaml"),
    ),
    (
        "examples/shop/workloads.yaml",
        include_str!("../../../examples/shop/workloads.yaml"),
    ),
    (
        "examples/shop/policies.yaml",
        include_str!("../../../examples/shop/policies.yaml"),
    ),
];

/// The link-local address every major cloud serves instance credentials on.
const METADATA_IP: &str = "169.254.169.254";

pub fn run() -> Result<Outcome> {
    print!("{}", report());
    Ok(Outcome::Clean)
}

pub fn report() -> String {
    let (inventory, diags) = Inventory::from_texts(EXAMPLE);
    let settings = Settings::default();
    let engine = Engine::new(&inventory, &settings);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Palisade demo: the bundled shop cluster (examples/shop)\n\n\
         Inventory: {} namespaces, {} workloads, {} network policies, {} services; \
         {} object(s) of other kinds skipped, {} diagnostics.",
        inventory.namespaces.len(),
        inventory.workloads.len(),
        inventory.policies.len(),
        inventory.services.len(),
        inventory.skipped_objects(),
        diags.len()
    );
    let map = ConnectivityMap::from_engine(&engine, &MapFilter::default());
    let _ = writeln!(
        out,
        "\n== Connectivity map ({} allowed connections; `palisade reach examples/shop`) ==",
        map.len()
    );
    out.push_str(&render::map(&map, MapFormat::Txt));
    out.push_str("\n== What a reviewer should catch ==\n");
    for line in highlights(&inventory, &engine, &settings) {
        let _ = writeln!(out, "{line}");
    }
    out.push_str("\n== Why? (`palisade explain`) ==\n");
    for (from, to, port) in [
        ("frontend/webapp", "database/postgres", 5432),
        ("backend/checkout", "database/postgres", 5432),
    ] {
        out.push_str(&explain_text(&inventory, &settings, from, to, port));
    }
    out
}

fn highlights(inventory: &Inventory, engine: &Engine<'_>, settings: &Settings) -> Vec<String> {
    let mut lines = Vec::new();
    for ns in &inventory.namespaces {
        let has_workloads = inventory.workloads.iter().any(|w| w.namespace == ns.name);
        let has_policies = inventory.policies.iter().any(|p| p.namespace == ns.name);
        if has_workloads && !has_policies {
            lines.push(format!(
                "[high]   namespace {}: no NetworkPolicy at all; its workloads accept connections from anyone and may connect anywhere",
                ns.name
            ));
        }
    }
    lines.extend(metadata_reach(inventory, engine, settings));
    lines.extend(unresolved_named_ports(inventory));
    for w in inventory
        .workloads
        .iter()
        .filter(|w| w.template.host_network)
    {
        lines.push(format!(
            "[medium] {} uses hostNetwork: no NetworkPolicy can isolate it, and its traffic carries the node's address",
            w.display_name()
        ));
    }
    lines
}

/// Workloads whose egress reaches the cloud metadata address, separating
/// those with an explicit allow rule from those with no egress policy.
fn metadata_reach(inventory: &Inventory, engine: &Engine<'_>, settings: &Settings) -> Vec<String> {
    let Ok(ip) = METADATA_IP.parse::<IpAddr>() else {
        return Vec::new();
    };
    let metadata = engine.endpoint_of_ip(ip);
    let mut unrestricted = Vec::new();
    let mut lines = Vec::new();
    for (i, w) in inventory.workloads.iter().enumerate() {
        let conns = engine.conns(EndpointRef::Workload(i), metadata);
        if conns.is_empty() {
            continue;
        }
        let ips: Vec<IpAddr> = w.ips().collect();
        let view = palisade_policy::endpoint::workload_view(inventory, w, &ips);
        let decision = reference::evaluate(
            inventory,
            settings,
            reference::Endpoint::Pod(view),
            reference::Endpoint::External(ip),
            first_protocol(conns),
            first_port(conns),
        );
        match decision.egress.allowed_by.first() {
            Some(rule) => lines.push(format!(
                "[high]   {} can reach the cloud metadata address {METADATA_IP} ({conns}): allowed by {} egress rule {} (peer {})",
                w.display_name(),
                rule.policy,
                rule.rule_index,
                rule.peer
            )),
            None => unrestricted.push(w.display_name()),
        }
    }
    if !unrestricted.is_empty() {
        lines.push(format!(
            "[medium] no egress policy, so {METADATA_IP} and everything else is reachable from: {}",
            unrestricted.join(", ")
        ));
    }
    lines
}

fn first_protocol(conns: &palisade_policy::ConnSet) -> Protocol {
    Protocol::ALL
        .into_iter()
        .find(|p| !conns.ports(*p).is_empty())
        .unwrap_or(Protocol::Tcp)
}

fn first_port(conns: &palisade_policy::ConnSet) -> u16 {
    conns
        .ports(first_protocol(conns))
        .ranges()
        .first()
        .map_or(1, |r| r.0)
}

/// Ingress rules naming a port that none of the selected pods declares.
fn unresolved_named_ports(inventory: &Inventory) -> Vec<String> {
    let mut lines = Vec::new();
    for policy in inventory.policies.iter().filter(|p| p.affects_ingress) {
        let selected: Vec<_> = inventory
            .workloads
            .iter()
            .filter(|w| {
                reference::selects(
                    policy,
                    &palisade_policy::endpoint::workload_view(inventory, w, &[]),
                )
            })
            .collect();
        for (index, rule) in policy.ingress.iter().enumerate() {
            for port in &rule.ports {
                let Some(PortRef::Name(name)) = &port.port else {
                    continue;
                };
                if selected
                    .iter()
                    .all(|w| w.template.named_port(name, port.protocol).is_empty())
                {
                    lines.push(format!(
                        "[medium] {} ingress rule {index}: named port {name:?} ({}) is declared by none of the selected pods, so the rule allows nothing",
                        policy.qualified_name(),
                        port.protocol
                    ));
                }
            }
        }
    }
    lines
}

fn explain_text(
    inventory: &Inventory,
    settings: &Settings,
    from: &str,
    to: &str,
    port: u16,
) -> String {
    let (Ok(src), Ok(dst)) = (resolve(inventory, from), resolve(inventory, to)) else {
        return String::new();
    };
    let (src_ips, dst_ips) = (src.ips(inventory), dst.ips(inventory));
    let decision = reference::evaluate(
        inventory,
        settings,
        src.reference_endpoint(inventory, &src_ips),
        dst.reference_endpoint(inventory, &dst_ips),
        Protocol::Tcp,
        port,
    );
    let mut out = crate::explain::text(&crate::explain::Report {
        from: src.display(inventory),
        to: dst.display(inventory),
        protocol: "TCP",
        port,
        decision: &decision,
    });
    out.push('\n');
    out
}
