//! Suppressions: per resource with the `palisade.io/ignore` annotation
//! (check ids, comma separated, `*` for all; reason in
//! `palisade.io/ignore-reason`), and per run with skipped check ids.
//! Suppressed findings are kept and counted, never dropped.

use palisade_inventory::{Inventory, Labels};

use crate::finding::Finding;

pub const IGNORE_ANNOTATION: &str = "palisade.io/ignore";
pub const REASON_ANNOTATION: &str = "palisade.io/ignore-reason";

#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Suppressions {
    /// Check ids skipped for this run (`--skip`, or `skip:` in the file).
    #[serde(default)]
    pub skip: Vec<String>,
    /// Suppressions for matching resources, from the config file.
    #[serde(default)]
    pub ignore: Vec<Ignore>,
}

/// One `ignore:` entry of the config file. Absent fields match anything;
/// `namespace` also matches a namespace finding by its name.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ignore {
    pub check: String,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    pub reason: String,
}

impl Ignore {
    fn matches(&self, f: &Finding) -> bool {
        let r = &f.resource;
        self.check.eq_ignore_ascii_case(f.check)
            && self
                .namespace
                .as_deref()
                .is_none_or(|ns| ns == r.namespace || (r.kind == "Namespace" && ns == r.name))
            && self.name.as_deref().is_none_or(|n| n == r.name)
    }
}

impl Suppressions {
    /// Reads the config file (`skip: [IDS]`, `ignore: [{check, namespace,
    /// name, reason}]`); every check id must exist.
    pub fn from_yaml(text: &str) -> Result<Suppressions, String> {
        let parsed: Suppressions = palisade_inventory::yaml::from_str(text)?;
        let ids = parsed
            .skip
            .iter()
            .chain(parsed.ignore.iter().map(|i| &i.check));
        for id in ids {
            if crate::checks::by_id(id).is_none() {
                return Err(format!("unknown check id {id:?}"));
            }
        }
        Ok(parsed)
    }

    /// Why `finding` is suppressed, if it is.
    pub fn reason(&self, inventory: &Inventory, finding: &Finding) -> Option<String> {
        if self
            .skip
            .iter()
            .any(|s| s.eq_ignore_ascii_case(finding.check))
        {
            return Some("skipped for this run".into());
        }
        if let Some(i) = self.ignore.iter().find(|i| i.matches(finding)) {
            return Some(i.reason.clone());
        }
        let annotations = annotations_of(inventory, finding)?;
        let listed = annotations.iter().find_map(|a| a.get(IGNORE_ANNOTATION))?;
        let applies = listed
            .split(',')
            .map(str::trim)
            .any(|id| id == "*" || id.eq_ignore_ascii_case(finding.check));
        applies.then(|| {
            annotations
                .iter()
                .find_map(|a| a.get(REASON_ANNOTATION))
                .cloned()
                .unwrap_or_else(|| format!("{IGNORE_ANNOTATION} annotation (no reason given)"))
        })
    }
}

/// The annotations of the resource a finding is about, most specific
/// first. For workloads, the controller's own and its pod template's both
/// count. The inventory's lists are sorted, so each is a binary search.
fn annotations_of<'i>(inventory: &'i Inventory, f: &Finding) -> Option<Vec<&'i Labels>> {
    let r = &f.resource;
    let key = (r.namespace.as_str(), r.name.as_str());
    match r.kind.as_str() {
        "Namespace" => inventory.namespace(&r.name).map(|n| vec![&n.annotations]),
        "Service" => inventory
            .services
            .binary_search_by(|s| (s.namespace.as_str(), s.name.as_str()).cmp(&key))
            .ok()
            .map(|i| vec![&inventory.services[i].annotations]),
        "NetworkPolicy" => inventory
            .policies
            .binary_search_by(|p| (p.namespace.as_str(), p.name.as_str()).cmp(&key))
            .ok()
            .map(|i| vec![&inventory.policies[i].annotations]),
        kind => {
            // Workloads are sorted by namespace and name (then kind).
            let from = inventory
                .workloads
                .partition_point(|w| (w.namespace.as_str(), w.name.as_str()) < key);
            inventory.workloads[from..]
                .iter()
                .take_while(|w| (w.namespace.as_str(), w.name.as_str()) == key)
                .find(|w| w.kind.as_str() == kind)
                .map(|w| vec![&w.annotations, &w.template.annotations])
        }
    }
}
