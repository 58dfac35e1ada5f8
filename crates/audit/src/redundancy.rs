//! Policies whose removal would change nothing: the connectivity of every
//! workload they select (as source and as destination, toward workloads
//! and every external range) is the same with and without them. Policies
//! with an empty podSelector are not judged: they also cover future pods.
//!
//! Exact, by recomputing the engine without the policy over the same cut of
//! the address space; so it costs one engine run per policy and runs only
//! within a work budget, reporting when it did not.

use palisade_inventory::{Inventory, Peer};
use palisade_policy::{EndpointRef, Engine, Settings};

use crate::checks::REDUNDANT_POLICY;
use crate::coverage::Facts;
use crate::finding::{Finding, Resource};

/// Policies x workloads^2 above which the check is skipped (about a
/// minute of work on one core).
const WORK_BUDGET: usize = 200_000_000;

pub fn check(
    inventory: &Inventory,
    settings: &Settings,
    facts: &Facts<'_>,
    out: &mut Vec<Finding>,
    notes: &mut Vec<String>,
) {
    let w = inventory.workloads.len();
    let work = inventory.policies.len().saturating_mul(w.saturating_mul(w));
    if work > WORK_BUDGET {
        notes.push(format!(
            "{} not run: {} policies x {} workloads is beyond its work budget",
            REDUNDANT_POLICY.id,
            inventory.policies.len(),
            w
        ));
        return;
    }
    let full = Engine::new(inventory, settings);
    for (p, policy) in inventory.policies.iter().enumerate() {
        let selected = &facts.selected[p];
        // A policy that selects nothing is reported as POL-005; one with an
        // empty podSelector also guards pods not yet created (a namespace
        // default-deny), so today's connectivity cannot judge it.
        if selected.is_empty() || policy.pod_selector.is_empty() {
            continue;
        }
        let mut without = inventory.clone();
        without.policies.remove(p);
        // Cut the outside space as the full inventory does, so external
        // ranges compare one to one.
        let cuts: Vec<_> = policy
            .ingress
            .iter()
            .chain(&policy.egress)
            .flat_map(|r| &r.peers)
            .filter_map(|peer| match peer {
                Peer::IpBlock { cidr, except } => {
                    Some(std::iter::once(*cidr).chain(except.iter().copied()))
                }
                Peer::Pods { .. } => None,
            })
            .flatten()
            .map(|c| c.range())
            .collect();
        let reduced = Engine::with_extra_cuts(&without, settings, &cuts);
        if same_for(&full, &reduced, selected) {
            out.push(REDUNDANT_POLICY.finding(
                Resource {
                    kind: "NetworkPolicy".into(),
                    namespace: policy.namespace.clone(),
                    name: policy.name.clone(),
                    container: None,
                },
                "spec".into(),
                format!(
                    "removing {} would not change any connection of the {} workload(s) it selects",
                    policy.qualified_name(),
                    selected.len()
                ),
                policy.source.clone(),
            ));
        }
    }
}

/// Whether both engines allow the same connections to and from `workloads`.
fn same_for(a: &Engine<'_>, b: &Engine<'_>, workloads: &[usize]) -> bool {
    let n = a.inventory().workloads.len();
    let x = a.externals().len();
    debug_assert_eq!(x, b.externals().len());
    workloads.iter().all(|&d| {
        let d = EndpointRef::Workload(d);
        let peers = (0..n)
            .map(EndpointRef::Workload)
            .chain((0..x).map(EndpointRef::External));
        peers
            .into_iter()
            .all(|s| a.conns(s, d) == b.conns(s, d) && a.conns(d, s) == b.conns(d, s))
    })
}
