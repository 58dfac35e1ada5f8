//! The compiled engine: all verdicts at once, as a matrix of interned
//! connection sets between workloads and the disjoint external ranges.
//!
//! A workload's template stands for all its pods, and pods that share
//! namespace, labels and named ports behave identically, so the unit of
//! computation is the workload, not the pod. Connection sets are interned:
//! a cluster has few distinct ones, so the matrices hold `u32` ids and set
//! operations are memoised.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use rustc_hash::FxHashMap;
use std::net::IpAddr;

use palisade_inventory::{
    Cidr, Direction, Inventory, IpRange, LabelSelector, NetworkPolicy, Peer, PodTemplate,
    PolicyPort, PortRef, Protocol, Rule, Workload,
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

    /// Whether a `Pods` peer's namespace part admits namespace `ns`: no
    /// selector means the policy's own namespace (`own`, an index too, so
    /// that the test compares no names).
    fn namespace_admits(
        &self,
        own: Option<usize>,
        namespace_selector: &Option<LabelSelector>,
        ns: usize,
    ) -> bool {
        match namespace_selector {
            None => own == Some(ns),
            Some(sel) => sel.matches(&self.inventory.namespaces[ns].labels),
        }
    }

    /// Whether a `Pods` peer's pod part admits workload `w` (hostNetwork
    /// pods only under the `pod` reading).
    fn pod_admits(&self, pod_selector: &Option<LabelSelector>, w: usize) -> bool {
        let t = &self.inventory.workloads[w].template;
        !self.settings.outside_policy(t)
            && pod_selector.as_ref().is_none_or(|s| s.matches(&t.labels))
    }

    /// Whether an ipBlock peer selects workload `w` by its pods' addresses
    /// (only when the plugin matches pod addresses at all).
    fn ip_block_admits(&self, cidr: &Cidr, except: &[Cidr], w: usize) -> bool {
        self.settings.ipblock_matches_pods && {
            let ips: Vec<IpAddr> = self.inventory.workloads[w].ips().collect();
            crate::reference::ip_block_covers(cidr, except, &ips)
        }
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
                    let own = self.namespace_index(&policy.namespace);
                    let namespaces: Vec<usize> = match namespace_selector {
                        None => own.into_iter().collect(),
                        Some(_) => (0..self.inventory.namespaces.len())
                            .filter(|&i| self.namespace_admits(own, namespace_selector, i))
                            .collect(),
                    };
                    for ns in namespaces {
                        workloads.extend(
                            self.workloads_in[ns]
                                .clone()
                                .filter(|&w| self.pod_admits(pod_selector, w)),
                        );
                    }
                }
                Peer::IpBlock { cidr, except } => {
                    externals.extend(self.externals.indices_in(cidr, except));
                    if self.settings.ipblock_matches_pods {
                        workloads.extend(
                            (0..self.inventory.workloads.len())
                                .filter(|&w| self.ip_block_admits(cidr, except, w)),
                        );
                    }
                }
            }
        }
        workloads.sort_unstable();
        workloads.dedup();
        externals.sort_unstable();
        externals.dedup();
        let fixed_ports = self.fixed_ports(&rule.ports);
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
        match rule.fixed_ports {
            Some(id) => id,
            None => self.ports_toward(rule.ports, dst),
        }
    }

    /// The ports, when no port is named: then they mean the same toward
    /// every destination and resolve once.
    fn fixed_ports(&mut self, ports: &[PolicyPort]) -> Option<ConnId> {
        let named = ports
            .iter()
            .any(|p| matches!(p.port, Some(PortRef::Name(_))));
        (!named).then(|| self.ports_toward(ports, None))
    }

    /// `ports` toward destination workload `dst` (None: external), interned.
    fn ports_toward(&mut self, ports: &[PolicyPort], dst: Option<usize>) -> ConnId {
        let template = dst.map(|d| &self.inventory.workloads[d].template);
        let set = resolve_ports(ports, template);
        self.table.intern(set)
    }

    fn compute(&mut self) -> (Vec<ConnId>, Vec<ConnId>) {
        let w_count = self.inventory.workloads.len();
        let x_count = self.externals.len();
        let policies = &self.inventory.policies;

        // Ingress, indexed [src * w_count + dst] with externals as sources
        // after the workloads.
        let mut ingress = vec![ALL; (w_count + x_count) * w_count];
        let Selections {
            selected: selections,
            isolated_in,
            isolated_out,
            egress_rules,
            ..
        } = self.select_anew(&mut SelectionCache::default());
        for w in (0..w_count).filter(|&w| isolated_in[w]) {
            for src in 0..w_count + x_count {
                ingress[src * w_count + w] = NONE;
            }
        }
        for (policy, selected) in policies.iter().zip(&selections) {
            if !policy.affects(Direction::Ingress) || selected.is_empty() {
                continue;
            }
            for rule in &policy.ingress {
                let compiled = self.compile_rule(policy, rule);
                for &dst in selected {
                    let conns = self.rule_ports(&compiled, Some(dst));
                    for src in rule_sources(&compiled, w_count, x_count) {
                        let cell = &mut ingress[src * w_count + dst];
                        *cell = self.table.union(*cell, conns);
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

/// The sources an ingress rule admits, as indices where the external
/// ranges follow the workloads: every one when it names no peer.
fn rule_sources<'c>(
    rule: &'c CompiledRule<'_>,
    w_count: usize,
    x_count: usize,
) -> impl Iterator<Item = usize> + 'c {
    let every = rule.all_peers.then_some(0..w_count + x_count);
    let named = (!rule.all_peers).then(|| {
        let externals = rule.externals.iter().map(move |&x| w_count + x);
        rule.workloads.iter().copied().chain(externals)
    });
    every
        .into_iter()
        .flatten()
        .chain(named.into_iter().flatten())
}

/// Which workloads each policy selects, and what that isolates.
struct Selections {
    /// Per policy, the workloads it selects.
    selected: Vec<Vec<usize>>,
    isolated_in: Vec<bool>,
    isolated_out: Vec<bool>,
    /// Per workload, the (policy, rule) egress rules that apply to it.
    egress_rules: Vec<Vec<(usize, usize)>>,
    /// Per workload, the policies that isolate its ingress.
    ingress_policies: Vec<Vec<usize>>,
    /// Per policy, the index of its namespace.
    policy_namespace: Vec<Option<usize>>,
}

/// Which workloads each policy selects, kept between the partial engines
/// of successive states of one cluster. A policy selects only in its own
/// namespace, so a change to one namespace leaves the selections of every
/// other valid: the holder invalidates the namespaces it changes (and
/// clears the cache when the settings change).
#[derive(Default)]
pub struct SelectionCache {
    /// By namespace, for each of its policies in the inventory's order:
    /// the selected workloads as offsets from the namespace's first
    /// workload.
    namespaces: FxHashMap<String, Vec<Vec<u32>>>,
    /// The whole selection of the last run, while nothing was invalidated
    /// since: two partial engines of one state share it.
    last: Option<Arc<Selections>>,
}

impl SelectionCache {
    pub fn invalidate(&mut self, namespace: &str) {
        self.namespaces.remove(namespace);
        self.last = None;
    }

    pub fn clear(&mut self) {
        self.namespaces.clear();
        self.last = None;
    }
}

/// Compiled rules by (policy, rule, is ingress), reused within one run.
type RuleCache<'a> = HashMap<(usize, usize, bool), CompiledRule<'a>>;

/// Whether `policy` selects `workload`: same namespace, its pod selector
/// matches, and (under the `node` reading) the pods are not on the host
/// network.
pub fn selects(settings: &Settings, policy: &NetworkPolicy, workload: &Workload) -> bool {
    workload.namespace == policy.namespace && selects_template(settings, policy, &workload.template)
}

/// [`selects`] for a pod template already known to be in the policy's
/// namespace.
fn selects_template(settings: &Settings, policy: &NetworkPolicy, template: &PodTemplate) -> bool {
    !settings.outside_policy(template) && policy.pod_selector.matches(&template.labels)
}

impl<'a> Builder<'a, '_> {
    fn select(&self, cache: &mut SelectionCache) -> Arc<Selections> {
        if let Some(last) = &cache.last {
            return Arc::clone(last);
        }
        let selections = Arc::new(self.select_anew(cache));
        cache.last = Some(Arc::clone(&selections));
        selections
    }

    fn select_anew(&self, cache: &mut SelectionCache) -> Selections {
        let w_count = self.inventory.workloads.len();
        let policies = &self.inventory.policies;
        let mut s = Selections {
            selected: Vec::with_capacity(policies.len()),
            isolated_in: vec![false; w_count],
            isolated_out: vec![false; w_count],
            egress_rules: vec![Vec::new(); w_count],
            ingress_policies: vec![Vec::new(); w_count],
            policy_namespace: Vec::with_capacity(policies.len()),
        };
        // Policies are sorted by namespace: each run of one namespace's
        // policies is looked up in the cache once.
        let mut start = 0;
        while start < policies.len() {
            let namespace = &policies[start].namespace;
            let end = start + policies[start..].partition_point(|p| &p.namespace == namespace);
            let ns = self.namespace_index(namespace);
            let selected = match ns {
                Some(ns) => self.selected_cached(cache, ns, &policies[start..end]),
                None => vec![Vec::new(); end - start],
            };
            for (pi, selected) in (start..end).zip(selected) {
                let policy = &policies[pi];
                for &w in &selected {
                    if policy.affects(Direction::Ingress) {
                        s.isolated_in[w] = true;
                        s.ingress_policies[w].push(pi);
                    }
                    if policy.affects(Direction::Egress) {
                        s.isolated_out[w] = true;
                        s.egress_rules[w].extend((0..policy.egress.len()).map(|r| (pi, r)));
                    }
                }
                s.policy_namespace.push(ns);
                s.selected.push(selected);
            }
            start = end;
        }
        s
    }

    /// The workloads each of `policies` (all of namespace `ns`, in the
    /// inventory's order) selects, from the cache when it knows them.
    fn selected_cached(
        &self,
        cache: &mut SelectionCache,
        ns: usize,
        policies: &[NetworkPolicy],
    ) -> Vec<Vec<usize>> {
        let range = self.workloads_in[ns].clone();
        let absolute = |offsets: &Vec<Vec<u32>>| {
            let each = |o: &Vec<u32>| o.iter().map(|&o| range.start + o as usize).collect();
            offsets.iter().map(each).collect()
        };
        // Looked up before inserting: a hit, the common case, copies no
        // names. A namespace's policies are the same, in the same order,
        // until the namespace is invalidated.
        let name = &self.inventory.namespaces[ns].name;
        if let Some(offsets) = cache.namespaces.get(name.as_str())
            && offsets.len() == policies.len()
        {
            return absolute(offsets);
        }
        let offsets: Vec<Vec<u32>> = policies
            .iter()
            .map(|policy| {
                range
                    .clone()
                    .filter(|&w| {
                        let template = &self.inventory.workloads[w].template;
                        selects_template(self.settings, policy, template)
                    })
                    .map(|w| (w - range.start) as u32)
                    .collect()
            })
            .collect();
        let selected = absolute(&offsets);
        cache.namespaces.insert(name.clone(), offsets);
        selected
    }

    /// Rule `ri` of policy `pi` in `direction`, compiled at most once per
    /// run (the caller puts it back into the cache).
    fn take_compiled(
        &mut self,
        cache: &mut RuleCache<'a>,
        pi: usize,
        ri: usize,
        direction: Direction,
    ) -> CompiledRule<'a> {
        let key = (pi, ri, direction == Direction::Ingress);
        cache.remove(&key).unwrap_or_else(|| {
            let policy = &self.inventory.policies[pi];
            self.compile_rule(policy, &policy.rules(direction)[ri])
        })
    }

    /// Which of `members` (workloads of namespace `ns`) a rule's peers
    /// admit, into `admitted`: the test [`Builder::compile_rule`] applies
    /// to every workload at once, with the namespace part decided once.
    fn admit(
        &self,
        own: Option<usize>,
        rule: &Rule,
        ns: usize,
        members: &[usize],
        admitted: &mut Vec<bool>,
    ) {
        admitted.clear();
        admitted.resize(members.len(), rule.peers.is_empty());
        for peer in &rule.peers {
            let admits = |w: usize| match peer {
                Peer::Pods { pod_selector, .. } => self.pod_admits(pod_selector, w),
                Peer::IpBlock { cidr, except } => self.ip_block_admits(cidr, except, w),
            };
            if let Peer::Pods {
                namespace_selector, ..
            } = peer
                && !self.namespace_admits(own, namespace_selector, ns)
            {
                continue;
            }
            for (a, &w) in admitted.iter_mut().zip(members) {
                *a = *a || admits(w);
            }
        }
    }

    /// For each workload `w` of `ws` and every workload `other`, the
    /// connections the rules of `direction` allow between `other` and `w`
    /// when `w` is the peer: ingress at each destination from source `w`,
    /// or egress from each source toward destination `w`. Workloads that
    /// no policy isolates in that direction get everything. One pass over
    /// the policies serves all of `ws`.
    fn as_peer(
        &mut self,
        ws: &[usize],
        sel: &Selections,
        direction: Direction,
    ) -> Vec<Vec<ConnId>> {
        let isolated = match direction {
            Direction::Ingress => &sel.isolated_in,
            Direction::Egress => &sel.isolated_out,
        };
        let base: Vec<ConnId> = isolated
            .iter()
            .map(|&i| if i { NONE } else { ALL })
            .collect();
        let mut out = vec![base; ws.len()];
        // Positions in `ws` by namespace, so that a peer's namespace
        // selector is matched once per namespace.
        let mut groups: BTreeMap<usize, (Vec<usize>, Vec<usize>)> = BTreeMap::new();
        for (i, &w) in ws.iter().enumerate() {
            let group = groups.entry(self.namespace_of[w]).or_default();
            group.0.push(w);
            group.1.push(i);
        }
        let mut admitted = Vec::new();
        let inventory = self.inventory;
        for (pi, policy) in inventory.policies.iter().enumerate() {
            if !policy.affects(direction) || sel.selected[pi].is_empty() {
                continue;
            }
            for rule in policy.rules(direction) {
                // Resolved when a member is first admitted: most rules
                // admit none.
                let mut fixed = None;
                for (&ns, (members, positions)) in &groups {
                    self.admit(sel.policy_namespace[pi], rule, ns, members, &mut admitted);
                    for (k, _) in admitted.iter().enumerate().filter(|(_, a)| **a) {
                        let fixed = *fixed.get_or_insert_with(|| self.fixed_ports(&rule.ports));
                        let (w, conns) = (members[k], &mut out[positions[k]]);
                        for &other in &sel.selected[pi] {
                            // Named ports resolve at the destination:
                            // `other` for ingress, `w` for egress.
                            let ports = match (fixed, direction) {
                                (Some(id), _) => id,
                                (None, Direction::Ingress) => {
                                    self.ports_toward(&rule.ports, Some(other))
                                }
                                (None, Direction::Egress) => {
                                    self.ports_toward(&rule.ports, Some(w))
                                }
                            };
                            conns[other] = self.table.union(conns[other], ports);
                        }
                    }
                }
            }
        }
        out
    }

    /// Rows of the matrix: from each workload of `ws` to every workload,
    /// then to every external range.
    fn rows(
        &mut self,
        ws: &[usize],
        sel: &Selections,
        cache: &mut RuleCache<'a>,
    ) -> Vec<Vec<ConnId>> {
        let w_count = self.inventory.workloads.len();
        let ingress = self.as_peer(ws, sel, Direction::Ingress);
        let mut rows = Vec::with_capacity(ws.len());
        for (&s, ingress) in ws.iter().zip(ingress) {
            let fill = if sel.isolated_out[s] { NONE } else { ALL };
            let mut row = vec![fill; w_count + self.externals.len()];
            for &(pi, ri) in &sel.egress_rules[s] {
                let compiled = self.take_compiled(cache, pi, ri, Direction::Egress);
                self.apply_egress_rule(&compiled, &mut row, w_count);
                cache.insert((pi, ri, false), compiled);
            }
            for (t, &at_t) in ingress.iter().enumerate() {
                row[t] = self.table.intersect(row[t], at_t);
            }
            rows.push(row);
        }
        rows
    }

    /// Columns of the matrix: into each workload of `ws` from every
    /// workload, then from every external range.
    fn columns(
        &mut self,
        ws: &[usize],
        sel: &Selections,
        cache: &mut RuleCache<'a>,
    ) -> Vec<Vec<ConnId>> {
        let w_count = self.inventory.workloads.len();
        let width = w_count + self.externals.len();
        let egress = self.as_peer(ws, sel, Direction::Egress);
        let mut columns = Vec::with_capacity(ws.len());
        for (&t, egress) in ws.iter().zip(egress) {
            let fill = if sel.isolated_in[t] { NONE } else { ALL };
            let mut column = vec![fill; width];
            for &pi in &sel.ingress_policies[t] {
                for ri in 0..self.inventory.policies[pi].ingress.len() {
                    let compiled = self.take_compiled(cache, pi, ri, Direction::Ingress);
                    let conns = self.rule_ports(&compiled, Some(t));
                    for src in rule_sources(&compiled, w_count, self.externals.len()) {
                        column[src] = self.table.union(column[src], conns);
                    }
                    cache.insert((pi, ri, true), compiled);
                }
            }
            for (s, &from_s) in egress.iter().enumerate() {
                column[s] = self.table.intersect(from_s, column[s]);
            }
            columns.push(column);
        }
        columns
    }
}

/// Connections between endpoints: what a diff compares, from a whole
/// engine or from a [`Partial`] one.
pub trait Conns {
    /// The connections from `src` to `dst`.
    fn conns(&self, src: EndpointRef, dst: EndpointRef) -> &ConnSet;
    fn externals(&self) -> &ExternalRanges;
}

impl Conns for Engine<'_> {
    fn conns(&self, src: EndpointRef, dst: EndpointRef) -> &ConnSet {
        Engine::conns(self, src, dst)
    }

    fn externals(&self) -> &ExternalRanges {
        Engine::externals(self)
    }
}

/// The engine's rows and columns for some workloads only: everything
/// those workloads may send and receive, computed without the rest of the
/// matrix. What the audit-trail timeline recomputes per change: one
/// workload's row and column cost one pass over the policies, where the
/// whole matrix costs one per workload.
pub struct Partial {
    externals: ExternalRanges,
    /// Rows and columns are computed apart (on two threads when the work
    /// is worth one), each interning its sets in its own table.
    row_table: ConnTable,
    column_table: ConnTable,
    workloads: usize,
    rows: FxHashMap<usize, Vec<ConnId>>,
    columns: FxHashMap<usize, Vec<ConnId>>,
}

impl Partial {
    /// The rows and columns of workloads `of` (indices into
    /// `inventory.workloads`), over the external space cut by the policies
    /// and `extra_cuts` (as [`Engine::with_extra_cuts`]).
    pub fn new(
        inventory: &Inventory,
        settings: &Settings,
        extra_cuts: &[IpRange],
        of: impl IntoIterator<Item = usize>,
    ) -> Partial {
        Partial::with_cache(
            inventory,
            settings,
            extra_cuts,
            of,
            &mut SelectionCache::default(),
        )
    }

    /// [`Partial::new`] with the policies' selections taken from `cache`
    /// where it has them, and kept there.
    pub fn with_cache(
        inventory: &Inventory,
        settings: &Settings,
        extra_cuts: &[IpRange],
        of: impl IntoIterator<Item = usize>,
        cache: &mut SelectionCache,
    ) -> Partial {
        let externals = ExternalRanges::from_policies(&inventory.policies, extra_cuts);
        let mut row_builder = Builder::new(inventory, settings, &externals);
        let sel = row_builder.select(cache);
        let of: Vec<usize> = of.into_iter().collect();
        let columns_of = || {
            let mut builder = Builder::new(inventory, settings, &externals);
            let columns = builder.columns(&of, &sel, &mut RuleCache::new());
            (columns, builder.table)
        };
        let (rows, (columns, column_table)) = std::thread::scope(|scope| {
            // The columns take as long as the rows, so a second thread
            // halves the wait; its tens of microseconds are small next to
            // even a one-workload namespace's rows over 10,000 workloads.
            let columns = scope.spawn(columns_of);
            let rows = row_builder.rows(&of, &sel, &mut RuleCache::new());
            let columns = columns
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (rows, columns)
        });
        Partial {
            workloads: inventory.workloads.len(),
            rows: of.iter().copied().zip(rows).collect(),
            columns: of.iter().copied().zip(columns).collect(),
            row_table: row_builder.table,
            column_table,
            externals,
        }
    }

    /// Which table holds the connections from `src` to `dst`, and their
    /// id there.
    fn conn_id(&self, src: EndpointRef, dst: EndpointRef) -> Option<(&ConnTable, ConnId)> {
        let w = self.workloads;
        let (rows, columns) = (&self.row_table, &self.column_table);
        match (src, dst) {
            (EndpointRef::Workload(s), EndpointRef::Workload(t)) => self
                .rows
                .get(&s)
                .map(|row| (rows, row[t]))
                .or_else(|| self.columns.get(&t).map(|column| (columns, column[s]))),
            (EndpointRef::Workload(s), EndpointRef::External(x)) => {
                self.rows.get(&s).map(|row| (rows, row[w + x]))
            }
            (EndpointRef::External(x), EndpointRef::Workload(t)) => {
                self.columns.get(&t).map(|column| (columns, column[w + x]))
            }
            (EndpointRef::External(_), EndpointRef::External(_)) => Some((rows, ALL)),
        }
    }
}

impl Conns for Partial {
    /// Pairs outside the computed rows and columns have no answer here;
    /// asking for one is a caller's bug, answered with no connections.
    fn conns(&self, src: EndpointRef, dst: EndpointRef) -> &ConnSet {
        let found = self.conn_id(src, dst);
        debug_assert!(found.is_some(), "{src:?} -> {dst:?} was not computed");
        let (table, id) = found.unwrap_or((&self.row_table, NONE));
        table.get(id)
    }

    fn externals(&self) -> &ExternalRanges {
        &self.externals
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
