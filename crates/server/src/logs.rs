//! Logs pushed to the server, through the log rules (docs/logs.md): the
//! Kubernetes API server's audit webhook backend (`EventList` bodies) and
//! Fluent Bit's `http` output (`format json_lines`, records with their
//! `kubernetes` block). Alerts the rules raise are stored and delivered
//! like any other, with the origin `k8s-audit` or `fluent-bit`.

use std::sync::{Arc, Mutex};

use palisade_logs::Scanner;
use palisade_store::AlertRecord;
use serde::Serialize;

use crate::ingest::check_item;
use crate::now_us;

/// What one pushed body gave.
#[derive(Debug, Default, Serialize)]
pub(crate) struct LogAnswer {
    pub records: u64,
    pub skipped: u64,
    pub alerts: usize,
    /// Line and reason of the first few records that could not be read.
    pub diagnostics: Vec<String>,
}

pub(crate) enum Kind {
    Audit,
    Container,
}

/// Runs `body` through the rules; returns the alerts as records to store.
/// The scanner keeps rates and the timeline between bodies.
pub(crate) fn scan(
    scanner: &Arc<Mutex<Scanner>>,
    kind: Kind,
    body: &[u8],
) -> (LogAnswer, Vec<AlertRecord>) {
    let mut scanner = scanner.lock().unwrap_or_else(|e| e.into_inner());
    let mut alerts = Vec::new();
    let sink = &mut |alert| alerts.push(alert);
    let (origin, records, skipped, diagnostics) = match kind {
        Kind::Audit => {
            let stats = scanner.audit(body, &Arc::from("audit-webhook"), sink);
            let skipped = stats.skipped.values().sum();
            (
                "k8s-audit",
                stats.events + stats.gated,
                skipped,
                stats.diagnostics,
            )
        }
        Kind::Container => {
            let stats = scanner.container(body, &Arc::from("fluent-bit"), None, sink);
            let skipped = stats.skipped.values().sum();
            ("fluent-bit", stats.lines, skipped, stats.diagnostics)
        }
    };
    drop(scanner);
    let now = now_us();
    let mut diagnostics: Vec<String> = diagnostics
        .iter()
        .take(20)
        .map(|(line, why)| format!("record {line}: {why}"))
        .collect();
    let mut stored = Vec::new();
    for alert in &alerts {
        match check_item(&palisade_send::wire_line(alert, origin), now) {
            Ok(record) => stored.push(record),
            // A rule's alert the store cannot take is a bug worth seeing.
            Err(why) => diagnostics.push(format!("alert {} not stored: {why}", alert.rule)),
        }
    }
    let answer = LogAnswer {
        records,
        skipped,
        alerts: stored.len(),
        diagnostics,
    };
    (answer, stored)
}
