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
        let parsed: Suppressions = serde_saphyr::from_str(text).map_err(|e| {
            let text = e.to_string();
            text.lines().next().unwrap_or("invalid config").to_string()
        })?;
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
