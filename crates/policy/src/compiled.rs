//! The compiled engine: all verdicts at once, as a matrix of interned
//! connection sets between workloads and the disjoint external ranges.
//!
//! A workload's template stands for all its pods, and pods that share
//! namespace, labels and named ports behave identically, so the unit of
//! computation is the workload, not the pod. Connection sets are interned:
//! a cluster has few distinct ones, so the matrices hold `u32` ids and set
//! operations are memoised.

use std::collections::HashMap;

use rustc_hash::FxHashMap;
use std::net::IpAddr;

use palisade_inventory::{
    Direction, Inventory, IpRange, NetworkPolicy, Peer, PolicyPort, PortRef, Protocol, Rule,
    Workload,
};

use crate::Settings;
use crate::conn::ConnSet;
use crate::external::ExternalRanges;

pub type ConnId = u32;
pub const NONE: ConnId = 0;
pub const ALL: ConnId = 1;

/// Interned connection sets with memoised union and intersection.
/// FxHash: the keys are small ids and short range lists, hashed millions
/// of times while a large cluster compiles, and never chosen by an attacker
/// in a way that matters (the input is the user's own manifests).
pub struct ConnTable {
    sets: Vec<ConnSet>,
    ids: FxHashMap<ConnSet, ConnId>,
    unions: FxHashMap<(ConnId, ConnId), ConnId>,
    intersections: FxHashMap<(ConnId, ConnId), ConnId>,
}

impl Default for ConnTable {
    fn default() -> Self {
        let mut t = ConnTable {
            sets: Vec::new(),
            ids: FxHashMap::default(),
            unions: FxHashMap::default(),
            intersections: FxHashMap::default(),
        };
        t.intern(ConnSet::none());
        t.intern(ConnSet::all());
        t
    }
}

impl ConnTable {
    pub fn intern(&mut self, set: ConnSet) -> ConnId {
        if let Some(&id) = self.ids.get(&set) {
            return id;
        }
        let id = self.sets.len() as ConnId;
        self.sets.push(set.clone());
        self.ids.insert(set, id);
        id
    }

    pub fn get(&self, id: ConnId) -> &ConnSet {
        &self.sets[id as usize]
    }

    pub fn union(&mut self, a: ConnId, b: ConnId) -> ConnId {
        if a == b || b == NONE || a == ALL {
            return a;
        }
        if a == NONE || b == ALL {
            return b;
        }
        self.memoised(Op::Union, a, b)
    }

    pub fn intersect(&mut self, a: ConnId, b: ConnId) -> ConnId {
        if a == b || b == ALL || a == NONE {
            return a;
        }
        if a == ALL || b == NONE {
            return b;
        }
        self.memoised(Op::Intersection, a, b)
    }

    /// Both operations are commutative, so the memo key is ordered.
    fn memoised(&mut self, op: Op, a: ConnId, b: ConnId) -> ConnId {
        let key = (a.min(b), a.max(b));
        let memo = match op {
            Op::Union => &self.unions,
            Op::Intersection => &self.intersections,
        };
        if let Some(&id) = memo.get(&key) {
            return id;
        }
        let (x, y) = (self.get(a), self.get(b));
        let set = match op {
            Op::Union => x.union(y),
            Op::Intersection => x.intersect(y),
        };
        let id = self.intern(set);
        match op {
            Op::Union => self.unions.insert(key, id),
            Op::Intersection => self.intersections.insert(key, id),
        };
        id
    }
}

#[derive(Clone, Copy)]
enum Op {
    Union,
    Intersection,
}

/// An endpoint of the compiled engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EndpointRef {
    /// Index into `Inventory::workloads`.
    Workload(usize),
    /// Index into [`ExternalRanges::ranges`].
    External(usize),
}

/// A rule with its peers resolved to endpoint indices.
struct CompiledRule<'a> {
    all_peers: bool,
    workloads: Vec<usize>,
    externals: Vec<usize>,
    ports: &'a [PolicyPort],
    /// Set when no port is named, so the ports mean the same for every
    /// destination.
    fixed_ports: Option<ConnId>,
}

pub struct Engine<'a> {
    inventory: &'a Inventory,
    externals: ExternalRanges,
    table: ConnTable,
    /// `allowed[s * width + t]`, where `width` is workloads + externals and
    /// columns past the workloads are external ranges (egress to outside).
    allowed: Vec<ConnId>,
    /// `from_external[x * workloads + t]`: ingress from external range x.
    from_external: Vec<ConnId>,
    ip_to_workload: HashMap<IpAddr, usize>,
    namespace_of: Vec<usize>,
}

impl<'a> Engine<'a> {
    pub fn new(inventory: &'a Inventory, settings: &Settings) -> Engine<'a> {
        Engine::with_extra_cuts(inventory, settings, &[])
    }

    /// Like [`Engine::new`], with the external space also cut at the given
    /// ranges (so that two inventories can be compared range by range).
    pub fn with_extra_cuts(
        inventory: &'a Inventory,
        settings: &Settings,
        extra_cuts: &[IpRange],
    ) -> Engine<'a> {
        let externals = ExternalRanges::from_policies(&inventory.policies, extra_cuts);
        let mut builder = Builder::new(inventory, settings, &externals);
        let (allowed, from_external) = builder.compute();
        let table = builder.table;
        let namespace_of = builder.namespace_of;
        let mut ip_to_workload = HashMap::new();
        for (i, w) in inventory.workloads.iter().enumerate() {
            for ip in w.ips() {
                ip_to_workload.entry(ip).or_insert(i);
            }
        }
        Engine {
            inventory,
            externals,
            table,
            allowed,
            from_external,
            ip_to_workload,
            namespace_of,
        }
    }

    pub fn inventory(&self) -> &'a Inventory {
        self.inventory
    }

    pub fn externals(&self) -> &ExternalRanges {
        &self.externals
    }

    fn width(&self) -> usize {
        self.inventory.workloads.len() + self.externals.len()
    }

    /// The interned id of the connections allowed from `src` to `dst`.
    pub fn conn_id(&self, src: EndpointRef, dst: EndpointRef) -> ConnId {
        let workloads = self.inventory.workloads.len();
        match (src, dst) {
            (EndpointRef::Workload(s), EndpointRef::Workload(t)) => {
                self.allowed[s * self.width() + t]
            }
            (EndpointRef::Workload(s), EndpointRef::External(x)) => {
                self.allowed[s * self.width() + workloads + x]
            }
            (EndpointRef::External(x), EndpointRef::Workload(t)) => {
                self.from_external[x * workloads + t]
            }
            // Traffic between two outside addresses is not governed.
            (EndpointRef::External(_), EndpointRef::External(_)) => ALL,
        }
    }

    pub fn conn_set(&self, id: ConnId) -> &ConnSet {
        self.table.get(id)
    }

    pub fn conns(&self, src: EndpointRef, dst: EndpointRef) -> &ConnSet {
        self.table.get(self.conn_id(src, dst))
    }

    /// The single verdict: is `src → dst` on `protocol`/`port` allowed?
    pub fn allowed(
        &self,
        src: EndpointRef,
        dst: EndpointRef,
        protocol: Protocol,
        port: u16,
    ) -> bool {
        match self.conn_id(src, dst) {
            ALL => true,
            NONE => false,
            id => self.table.get(id).contains(protocol, port),
        }
    }

    /// A pod IP resolves to its workload; anything else to its external range.
    pub fn endpoint_of_ip(&self, ip: IpAddr) -> EndpointRef {
        match self.ip_to_workload.get(&ip) {
            Some(&w) => EndpointRef::Workload(w),
            None => EndpointRef::External(self.externals.index_of(ip)),
        }
    }

    pub fn workload(&self, index: usize) -> &'a Workload {
        &self.inventory.workloads[index]
    }

    /// Index into `Inventory::namespaces` of a workload's namespace.
    pub fn namespace_index(&self, workload: usize) -> usize {
        self.namespace_of[workload]
    }

    pub fn distinct_conn_sets(&self) -> usize {
        self.table.sets.len()
    }
}

/// The state of one compilation.
struct Builder<'a, 'e> {
    inventory: &'a Inventory,
    settings: &'a Settings,
    externals: &'e ExternalRanges,
    table: ConnTable,
    /// Per workload, its namespace's index in `inventory.namespaces`.
    namespace_of: Vec<usize>,
    /// Per namespace index, the range of workload indices (workloads are
    /// sorted by namespace).
    workloads_in: Vec<std::ops::Range<usize>>,
}

impl<'a, 'e> Builder<'a, 'e> {
    fn new(
        inventory: &'a Inventory,
        settings: &'a Settings,
        externals: &'e ExternalRanges,
    ) -> Self {
        let namespace_of: Vec<usize> = inventory
            .workloads
            .iter()
            .map(|w| {
                // Every workload's namespace is in the inventory by
                // construction (referenced namespaces are added).
                inventory
                    .namespaces
                    .binary_search_by(|n| n.name.as_str().cmp(&w.namespace))
                    .unwrap_or(0)
            })
            .collect();
        let mut workloads_in = vec![0..0; inventory.namespaces.len()];
        for (i, &ns) in namespace_of.iter().enumerate() {
            let r = &mut workloads_in[ns];
            if r.start == r.end {
                *r = i..i + 1;
            } else {
                r.end = i + 1;
            }
        }
        Builder {
            inventory,
            settings,
            externals,
            table: ConnTable::default(),
            namespace_of,
            workloads_in,
        }
    }

    fn namespace_index(&self, name: &str) -> Option<usize> {
        self.inventory
            .namespaces
            .binary_search_by(|n| n.name.as_str().cmp(name))
            .ok()
    }

    /// Workloads a policy selects (hostNetwork ones only under the `pod`
    /// reading).
    fn selected(&self, policy: &NetworkPolicy) -> Vec<usize> {
        let Some(ns) = self.namespace_index(&policy.namespace) else {
            return Vec::new();
        };
        self.workloads_in[ns]
            .clone()
            .filter(|&w| {
                let t = &self.inventory.workloads[w].template;
                !self.settings.outside_policy(t) && policy.pod_selector.matches(&t.labels)
            })
            .collect()
    }

    fn compile_rule<'r>(&mut self, policy: &NetworkPolicy, rule: &'r Rule) -> CompiledRule<'r> {
        let mut workloads = Vec::new();
        let mut externals = Vec::new();
        for peer in &rule.peers {
            match peer {
                Peer::Pods {
                    namespace_selector,
                    pod_selector,
                } => {
                    let namespaces: Vec<usize> = match namespace_selector {
                        None => self
                            .namespace_index(&policy.namespace)
                            .into_iter()
                            .collect(),
                        Some(sel) => (0..self.inventory.namespaces.len())
                            .filter(|&i| sel.matches(&self.inventory.namespaces[i].labels))
                            .collect(),
                    };
                    for ns in namespaces {
                        workloads.extend(self.workloads_in[ns].clone().filter(|&w| {
                            let t = &self.inventory.workloads[w].template;
                            !self.settings.outside_policy(t)
                                && pod_selector.as_ref().is_none_or(|s| s.matches(&t.labels))
                        }));
                    }
                }
                Peer::IpBlock { cidr, except } => {
                    externals.extend(self.externals.indices_in(cidr, except));
                    if self.settings.ipblock_matches_pods {
                        workloads.extend(self.inventory.workloads.iter().enumerate().filter_map(
                            |(i, w)| {
                                let ips: Vec<IpAddr> = w.ips().collect();
                                crate::reference::ip_block_covers(cidr, except, &ips).then_some(i)
                            },
                        ));
                    }
                }
            }
        }
        workloads.sort_unstable();
        workloads.dedup();
        externals.sort_unstable();
        externals.dedup();
        let named = rule
            .ports
            .iter()
            .any(|p| matches!(p.port, Some(PortRef::Name(_))));
        let fixed_ports = (!named).then(|| {
            let set = resolve_ports(&rule.ports, None);
            self.table.intern(set)
        });
        CompiledRule {
            all_peers: rule.peers.is_empty(),
            workloads,
            externals,
            ports: &rule.ports,
            fixed_ports,
        }
    }

    /// The rule's ports toward destination workload `dst` (None: external).
    fn rule_ports(&mut self, rule: &CompiledRule<'_>, dst: Option<usize>) -> ConnId {
        if let Some(id) = rule.fixed_ports {
            return id;
        }
        let template = dst.map(|d| &self.inventory.workloads[d].template);
        let set = resolve_ports(rule.ports, template);
        self.table.intern(set)
    }

    fn compute(&mut self) -> (Vec<ConnId>, Vec<ConnId>) {
        let w_count = self.inventory.workloads.len();
        let x_count = self.externals.len();
        let policies = &self.inventory.policies;

        // Ingress, indexed [src * w_count + dst] with externals as sources
        // after the workloads.
        let mut ingress = vec![ALL; (w_count + x_count) * w_count];
        let mut isolated_in = vec![false; w_count];
        let mut egress_rules: Vec<Vec<(usize, usize)>> = vec![Vec::new(); w_count];
        let mut isolated_out = vec![false; w_count];
        let mut selections = Vec::with_capacity(policies.len());
        for (pi, policy) in policies.iter().enumerate() {
            let selected = self.selected(policy);
            for &w in &selected {
                if policy.affects(Direction::Ingress) && !isolated_in[w] {
                    isolated_in[w] = true;
                    for src in 0..w_count + x_count {
                        ingress[src * w_count + w] = NONE;
                    }
                }
                if policy.affects(Direction::Egress) {
                    isolated_out[w] = true;
                    egress_rules[w].extend((0..policy.egress.len()).map(|r| (pi, r)));
                }
            }
            selections.push(selected);
        }
        for (policy, selected) in policies.iter().zip(&selections) {
            if !policy.affects(Direction::Ingress) || selected.is_empty() {
                continue;
            }
            for rule in &policy.ingress {
                let compiled = self.compile_rule(policy, rule);
                for &dst in selected {
                    let conns = self.rule_ports(&compiled, Some(dst));
                    let mut add = |src: usize, table: &mut ConnTable| {
                        let cell = &mut ingress[src * w_count + dst];
                        *cell = table.union(*cell, conns);
                    };
                    if compiled.all_peers {
                        (0..w_count + x_count).for_each(|s| add(s, &mut self.table));
                    } else {
                        compiled
                            .workloads
                            .iter()
                            .for_each(|&s| add(s, &mut self.table));
                        compiled
                            .externals
                            .iter()
                            .for_each(|&x| add(w_count + x, &mut self.table));
                    }
                }
            }
        }

        // Egress row by row, intersected with ingress on the fly.
        let width = w_count + x_count;
        let mut allowed = vec![NONE; w_count * width];
        let mut row = vec![ALL; width];
        let mut compiled_cache: HashMap<(usize, usize), CompiledRule<'a>> = HashMap::new();
        for src in 0..w_count {
            let fill = if isolated_out[src] { NONE } else { ALL };
            row.iter_mut().for_each(|c| *c = fill);
            for &(pi, ri) in &egress_rules[src] {
                let policy = &policies[pi];
                let compiled = compiled_cache
                    .remove(&(pi, ri))
                    .unwrap_or_else(|| self.compile_rule(policy, &policy.egress[ri]));
                self.apply_egress_rule(&compiled, &mut row, w_count);
                compiled_cache.insert((pi, ri), compiled);
            }
            for dst in 0..w_count {
                allowed[src * width + dst] =
                    self.table.intersect(row[dst], ingress[src * w_count + dst]);
            }
            allowed[src * width + w_count..(src + 1) * width].copy_from_slice(&row[w_count..]);
        }
        let from_external = ingress.split_off(w_count * w_count);
        (allowed, from_external)
    }

    fn apply_egress_rule(&mut self, rule: &CompiledRule<'_>, row: &mut [ConnId], w_count: usize) {
        let mut add = |col: usize, conns: ConnId, table: &mut ConnTable| {
            row[col] = table.union(row[col], conns);
        };
        if rule.all_peers {
            for dst in 0..w_count {
                let conns = self.rule_ports(rule, Some(dst));
                add(dst, conns, &mut self.table);
            }
            let conns = self.rule_ports(rule, None);
            for x in 0..self.externals.len() {
                add(w_count + x, conns, &mut self.table);
            }
            return;
        }
        for &dst in &rule.workloads {
            let conns = self.rule_ports(rule, Some(dst));
            add(dst, conns, &mut self.table);
        }
        if !rule.externals.is_empty() {
            let conns = self.rule_ports(rule, None);
            for &x in &rule.externals {
                add(w_count + x, conns, &mut self.table);
            }
        }
    }
}

/// A rule's `ports` as a connection set toward a destination whose pod
/// template is given (`None` for an external address, where names resolve
/// to nothing). An empty list means all connections.
pub fn resolve_ports(
    ports: &[PolicyPort],
    destination: Option<&palisade_inventory::PodTemplate>,
) -> ConnSet {
    if ports.is_empty() {
        return ConnSet::all();
    }
    let mut set = ConnSet::none();
    for p in ports {
        match (&p.port, p.end_port) {
            (None, _) => set = set.union(&ConnSet::protocol_all(p.protocol)),
            (Some(PortRef::Number(n)), end) => set.add(p.protocol, *n, end.unwrap_or(*n)),
            (Some(PortRef::Name(name)), _) => {
                for n in destination
                    .map(|t| t.named_port(name, p.protocol))
                    .unwrap_or_default()
                {
                    set.add(p.protocol, n, n);
                }
            }
        }
    }
    set
}
