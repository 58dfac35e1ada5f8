//! `palisade demo`: the main job on the bundled example cluster, a small
//! shop with a few deliberate weaknesses. The example is compiled into the
//! binary so the demo runs from anywhere.
//!

use std::fmt::Write;

use anyhow::Result;
use palisade_audit::AuditOptions;
use std::sync::Arc;

use palisade_detect::{Detectors, Learner, Resolver, ScanOptions, Verifier, apply_endpoints};
use palisade_flow::Format;
use palisade_flow::pcap::{CaptureOptions, read_capture};
use palisade_inventory::{Cidr, Inventory, Protocol};
use palisade_logs::Scanner;
use palisade_logs::timeline::Timeline;
use palisade_policy::endpoint::{decide, resolve};
use palisade_policy::{ConnectivityMap, DiffEntry, Engine, MapFilter, Settings};

use crate::Outcome;
use crate::flows_cmd::{FlowsFormat, InputReport, VerifyReport};
use crate::flows_render;
use crate::logs_cmd::LogsFormat;
use crate::render::{self, MapFormat};
use crate::timeline_cmd;

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

/// The capture and the pod addresses of the flow part (see demo_traffic).
pub const TRAFFIC_FILE: &str = "examples/shop/traffic.pcap";
const TRAFFIC: &[u8] = include_bytes!("../../../examples/shop/traffic.pcap");
const ENDPOINTS: (&str, &str) = (
    "examples/shop/endpoints.txt",
    include_str!("../../../examples/shop/endpoints.txt"),
);
const POD_CIDR: &str = "10.244.0.0/16";

/// The audit-trail part: a small cluster and an audit log in which a
/// policy is deleted and restored, a pod relabelled and a namespace
/// labelled.
const TRAIL_SEED: (&str, &str) = (
    "examples/audit-trail/seed.yaml",
    include_str!("../../../examples/audit-trail/seed.yaml"),
);
const TRAIL: (&str, &str) = (
    "examples/audit-trail/audit.log",
    include_str!("../../../examples/audit-trail/audit.log"),
);

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
    out.push_str(&flows_part());
    out.push_str("\n== Why? (`palisade explain`) ==\n");
    for (from, to, port) in [
        ("frontend/webapp", "database/postgres", 5432),
        ("backend/checkout", "database/postgres", 5432),
    ] {
        out.push_str(&explain_text(&inventory, &settings, from, to, port));
    }
    out.push_str(&audit_trail_part());
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
    let decision = decide(inventory, settings, &src, &dst, Protocol::Tcp, port);
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

/// The flow part: the bundled capture verified against the shop's
/// policies, then a baseline learned from it turned into policies.
fn flows_part() -> String {
    let (mut inventory, _) = Inventory::from_texts(EXAMPLE);
    let problems = apply_endpoints(&mut inventory, ENDPOINTS.0, ENDPOINTS.1);
    let settings = Settings::default();
    let engine = Engine::new(&inventory, &settings);
    let pod_cidr: Vec<Cidr> = POD_CIDR.parse().into_iter().collect();
    let verifier = || {
        Verifier::new(
            &engine,
            Resolver::new(&inventory, &pod_cidr),
            settings.clone(),
        )
    };
    let mut detectors = Detectors::new(verifier(), ScanOptions::default(), None);
    let learning = verifier();
    let mut learner = Learner::default();
    let stats = read_capture(
        TRAFFIC,
        Arc::from(TRAFFIC_FILE),
        &CaptureOptions::default(),
        &mut |flow| {
            detectors.observe(&flow);
            learner.observe(&inventory, &flow, &learning.judge(&flow));
        },
    );
    let mut out = format!(
        "\n== Observed traffic (`palisade flows verify --policy examples/shop --endpoints {} --pod-cidr {POD_CIDR} {TRAFFIC_FILE}`) ==\n\
         {TRAFFIC_FILE}: {} packets, {} connections; {} endpoint lines not applied\n",
        ENDPOINTS.0,
        stats.records,
        stats.flows,
        problems.len()
    );
    let report = VerifyReport::new(
        vec![InputReport {
            file: TRAFFIC_FILE.to_string(),
            format: Format::Pcap,
            stats,
        }],
        detectors.finish(),
    );
    out.push_str(&flows_render::render(&report, FlowsFormat::Table));
    let advice = palisade_detect::advise(&inventory, &learner.finish(), &settings);
    let _ = writeln!(
        out,
        "\n== Least privilege (`palisade flows baseline learn` then `palisade flows advise`) ==\n\
         The baseline holds everything that got through, the bypass included: review it before applying."
    );
    out.push_str(&flows_render::proof_text(&advice));
    out
}

/// The audit-trail part: the trail scanned from its seed, then the
/// timeline's answer for one connection.
fn audit_trail_part() -> String {
    let seed = || {
        let texts = [(TRAIL_SEED.0.to_string(), TRAIL_SEED.1.to_string())];
        let (timeline, diagnostics) = Timeline::seed(&texts, Settings::default());
        (diagnostics.errors() == 0).then_some(timeline)
    };
    let (Ok(scanner), Some(first), Some(mut second)) = (Scanner::new(&[]), seed(), seed()) else {
        return "\n(the bundled audit trail does not load)\n".to_string();
    };
    let mut scanner = scanner.with_seed(first);
    let mut alerts = Vec::new();
    scanner.audit(TRAIL.1.as_bytes(), &Arc::from(TRAIL.0), &mut |a| {
        alerts.push(a)
    });
    let mut out = format!(
        "\n== The audit trail (`palisade logs scan --seed {} {}`) ==\n",
        TRAIL_SEED.0, TRAIL.0
    );
    out.push_str(&crate::logs_cmd::render(
        &alerts,
        LogsFormat::Table,
        &scanner,
    ));
    let (from, to) = ("other/intruder", "shop/db");
    let _ = writeln!(
        out,
        "\n== Since when, and why, can {from} reach {to} on TCP 5432? (`palisade logs timeline --seed {} {} --from {from} --to {to} --port tcp/5432`) ==",
        TRAIL_SEED.0, TRAIL.0
    );
    let filter = MapFilter {
        protocol: Some(Protocol::Tcp),
        port: Some(5432),
        ..MapFilter::default()
    };
    let wanted = |e: &DiffEntry| timeline_cmd::wanted(e, Some(from), Some(to));
    timeline_cmd::replay(
        &mut second,
        TRAIL.1.as_bytes(),
        &filter,
        &wanted,
        &mut |step| out.push_str(&timeline_cmd::text_of(TRAIL.0, &step)),
    );
    out
}
