//! Connection-tracking events: the text of `conntrack -E`, with or without
//! `-o timestamp` (and `-o extended`, `-o id`), and `conntrack -L`
//! listings.
//!
//! Conntrack reports each connection several times (`[NEW]`, `[UPDATE]`s,
//! `[DESTROY]`); the events of one connection (same protocol, original
//! tuple and zone) are gathered into one [`Flow`], handed to the sink at
//! `[DESTROY]`, or at the end of the input for connections still open. Only
//! open connections are held in memory.
//!
//! Outcome, from what conntrack saw over the connection's life:
//!
//! - TCP that reached `SYN_RECV` (the responder's SYN-ACK), `ESTABLISHED`
//!   or a later state, or was `[ASSURED]` → [`Outcome::Established`].
//! - TCP that went to `CLOSE` without any of that → [`Outcome::Refused`]:
//!   the responder's RST to the SYN makes conntrack destroy the entry at
//!   once in state `CLOSE`, still `[UNREPLIED]` (see the lab sample). An
//!   initiator aborting its own SYN with a RST looks the same; conntrack's
//!   text does not tell them apart.
//! - Otherwise: replied (an event without `[UNREPLIED]`) →
//!   [`Outcome::Established`]; never replied → [`Outcome::Unanswered`]. A
//!   UDP datagram refused with ICMP port unreachable stays unreplied in its
//!   own entry, so it reads as unanswered.
//!
//! Other mapping decisions:
//!
//! - `src`/`dst` are the original tuple (the initiator as conntrack saw
//!   it). When the reply comes from another address or port than the
//!   original destination, the connection was DNATed (a Service VIP to a
//!   backend pod): `reporter` is then `dnat:<ip>:<port>` (`dnat:[v6]:port`)
//!   naming the real backend.
//! - Protocols conntrack does not name (`unknown 2` is IGMP) become flows
//!   with [`Transport::Other`]: conntrack tracked them, and a NetworkPolicy
//!   without ports governs every protocol, so they are the engine's to
//!   judge, not the reader's to drop. They read as unanswered.
//! - Counters (`packets=`, `bytes=`, with accounting on) of the original
//!   tuple go to index 0, of the reply tuple to index 1.
//! - Times come from `-o timestamp`; without it flows have none.
//! - The `conntrack v1.4.x (conntrack-tools): N flow events have been
//!   shown.` line is counted as skipped.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::BufRead;
use std::net::IpAddr;
use std::sync::Arc;

use crate::diagnostics::ReadStats;
use crate::generic::lines::{LineReader, TRUNCATION_HINT};
use crate::generic::record_line;
use crate::model::{Flow, Format, Micros, Outcome, RecordRef, Transport};

mod event;

pub use event::{ConntrackEvent, ConntrackLine, EventKind, Tuple, parse_conntrack_line};

/// Reads `conntrack -E` (or `-L`) output.
pub fn read_conntrack<R: BufRead>(
    input: R,
    file: Arc<str>,
    sink: &mut dyn FnMut(Flow),
) -> ReadStats {
    let mut stats = ReadStats::default();
    let mut tracker = ConntrackTracker::new(file.clone());
    let mut lines = LineReader::new(input);
    while let Some(line) = lines.next_line(&mut stats, &file) {
        let number = line.number;
        match parse_conntrack_line(line.bytes) {
            Ok(ConntrackLine::Event(event)) => tracker.event(event, number, &mut stats, sink),
            Ok(ConntrackLine::Banner) => stats.skip("conntrack banner"),
            Err(mut message) => {
                if line.unterminated {
                    message.push_str(TRUNCATION_HINT);
                    stats.truncated = true;
                }
                record_line(&mut stats, &file, number, Err(message), sink);
            }
        }
    }
    tracker.finish(&mut stats, sink);
    stats
}

/// What identifies a connection across its events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key {
    zone: Option<u16>,
    transport: Transport,
    src: Option<IpAddr>,
    dst: Option<IpAddr>,
    /// Ports, or for ICMP the identifier and the type/code.
    a: u16,
    b: u16,
}

impl Key {
    fn of(event: &ConntrackEvent) -> Key {
        let t = &event.original;
        let icmp_kind =
            u16::from(t.icmp_type.unwrap_or(0)) << 8 | u16::from(t.icmp_code.unwrap_or(0));
        Key {
            zone: event.zone,
            transport: event.transport,
            src: t.src,
            dst: t.dst,
            a: t.sport.or(t.icmp_id).unwrap_or(0),
            b: t.dport.unwrap_or(icmp_kind),
        }
    }
}

/// A connection still open, and what its events showed so far.
struct Open {
    flow: Flow,
    seen: Seen,
}

#[derive(Default)]
struct Seen {
    answered_tcp: bool,
    closed: bool,
    replied: bool,
    assured: bool,
}

/// Gathers conntrack events into flows. [`read_conntrack`] drives it; a
/// caller that parses lines with [`parse_conntrack_line`] on several threads
/// feeds it the events in line order.
pub struct ConntrackTracker {
    file: Arc<str>,
    open: HashMap<Key, Open>,
}

impl ConntrackTracker {
    pub fn new(file: Arc<str>) -> Self {
        ConntrackTracker {
            file,
            open: HashMap::new(),
        }
    }

    /// How many connections are open (held in memory).
    pub fn open_connections(&self) -> usize {
        self.open.len()
    }

    /// Takes the event from line `line`; a `[DESTROY]` completes a flow.
    pub fn event(
        &mut self,
        event: ConntrackEvent,
        line: u64,
        stats: &mut ReadStats,
        sink: &mut dyn FnMut(Flow),
    ) {
        let key = Key::of(&event);
        if event.kind == EventKind::New
            && let Some(previous) = self.open.remove(&key)
        {
            // The same tuple again: the earlier connection's DESTROY was
            // not in the input (lost events, or the capture began late).
            emit(previous, stats, sink);
        }
        let open = self.open.entry(key).or_insert_with(|| Open {
            flow: new_flow(&self.file, &event, line),
            seen: Seen::default(),
        });
        open.absorb(&event);
        if event.kind == EventKind::Destroy
            && let Some(done) = self.open.remove(&key)
        {
            emit(done, stats, sink);
        }
    }

    /// Hands over the connections still open at the end of the input, in
    /// the order they were first seen.
    pub fn finish(self, stats: &mut ReadStats, sink: &mut dyn FnMut(Flow)) {
        let mut open: Vec<Open> = self.open.into_values().collect();
        open.sort_by_key(|o| o.flow.evidence.record);
        for o in open {
            emit(o, stats, sink);
        }
    }
}

fn new_flow(file: &Arc<str>, event: &ConntrackEvent, line: u64) -> Flow {
    let evidence = RecordRef {
        file: file.clone(),
        format: Format::Conntrack,
        record: line,
    };
    let mut flow = Flow::new(evidence, event.transport, Outcome::Unanswered);
    let t = &event.original;
    flow.src.ip = t.src;
    flow.dst.ip = t.dst;
    if event.transport.has_ports() {
        flow.src.port = t.sport;
        flow.dst.port = t.dport;
    }
    if let (Some(kind), Some(code)) = (t.icmp_type, t.icmp_code) {
        flow.icmp = Some((kind, code));
    }
    flow.first_seen = event.time;
    flow
}

/// TCP states that only follow an answer from the responder.
const ANSWERED_TCP_STATES: [&str; 6] = [
    "SYN_RECV",
    "ESTABLISHED",
    "FIN_WAIT",
    "CLOSE_WAIT",
    "LAST_ACK",
    "TIME_WAIT",
];

impl Open {
    fn absorb(&mut self, event: &ConntrackEvent) {
        let state = event.state.as_deref();
        let seen = &mut self.seen;
        seen.answered_tcp |= state.is_some_and(|s| ANSWERED_TCP_STATES.contains(&s));
        seen.closed |= state == Some("CLOSE");
        seen.replied |= event.reply.is_some() && !event.unreplied;
        seen.assured |= event.assured;
        let flow = &mut self.flow;
        if event.time.is_some() {
            flow.last_seen = event.time;
            flow.first_seen = min_time(flow.first_seen, event.time);
        }
        // Counters only grow over a connection's life; the latest is the
        // largest, whatever order events were written in.
        add_counters(flow, 0, &event.original);
        if let Some(reply) = &event.reply {
            add_counters(flow, 1, reply);
            flow.reporter = dnat_target(flow, reply).map(Cow::Owned);
        }
    }
}

fn add_counters(flow: &mut Flow, direction: usize, tuple: &Tuple) {
    flow.packets[direction] = flow.packets[direction].max(tuple.packets.unwrap_or(0));
    flow.bytes[direction] = flow.bytes[direction].max(tuple.bytes.unwrap_or(0));
}

impl Seen {
    fn outcome(&self, transport: Transport) -> Outcome {
        let tcp = transport == Transport::Tcp;
        if self.assured || (tcp && self.answered_tcp) {
            Outcome::Established
        } else if tcp && self.closed {
            Outcome::Refused
        } else if self.replied {
            Outcome::Established
        } else {
            Outcome::Unanswered
        }
    }
}

fn min_time(a: Option<Micros>, b: Option<Micros>) -> Option<Micros> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The backend a DNATed connection really went to: where the reply came
/// from, when that is not the original destination.
fn dnat_target(flow: &Flow, reply: &Tuple) -> Option<String> {
    let ip = reply.src?;
    let port = if flow.transport.has_ports() {
        reply.sport
    } else {
        None
    };
    if Some(ip) == flow.dst.ip && port == flow.dst.port {
        return None;
    }
    let host = match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    };
    Some(match port {
        Some(port) => format!("dnat:{host}:{port}"),
        None => format!("dnat:{host}"),
    })
}

fn emit(open: Open, stats: &mut ReadStats, sink: &mut dyn FnMut(Flow)) {
    let mut flow = open.flow;
    flow.outcome = open.seen.outcome(flow.transport);
    stats.flows += 1;
    sink(flow);
}
