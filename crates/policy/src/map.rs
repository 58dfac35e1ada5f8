//! The connectivity map: for every ordered pair of endpoints (workloads and
//! external ranges), the connections the policies allow.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use palisade_inventory::{Family, IpRange, Protocol, Workload};

use crate::compiled::{ConnId, EndpointRef, Engine, NONE};
use crate::conn::ConnSet;
use crate::external::ExternalRanges;

/// One side of a map entry.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Node {
    Workload {
        namespace: String,
        name: String,
        kind: String,
    },
    /// Address ranges that the policies treat alike toward the other side
    /// of the entry. Maps use one contiguous range per node, as roxctl does.
    External(Vec<IpRange>),
}

impl Node {
    pub fn workload(w: &Workload) -> Node {
        Node::Workload {
            namespace: w.namespace.clone(),
            name: w.name.clone(),
            kind: w.kind.as_str().to_string(),
        }
    }

    pub fn is_external(&self) -> bool {
        matches!(self, Node::External(_))
    }

    /// Whether `--focus-workload NAME` selects this node: `ns/name` or
    /// `name`, optionally with the `[Kind]` suffix.
    pub fn matches_focus(&self, focus: &str) -> bool {
        let Node::Workload {
            namespace,
            name,
            kind,
        } = self
        else {
            return false;
        };
        let focus = focus.strip_suffix(&format!("[{kind}]")).unwrap_or(focus);
        match focus.split_once('/') {
            Some((ns, n)) => ns == namespace && n == name,
            None => focus == name,
        }
    }
}

impl fmt::Display for Node {
    /// `ns/name[Kind]` and `a-b, c-d[External]`, as `roxctl netpol
    /// connectivity` writes them (a single address too is `a-a`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Node::Workload {
                namespace,
                name,
                kind,
            } => write!(f, "{namespace}/{name}[{kind}]"),
            Node::External(ranges) => {
                for (i, r) in ranges.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{}-{}", r.first(), r.last())?;
                }
                f.write_str("[External]")
            }
        }
    }
}

/// One line of the map, borrowing from it.
#[derive(Clone, Copy, Debug)]
pub struct MapEntry<'m> {
    pub src: &'m Node,
    pub dst: &'m Node,
    /// `src.to_string()`, computed once per node.
    pub src_name: &'m str,
    pub dst_name: &'m str,
    pub conn: &'m ConnSet,
}

/// Restrictions of a map to what the user asked about.
#[derive(Clone, Debug, Default)]
pub struct MapFilter {
    /// Keep entries with at least one side matching one of these.
    pub focus_workloads: Vec<String>,
    pub protocol: Option<Protocol>,
    pub port: Option<u16>,
    /// Leave out IPv6 external ranges no policy mentions (the whole `::/0`
    /// when no ipBlock is IPv6), to keep maps of IPv4 clusters short.
    pub include_ipv6: bool,
    /// Merge neighbouring external ranges that get the same connections
    /// into one line (shorter than roxctl's one line per cut range).
    pub merge_ranges: bool,
}

impl MapFilter {
    fn restricts_conns(&self) -> bool {
        self.protocol.is_some() || self.port.is_some()
    }
}

/// Nodes and connection sets are stored once and entries refer to them by
/// index: a large map has hundreds of thousands of entries but few distinct
/// connection sets.
#[derive(Clone, Debug, Default)]
pub struct ConnectivityMap {
    nodes: Vec<Node>,
    names: Vec<String>,
    conns: Vec<ConnSet>,
    /// (src node, dst node, conn), sorted by the names of src then dst.
    entries: Vec<(u32, u32, u32)>,
}

impl ConnectivityMap {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn entries(&self) -> impl ExactSizeIterator<Item = MapEntry<'_>> + '_ {
        self.entries.iter().map(|&(s, d, c)| MapEntry {
            src: &self.nodes[s as usize],
            dst: &self.nodes[d as usize],
            src_name: &self.names[s as usize],
            dst_name: &self.names[d as usize],
            conn: &self.conns[c as usize],
        })
    }

    pub fn from_engine(engine: &Engine<'_>, filter: &MapFilter) -> ConnectivityMap {
        let mut b = MapBuilder::new(engine, filter);
        let workloads = engine.inventory().workloads.len();
        let focused: Vec<bool> = (0..workloads)
            .map(|i| {
                filter.focus_workloads.is_empty()
                    || filter
                        .focus_workloads
                        .iter()
                        .any(|f| b.map.nodes[i].matches_focus(f))
            })
            .collect();
        for s in 0..workloads {
            for t in 0..workloads {
                // A workload's connections to itself are left out.
                if s != t && (focused[s] || focused[t]) {
                    let id = engine.conn_id(EndpointRef::Workload(s), EndpointRef::Workload(t));
                    b.push(s as u32, t as u32, id);
                }
            }
        }
        let lines = ExternalLines::new(engine, filter);
        for w in (0..workloads).filter(|&w| focused[w]) {
            let w_ref = EndpointRef::Workload(w);
            for (range, id) in lines.of(engine, false, |x| engine.conn_id(w_ref, x)) {
                let ext = b.external_node(vec![range]);
                b.push(w as u32, ext, id);
            }
            for (range, id) in lines.of(engine, true, |x| engine.conn_id(x, w_ref)) {
                let ext = b.external_node(vec![range]);
                b.push(ext, w as u32, id);
            }
        }
        b.finish()
    }
}

/// The external ranges a map prints, one line each: roxctl's cut per
/// direction ([`ExternalRanges::printed`]), or with `merge_ranges` the
/// maximal runs of the engine's ranges that get equal connections.
struct ExternalLines {
    shown: Vec<usize>,
    /// Whether IPv6 ranges are shown at all (decided once, not per line).
    shown_v6: bool,
    sources: ExternalRanges,
    destinations: ExternalRanges,
    merge: bool,
}

impl ExternalLines {
    fn new(engine: &Engine<'_>, filter: &MapFilter) -> ExternalLines {
        let policies = &engine.inventory().policies;
        let shown = shown_external_ranges(engine.externals(), filter.include_ipv6);
        let ranges = engine.externals().ranges();
        ExternalLines {
            shown_v6: shown.iter().any(|&x| ranges[x].family == Family::V6),
            shown,
            sources: ExternalRanges::printed(policies, true),
            destinations: ExternalRanges::printed(policies, false),
            merge: filter.merge_ranges,
        }
    }

    /// (range, connection) lines toward one workload; `inbound` when the
    /// range is the source. `conn_of` takes the engine's external endpoint.
    fn of(
        &self,
        engine: &Engine<'_>,
        inbound: bool,
        conn_of: impl Fn(EndpointRef) -> ConnId,
    ) -> Vec<(IpRange, ConnId)> {
        if self.merge {
            let groups = group_ranges(engine, &self.shown, |x| conn_of(EndpointRef::External(x)));
            return groups
                .into_iter()
                .flat_map(|(id, ranges)| ranges.into_iter().map(move |r| (r, id)))
                .collect();
        }
        let engine_ranges = engine.externals();
        let shown_v6 = self.shown_v6;
        let printed = if inbound {
            &self.sources
        } else {
            &self.destinations
        };
        printed
            .ranges()
            .iter()
            .filter(|r| r.family == Family::V4 || shown_v6)
            .map(|r| {
                let x = engine_ranges.index_of(r.first());
                (*r, conn_of(EndpointRef::External(x)))
            })
            .filter(|&(_, id)| id != NONE)
            .collect()
    }
}

struct MapBuilder<'e, 'a> {
    engine: &'e Engine<'a>,
    filter: &'e MapFilter,
    map: ConnectivityMap,
    /// Engine conn id → index in `map.conns` (None: empty after filtering).
    conn_index: HashMap<ConnId, Option<u32>>,
    external_nodes: HashMap<Vec<IpRange>, u32>,
}

impl<'e, 'a> MapBuilder<'e, 'a> {
    fn new(engine: &'e Engine<'a>, filter: &'e MapFilter) -> Self {
        let nodes: Vec<Node> = engine
            .inventory()
            .workloads
            .iter()
            .map(Node::workload)
            .collect();
        let names = nodes.iter().map(Node::to_string).collect();
        MapBuilder {
            engine,
            filter,
            map: ConnectivityMap {
                nodes,
                names,
                ..ConnectivityMap::default()
            },
            conn_index: HashMap::new(),
            external_nodes: HashMap::new(),
        }
    }

    fn external_node(&mut self, ranges: Vec<IpRange>) -> u32 {
        if let Some(&i) = self.external_nodes.get(&ranges) {
            return i;
        }
        let node = Node::External(ranges.clone());
        let i = self.map.nodes.len() as u32;
        self.map.names.push(node.to_string());
        self.map.nodes.push(node);
        self.external_nodes.insert(ranges, i);
        i
    }

    fn push(&mut self, src: u32, dst: u32, id: ConnId) {
        if id == NONE {
            return;
        }
        let (engine, filter, conns) = (self.engine, self.filter, &mut self.map.conns);
        let index = *self.conn_index.entry(id).or_insert_with(|| {
            let set = engine.conn_set(id);
            let set = if filter.restricts_conns() {
                set.restrict(filter.protocol, filter.port)
            } else {
                set.clone()
            };
            (!set.is_empty()).then(|| {
                conns.push(set);
                (conns.len() - 1) as u32
            })
        });
        if let Some(c) = index {
            self.map.entries.push((src, dst, c));
        }
    }

    /// Sorts entries by node names, ranking each name once.
    fn finish(mut self) -> ConnectivityMap {
        let mut order: Vec<u32> = (0..self.map.nodes.len() as u32).collect();
        order.sort_by(|&a, &b| self.map.names[a as usize].cmp(&self.map.names[b as usize]));
        let mut rank = vec![0u32; order.len()];
        for (r, &node) in order.iter().enumerate() {
            rank[node as usize] = r as u32;
        }
        self.map
            .entries
            .sort_unstable_by_key(|&(s, d, _)| (rank[s as usize], rank[d as usize]));
        self.map
    }
}

/// External range indices to show: IPv4 always; IPv6 when asked or when
/// some policy cuts the IPv6 space (otherwise it is one uninteresting
/// `::/0` range that would double every line about the outside).
pub(crate) fn shown_external_ranges(externals: &ExternalRanges, include_ipv6: bool) -> Vec<usize> {
    let ranges = externals.ranges();
    let v6_cut = ranges.iter().filter(|r| r.family == Family::V6).count() > 1;
    (0..ranges.len())
        .filter(|&x| ranges[x].family == Family::V4 || include_ipv6 || v6_cut)
        .collect()
}

/// Groups external ranges by the connection set they get, merging adjacent
/// ranges into maximal contiguous ones; groups with no connection are
/// dropped.
fn group_ranges(
    engine: &Engine<'_>,
    shown: &[usize],
    conn_of: impl Fn(usize) -> ConnId,
) -> BTreeMap<ConnId, Vec<IpRange>> {
    let ranges = engine.externals().ranges();
    let mut groups: BTreeMap<ConnId, Vec<IpRange>> = BTreeMap::new();
    for &x in shown {
        let id = conn_of(x);
        if id == NONE {
            continue;
        }
        let list = groups.entry(id).or_default();
        let r = ranges[x];
        match list.last_mut() {
            Some(last) if last.family == r.family && last.end.checked_add(1) == Some(r.start) => {
                last.end = r.end;
            }
            _ => list.push(r),
        }
    }
    groups
}
