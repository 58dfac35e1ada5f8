//! All detectors over one stream of flows: policy verification, scans and,
//! with a baseline, deviations. What `flows verify`, the demo and (later)
//! the agent run.

use palisade_flow::Flow;
use palisade_inventory::Inventory;

use crate::alert::{Alert, Rule};
use crate::baseline::{Baseline, DeviationDetector, DeviationOptions};
use crate::scan::{ScanDetector, ScanOptions};
use crate::verify::{Judge, Judged, Summary, Tally, Verifier, sort_alerts};

pub struct Detectors<'a> {
    inventory: &'a Inventory,
    verifier: Verifier<'a>,
    scans: ScanDetector,
    deviations: Option<DeviationDetector<'a>>,
}

/// Everything the detectors do with a flow once it is judged; in input
/// order, on one thread.
pub struct Recorder<'d, 'a> {
    inventory: &'a Inventory,
    tally: &'d mut Tally,
    scans: &'d mut ScanDetector,
    deviations: Option<&'d mut DeviationDetector<'a>>,
}

impl Recorder<'_, '_> {
    pub fn record(&mut self, flow: &Flow, judged: &Judged) {
        self.tally.record(self.inventory, flow, judged);
        self.scans.observe(flow, judged);
        if let Some(d) = self.deviations.as_mut() {
            d.observe(self.inventory, flow, judged);
        }
    }
}

/// What the detectors found.
pub struct Findings {
    pub summary: Summary,
    pub alerts: Vec<Alert>,
    /// Flows the scan detectors could not place (no address).
    pub scan_not_applicable: u64,
}

impl<'a> Detectors<'a> {
    pub fn new(
        verifier: Verifier<'a>,
        scan: ScanOptions,
        baseline: Option<(&'a Baseline, DeviationOptions)>,
    ) -> Detectors<'a> {
        Detectors {
            inventory: verifier.resolver().inventory(),
            verifier,
            scans: ScanDetector::new(scan),
            deviations: baseline.map(|(b, options)| DeviationDetector::new(b, options)),
        }
    }

    pub fn observe(&mut self, flow: &Flow) {
        let judged = self.verifier.judge(flow);
        self.split().1.record(flow, &judged);
    }

    /// The judge, which other threads may share, and the recorder, which
    /// takes what it judged: `observe` in two halves, so that judging can
    /// run where the flows are parsed.
    pub fn split(&mut self) -> (&Judge<'a>, Recorder<'_, 'a>) {
        let (judge, tally) = self.verifier.split();
        let recorder = Recorder {
            inventory: self.inventory,
            tally,
            scans: &mut self.scans,
            deviations: self.deviations.as_mut(),
        };
        (judge, recorder)
    }

    pub fn finish(self) -> Findings {
        let (summary, mut alerts) = self.verifier.finish();
        let scan_not_applicable = self.scans.not_applicable;
        let mut scans = self.scans.finish(self.inventory);
        fold_into_scans(&mut alerts, &mut scans);
        alerts.extend(scans);
        if let Some(d) = self.deviations {
            alerts.extend(d.finish());
        }
        sort_alerts(&mut alerts);
        Findings {
            summary,
            alerts,
            scan_not_applicable,
        }
    }
}

/// A port scan of 1,000 ports is one alert, not a thousand blocked
/// attempts: blocked-attempt alerts covered by a scan alert (same source
/// and host for a port scan, same source and port for a sweep) are folded
/// into it. They stay counted in the summary, and each scan alert says how
/// many attempts it folded.
fn fold_into_scans(alerts: &mut Vec<Alert>, scans: &mut [Alert]) {
    let covered = |a: &Alert, scan: &Alert| {
        a.rule == Rule::BlockedAttempt.id()
            && a.src.ip == scan.src.ip
            && if scan.rule == Rule::VerticalScan.id() {
                a.dst.ip == scan.dst.ip
            } else {
                scan.rule == Rule::HorizontalScan.id() && a.port == scan.port
            }
    };
    for scan in scans.iter_mut() {
        let folded: u64 = alerts
            .iter()
            .filter(|a| covered(a, scan))
            .map(|a| a.connections)
            .sum();
        if folded > 0 {
            scan.evidence
                .figures
                .insert("blocked_attempts_folded", folded);
            scan.summary.push_str(&format!(
                "; {folded} policy-denied attempts folded into this alert"
            ));
        }
    }
    alerts.retain(|a| !scans.iter().any(|scan| covered(a, scan)));
}
