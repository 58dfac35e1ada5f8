//! Suppressions: per resource with the `palisade.io/ignore` annotation
//! (check ids, comma separated, `*` for all; reason in
//! `palisade.io/ignore-reason`), and per run with skipped check ids.
//! Suppressed findings are kept and counted, never dropped.

use palisade_inventory::{Inventory, Labels};

use crate::finding::Finding;

pub const IGNORE_ANNOTATION: &str = "palisade.io/ignore";
pub const REASON_ANNOTATION: &str = "palisade.io/ignore-reason";

#[derive(Clone, Debug, Default)]
pub struct Suppressions {
    /// Check ids skipped for this run (`--skip`).
    pub skip: Vec<String>,
}

impl Suppressions {
    /// Why `finding` is suppressed, if it is.
    pub fn reason(&self, inventory: &Inventory, finding: &Finding) -> Option<String> {
        if self
            .skip
            .iter()
            .any(|s| s.eq_ignore_ascii_case(finding.check))
        {
            return Some("skipped for this run (--skip)".into());
        }
        let annotations = annotations_of(inventory, finding)?;
        let listed = annotations.get(IGNORE_ANNOTATION)?;
        let applies = listed
            .split(',')
            .map(str::trim)
            .any(|id| id == "*" || id.eq_ignore_ascii_case(finding.check));
        applies.then(|| {
            annotations
                .get(REASON_ANNOTATION)
                .cloned()
                .unwrap_or_else(|| format!("{IGNORE_ANNOTATION} annotation (no reason given)"))
        })
    }
}

/// The annotations of the resource a finding is about. For workloads, the
/// controller's own and its pod template's both count.
fn annotations_of(inventory: &Inventory, f: &Finding) -> Option<Labels> {
    let r = &f.resource;
    match r.kind.as_str() {
        "Namespace" => inventory.namespace(&r.name).map(|n| n.annotations.clone()),
        "Service" => inventory
            .services
            .iter()
            .find(|s| s.namespace == r.namespace && s.name == r.name)
            .map(|s| s.annotations.clone()),
        "NetworkPolicy" => inventory
            .policies
            .iter()
            .find(|p| p.namespace == r.namespace && p.name == r.name)
            .map(|p| p.annotations.clone()),
        kind => inventory
            .workloads
            .iter()
            .find(|w| w.namespace == r.namespace && w.name == r.name && w.kind.as_str() == kind)
            .map(|w| {
                let mut all = w.template.annotations.clone();
                all.extend(w.annotations.clone());
                all
            }),
    }
}
