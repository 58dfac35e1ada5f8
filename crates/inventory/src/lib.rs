//! The Kubernetes inventory Palisade reasons about: namespaces, workloads,
//! services, nodes and network policies, loaded from manifests and `kubectl`
//! dumps into one consistent snapshot.
//!
//! Loading never aborts on bad input: every problem becomes a [`Diagnostic`]
//! with file, line and column, and the rest is still read.

mod build;
pub mod cidr;
mod diagnostics;
pub mod documents;
mod files;
pub mod manifest;
pub mod model;
pub mod parallel;
mod pod_convert;
mod policy_convert;
pub mod selector;
pub mod severity;
pub mod yaml;

use std::collections::BTreeMap;
use std::sync::Arc;

pub use build::{DecodedObject, NAMESPACE_NAME_LABEL};
pub use cidr::{Cidr, Family, IpRange};
pub use diagnostics::{Diagnostic, Diagnostics, Severity};
pub use files::{LoadError, collect_manifest_files};
pub use model::*;
pub use selector::{LabelSelector, Labels, Operator, Requirement};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Inventory {
    /// Sorted by name; includes namespaces only referenced by other objects.
    pub namespaces: Vec<Namespace>,
    /// Sorted by namespace, name and kind.
    pub workloads: Vec<Workload>,
    pub services: Vec<Service>,
    pub policies: Vec<NetworkPolicy>,
    pub nodes: Vec<Node>,
    /// Objects of kinds Palisade does not model, counted by kind.
    pub skipped_kinds: BTreeMap<String, usize>,
}

impl Inventory {
    /// Reads manifests from texts (one per file name). The file name only
    /// labels diagnostics.
    pub fn from_texts<'a>(
        texts: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> (Inventory, Diagnostics) {
        let mut loader = Loader::default();
        for (file, text) in texts {
            loader.add_text(file, text);
        }
        loader.finish()
    }

    /// Reads one text into decoded objects, to build inventories from
    /// later with [`Inventory::from_decoded`].
    pub fn decode_text(file: &str, text: &str) -> (Vec<DecodedObject>, Diagnostics) {
        let mut diagnostics = Diagnostics::default();
        let objects = documents::read_objects(&Arc::from(file), text, &mut diagnostics);
        let decoded = objects.into_iter().map(DecodedObject::decode).collect();
        (decoded, diagnostics)
    }

    /// The inventory of these objects, as if their texts were loaded.
    pub fn from_decoded(
        objects: impl IntoIterator<Item = DecodedObject>,
    ) -> (Inventory, Diagnostics) {
        let mut diagnostics = Diagnostics::default();
        let inventory = build::build_decoded(objects, &mut diagnostics);
        (inventory, diagnostics)
    }

    /// Replaces everything of one namespace (the namespace itself, its
    /// workloads, services and policies) with what `part` holds of it. The
    /// result is the inventory a full load would give, because grouping
    /// pods into workloads never crosses a namespace; nodes and the counts
    /// of skipped kinds are left as they are.
    pub fn replace_namespace(&mut self, namespace: &str, part: Inventory) {
        fn splice<T>(
            items: &mut Vec<T>,
            new: Vec<T>,
            in_namespace: impl Fn(&T) -> std::cmp::Ordering,
        ) {
            let start = items.partition_point(|i| in_namespace(i).is_lt());
            let end = start + items[start..].partition_point(|i| in_namespace(i).is_eq());
            let new: Vec<T> = new
                .into_iter()
                .filter(|i| in_namespace(i).is_eq())
                .collect();
            items.splice(start..end, new);
        }
        let cmp = |ns: &str| ns.cmp(namespace);
        splice(&mut self.namespaces, part.namespaces, |n| cmp(&n.name));
        splice(&mut self.workloads, part.workloads, |w| cmp(&w.namespace));
        splice(&mut self.services, part.services, |s| cmp(&s.namespace));
        splice(&mut self.policies, part.policies, |p| cmp(&p.namespace));
    }

    pub fn namespace(&self, name: &str) -> Option<&Namespace> {
        self.namespaces
            .binary_search_by(|ns| ns.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.namespaces[i])
    }

    /// The workload and pod with this `metadata.uid` (what the node agent
    /// attributes kernel events to), as indices into `workloads` and its
    /// `pods`.
    pub fn pod_by_uid(&self, uid: &str) -> Option<(usize, usize)> {
        self.workloads.iter().enumerate().find_map(|(w, workload)| {
            workload
                .pods
                .iter()
                .position(|p| p.uid.as_deref() == Some(uid))
                .map(|p| (w, p))
        })
    }

    /// The workloads a Service's selector picks: in its namespace, with
    /// template labels matching every key. An empty selector picks none (the
    /// endpoints controller manages no endpoints for it), unlike a
    /// NetworkPolicy's empty podSelector.
    pub fn service_backends(&self, namespace: &str, selector: &Labels) -> Vec<usize> {
        if selector.is_empty() {
            return Vec::new();
        }
        (0..self.workloads.len())
            .filter(|&i| {
                let w = &self.workloads[i];
                w.namespace == namespace
                    && selector
                        .iter()
                        .all(|(k, v)| w.template.labels.get(k) == Some(v))
            })
            .collect()
    }

    pub fn skipped_objects(&self) -> usize {
        self.skipped_kinds.values().sum()
    }

    fn sort(&mut self) {
        self.namespaces.sort_by(|a, b| a.name.cmp(&b.name));
        self.workloads.sort_by(|a, b| {
            (&a.namespace, &a.name, &a.kind).cmp(&(&b.namespace, &b.name, &b.kind))
        });
        self.services
            .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        self.policies
            .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        self.nodes.sort_by(|a, b| a.name.cmp(&b.name));
    }
}

/// Accumulates input texts, then builds the inventory in one go (grouping
/// pods into workloads needs to see every object first).
#[derive(Default)]
pub struct Loader {
    objects: Vec<documents::RawObject>,
    diagnostics: Diagnostics,
}

impl Loader {
    pub fn add_text(&mut self, file: &str, text: &str) {
        let file: Arc<str> = Arc::from(file);
        let objects = documents::read_objects(&file, text, &mut self.diagnostics);
        self.objects.extend(objects);
    }

    pub fn add_diagnostic(&mut self, d: Diagnostic) {
        self.diagnostics.push(d);
    }

    pub fn finish(mut self) -> (Inventory, Diagnostics) {
        let inventory = build::build(self.objects, &mut self.diagnostics);
        (inventory, self.diagnostics)
    }
}
