//! Policy verification: each observed connection is judged by the engine
//! and classified; connections that matter become alerts, grouped so that a
//! thousand identical denied attempts are one alert with a count.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Mutex;

use palisade_flow::{Flow, Outcome, Transport};
use palisade_inventory::{Inventory, Protocol};
use palisade_policy::endpoint::{Resolved, decide};
use palisade_policy::reference::Decision;
use palisade_policy::{EndpointRef, Engine, Settings};
use rustc_hash::FxHashMap;
use serde::Serialize;

use crate::alert::{Alert, Class, Evidence, MAX_RECORDS, Rule, rfc3339};
use crate::describe::describe_place;
use crate::resolve::{Place, Resolver};

/// A flow with its endpoints resolved and its class decided; what the
/// other detectors (baseline, scans) consume.
#[derive(Clone, Debug)]
pub struct Judged {
    pub src: Place,
    pub dst: Place,
    pub class: Class,
    /// The destination port the policy was evaluated on (a Service's
    /// target port when the flow went to a VIP).
    pub port: Option<u16>,
    /// Why the class is what it is, when that is not obvious.
    pub note: Option<String>,
}

/// Counts per class, overall and per namespace.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    /// Flow records judged.
    pub flows: u64,
    /// Connections they stand for (Calico records aggregate several).
    pub connections: u64,
    pub by_class: BTreeMap<Class, u64>,
    /// Connections per namespace (as source or destination) and class.
    pub by_namespace: BTreeMap<String, BTreeMap<Class, u64>>,
}

/// Identifies a group of alike connections: same class, same endpoints at
/// workload level, same protocol and destination port.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum EndpointKey {
    Workload(usize),
    Node(IpAddr),
    Service(usize),
    External(IpAddr),
    Unknown(Option<IpAddr>, String),
}

type GroupKey = (Class, EndpointKey, EndpointKey, Transport, Option<u16>);

struct Group {
    judged: Judged,
    first: Flow,
    records: Vec<palisade_flow::RecordRef>,
    connections: u64,
    first_seen: Option<i64>,
    last_seen: Option<i64>,
}

/// Judges flows: resolves their endpoints and asks the engine. It only
/// reads the inventory and the engine, so the threads that parse flows can
/// share it (`flows verify` judges on them).
pub struct Judge<'a> {
    engine: &'a Engine<'a>,
    resolver: Resolver<'a>,
    settings: Settings,
    /// Whether the source's egress side alone allows a connection (the
    /// compiled engine answers for both sides together), by endpoints,
    /// transport and port. Asked only of denied flows recorded at their
    /// source, so the lock is rarely taken.
    egress_verdicts: Mutex<EgressVerdicts>,
}

type EgressVerdicts = FxHashMap<(EndpointKey, EndpointKey, Transport, u16), bool>;

/// Judged flows counted, and those that matter grouped into alerts.
#[derive(Default)]
pub struct Tally {
    groups: FxHashMap<GroupKey, Group>,
    summary: Summary,
}

/// A [`Judge`] and a [`Tally`]: judges each flow and counts it.
pub struct Verifier<'a> {
    judge: Judge<'a>,
    tally: Tally,
}

impl<'a> Verifier<'a> {
    pub fn new(engine: &'a Engine<'a>, resolver: Resolver<'a>, settings: Settings) -> Verifier<'a> {
        Verifier {
            judge: Judge {
                engine,
                resolver,
                settings,
                egress_verdicts: Mutex::default(),
            },
            tally: Tally::default(),
        }
    }

    pub fn resolver(&self) -> &Resolver<'a> {
        &self.judge.resolver
    }

    /// Judges one flow, counts it, and keeps it for an alert if it matters.
    pub fn verify(&mut self, flow: &Flow) -> Judged {
        let judged = self.judge.judge(flow);
        self.tally
            .record(self.judge.resolver.inventory(), flow, &judged);
        judged
    }

    /// Classifies without recording anything.
    pub fn judge(&self, flow: &Flow) -> Judged {
        self.judge.judge(flow)
    }

    /// The judge, to share with other threads, and the tally, to record
    /// what they judged with [`Tally::record`].
    pub fn split(&mut self) -> (&Judge<'a>, &mut Tally) {
        (&self.judge, &mut self.tally)
    }

    /// The summary and the alerts, most severe first, then by time.
    pub fn finish(self) -> (Summary, Vec<Alert>) {
        let Verifier { judge, tally } = self;
        // On every core: an alert's explanation is the reference
        // evaluator's decision, tens of microseconds each, and a large
        // input has thousands of alerts (in the groups' order either way).
        let groups: Vec<_> = tally.groups.into_values().collect();
        let mut alerts = palisade_inventory::parallel::map_in_order(groups, 32, |g| {
            self_alert(judge.engine, &judge.settings, g)
        });
        sort_alerts(&mut alerts);
        (tally.summary, alerts)
    }
}

impl Tally {
    /// Counts a judged flow, and keeps it for an alert if it matters.
    pub fn record(&mut self, inventory: &Inventory, flow: &Flow, judged: &Judged) {
        self.count(inventory, flow, judged);
        if judged.class != Class::Allowed {
            self.remember(flow, judged);
        }
    }

    fn count(&mut self, inventory: &Inventory, flow: &Flow, judged: &Judged) {
        let n = flow.connections.max(1);
        let summary = &mut self.summary;
        summary.flows += 1;
        summary.connections += n;
        *summary.by_class.entry(judged.class).or_insert(0) += n;
        let src_ns = namespace_of(inventory, &judged.src);
        let dst_ns = namespace_of(inventory, &judged.dst);
        for ns in [src_ns, dst_ns.filter(|d| Some(*d) != src_ns)]
            .into_iter()
            .flatten()
        {
            let per_class = match summary.by_namespace.get_mut(ns) {
                Some(m) => m,
                None => summary.by_namespace.entry(ns.to_string()).or_default(),
            };
            *per_class.entry(judged.class).or_insert(0) += n;
        }
    }

    fn remember(&mut self, flow: &Flow, judged: &Judged) {
        let key = (
            judged.class,
            endpoint_key(&judged.src, flow.src.ip),
            endpoint_key(&judged.dst, flow.dst.ip),
            flow.transport,
            judged.port,
        );
        let group = self.groups.entry(key).or_insert_with(|| Group {
            judged: judged.clone(),
            first: flow.clone(),
            records: Vec::new(),
            connections: 0,
            first_seen: flow.first_seen,
            last_seen: flow.last_seen,
        });
        group.connections += flow.connections.max(1);
        if group.records.len() < MAX_RECORDS {
            group.records.push(flow.evidence.clone());
        }
        group.first_seen = min_time(group.first_seen, flow.first_seen);
        group.last_seen = max_time(group.last_seen, flow.last_seen.or(flow.first_seen));
    }
}

impl<'a> Judge<'a> {
    pub fn resolver(&self) -> &Resolver<'a> {
        &self.resolver
    }

    /// The alert one judged flow raises alone, as `flows verify` would
    /// word it: what the node agent sends the moment it sees the flow.
    /// `None` for an allowed flow.
    pub fn alert(&self, flow: &Flow, judged: &Judged) -> Option<Alert> {
        if judged.class == Class::Allowed {
            return None;
        }
        let group = Group {
            judged: judged.clone(),
            first: flow.clone(),
            records: vec![flow.evidence.clone()],
            connections: flow.connections.max(1),
            first_seen: flow.first_seen,
            last_seen: flow.last_seen.or(flow.first_seen),
        };
        Some(self_alert(self.engine, &self.settings, group))
    }

    /// Classifies without recording anything.
    pub fn judge(&self, flow: &Flow) -> Judged {
        let src = self.resolver.resolve(&flow.src);
        let dst = self.resolver.resolve(&flow.dst);
        let port = flow.dst.port;
        let verdict = if reported_from_own_node(flow, &src, &dst) {
            Ok(PolicyVerdict::allowed(port, OWN_NODE))
        } else {
            self.policy_allows(&src, &dst, flow.transport, port)
        };
        match verdict {
            Err(reason) => Judged {
                src,
                dst,
                class: Class::Unresolved,
                port,
                note: Some(reason),
            },
            Ok(verdict) => {
                let (allowed, side_note) = self.allowed_where_observed(flow, &src, &dst, &verdict);
                let (class, note) = classify(allowed, flow, &dst);
                let note = note.or(side_note);
                Judged {
                    src,
                    dst,
                    class,
                    port: verdict.port,
                    note: note.or(verdict.note),
                }
            }
        }
    }

    /// The policy verdict for the part of the path the record speaks for.
    ///
    /// A record made at the source (Hubble `traffic_direction` EGRESS,
    /// Calico `reporter` src) of traffic that drew no reply only shows what
    /// the source's egress did: the destination's ingress policy is applied
    /// on the destination's node, which writes its own record. Judging such
    /// a record by both sides would call every connection that the
    /// destination rightly drops a bypass. A reply (or a record made at the
    /// destination, or a capture) shows the whole path.
    fn allowed_where_observed(
        &self,
        flow: &Flow,
        src: &Place,
        dst: &Place,
        verdict: &PolicyVerdict,
    ) -> (bool, Option<String>) {
        if verdict.allowed || !flow.shows_source_side_only() {
            return (verdict.allowed, None);
        }
        match self.egress_allows(flow, src, dst, verdict.port) {
            Some(true) => (
                true,
                Some(
                    "recorded at the source, whose egress allows it; the destination's ingress \
                     denies it, and the destination's own record shows whether it held"
                        .to_string(),
                ),
            ),
            _ => (false, None),
        }
    }

    /// Whether the source's egress policies alone allow the connection
    /// (`None` when the reference evaluator cannot say: no port, ICMP).
    fn egress_allows(
        &self,
        flow: &Flow,
        src: &Place,
        dst: &Place,
        port: Option<u16>,
    ) -> Option<bool> {
        let protocol = flow.transport.policy_protocol()?;
        let port = port?;
        let key = (
            endpoint_key(src, flow.src.ip),
            endpoint_key(dst, flow.dst.ip),
            flow.transport,
            port,
        );
        if let Some(&allowed) = self.egress_cache().get(&key) {
            return Some(allowed);
        }
        let inventory = self.resolver.inventory();
        let decision = reference_decision(inventory, &self.settings, src, dst, protocol, port)?;
        let allowed = decision.egress.allowed;
        self.egress_cache().insert(key, allowed);
        Some(allowed)
    }

    fn egress_cache(&self) -> std::sync::MutexGuard<'_, EgressVerdicts> {
        // A thread that panicked holding the lock left a consistent map:
        // entries are inserted whole.
        self.egress_verdicts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Is `src → dst` on this transport and port allowed? `Err` says why
    /// the question cannot be answered (the flow is then unresolved).
    fn policy_allows(
        &self,
        src: &Place,
        dst: &Place,
        transport: Transport,
        port: Option<u16>,
    ) -> Result<PolicyVerdict, String> {
        let inventory = self.resolver.inventory();
        if let Place::Unknown(reason) = src {
            return Err(format!("source: {reason}"));
        }
        if let Place::Unknown(reason) = dst {
            return Err(format!("destination: {reason}"));
        }
        if let Place::Service { index } = src {
            let s = &inventory.services[*index];
            return Err(format!(
                "the source {}/{} is a Service address; the capture saw the traffic after SNAT",
                s.namespace, s.name
            ));
        }
        if let Place::Service { index } = dst {
            return self.service_allows(src, *index, transport, port);
        }
        if let (Place::Node { ip, .. }, Place::Workload { index, pod }) = (src, dst)
            && pod_on_node(inventory, *index, *pod, *ip)
        {
            // DESIGN: traffic from a pod's own node is always allowed
            // (kubelet probes); NetworkPolicy cannot block it.
            return Ok(PolicyVerdict::allowed(port, OWN_NODE));
        }
        let (Some(from), Some(to)) = (self.engine_ref(src), self.engine_ref(dst)) else {
            // Services and unknown places were handled above.
            return Err("endpoint cannot be evaluated".into());
        };
        if matches!(
            (from, to),
            (EndpointRef::External(_), EndpointRef::External(_))
        ) {
            return match (src, dst) {
                (Place::External(_), Place::External(_)) => {
                    Err("neither endpoint is a pod, node or service of the inventory".into())
                }
                _ => Ok(PolicyVerdict::allowed(
                    port,
                    "host traffic is not governed by NetworkPolicy",
                )),
            };
        }
        let allowed = self.allowed(from, to, transport, port)?;
        Ok(PolicyVerdict {
            allowed,
            port,
            note: None,
        })
    }

    fn allowed(
        &self,
        from: EndpointRef,
        to: EndpointRef,
        transport: Transport,
        port: Option<u16>,
    ) -> Result<bool, String> {
        match (transport.policy_protocol(), port) {
            (Some(protocol), Some(port)) => Ok(self.engine.allowed(from, to, protocol, port)),
            (Some(_), None) => Err("the record carries no destination port".into()),
            // Policies name only TCP, UDP and SCTP ports; other protocols
            // (ICMP) pass only where everything is allowed, as Calico and
            // Cilium implement a rule without ports.
            (None, _) => Ok(self.engine.conns(from, to).is_all()),
        }
    }

    /// A connection to a Service VIP reaches one of its backends; which one
    /// is not in the record, so it is allowed if any backend allows it, and
    /// denied only if all deny it (no false bypass alerts).
    fn service_allows(
        &self,
        src: &Place,
        service: usize,
        transport: Transport,
        port: Option<u16>,
    ) -> Result<PolicyVerdict, String> {
        let inventory = self.resolver.inventory();
        let s = &inventory.services[service];
        let backends = crate::describe::service_backends(inventory, service);
        if backends.is_empty() {
            return Err(format!(
                "{} is the address of Service {}/{}, which selects no workload of the inventory",
                port.map_or(String::new(), |p| format!("port {p} of")),
                s.namespace,
                s.name
            ));
        }
        let from = self.engine_ref(src).ok_or("source cannot be evaluated")?;
        let mut first_port = None;
        for &backend in &backends {
            let target = crate::describe::target_port(inventory, service, backend, transport, port);
            first_port = first_port.or(target);
            if self.allowed(from, EndpointRef::Workload(backend), transport, target)? {
                return Ok(PolicyVerdict {
                    allowed: true,
                    port: target,
                    note: Some(format!(
                        "to Service {}/{} (pre-DNAT capture)",
                        s.namespace, s.name
                    )),
                });
            }
        }
        Ok(PolicyVerdict {
            allowed: false,
            port: first_port,
            note: Some(format!(
                "to Service {}/{} (pre-DNAT capture); every backend denies it",
                s.namespace, s.name
            )),
        })
    }

    fn engine_ref(&self, place: &Place) -> Option<EndpointRef> {
        match place {
            Place::Workload { index, .. } => Some(EndpointRef::Workload(*index)),
            Place::Node { ip, .. } | Place::External(ip) => {
                Some(EndpointRef::External(self.engine.externals().index_of(*ip)))
            }
            Place::Service { .. } | Place::Unknown(_) => None,
        }
    }
}

struct PolicyVerdict {
    allowed: bool,
    port: Option<u16>,
    note: Option<String>,
}

impl PolicyVerdict {
    fn allowed(port: Option<u16>, note: &str) -> PolicyVerdict {
        PolicyVerdict {
            allowed: true,
            port,
            note: Some(note.to_string()),
        }
    }
}

/// The class of a judged connection (see [`Class`]).
///
/// A one-way UDP or ICMP flow the policy allows is `allowed`, not an
/// unexpected drop: datagrams without replies are normal (syslog, metrics),
/// so only an explicit refusal or data-plane drop is evidence. Likewise an
/// unanswered connection to the outside world is not a policy matter.
fn classify(allowed: bool, flow: &Flow, dst: &Place) -> (Class, Option<String>) {
    let outcome = flow.outcome;
    match (allowed, outcome.got_through()) {
        (true, true) => (Class::Allowed, None),
        (false, true) => (Class::Bypass, None),
        (false, false) => (Class::BlockedAttempt, None),
        (true, false) => {
            let datagram = !matches!(flow.transport, Transport::Tcp | Transport::Sctp);
            let outside = matches!(dst, Place::External(_) | Place::Node { .. });
            if outcome == Outcome::Unanswered && (datagram || outside) {
                let why = if datagram {
                    "one-way datagrams are normal; not counted as a drop"
                } else {
                    "no answer from outside the cluster; not a policy matter"
                };
                (Class::Allowed, Some(why.to_string()))
            } else {
                (Class::UnexpectedDrop, None)
            }
        }
    }
}

const OWN_NODE: &str = "from the pod's own node, always allowed";

/// The record itself says the source is the host of the node the
/// destination pod runs on: Hubble's `reserved:host` is the reporting
/// node, and a destination with a local endpoint ID runs there. (The
/// manifests often lack the pods' node placement, so the address test of
/// `pod_on_node` cannot tell.)
fn reported_from_own_node(flow: &Flow, src: &Place, dst: &Place) -> bool {
    let from_host = flow
        .src
        .identity
        .as_ref()
        .is_some_and(|i| i.entity.as_deref() == Some("host"));
    let to_local_pod = flow.dst.identity.as_ref().is_some_and(|i| i.node_local);
    from_host
        && to_local_pod
        && matches!(src, Place::Node { .. })
        && matches!(dst, Place::Workload { .. })
}

fn pod_on_node(
    inventory: &Inventory,
    workload: usize,
    pod: Option<usize>,
    node_ip: IpAddr,
) -> bool {
    let Some(pod) = pod.and_then(|p| inventory.workloads[workload].pods.get(p)) else {
        return false;
    };
    pod.host_ip == Some(node_ip)
        || pod.node_name.as_ref().is_some_and(|name| {
            inventory
                .nodes
                .iter()
                .any(|n| &n.name == name && n.addresses.contains(&node_ip))
        })
}

fn namespace_of<'i>(inventory: &'i Inventory, place: &Place) -> Option<&'i str> {
    match place {
        Place::Workload { index, .. } => Some(&inventory.workloads[*index].namespace),
        Place::Service { index } => Some(&inventory.services[*index].namespace),
        _ => None,
    }
}

fn endpoint_key(place: &Place, ip: Option<IpAddr>) -> EndpointKey {
    match place {
        Place::Workload { index, .. } => EndpointKey::Workload(*index),
        Place::Node { ip, .. } => EndpointKey::Node(*ip),
        Place::Service { index } => EndpointKey::Service(*index),
        Place::External(ip) => EndpointKey::External(*ip),
        Place::Unknown(reason) => EndpointKey::Unknown(ip, reason.clone()),
    }
}

fn min_time(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn max_time(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

fn rule_of(class: Class) -> Rule {
    match class {
        Class::Bypass => Rule::Bypass,
        Class::UnexpectedDrop => Rule::UnexpectedDrop,
        Class::BlockedAttempt => Rule::BlockedAttempt,
        Class::Unresolved | Class::Allowed => Rule::Unresolved,
    }
}

fn self_alert(engine: &Engine<'_>, settings: &Settings, group: Group) -> Alert {
    let inventory = engine.inventory();
    let judged = &group.judged;
    let flow = &group.first;
    let src = describe_place(inventory, &judged.src, flow.src.ip);
    let dst = describe_place(inventory, &judged.dst, flow.dst.ip);
    let rule = rule_of(judged.class);
    let decision = explain(inventory, settings, judged, flow);
    let protocol = flow.transport.to_string();
    let port = judged.port.map_or(String::new(), |p| format!(" {p}"));
    let mut summary = format!(
        "{}: {src} -> {dst} {protocol}{port}, {} ({} connection{})",
        judged.class,
        flow.outcome,
        group.connections,
        if group.connections == 1 { "" } else { "s" }
    );
    if let Some(side) = decision.as_ref().and_then(denying_side) {
        summary.push_str(&format!("; denied by the {side}"));
    }
    if let Some(note) = &judged.note {
        summary.push_str(&format!("; {note}"));
    }
    Alert {
        time: group.first_seen.map(rfc3339),
        rule: rule.id().into(),
        name: rule.name().into(),
        severity: rule.severity(),
        summary,
        src,
        dst,
        protocol,
        port: judged.port,
        connections: group.connections,
        first_seen: group.first_seen.map(rfc3339),
        last_seen: group.last_seen.map(rfc3339),
        process: None,
        actor: None,
        object: None,
        evidence: Evidence {
            snapshot: None,
            flow: Some(group.first.clone()),
            records: group.records,
            decision,
            figures: BTreeMap::new(),
        },
    }
}

/// Which side's policy denied, in words, for the summary line.
fn denying_side(decision: &Decision) -> Option<String> {
    let side = |s: &palisade_policy::SideDecision| {
        format!(
            "{} of the {} ({})",
            s.direction,
            if s.direction.eq_ignore_ascii_case("egress") {
                "source"
            } else {
                "destination"
            },
            s.selected_by.join(", ")
        )
    };
    match (decision.egress.allowed, decision.ingress.allowed) {
        (true, true) => None,
        (false, true) => Some(side(&decision.egress)),
        (true, false) => Some(side(&decision.ingress)),
        (false, false) => Some(format!(
            "{} and {}",
            side(&decision.egress),
            side(&decision.ingress)
        )),
    }
}

/// The reference evaluator's explanation, for flows the policy judged.
fn explain(
    inventory: &Inventory,
    settings: &Settings,
    judged: &Judged,
    flow: &Flow,
) -> Option<Decision> {
    if judged.class == Class::Unresolved {
        return None;
    }
    let protocol: Protocol = flow.transport.policy_protocol()?;
    let port = judged.port?;
    reference_decision(
        inventory,
        settings,
        &judged.src,
        &judged.dst,
        protocol,
        port,
    )
}

/// The reference evaluator's decision, side by side, for two places
/// (`None` when one cannot be evaluated: unknown, or a Service without
/// backends).
fn reference_decision(
    inventory: &Inventory,
    settings: &Settings,
    src: &Place,
    dst: &Place,
    protocol: Protocol,
    port: u16,
) -> Option<Decision> {
    let src = reference_target(inventory, src)?;
    let dst = reference_target(inventory, dst)?;
    Some(decide(inventory, settings, &src, &dst, protocol, port))
}

fn reference_target(inventory: &Inventory, place: &Place) -> Option<Resolved> {
    match place {
        Place::Workload { index, pod } => Some(Resolved::Workload {
            index: *index,
            pod: *pod,
        }),
        Place::Node { ip, .. } | Place::External(ip) => Some(Resolved::Ip(*ip)),
        Place::Service { index } => crate::describe::service_backends(inventory, *index)
            .first()
            .map(|&index| Resolved::Workload { index, pod: None }),
        Place::Unknown(_) => None,
    }
}

/// Most severe first, then by time, then by summary for a stable order.
pub fn sort_alerts(alerts: &mut [Alert]) {
    alerts.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.first_seen.cmp(&b.first_seen))
            .then_with(|| a.summary.cmp(&b.summary))
    });
}
