//! The audit report: findings plus the summary that makes progress visible.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::finding::{Finding, Severity};

#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    /// Unsuppressed findings per severity.
    pub by_severity: BTreeMap<Severity, usize>,
    pub suppressed: usize,
    /// Per namespace: 100 minus weighted unsuppressed findings (critical
    /// 25, high 10, medium 4, low 1), floored at 0.
    pub namespace_scores: BTreeMap<String, u32>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub summary: Summary,
    pub findings: Vec<Finding>,
    /// Checks that did not run completely, and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

fn weight(s: Severity) -> u32 {
    match s {
        Severity::Critical => 25,
        Severity::High => 10,
        Severity::Medium => 4,
        Severity::Low => 1,
        Severity::Info => 0,
    }
}

impl Report {
    pub fn new(findings: Vec<Finding>) -> Report {
        let mut summary = Summary::default();
        let mut penalty: BTreeMap<String, u32> = BTreeMap::new();
        for f in &findings {
            // Namespace findings carry their name; others their namespace.
            let ns = if f.resource.kind == "Namespace" {
                &f.resource.name
            } else {
                &f.resource.namespace
            };
            let entry = penalty.entry(ns.clone()).or_default();
            if f.suppressed.is_some() {
                summary.suppressed += 1;
                continue;
            }
            *summary.by_severity.entry(f.severity).or_default() += 1;
            *entry += weight(f.severity);
        }
        summary.namespace_scores = penalty
            .into_iter()
            .filter(|(ns, _)| !ns.is_empty())
            .map(|(ns, p)| (ns, 100u32.saturating_sub(p)))
            .collect();
        Report {
            summary,
            findings,
            notes: Vec::new(),
        }
    }

    pub fn active(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.suppressed.is_none())
    }

    /// Whether any unsuppressed finding is at or above `threshold`.
    pub fn fails(&self, threshold: Severity) -> bool {
        self.active().any(|f| f.severity >= threshold)
    }
}
