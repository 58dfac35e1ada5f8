//! Scan and burst detectors over a sliding time window per source address:
//! vertical port scans, horizontal sweeps, bursts of policy-denied attempts
//! and fan-out. Counts are kept incrementally (added when a flow enters the
//! window, removed when it leaves), so a busy source costs O(1) per flow,
//! not O(window).

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;

use palisade_flow::{Flow, Micros};
use palisade_inventory::Inventory;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::Class;
use crate::alert::{Alert, Evidence, Rule, rfc3339};
use crate::describe::describe_place;
use crate::resolve::Place;
use crate::verify::Judged;

/// Thresholds; the defaults are documented in the README and chosen so that
/// ordinary clients (a Prometheus scraping a hundred pods succeeds; a client
/// retrying one port) stay quiet while nmap's defaults do not.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScanOptions {
    pub window_seconds: u64,
    /// Distinct destination ports on one destination (any outcome).
    pub vertical_ports: usize,
    /// Distinct destinations probed on one port without getting through.
    pub horizontal_hosts: usize,
    /// Policy-denied attempts from one source.
    pub blocked_attempts: usize,
    /// Distinct peers contacted from one source.
    pub fan_out_peers: usize,
}

impl Default for ScanOptions {
    fn default() -> ScanOptions {
        ScanOptions {
            window_seconds: 60,
            vertical_ports: 20,
            horizontal_hosts: 20,
            blocked_attempts: 20,
            fan_out_peers: 100,
        }
    }
}

/// One or more alike observations from a source: same destination, port
/// and result, within [`MERGE_MICROS`] after `time`.
struct Event {
    time: Micros,
    dst: IpAddr,
    port: u16,
    /// Did not get through (refused, unanswered, dropped).
    failed: bool,
    blocked: bool,
    /// Observations merged into this entry.
    count: u32,
}

impl Event {
    fn is_like(&self, other: &Event) -> bool {
        (self.dst, self.port, self.failed, self.blocked)
            == (other.dst, other.port, other.failed, other.blocked)
    }
}

/// Per-packet sources (Hubble reports every packet of a connection) would
/// make the window hold one entry per packet; an observation like the
/// newest entry and within this long after it joins that entry instead.
/// The merged observations then leave the window together, at most this
/// much early.
const MERGE_MICROS: Micros = 1_000_000;

/// What is in one source's window: its entries, and multiset counts of
/// their destinations and ports. The counts count entries, not merged
/// observations, since the detectors ask only how many distinct hosts or
/// ports there are; so an observation that merges into the newest entry
/// touches no map.
#[derive(Default)]
struct SourceWindow {
    events: VecDeque<Event>,
    newest: Micros,
    ports_by_dst: FxHashMap<IpAddr, FxHashMap<u16, u32>>,
    failed_dsts_by_port: FxHashMap<u16, FxHashMap<IpAddr, u32>>,
    peers: FxHashMap<IpAddr, u32>,
    /// Blocked observations (not entries): bursts count attempts.
    blocked: usize,
}

fn add<K: std::hash::Hash + Eq>(map: &mut FxHashMap<K, u32>, key: K) {
    *map.entry(key).or_insert(0) += 1;
}

fn remove<K: std::hash::Hash + Eq>(map: &mut FxHashMap<K, u32>, key: &K) {
    if let Some(n) = map.get_mut(key) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            map.remove(key);
        }
    }
}

impl SourceWindow {
    fn push(&mut self, event: Event, window: Micros) {
        self.newest = self.newest.max(event.time);
        self.blocked += usize::from(event.blocked);
        match self.events.back_mut() {
            Some(last)
                if last.is_like(&event)
                    && (0..MERGE_MICROS).contains(&(event.time - last.time)) =>
            {
                last.count += 1;
            }
            _ => {
                add(self.ports_by_dst.entry(event.dst).or_default(), event.port);
                if event.failed {
                    add(
                        self.failed_dsts_by_port.entry(event.port).or_default(),
                        event.dst,
                    );
                }
                add(&mut self.peers, event.dst);
                self.events.push_back(event);
            }
        }
        while let Some(old) = self.events.front() {
            if old.time >= self.newest - window {
                break;
            }
            let Some(old) = self.events.pop_front() else {
                break;
            };
            self.forget(&old);
        }
    }

    fn forget(&mut self, old: &Event) {
        if let Some(ports) = self.ports_by_dst.get_mut(&old.dst) {
            remove(ports, &old.port);
            if ports.is_empty() {
                self.ports_by_dst.remove(&old.dst);
            }
        }
        if old.failed
            && let Some(dsts) = self.failed_dsts_by_port.get_mut(&old.port)
        {
            remove(dsts, &old.dst);
            if dsts.is_empty() {
                self.failed_dsts_by_port.remove(&old.port);
            }
        }
        remove(&mut self.peers, &old.dst);
        if old.blocked {
            self.blocked = self.blocked.saturating_sub(old.count as usize);
        }
    }
}

/// What is being scanned: one host (vertical), one port (horizontal), or
/// the source's whole activity (bursts, fan-out).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Target {
    Host(IpAddr),
    Port(u16),
    Any,
}

#[derive(Clone)]
struct Detection {
    src: Place,
    dst: Option<Place>,
    src_ip: IpAddr,
    target: Target,
    peak: usize,
    first_seen: Micros,
    last_seen: Micros,
    flow: Flow,
}

pub struct ScanDetector {
    options: ScanOptions,
    sources: FxHashMap<IpAddr, SourceWindow>,
    detections: FxHashMap<(Rule, IpAddr, Target), Detection>,
    /// Detections opened since [`ScanDetector::take_new`] last ran.
    opened: Vec<(Rule, IpAddr, Target)>,
    /// Flows without an address or port cannot be placed in a window.
    pub not_applicable: u64,
}

impl ScanDetector {
    pub fn new(options: ScanOptions) -> ScanDetector {
        ScanDetector {
            options,
            sources: FxHashMap::default(),
            detections: FxHashMap::default(),
            opened: Vec::new(),
            not_applicable: 0,
        }
    }

    pub fn observe(&mut self, flow: &Flow, judged: &Judged) {
        let (Some(src_ip), Some(dst)) = (flow.src.ip, flow.dst.ip) else {
            self.not_applicable += 1;
            return;
        };
        let time = flow.first_seen.unwrap_or(0);
        let port = flow.dst.port.unwrap_or(0);
        let event = Event {
            time,
            dst,
            port,
            failed: !flow.outcome.got_through(),
            blocked: judged.class == Class::BlockedAttempt,
            count: 1,
        };
        let window = i64::try_from(self.options.window_seconds)
            .unwrap_or(i64::MAX / 2_000_000)
            .saturating_mul(1_000_000);
        let state = self.sources.entry(src_ip).or_default();
        state.push(event, window);
        let counts = [
            (
                Rule::VerticalScan,
                Target::Host(dst),
                state.ports_by_dst.get(&dst).map_or(0, FxHashMap::len),
                self.options.vertical_ports,
            ),
            (
                Rule::HorizontalScan,
                Target::Port(port),
                state
                    .failed_dsts_by_port
                    .get(&port)
                    .map_or(0, FxHashMap::len),
                self.options.horizontal_hosts,
            ),
            (
                Rule::BlockedBurst,
                Target::Any,
                state.blocked,
                self.options.blocked_attempts,
            ),
            (
                Rule::FanOut,
                Target::Any,
                state.peers.len(),
                self.options.fan_out_peers,
            ),
        ];
        for (rule, target, count, threshold) in counts {
            if count >= threshold.max(1) {
                self.record(rule, src_ip, target, count, flow, judged);
            }
        }
    }

    fn record(
        &mut self,
        rule: Rule,
        src_ip: IpAddr,
        target: Target,
        count: usize,
        flow: &Flow,
        judged: &Judged,
    ) {
        let time = flow.first_seen.unwrap_or(0);
        let key = (rule, src_ip, target);
        if !self.detections.contains_key(&key) {
            self.opened.push(key);
        }
        let detection = self.detections.entry(key).or_insert_with(|| Detection {
            src: judged.src.clone(),
            dst: matches!(target, Target::Host(_)).then(|| judged.dst.clone()),
            src_ip,
            target,
            peak: 0,
            first_seen: time,
            last_seen: time,
            flow: flow.clone(),
        });
        detection.peak = detection.peak.max(count);
        detection.first_seen = detection.first_seen.min(time);
        detection.last_seen = detection.last_seen.max(flow.last_seen.unwrap_or(time));
    }

    /// The detections that crossed their threshold since the last call, as
    /// alerts: what the live agent sends at once (its repeat window counts
    /// what follows).
    pub fn take_new(&mut self, inventory: &Inventory) -> Vec<Alert> {
        let options = self.options.clone();
        self.opened
            .drain(..)
            .filter_map(|key| {
                let detection = self.detections.get(&key)?.clone();
                Some(scan_alert(inventory, &options, key.0, detection))
            })
            .collect()
    }

    /// Forgets detections last seen before `micros`, and sources whose
    /// windows are empty: a live detector's memory is bounded by what
    /// happened lately, not by uptime. A scan that goes on is detected
    /// again.
    pub fn forget_before(&mut self, micros: Micros) {
        self.detections.retain(|_, d| d.last_seen >= micros);
        self.sources.retain(|_, window| !window.events.is_empty());
    }

    pub fn finish(self, inventory: &Inventory) -> Vec<Alert> {
        let options = self.options;
        self.detections
            .into_iter()
            .map(|((rule, _, _), d)| scan_alert(inventory, &options, rule, d))
            .collect()
    }
}

fn scan_alert(inventory: &Inventory, options: &ScanOptions, rule: Rule, d: Detection) -> Alert {
    let src = describe_place(inventory, &d.src, Some(d.src_ip));
    let dst = d
        .dst
        .as_ref()
        .map(|p| describe_place(inventory, p, d.flow.dst.ip))
        .unwrap_or_default();
    let window = options.window_seconds;
    let (summary, port, figure, threshold) = match d.target {
        Target::Host(ip) => (
            format!(
                "port scan: {src} probed {} ports of {dst} ({ip}) within {window} s",
                d.peak
            ),
            None,
            "ports",
            options.vertical_ports,
        ),
        Target::Port(port) => (
            format!(
                "host sweep: {src} probed port {port} on {} hosts that did not answer within {window} s",
                d.peak
            ),
            Some(port),
            "hosts",
            options.horizontal_hosts,
        ),
        Target::Any if rule == Rule::BlockedBurst => (
            format!(
                "{src} made {} policy-denied attempts within {window} s",
                d.peak
            ),
            None,
            "blocked_attempts",
            options.blocked_attempts,
        ),
        Target::Any => (
            format!(
                "{src} contacted {} distinct peers within {window} s",
                d.peak
            ),
            None,
            "peers",
            options.fan_out_peers,
        ),
    };
    let figures = BTreeMap::from([
        (figure, d.peak as u64),
        ("threshold", threshold as u64),
        ("window_seconds", window),
    ]);
    Alert {
        time: Some(rfc3339(d.first_seen)),
        rule: rule.id().into(),
        name: rule.name().into(),
        severity: rule.severity(),
        summary,
        src,
        dst,
        protocol: d.flow.transport.to_string(),
        port,
        connections: d.peak as u64,
        first_seen: Some(rfc3339(d.first_seen)),
        last_seen: Some(rfc3339(d.last_seen)),
        process: None,
        actor: None,
        object: None,
        evidence: Evidence {
            snapshot: None,
            records: vec![d.flow.evidence.clone()],
            flow: Some(d.flow),
            decision: None,
            figures,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DST: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 9));
    const WINDOW: Micros = 60_000_000;

    fn event(time: Micros, port: u16, blocked: bool) -> Event {
        Event {
            time,
            dst: DST,
            port,
            failed: blocked,
            blocked,
            count: 1,
        }
    }

    #[test]
    fn a_live_detector_hands_each_new_detection_out_once() {
        use palisade_flow::{Format, Outcome, RecordRef, Transport};
        let inventory = Inventory::default();
        let options = ScanOptions {
            vertical_ports: 3,
            ..ScanOptions::default()
        };
        let mut scans = ScanDetector::new(options);
        let judged = Judged {
            src: Place::External("10.9.9.9".parse().unwrap()),
            dst: Place::External(DST),
            class: Class::BlockedAttempt,
            port: None,
            note: None,
        };
        let evidence = RecordRef {
            file: std::sync::Arc::from("t"),
            format: Format::Ebpf,
            record: 1,
        };
        let probe = |scans: &mut ScanDetector, port: u16| {
            let mut flow = Flow::new(evidence.clone(), Transport::Tcp, Outcome::Unanswered);
            flow.src.ip = Some("10.9.9.9".parse().unwrap());
            flow.dst.ip = Some(DST);
            flow.dst.port = Some(port);
            flow.first_seen = Some(i64::from(port));
            scans.observe(&flow, &judged);
        };
        probe(&mut scans, 1);
        probe(&mut scans, 2);
        assert!(scans.take_new(&inventory).is_empty());
        probe(&mut scans, 3);
        let alerts = scans.take_new(&inventory);
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].rule, Rule::VerticalScan.id());
        probe(&mut scans, 4);
        assert!(scans.take_new(&inventory).is_empty(), "already handed out");
        scans.forget_before(10);
        assert!(scans.detections.is_empty());
    }

    #[test]
    fn alike_observations_share_an_entry_and_leave_the_window_together() {
        let mut window = SourceWindow::default();
        for i in 0..4 {
            window.push(event(i * 1000, 80, true), WINDOW);
        }
        window.push(event(5000, 443, true), WINDOW);
        assert_eq!(window.events.len(), 2);
        assert_eq!(window.blocked, 5);
        assert_eq!(window.ports_by_dst[&DST].len(), 2);
        // The maps count entries: the four merged observations are one.
        assert_eq!(window.failed_dsts_by_port[&80][&DST], 1);

        // A minute later both entries, five observations, leave at once.
        window.push(event(61_000_000, 22, false), WINDOW);
        assert_eq!(window.events.len(), 1);
        assert_eq!(window.blocked, 0);
        assert_eq!(window.peers[&DST], 1);
        assert!(window.failed_dsts_by_port.is_empty());

        // Alike, but more than a second after the entry: a new entry.
        window.push(event(62_100_000, 22, false), WINDOW);
        assert_eq!(window.events.len(), 2);
        assert_eq!(window.ports_by_dst[&DST][&22], 2);

        // The older entry leaves; the newer keeps the port counted.
        window.push(event(122_000_000, 23, false), WINDOW);
        assert_eq!(window.ports_by_dst[&DST].len(), 2);
        assert_eq!(window.ports_by_dst[&DST][&22], 1);
    }
}
