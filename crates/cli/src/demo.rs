//! `palisade demo`: the main job on the bundled example cluster, a small
//! shop with a few deliberate weaknesses. The example is compiled into the
//! binary so the demo runs from anywhere.
//!

use std::fmt::Write;

use anyhow::Result;
use palisade_audit::AuditOptions;
use palisade_inventory::{Inventory, Protocol};
use palisade_policy::endpoint::resolve;
use palisade_policy::reference;
use palisade_policy::{ConnectivityMap, Engine, MapFilter, Settings};

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

/// The weaknesses built into the example, as (check, resource name).
const PLANTED: [(&str, &str); 4] = [
    ("POL-001", "legacy"),
    ("POL-009", "catalog"),
    ("POL-012", "postgres"),
    ("BYP-001", "node-exporter"),
];

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
    let report = palisade_audit::audit(&inventory, &engine, &AuditOptions::default());
    out.push_str("\n== Posture audit (`palisade audit examples/shop`), findings by check ==\n");
    out.push_str(&crate::audit_cmd::by_check(&report));
    out.push_str("\n== The planted weaknesses, found ==\n");
    for (check, name) in PLANTED {
        if let Some(f) = report
            .active()
            .find(|f| f.check == check && f.resource.name == name)
        {
            let _ = writeln!(
                out,
                "[{}] {} {}: {}",
                f.severity, f.check, f.resource, f.message
            );
        }
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
