//! Printers for `palisade flows`: they only format what the detectors
//! decided.

use std::fmt::Write;

use palisade_detect::{Advice, Alert, Class, Rule};
use serde_json::json;

use crate::audit_cmd::{sarif_level, security_severity};
use crate::flows_cmd::{FlowsFormat, VerifyReport};
use crate::render;

pub fn render(report: &VerifyReport, format: FlowsFormat) -> String {
    match format {
        FlowsFormat::Table => table(report),
        FlowsFormat::Json => render::json(report),
        FlowsFormat::Jsonl => jsonl(&report.alerts),
        FlowsFormat::Sarif => render::json(&sarif(&report.alerts)),
    }
}

/// One alert per line, in the alert schema (what the agent and sinks use).
/// Serialised on every core (a large input has thousands of alerts, tens
/// of megabytes), then joined into a string sized once.
pub fn jsonl(alerts: &[Alert]) -> String {
    let lines = palisade_inventory::parallel::map_in_order(alerts.iter().collect(), 64, |alert| {
        serde_json::to_string(alert)
    });
    let mut out = String::with_capacity(lines.iter().flatten().map(|l| l.len() + 1).sum());
    for line in lines.into_iter().flatten() {
        out.push_str(&line);
        out.push('\n');
    }
    out
}

pub fn summary_line(report: &VerifyReport) -> String {
    let s = &report.summary;
    let counts: Vec<String> = Class::ALL
        .iter()
        .map(|c| format!("{} {c}", s.by_class.get(c).copied().unwrap_or(0)))
        .collect();
    format!(
        "{} flow records ({} connections): {}",
        s.flows,
        s.connections,
        counts.join(", ")
    )
}

pub fn alert_lines(alerts: &[Alert]) -> String {
    let mut out = String::new();
    for a in alerts {
        let _ = writeln!(
            out,
            "{:<8} {:<8} {}",
            a.severity.as_str().to_uppercase(),
            a.rule,
            a.summary
        );
        if let Some(first) = a.evidence.records.first() {
            let time = a.first_seen.as_deref().unwrap_or("time unknown");
            let _ = writeln!(out, "                  first seen {time} at {first}");
        }
    }
    out
}

fn table(report: &VerifyReport) -> String {
    let mut out = alert_lines(&report.alerts);
    if !report.alerts.is_empty() {
        out.push('\n');
    }
    let _ = writeln!(out, "{}", summary_line(report));
    let _ = writeln!(out, "{} alerts", report.alerts.len());
    if !report.summary.by_namespace.is_empty() {
        out.push_str("per namespace:\n");
        for (ns, classes) in &report.summary.by_namespace {
            let counts: Vec<String> = classes.iter().map(|(c, n)| format!("{n} {c}")).collect();
            let _ = writeln!(out, "  {ns}: {}", counts.join(", "));
        }
    }
    out
}

fn sarif_rule(rule: Rule) -> serde_json::Value {
    json!({
        "id": rule.id(),
        "name": rule.name(),
        "shortDescription": {"text": rule.name()},
        "fullDescription": {"text": rule.description()},
        "defaultConfiguration": {"level": sarif_level(rule.severity())},
        "properties": {"security-severity": security_severity(rule.severity())},
    })
}

fn sarif_result(alert: &Alert) -> serde_json::Value {
    let mut location = json!({
        "logicalLocations": [{
            "fullyQualifiedName": format!("{} -> {}", alert.src, alert.dst),
            "kind": "connection",
        }],
    });
    if let Some(record) = alert.evidence.records.first() {
        let mut physical = json!({"artifactLocation": {"uri": record.file.to_string()}});
        if !matches!(
            record.format,
            palisade_flow::Format::Pcap | palisade_flow::Format::Pcapng
        ) {
            physical["region"] = json!({"startLine": record.record.max(1)});
        }
        location["physicalLocation"] = physical;
    }
    json!({
        "ruleId": alert.rule,
        "level": sarif_level(alert.severity),
        "message": {"text": alert.summary},
        "locations": [location],
        "properties": {"severity": alert.severity.as_str(), "connections": alert.connections},
    })
}

fn sarif(alerts: &[Alert]) -> serde_json::Value {
    let rules: Vec<serde_json::Value> = Rule::FLOWS.iter().map(|&r| sarif_rule(r)).collect();
    let results: Vec<serde_json::Value> = alerts.iter().map(sarif_result).collect();
    crate::audit_cmd::sarif_log(rules, results)
}

/// The advice's proof, for people.
pub fn proof_text(advice: &Advice) -> String {
    let p = &advice.proof;
    let mut out = String::new();
    for note in &advice.notes {
        let _ = writeln!(out, "note: {note}");
    }
    let verdict = if p.holds() { "HOLDS" } else { "FAILS" };
    let _ = writeln!(
        out,
        "proof {verdict}: {} policies; {}/{} observed (pair, protocol, port) edges allowed; {} pairs checked; {} observed connections denied; {} allowed beyond observation (DNS to kube-dns aside)",
        advice.policies,
        p.observed_allowed,
        p.observed_total,
        p.pairs_checked,
        p.denied_but_observed.len(),
        p.allowed_but_not_observed.len()
    );
    for e in &p.load_errors {
        let _ = writeln!(out, "  generated YAML does not load: {e}");
    }
    for e in &p.denied_but_observed {
        let _ = writeln!(out, "  observed but denied: {e}");
    }
    for e in &p.allowed_but_not_observed {
        let _ = writeln!(out, "  allowed but never observed: {e}");
    }
    out
}
