//! Semantic diff of two inventories' connectivity: what a change to policies
//! (or workloads) adds, removes or changes, pair by pair. Both sides are
//! computed over the same cut of the external address space, so ranges
//! compare one to one.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use rustc_hash::{FxHashMap, FxHashSet};

use palisade_inventory::{Inventory, IpRange, NetworkPolicy, Peer, Workload};

use crate::Settings;
use crate::compiled::{Conns, EndpointRef, Engine};
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

/// Every address the policies' ipBlocks cut the external space at.
pub fn policy_cuts<'p>(policies: impl IntoIterator<Item = &'p NetworkPolicy>) -> Vec<IpRange> {
    let mut cuts = Vec::new();
    for p in policies {
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
    let old_engine = Engine::with_extra_cuts(old, settings, &policy_cuts(&new.policies));
    let new_engine = Engine::with_extra_cuts(new, settings, &policy_cuts(&old.policies));
    let (old_nodes, new_nodes) = (workload_nodes(old), workload_nodes(new));
    let old_side = Side::new(&old_nodes, &old_engine);
    let new_side = Side::new(&new_nodes, &new_engine);
    compare(&old_side, &new_side, None, filter)
}

/// One state of the cluster as a diff sees it: its workloads' nodes in
/// inventory order, and the connections between them.
pub struct Side<'c> {
    index: FxHashMap<&'c Node, usize>,
    conns: &'c dyn Conns,
}

impl<'c> Side<'c> {
    pub fn new(nodes: &'c [Node], conns: &'c dyn Conns) -> Side<'c> {
        let index = nodes.iter().enumerate().map(|(i, n)| (n, i)).collect();
        Side { index, conns }
    }

    fn conns(&self, src: Option<usize>, dst: Option<usize>) -> Option<&ConnSet> {
        let (s, t) = (src?, dst?);
        Some(
            self.conns
                .conns(EndpointRef::Workload(s), EndpointRef::Workload(t)),
        )
    }

    fn external(&self, w: Option<usize>, x: usize, outbound: bool) -> Option<&ConnSet> {
        let (w, x) = (EndpointRef::Workload(w?), EndpointRef::External(x));
        Some(match outbound {
            true => self.conns.conns(w, x),
            false => self.conns.conns(x, w),
        })
    }
}

/// A workload node of either side, looked up once: its index in each.
struct Member<'n> {
    node: &'n Node,
    old: Option<usize>,
    new: Option<usize>,
    focused: bool,
    touched: bool,
}

/// The nodes of an inventory's workloads, in its order.
pub fn workload_nodes(inventory: &Inventory) -> Vec<Node> {
    inventory.workloads.iter().map(Node::workload).collect()
}

/// The differences from `old` to `new` for the pairs with a side in
/// `touched` only, from partial engines that computed those workloads'
/// rows and columns ([`crate::compiled::Partial`]) over the same external
/// cut. Equal to [`diff`] when every other pair is known not to change.
pub fn diff_touching(
    old: &Side<'_>,
    new: &Side<'_>,
    touched: &BTreeSet<Node>,
    filter: &MapFilter,
) -> Vec<DiffEntry> {
    compare(old, new, Some(touched), filter)
}

/// Every workload node of either side (in no particular order: entries
/// are sorted at the end).
fn members<'n>(
    old: &'n Side<'_>,
    new: &'n Side<'_>,
    touched: Option<&BTreeSet<Node>>,
    filter: &MapFilter,
) -> Vec<Member<'n>> {
    let member = |node: &'n Node, old_index: Option<usize>, new_index: Option<usize>| Member {
        node,
        old: old_index,
        new: new_index,
        focused: filter.focus_workloads.is_empty()
            || filter.focus_workloads.iter().any(|f| node.matches_focus(f)),
        touched: touched.is_none_or(|t| t.contains(node)),
    };
    let mut members: Vec<Member<'n>> = old
        .index
        .iter()
        .map(|(&node, &i)| member(node, Some(i), new.index.get(node).copied()))
        .collect();
    members.extend(
        new.index
            .iter()
            .filter(|(node, _)| !old.index.contains_key(*node))
            .map(|(&node, &i)| member(node, None, Some(i))),
    );
    members
}

/// The pairs to compare, as positions in `members`: those with a side
/// touched (every pair when nothing narrows it) and a side focused.
fn pairs(members: &[Member<'_>]) -> Vec<(usize, usize)> {
    let touched: Vec<usize> = (0..members.len()).filter(|&i| members[i].touched).collect();
    let mut pairs = Vec::new();
    for &s in &touched {
        pairs.extend((0..members.len()).map(|t| (s, t)));
    }
    for s in (0..members.len()).filter(|&s| !members[s].touched) {
        pairs.extend(touched.iter().map(|&t| (s, t)));
    }
    pairs.retain(|&(s, t)| s != t && (members[s].focused || members[t].focused));
    pairs
}

/// A pair's connections as the filter sees them, borrowed unless the
/// filter narrows them: most pairs compare equal and are never copied.
fn restricted<'c>(
    c: Option<&'c ConnSet>,
    none: &'c ConnSet,
    filter: &MapFilter,
) -> Cow<'c, ConnSet> {
    match c {
        None => Cow::Borrowed(none),
        Some(c) if filter.protocol.is_some() || filter.port.is_some() => {
            Cow::Owned(c.restrict(filter.protocol, filter.port))
        }
        Some(c) => Cow::Borrowed(c),
    }
}

fn compare(
    old: &Side<'_>,
    new: &Side<'_>,
    touched: Option<&BTreeSet<Node>>,
    filter: &MapFilter,
) -> Vec<DiffEntry> {
    let members = members(old, new, touched, filter);
    let none = ConnSet::none();
    let restrict = |c| restricted(c, &none, filter);
    // roxctl's workloads-diff-info: on an added (removed) line, the
    // workloads that exist only in the new (old) inventory, in source then
    // destination order: "workload A and B added". External ranges are
    // never named.
    // Workloads on one side only, for the notes.
    let only_old: FxHashSet<&Node> = members
        .iter()
        .filter(|m| m.new.is_none())
        .map(|m| m.node)
        .collect();
    let only_new: FxHashSet<&Node> = members
        .iter()
        .filter(|m| m.old.is_none())
        .map(|m| m.node)
        .collect();
    let note = |src: &Node, dst: &Node, change: Change| -> Option<String> {
        let is_new = |n: &Node| match change {
            Change::Added => only_new.contains(n),
            Change::Removed => only_old.contains(n),
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
    for (s, t) in pairs(&members) {
        let (src, dst) = (&members[s], &members[t]);
        let before = restrict(old.conns(src.old, dst.old));
        let after = restrict(new.conns(src.new, dst.new));
        if before != after {
            let (before, after) = (before.into_owned(), after.into_owned());
            entries.extend(entry(
                src.node.clone(),
                dst.node.clone(),
                before,
                after,
                note,
            ));
        }
    }
    let externals = old.conns.externals();
    let ranges = externals.ranges();
    let shown = crate::map::shown_external_ranges(externals, filter.include_ipv6);
    for w in members.iter().filter(|m| m.touched && m.focused) {
        for outbound in [true, false] {
            // Group the external ranges by their (old, new) pair.
            let mut groups: BTreeMap<(ConnSet, ConnSet), Vec<IpRange>> = BTreeMap::new();
            for &x in &shown {
                let before = restrict(old.external(w.old, x, outbound));
                let after = restrict(new.external(w.new, x, outbound));
                if before != after {
                    let key = (before.into_owned(), after.into_owned());
                    push_range(groups.entry(key).or_default(), ranges[x]);
                }
            }
            // One entry per contiguous range, as roxctl prints them.
            for ((before, after), list) in groups {
                for range in list {
                    let ext = Node::External(vec![range]);
                    let (src, dst) = if outbound {
                        (w.node.clone(), ext)
                    } else {
                        (ext, w.node.clone())
                    };
                    entries.extend(entry(src, dst, before.clone(), after.clone(), note));
                }
            }
        }
    }
    sort_entries(entries)
}

/// Sorts entries by change, then source and destination as written.
/// Entries share few nodes among many, so each distinct node is written
/// once and ranked, instead of twice per entry.
fn sort_entries(entries: Vec<DiffEntry>) -> Vec<DiffEntry> {
    let keys: Vec<(Change, u32, u32)> = {
        let mut names: FxHashMap<&Node, String> = FxHashMap::default();
        for e in &entries {
            for node in [&e.src, &e.dst] {
                names.entry(node).or_insert_with(|| node.to_string());
            }
        }
        let mut by_name: Vec<(&str, &Node)> = names.iter().map(|(n, s)| (s.as_str(), *n)).collect();
        by_name.sort_unstable_by_key(|&(name, _)| name);
        // Equal names (never two nodes in practice) get equal ranks.
        let mut rank: FxHashMap<&Node, u32> = FxHashMap::default();
        let mut current = 0;
        for (i, &(name, node)) in by_name.iter().enumerate() {
            if i > 0 && by_name[i - 1].0 != name {
                current = i as u32;
            }
            rank.insert(node, current);
        }
        entries
            .iter()
            .map(|e| (e.change, rank[&e.src], rank[&e.dst]))
            .collect()
    };
    // The keys are sorted with their positions (stable, as the sort by
    // written names was), then each entry is moved once into its place:
    // entries are large, and a sort would move them many times.
    let mut order: Vec<(Change, u32, u32, usize)> = keys
        .into_iter()
        .enumerate()
        .map(|(i, (change, src, dst))| (change, src, dst, i))
        .collect();
    order.sort_unstable();
    let mut slots: Vec<Option<DiffEntry>> = entries.into_iter().map(Some).collect();
    order
        .into_iter()
        .filter_map(|(.., i)| slots[i].take())
        .collect()
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

/// The workloads of `namespace` whose connections can differ between two
/// states of it (`old` and `new` may hold other namespaces too; only this
/// one is compared): those whose pod template or addresses changed, that
/// appeared or vanished, that a changed policy selects before or after,
/// and all of them when the namespace's labels changed.
///
/// Every other pair keeps its connections: the connections of a pair
/// depend only on its two workloads (labels, named ports, addresses), the
/// labels of their namespaces, and the policies that select one of them,
/// which live in that one's namespace.
pub fn touched_in(
    old: &Inventory,
    new: &Inventory,
    namespace: &str,
    settings: &Settings,
) -> BTreeSet<Node> {
    let (before, after) = (workloads_in(old, namespace), workloads_in(new, namespace));
    let labels = |inv: &'_ Inventory| inv.namespace(namespace).map(|n| n.labels.clone());
    if labels(old) != labels(new) {
        return before.into_keys().chain(after.into_keys()).collect();
    }
    let mut touched: BTreeSet<Node> = before
        .iter()
        .filter(|(node, w)| {
            after
                .get(*node)
                .is_none_or(|a| a.template != w.template || !a.ips().eq(w.ips()))
        })
        .chain(after.iter().filter(|(node, _)| !before.contains_key(*node)))
        .map(|(node, _)| node.clone())
        .collect();
    let (old_policies, new_policies) = (policies_in(old, namespace), policies_in(new, namespace));
    let names: BTreeSet<&str> = old_policies
        .keys()
        .chain(new_policies.keys())
        .copied()
        .collect();
    for name in names {
        let (p, q) = (old_policies.get(name), new_policies.get(name));
        if p.zip(q).is_some_and(|(p, q)| same_rules(p, q)) {
            continue;
        }
        for (policy, side) in [(p, &before), (q, &after)] {
            let Some(policy) = policy else { continue };
            touched.extend(
                side.iter()
                    .filter(|(_, w)| crate::compiled::selects(settings, policy, w))
                    .map(|(node, _)| node.clone()),
            );
        }
    }
    touched
}

/// Whether two versions of a policy decide connectivity alike (their
/// source and annotations aside).
fn same_rules(p: &NetworkPolicy, q: &NetworkPolicy) -> bool {
    p.pod_selector == q.pod_selector
        && p.affects_ingress == q.affects_ingress
        && p.affects_egress == q.affects_egress
        && p.ingress == q.ingress
        && p.egress == q.egress
}

fn workloads_in<'i>(inventory: &'i Inventory, namespace: &str) -> BTreeMap<Node, &'i Workload> {
    inventory
        .workloads
        .iter()
        .filter(|w| w.namespace == namespace)
        .map(|w| (Node::workload(w), w))
        .collect()
}

fn policies_in<'i>(
    inventory: &'i Inventory,
    namespace: &str,
) -> BTreeMap<&'i str, &'i NetworkPolicy> {
    inventory
        .policies
        .iter()
        .filter(|p| p.namespace == namespace)
        .map(|p| (p.name.as_str(), p))
        .collect()
}
