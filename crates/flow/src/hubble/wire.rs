//! The part of Hubble's jsonpb `GetFlowsResponse` / `Flow` that Palisade
//! uses. Unknown fields are skipped without being built; strings borrow
//! from the line.

use rustc_hash::FxHashMap;
use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde_json::value::RawValue;
use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;

use crate::generic::json::{Scalar, Text};
use crate::model::Identity;

/// A response or a bare flow: the response's `flow` has the same shape, so
/// one type serves both and the top level decides which it is.
#[derive(Debug, Default, Deserialize)]
pub struct Record<'a> {
    #[serde(borrow)]
    pub flow: Option<Box<Record<'a>>>,
    #[serde(borrow)]
    pub lost_events: Option<LostEvents<'a>>,
    pub node_status: Option<IgnoredAny>,
    pub agent_event: Option<IgnoredAny>,
    pub debug_event: Option<IgnoredAny>,
    #[serde(borrow)]
    pub time: Option<Text<'a>>,
    #[serde(borrow)]
    pub verdict: Option<Scalar<'a>>,
    pub drop_reason: Option<u32>,
    #[serde(borrow)]
    pub drop_reason_desc: Option<Scalar<'a>>,
    #[serde(borrow, rename = "IP")]
    pub ip: Option<Ip<'a>>,
    pub l4: Option<Layer4>,
    /// Kept as text: the same endpoints recur on every line, so they are
    /// parsed once each (see [`IdentityCache`]).
    #[serde(borrow)]
    pub source: Option<RawJson<'a>>,
    #[serde(borrow)]
    pub destination: Option<RawJson<'a>>,
    #[serde(borrow, rename = "Type")]
    pub flow_type: Option<Scalar<'a>>,
    pub reply: Option<bool>,
    pub is_reply: Option<bool>,
    #[serde(borrow)]
    pub traffic_direction: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub egress_allowed_by: Option<Vec<Policy<'a>>>,
    #[serde(borrow)]
    pub ingress_allowed_by: Option<Vec<Policy<'a>>>,
    #[serde(borrow)]
    pub egress_denied_by: Option<Vec<Policy<'a>>>,
    #[serde(borrow)]
    pub ingress_denied_by: Option<Vec<Policy<'a>>>,
}

#[derive(Debug, Deserialize)]
pub struct LostEvents<'a> {
    #[serde(borrow)]
    pub source: Option<Scalar<'a>>,
    /// A uint64, so jsonpb writes it as a string.
    #[serde(borrow)]
    pub num_events_lost: Option<Scalar<'a>>,
}

/// The exact text of a JSON value, validated but not parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawJson<'a>(pub &'a str);

impl<'de: 'a, 'a> Deserialize<'de> for RawJson<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        <&'de RawValue>::deserialize(deserializer).map(|raw| RawJson(raw.get()))
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct Ip<'a> {
    #[serde(borrow)]
    pub source: Option<Text<'a>>,
    #[serde(borrow)]
    pub destination: Option<Text<'a>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Layer4 {
    #[serde(rename = "TCP")]
    pub tcp: Option<Ports>,
    #[serde(rename = "UDP")]
    pub udp: Option<Ports>,
    #[serde(rename = "SCTP")]
    pub sctp: Option<Ports>,
    #[serde(rename = "ICMPv4")]
    pub icmpv4: Option<Icmp>,
    #[serde(rename = "ICMPv6")]
    pub icmpv6: Option<Icmp>,
    #[serde(rename = "IGMP")]
    pub igmp: Option<IgnoredAny>,
    #[serde(rename = "VRRP")]
    pub vrrp: Option<IgnoredAny>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Ports {
    pub source_port: Option<u32>,
    pub destination_port: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Icmp {
    #[serde(rename = "type")]
    pub icmp_type: Option<u32>,
    pub code: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Policy<'a> {
    #[serde(borrow)]
    pub name: Option<Text<'a>>,
    #[serde(borrow)]
    pub namespace: Option<Text<'a>>,
}

#[derive(Deserialize)]
pub struct Endpoint<'a> {
    /// Cilium's endpoint ID: only endpoints local to the reporting node
    /// have one.
    #[serde(borrow, rename = "ID")]
    pub id: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub namespace: Option<Text<'a>>,
    #[serde(borrow)]
    pub pod_name: Option<Text<'a>>,
    pub labels: Option<Labels>,
    #[serde(borrow)]
    pub workloads: Option<Vec<Workload<'a>>>,
}

#[derive(Deserialize)]
pub struct Workload<'a> {
    #[serde(borrow)]
    pub name: Option<Text<'a>>,
}

impl Endpoint<'_> {
    /// What Hubble knows about the endpoint; `None` when it knows nothing.
    pub fn into_identity(self) -> Option<Identity> {
        let namespace = non_empty(self.namespace).map(|t| t.0.into_owned());
        let pod = non_empty(self.pod_name)
            .map(|t| t.0.into_owned())
            .or_else(|| {
                let workloads = self.workloads.unwrap_or_default();
                let name = workloads.into_iter().find_map(|w| non_empty(w.name))?;
                Some(format!("{}-*", &*name))
            });
        let Labels {
            labels,
            namespace: labelled_namespace,
            entity,
        } = self.labels.unwrap_or_default();
        let namespace = namespace.or(labelled_namespace.filter(|n| !n.is_empty()));
        let node_local = self.id.and_then(|id| id.as_u64()).is_some_and(|id| id > 0);
        if namespace.is_none() && pod.is_none() && labels.is_empty() && entity.is_none() {
            return None;
        }
        Some(Identity {
            namespace,
            pod,
            labels,
            entity,
            node_local,
        })
    }
}

fn non_empty(text: Option<Text<'_>>) -> Option<Text<'_>> {
    text.filter(|t| !t.is_empty())
}

/// Cilium's labels sorted into the pod's own labels, its namespace and the
/// reserved entity, while they are read (no intermediate list).
#[derive(Default)]
pub struct Labels {
    pub labels: Vec<String>,
    /// From `k8s:io.kubernetes.pod.namespace`: Hubble describes endpoints
    /// on other nodes by their security identity's labels alone, without
    /// `namespace` or `pod_name`, and this label still names the namespace.
    pub namespace: Option<String>,
    pub entity: Option<String>,
}

impl Labels {
    fn add(&mut self, label: &str) {
        if let Some(label) = label.strip_prefix("k8s:") {
            if let Some(namespace) = label.strip_prefix("io.kubernetes.pod.namespace=") {
                self.namespace = Some(namespace.to_string());
            } else if !is_derived_by_cilium(label) {
                self.labels.push(label.to_string());
            }
        } else if let Some(entity) = label.strip_prefix("reserved:") {
            // Cilium sorts labels, so the first reserved label is stable.
            if self.entity.is_none() {
                self.entity = Some(entity.to_string());
            }
        }
    }
}

/// Labels Cilium adds from the namespace, service account and cluster
/// rather than from the pod's metadata.
fn is_derived_by_cilium(label: &str) -> bool {
    label.starts_with("io.cilium.k8s.")
}

impl<'de> Deserialize<'de> for Labels {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LabelsVisitor;
        impl<'de> Visitor<'de> for LabelsVisitor {
            type Value = Labels;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of labels")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Labels, A::Error> {
                let mut labels = Labels::default();
                while let Some(label) = seq.next_element::<Text<'de>>()? {
                    labels.add(&label);
                }
                Ok(labels)
            }
        }
        deserializer.deserialize_seq(LabelsVisitor)
    }
}

/// Endpoints already read on this thread, by their exact JSON text. A
/// Hubble stream names a few thousand endpoints millions of times; parsing
/// and allocating each once instead of once per line is most of the
/// reader's speed. Cleared when it grows past [`IdentityCache::LIMIT`] so
/// that a stream of ever-new endpoints cannot grow it without bound.
#[derive(Default)]
pub struct IdentityCache {
    known: FxHashMap<Box<str>, Option<Arc<Identity>>>,
}

impl IdentityCache {
    const LIMIT: usize = 1 << 16;

    /// The identity the endpoint object `text` (valid JSON) describes.
    pub fn identity(&mut self, text: &str) -> Result<Option<Arc<Identity>>, String> {
        if let Some(identity) = self.known.get(text) {
            return Ok(identity.clone());
        }
        let endpoint: Endpoint<'_> = serde_json::from_str(text)
            .map_err(|error| format!("unexpected endpoint content: {error}"))?;
        let identity = endpoint.into_identity().map(Arc::new);
        if self.known.len() >= Self::LIMIT {
            self.known.clear();
        }
        self.known.insert(text.into(), identity.clone());
        Ok(identity)
    }
}

thread_local! {
    pub static IDENTITIES: RefCell<IdentityCache> = RefCell::default();
}
