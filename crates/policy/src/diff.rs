//! Semantic diff of two inventories' connectivity: what a change to policies
//! (or workloads) adds, removes or changes, pair by pair. Both sides are
//! computed over the same cut of the external address space, so ranges
//! compare one to one.

use std::collections::{BTreeMap, BTreeSet};

use palisade_inventory::{Inventory, IpRange, Peer};

use crate::Settings;
use crate::compiled::{EndpointRef, Engine};
use crate::conn::ConnSet;
use crate::map::{MapFilter, Node};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Changed,
    Added,
    Removed,
}

impl Change {
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Added => "added",
            Change::Removed => "removed",
            Change::Changed => "changed",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiffEntry {
    pub change: Change,
    pub src: Node,
    pub dst: Node,
    pub old: ConnSet,
    pub new: ConnSet,
    /// Why the pair changed when a workload itself appeared or vanished.
    pub note: Option<String>,
}

impl DiffEntry {
    /// Connections that the new inventory allows and the old did not.
    pub fn gained(&self) -> ConnSet {
        self.new.difference(&self.old)
    }

    pub fn lost(&self) -> ConnSet {
        self.old.difference(&self.new)
    }
}

fn policy_cuts(inventory: &Inventory) -> Vec<IpRange> {
    let mut cuts = Vec::new();
    for p in &inventory.policies {
        for rule in p.ingress.iter().chain(&p.egress) {
            for peer in &rule.peers {
                if let Peer::IpBlock { cidr, except } = peer {
                    cuts.push(cidr.range());
                    cuts.extend(except.iter().map(|e| e.range()));
                }
            }
        }
    }
    cuts
}

/// The differences from `old` to `new`, grouped as roxctl does (changed,
/// then added, then removed), each group sorted by source then destination.
pub fn diff(
    old: &Inventory,
    new: &Inventory,
    settings: &Settings,
    filter: &MapFilter,
) -> Vec<DiffEntry> {
    let old_engine = Engine::with_extra_cuts(old, settings, &policy_cuts(new));
    let new_engine = Engine::with_extra_cuts(new, settings, &policy_cuts(old));
    let old_index = workload_index(old);
    let new_index = workload_index(new);
    let all: BTreeSet<&Node> = old_index.keys().chain(new_index.keys()).collect();
    let focused = |n: &Node| {
        filter.focus_workloads.is_empty()
            || filter.focus_workloads.iter().any(|f| n.matches_focus(f))
    };
    let restrict = |c: &ConnSet| {
        if filter.protocol.is_some() || filter.port.is_some() {
            c.restrict(filter.protocol, filter.port)
        } else {
            c.clone()
        }
    };
    let side =
        |engine: &Engine<'_>, index: &BTreeMap<Node, usize>, src: &Node, dst: &Node| -> ConnSet {
            match (index.get(src), index.get(dst)) {
                (Some(&s), Some(&t)) => {
                    restrict(engine.conns(EndpointRef::Workload(s), EndpointRef::Workload(t)))
                }
                _ => ConnSet::none(),
            }
        };
    // roxctl's workloads-diff-info: on an added (removed) line, the
    // workloads that exist only in the new (old) inventory, in source then
    // destination order: "workload A and B added". External ranges are
    // never named.
    let note = |src: &Node, dst: &Node, change: Change| -> Option<String> {
        let is_new = |n: &Node| match change {
            Change::Added => !old_index.contains_key(n) && new_index.contains_key(n),
            Change::Removed => old_index.contains_key(n) && !new_index.contains_key(n),
            Change::Changed => false,
        };
        let named: Vec<String> = [src, dst]
            .into_iter()
            .filter(|n| !n.is_external() && is_new(n))
            .map(Node::to_string)
            .collect();
        (!named.is_empty()).then(|| format!("workload {} {}", named.join(" and "), change.as_str()))
    };
    let mut entries = Vec::new();
    for &src in &all {
        for &dst in &all {
            if src == dst || !(focused(src) || focused(dst)) {
                continue;
            }
            let before = side(&old_engine, &old_index, src, dst);
            let after = side(&new_engine, &new_index, src, dst);
            if let Some(e) = entry(src.clone(), dst.clone(), before, after, note) {
                entries.push(e);
            }
        }
    }
    let ranges = old_engine.externals().ranges();
    let shown = crate::map::shown_external_ranges(old_engine.externals(), filter.include_ipv6);
    for &w in all.iter().filter(|n| focused(n)) {
        for outbound in [true, false] {
            // Group the external ranges by their (old, new) pair.
            let mut groups: BTreeMap<(ConnSet, ConnSet), Vec<IpRange>> = BTreeMap::new();
            for &x in &shown {
                let conn = |engine: &Engine<'_>, index: &BTreeMap<Node, usize>| match index.get(w) {
                    Some(&i) if outbound => {
                        restrict(engine.conns(EndpointRef::Workload(i), EndpointRef::External(x)))
                    }
                    Some(&i) => {
                        restrict(engine.conns(EndpointRef::External(x), EndpointRef::Workload(i)))
                    }
                    None => ConnSet::none(),
                };
                let (before, after) =
                    (conn(&old_engine, &old_index), conn(&new_engine, &new_index));
                if before != after {
                    push_range(groups.entry((before, after)).or_default(), ranges[x]);
                }
            }
            // One entry per contiguous range, as roxctl prints them.
            for ((before, after), list) in groups {
                for range in list {
                    let ext = Node::External(vec![range]);
                    let (src, dst) = if outbound {
                        (w.clone(), ext)
                    } else {
                        (ext, w.clone())
                    };
                    entries.extend(entry(src, dst, before.clone(), after.clone(), note));
                }
            }
        }
    }
    entries.sort_by_key(|e| (e.change, e.src.to_string(), e.dst.to_string()));
    entries
}

fn push_range(list: &mut Vec<IpRange>, r: IpRange) {
    match list.last_mut() {
        Some(last) if last.family == r.family && last.end.checked_add(1) == Some(r.start) => {
            last.end = r.end
        }
        _ => list.push(r),
    }
}

fn entry(
    src: Node,
    dst: Node,
    old: ConnSet,
    new: ConnSet,
    note: impl Fn(&Node, &Node, Change) -> Option<String>,
) -> Option<DiffEntry> {
    let change = match (old.is_empty(), new.is_empty()) {
        _ if old == new => return None,
        (true, false) => Change::Added,
        (false, true) => Change::Removed,
        _ => Change::Changed,
    };
    Some(DiffEntry {
        change,
        note: note(&src, &dst, change),
        src,
        dst,
        old,
        new,
    })
}

fn workload_index(inventory: &Inventory) -> BTreeMap<Node, usize> {
    inventory
        .workloads
        .iter()
        .enumerate()
        .map(|(i, w)| (Node::workload(w), i))
        .collect()
}
