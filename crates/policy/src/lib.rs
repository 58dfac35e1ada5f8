//! Exact Kubernetes NetworkPolicy (networking.k8s.io/v1) semantics.
//!
//! Two evaluators, one truth: [`reference`] transcribes the rules literally
//! and explains each verdict; [`compiled`] computes every verdict at once and
//! answers single verdicts in constant time. Property tests demand that they
//! agree. The crate does no I/O and never panics on any inventory.

pub mod compiled;
pub mod conn;
pub mod diff;
pub mod endpoint;
pub mod external;
pub mod map;
pub mod reference;

pub use compiled::{Conns, Partial, SelectionCache};
pub use compiled::{EndpointRef, Engine};
pub use conn::{ConnSet, PortSet};
pub use diff::{
    Change, DiffEntry, Side, diff, diff_touching, policy_cuts, touched_in, workload_nodes,
};
pub use external::ExternalRanges;
pub use map::{ConnectivityMap, MapEntry, MapFilter, Node};
pub use reference::{Decision, Endpoint, PodView, RuleMatch, SideDecision};

/// Semantics that differ between network plugins. Each is an explicit
/// choice, never a guess.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// Whether an `ipBlock` also matches in-cluster pod addresses. The
    /// NetworkPolicy API leaves this to the plugin: Cilium and the upstream
    /// analysis tools say no (the default here); Calico says yes.
    pub ipblock_matches_pods: bool,
    /// How hostNetwork pods take part in NetworkPolicy, which the API leaves
    /// undefined.
    pub host_network_pods: HostNetworkPods,
}

/// The two readings of hostNetwork pods the NetworkPolicy API allows
/// ("the behaviour of hostNetwork pods is undefined").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HostNetworkPods {
    /// Their traffic is their node's: pod selectors never select them and
    /// no policy isolates them (most plugins: Calico, Cilium, kube-router).
    #[default]
    Node,
    /// Policies apply to them like to any pod (roxctl netpol, and plugins
    /// that enforce on the pod's own interfaces).
    Pod,
}

impl Settings {
    /// Whether NetworkPolicy leaves this pod out: a hostNetwork pod under
    /// the `node` reading.
    pub fn outside_policy(&self, template: &palisade_inventory::PodTemplate) -> bool {
        template.host_network && self.host_network_pods == HostNetworkPods::Node
    }
}
