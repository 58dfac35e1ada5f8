//! Findings: what is wrong with one resource, why it matters, how to fix it.

use std::fmt;

use palisade_inventory::Source;
pub use palisade_inventory::severity::Severity;
use serde::Serialize;

/// The resource a finding is about.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Resource {
    pub kind: String,
    /// Empty for cluster-scoped objects.
    pub namespace: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{}/{}", self.kind, self.name)?;
        } else {
            write!(f, "{}/{}/{}", self.kind, self.namespace, self.name)?;
        }
        if let Some(c) = &self.container {
            write!(f, " container {c}")?;
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub check: &'static str,
    pub severity: Severity,
    pub resource: Resource,
    /// The field at fault, as a path in the manifest (`spec.template.spec.hostNetwork`).
    pub field: String,
    /// What is wrong, in this cluster's own terms.
    pub message: String,
    pub risk: &'static str,
    pub remediation: &'static str,
    pub tags: &'static [&'static str],
    /// Where the resource is declared (`file:line:column`).
    #[serde(
        rename = "location",
        serialize_with = "location",
        skip_serializing_if = "Option::is_none"
    )]
    pub source: Option<Source>,
    /// Set when a suppression applies: the reason given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suppressed: Option<String>,
}

fn location<S: serde::Serializer>(source: &Option<Source>, s: S) -> Result<S::Ok, S::Error> {
    match source {
        Some(src) => s.serialize_str(&src.to_string()),
        None => s.serialize_none(),
    }
}
