//! `palisade audit`: the configurations that let traffic bypass network
//! policy, and the policies that are weaker than they look. Checks that
//! reason about what policies allow use the policy engine, never a second,
//! simpler reading of selectors.

mod bypass;
pub mod checks;
mod coverage;
pub mod finding;
mod hygiene;
mod pss;
mod redundancy;
pub mod report;
pub mod suppress;

use palisade_inventory::Inventory;
use palisade_policy::Engine;

pub use finding::{Finding, Resource, Severity};
pub use pss::{PssLevel, PssVersion};
pub use report::{Report, Summary};
pub use suppress::Suppressions;

#[derive(Clone, Debug, Default)]
pub struct AuditOptions {
    pub suppressions: Suppressions,
    pub pss: PssLevel,
    /// The Pod Security policy version the PSS checks follow.
    pub pss_version: PssVersion,
    /// Pod and service CIDRs given by the user, in addition to the pod
    /// CIDRs of Node objects.
    pub pod_cidrs: Vec<palisade_inventory::Cidr>,
    pub service_cidrs: Vec<palisade_inventory::Cidr>,
    /// The semantics the engine was built with (for checks that rebuild it).
    pub settings: palisade_policy::Settings,
}

/// Runs every check and applies suppressions; suppressed findings stay in
/// the report, marked, and are counted.
pub fn audit(inventory: &Inventory, engine: &Engine<'_>, options: &AuditOptions) -> Report {
    let suppressions = &options.suppressions;
    let mut facts = coverage::Facts::new(inventory, &options.settings);
    facts
        .cluster_cidrs
        .extend(options.pod_cidrs.iter().map(|c| (*c, "pod CIDR")));
    facts
        .cluster_cidrs
        .extend(options.service_cidrs.iter().map(|c| (*c, "service CIDR")));
    let mut findings = Vec::new();
    bypass::check(inventory, engine, &facts, &mut findings);
    coverage::check(inventory, engine, &facts, &mut findings);
    pss::check_namespaces(inventory, &mut findings);
    pss::check(inventory, options.pss, options.pss_version, &mut findings);
    hygiene::check(inventory, engine, &facts, &mut findings);
    let mut notes = Vec::new();
    redundancy::check(
        inventory,
        &options.settings,
        &facts,
        &mut findings,
        &mut notes,
    );
    for f in &mut findings {
        f.suppressed = suppressions.reason(inventory, f);
    }
    findings.sort_by(|a, b| {
        (b.severity, a.check, &a.resource, &a.field).cmp(&(
            a.severity,
            b.check,
            &b.resource,
            &b.field,
        ))
    });
    let mut report = Report::new(findings);
    report.notes = notes;
    report
}
