//! Packets to connections: one [`Flow`] per connection, with the initiator
//! on the `src` side and an outcome saying whether the destination answered.
//!
//! Rules (the user-facing contract, also in the crate's tests):
//!
//! - **TCP.** The initiator sends the SYN without ACK; when the capture
//!   starts with the SYN-ACK, its receiver. A connection whose first packet
//!   is neither started before the capture: the side with the higher
//!   (ephemeral) port is taken as the initiator, the first sender on a tie,
//!   and `direction_inferred` is set. *Established* once the responder's
//!   SYN-ACK is seen: the destination answered, so the policy let the
//!   connection through, even if the initiator then never completes the
//!   handshake (a half-open SYN scan of an open port is established).
//!   Mid-stream, established once non-RST packets went both ways.
//!   *Refused*: a RST from the responder, or an ICMP destination
//!   unreachable about it, before establishment. *Unanswered*: anything else
//!   (SYNs and retransmissions with no reply). A flow is emitted when the
//!   connection ends (RST, or both FINs and the final ACK), then lingers
//!   briefly as a tombstone that absorbs stragglers (counted as skipped); a
//!   new SYN with another sequence number on the same ports is a new
//!   connection.
//! - **UDP, SCTP, ICMP and other protocols.** The first packet's sender
//!   initiates (for ICMP, the sender of the request even if the reply is
//!   seen first). *Established* once the responder sent anything,
//!   *refused* after an ICMP destination unreachable about it, otherwise
//!   *unanswered*. ICMP queries are keyed by identifier (an echo request
//!   and its reply are one flow); ICMP errors are counted on the connection
//!   they quote when it is known, else they are flows of their own.
//! - **Idle timeouts** by capture time, not wall time: a connection with no
//!   packet for its timeout is emitted and forgotten. Expiry is kept in a
//!   heap ordered by deadline, so the per-packet cost is one comparison and
//!   a connection is rescheduled at most once per timeout period.
//! - **Counts**: packets and payload bytes (see [`Packet::payload_len`])
//!   from the initiator, then from the responder.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use rustc_hash::FxHashMap;

use crate::model::{Flow, FlowEndpoint, Format, Micros, Outcome, RecordRef, Transport};
use crate::packet::{Packet, Quoted, Skip, tcp_flags};

/// How long a connection may stay silent before it is considered over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP connections that were established (or joined mid-stream).
    pub tcp_established: Duration,
    /// TCP connections still in their handshake: unanswered SYNs.
    pub tcp_handshake: Duration,
    /// After both FINs, waiting for the last ACK; also how long a closed
    /// connection's stragglers are recognised as such.
    pub tcp_closing: Duration,
    /// UDP, SCTP, ICMP and other protocols.
    pub datagram: Duration,
}

impl Default for Timeouts {
    /// Close to Linux conntrack's: long enough that a quiet keep-alive
    /// connection is not split, short enough that memory stays bounded.
    fn default() -> Timeouts {
        Timeouts {
            tcp_established: Duration::from_secs(300),
            tcp_handshake: Duration::from_secs(30),
            tcp_closing: Duration::from_secs(10),
            datagram: Duration::from_secs(60),
        }
    }
}

fn micros(duration: Duration) -> Micros {
    Micros::try_from(duration.as_micros()).unwrap_or(Micros::MAX)
}

/// Both directions of a connection map to the same key: the endpoint that
/// sorts first is side `a`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Key {
    a: u128,
    b: u128,
    a_port: u16,
    b_port: u16,
    protocol: u8,
    v6: bool,
}

fn ip_bits(ip: IpAddr) -> (u128, bool) {
    match ip {
        IpAddr::V4(v4) => (u128::from(u32::from(v4)), false),
        IpAddr::V6(v6) => (u128::from(v6), true),
    }
}

fn protocol_number(transport: Transport) -> u8 {
    match transport {
        Transport::Tcp => 6,
        Transport::Udp => 17,
        Transport::Sctp => 132,
        Transport::Icmp => 1,
        Transport::Icmpv6 => 58,
        Transport::Other(n) => n,
    }
}

/// The request type an ICMP reply answers, so both map to one connection.
fn icmp_class(icmp_type: u8, v6: bool) -> u8 {
    match (v6, icmp_type) {
        (false, 0) => 8,
        (false, 14 | 16 | 18) => icmp_type - 1,
        (true, 129) => 128,
        (true, 140) => 139,
        _ => icmp_type,
    }
}

fn icmp_is_reply(icmp_type: u8, v6: bool) -> bool {
    icmp_class(icmp_type, v6) != icmp_type
}

/// The fields of a packet (or of the packet an ICMP error quotes) that
/// identify its connection.
#[derive(Clone, Copy)]
struct Tuple {
    src: IpAddr,
    dst: IpAddr,
    transport: Transport,
    src_port: u16,
    dst_port: u16,
    icmp_type: u8,
    icmp_id: u16,
}

impl Tuple {
    fn of_packet(p: &Packet) -> Tuple {
        Tuple {
            src: p.src,
            dst: p.dst,
            transport: p.transport,
            src_port: p.src_port,
            dst_port: p.dst_port,
            icmp_type: p.icmp_type,
            icmp_id: p.icmp_id,
        }
    }

    fn of_quoted(q: &Quoted) -> Tuple {
        Tuple {
            src: q.src,
            dst: q.dst,
            transport: q.transport,
            src_port: q.src_port,
            dst_port: q.dst_port,
            icmp_type: q.icmp_type,
            icmp_id: q.icmp_id,
        }
    }

    /// The key, and whether the sender is side `a`.
    fn key(&self) -> (Key, bool) {
        let (src, v6) = ip_bits(self.src);
        let (dst, _) = ip_bits(self.dst);
        let protocol = protocol_number(self.transport);
        let (sender_first, a_port, b_port) = match self.transport {
            Transport::Tcp | Transport::Udp | Transport::Sctp => {
                if (src, self.src_port) <= (dst, self.dst_port) {
                    (true, self.src_port, self.dst_port)
                } else {
                    (false, self.dst_port, self.src_port)
                }
            }
            // No ports: the same pseudo-ports both ways (query type and
            // identifier), so only the addresses order the sides.
            Transport::Icmp | Transport::Icmpv6 => {
                let class = icmp_class(self.icmp_type, self.transport == Transport::Icmpv6);
                (src <= dst, u16::from(class), self.icmp_id)
            }
            Transport::Other(_) => (src <= dst, 0, 0),
        };
        let (a, b) = if sender_first { (src, dst) } else { (dst, src) };
        let key = Key {
            a,
            b,
            a_port,
            b_port,
            protocol,
            v6,
        };
        (key, sender_first)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// TCP: SYN seen, no answer yet.
    Handshake,
    /// TCP: answered, or joined mid-stream; also every non-TCP connection.
    Open,
    /// TCP: both FINs seen, waiting for the last ACK.
    Closing,
    /// Already emitted; kept to recognise stragglers and retransmissions.
    Closed,
}

/// One connection in progress, oriented: `src` is the initiator.
struct Conn {
    /// Tells a heap entry of this connection from one of an earlier
    /// connection with the same key.
    id: u64,
    /// The deadline of the heap entry that speaks for this connection.
    deadline: Micros,
    phase: Phase,
    src: IpAddr,
    dst: IpAddr,
    src_port: u16,
    dst_port: u16,
    transport: Transport,
    /// Whether the initiator is the key's side `a`.
    initiator_is_a: bool,
    direction_inferred: bool,
    first_seen: Micros,
    last_seen: Micros,
    packets: [u64; 2],
    bytes: [u64; 2],
    record: u64,
    icmp: Option<(u8, u8)>,
    syn_seq: Option<u32>,
    /// The responder answered (SYN-ACK; any non-RST packet mid-stream or for
    /// datagrams).
    answered: bool,
    refused: bool,
    fin: [bool; 2],
    last_fin_from: usize,
}

impl Conn {
    fn outcome(&self) -> Outcome {
        let established = if self.direction_inferred {
            self.answered && self.packets[0] > 0
        } else {
            self.answered
        };
        if established {
            Outcome::Established
        } else if self.refused {
            Outcome::Refused
        } else {
            Outcome::Unanswered
        }
    }

    /// 0 when the packet comes from the initiator, 1 from the responder.
    fn direction(&self, sender_is_a: bool) -> usize {
        usize::from(sender_is_a != self.initiator_is_a)
    }

    fn count(&mut self, direction: usize, packet: &Packet) {
        self.packets[direction] += 1;
        self.bytes[direction] += u64::from(packet.payload_len);
        self.first_seen = self.first_seen.min(packet.time);
        self.last_seen = self.last_seen.max(packet.time);
    }
}

mod tcp;

/// Turns packets into connections. Feed packets in capture order with
/// [`push`](Reconstructor::push), then call [`finish`](Reconstructor::finish).
pub struct Reconstructor {
    file: Arc<str>,
    format: Format,
    timeouts: [Micros; 4],
    conns: FxHashMap<Key, Conn>,
    expiry: BinaryHeap<Reverse<(Micros, u64, Key)>>,
    now: Micros,
    next_id: u64,
    emitted: u64,
}

const ESTABLISHED: usize = 0;
const HANDSHAKE: usize = 1;
const CLOSING: usize = 2;
const DATAGRAM: usize = 3;

impl Reconstructor {
    /// `file` and `format` go into every flow's evidence.
    pub fn new(file: Arc<str>, format: Format, timeouts: Timeouts) -> Reconstructor {
        Reconstructor {
            file,
            format,
            timeouts: [
                micros(timeouts.tcp_established),
                micros(timeouts.tcp_handshake),
                micros(timeouts.tcp_closing),
                micros(timeouts.datagram),
            ],
            conns: FxHashMap::default(),
            expiry: BinaryHeap::new(),
            now: Micros::MIN,
            next_id: 0,
            emitted: 0,
        }
    }

    /// Connections currently tracked (including recently closed ones).
    pub fn open_connections(&self) -> usize {
        self.conns.len()
    }

    /// Flows handed to sinks so far.
    pub fn flows_emitted(&self) -> u64 {
        self.emitted
    }

    /// Accounts one packet; `record` is its packet number, kept as the
    /// evidence of the connection it opens. Flows that end (or time out)
    /// go to `sink`. A packet that belongs to no connection comes back as a
    /// [`Skip`] for the caller to count.
    pub fn push(
        &mut self,
        packet: &Packet,
        record: u64,
        sink: &mut dyn FnMut(Flow),
    ) -> Result<(), Skip> {
        if let Some(reason) = packet.link_local_control() {
            return Err(Skip(reason));
        }
        self.advance(packet.time, sink);
        if let Some(quoted) = &packet.quoted
            && self.attribute_icmp_error(packet, quoted)
        {
            return Ok(());
        }
        let (key, sender_is_a) = Tuple::of_packet(packet).key();
        if packet.transport == Transport::Tcp {
            self.tcp(key, sender_is_a, packet, record, sink)
        } else {
            self.datagram(key, sender_is_a, packet, record);
            Ok(())
        }
    }

    /// Emits every connection still open, in the order they were first
    /// seen, and forgets them all.
    pub fn finish(&mut self, sink: &mut dyn FnMut(Flow)) {
        let mut open: Vec<Conn> = self
            .conns
            .drain()
            .map(|(_, conn)| conn)
            .filter(|conn| conn.phase != Phase::Closed)
            .collect();
        open.sort_by_key(|conn| (conn.record, conn.id));
        for conn in &open {
            self.emit(conn, sink);
        }
        self.expiry.clear();
    }

    /// Moves capture time forward and expires what went idle. Time never
    /// goes back: captures merged from interfaces are slightly out of order.
    fn advance(&mut self, time: Micros, sink: &mut dyn FnMut(Flow)) {
        self.now = self.now.max(time);
        while let Some(&Reverse((deadline, id, key))) = self.expiry.peek()
            && deadline <= self.now
        {
            self.expiry.pop();
            self.expire(deadline, id, key, sink);
        }
    }

    fn expire(&mut self, deadline: Micros, id: u64, key: Key, sink: &mut dyn FnMut(Flow)) {
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        if conn.id != id || conn.deadline != deadline {
            return; // superseded by a later entry
        }
        let due = conn
            .last_seen
            .saturating_add(self.timeouts[timeout_class(conn)]);
        if due > self.now {
            conn.deadline = due;
            self.expiry.push(Reverse((due, id, key)));
            return;
        }
        if let Some(conn) = self.conns.remove(&key)
            && conn.phase != Phase::Closed
        {
            self.emit(&conn, sink);
        }
    }

    /// Makes the connection's deadline earlier than its current entry
    /// says, for phases with a shorter timeout.
    fn reschedule(&mut self, key: Key) {
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        let due = conn
            .last_seen
            .saturating_add(self.timeouts[timeout_class(conn)]);
        if due < conn.deadline {
            conn.deadline = due;
            self.expiry.push(Reverse((due, conn.id, key)));
        }
    }

    fn insert(&mut self, key: Key, mut conn: Conn) {
        conn.id = self.next_id;
        self.next_id += 1;
        conn.deadline = conn
            .last_seen
            .saturating_add(self.timeouts[timeout_class(&conn)]);
        self.expiry.push(Reverse((conn.deadline, conn.id, key)));
        self.conns.insert(key, conn);
    }

    fn new_conn(
        &self,
        packet: &Packet,
        sender_is_a: bool,
        initiator_sent: bool,
        record: u64,
    ) -> Conn {
        let (src, dst, src_port, dst_port) = if initiator_sent {
            (packet.src, packet.dst, packet.src_port, packet.dst_port)
        } else {
            (packet.dst, packet.src, packet.dst_port, packet.src_port)
        };
        let icmp = matches!(packet.transport, Transport::Icmp | Transport::Icmpv6)
            .then_some((packet.icmp_type, packet.icmp_code));
        Conn {
            id: 0,
            deadline: 0,
            phase: Phase::Open,
            src,
            dst,
            src_port,
            dst_port,
            transport: packet.transport,
            initiator_is_a: sender_is_a == initiator_sent,
            direction_inferred: false,
            first_seen: packet.time,
            last_seen: packet.time,
            packets: [0, 0],
            bytes: [0, 0],
            record,
            icmp,
            syn_seq: None,
            answered: false,
            refused: false,
            fin: [false, false],
            last_fin_from: 0,
        }
    }

    fn datagram(&mut self, key: Key, sender_is_a: bool, packet: &Packet, record: u64) {
        if let Some(conn) = self.conns.get_mut(&key) {
            let direction = conn.direction(sender_is_a);
            conn.count(direction, packet);
            conn.answered |= direction == 1;
            return;
        }
        let v6 = packet.transport == Transport::Icmpv6;
        let reply_first = matches!(packet.transport, Transport::Icmp | Transport::Icmpv6)
            && icmp_is_reply(packet.icmp_type, v6);
        let mut conn = self.new_conn(packet, sender_is_a, !reply_first, record);
        let direction = usize::from(reply_first);
        conn.count(direction, packet);
        conn.answered = reply_first;
        self.insert(key, conn);
    }

    /// Counts an ICMP error on the connection it is about, when that one is
    /// known and still open; a destination unreachable about a packet of the
    /// initiator refuses the connection.
    fn attribute_icmp_error(&mut self, packet: &Packet, quoted: &Quoted) -> bool {
        let (key, quoted_sender_is_a) = Tuple::of_quoted(quoted).key();
        let Some(conn) = self.conns.get_mut(&key) else {
            return false;
        };
        if conn.phase == Phase::Closed {
            return false;
        }
        let quoted_direction = conn.direction(quoted_sender_is_a);
        conn.count(1 - quoted_direction, packet);
        let unreachable = match packet.transport {
            Transport::Icmp => packet.icmp_type == 3,
            _ => packet.icmp_type == 1,
        };
        if unreachable && quoted_direction == 0 {
            conn.refused = true;
        }
        true
    }

    fn emit(&mut self, conn: &Conn, sink: &mut dyn FnMut(Flow)) {
        let evidence = RecordRef {
            file: Arc::clone(&self.file),
            format: self.format,
            record: conn.record,
        };
        let mut flow = Flow::new(evidence, conn.transport, conn.outcome());
        let ports = conn.transport.has_ports();
        flow.first_seen = Some(conn.first_seen);
        flow.last_seen = Some(conn.last_seen);
        flow.src = FlowEndpoint {
            ip: Some(conn.src),
            port: ports.then_some(conn.src_port),
            identity: None,
        };
        flow.dst = FlowEndpoint {
            ip: Some(conn.dst),
            port: ports.then_some(conn.dst_port),
            identity: None,
        };
        flow.direction_inferred = conn.direction_inferred;
        flow.packets = conn.packets;
        flow.bytes = conn.bytes;
        flow.icmp = conn.icmp;
        self.emitted += 1;
        sink(flow);
    }
}

fn timeout_class(conn: &Conn) -> usize {
    match (conn.transport, conn.phase) {
        (_, Phase::Closing | Phase::Closed) => CLOSING,
        (Transport::Tcp, Phase::Handshake) => HANDSHAKE,
        (Transport::Tcp, Phase::Open) => ESTABLISHED,
        _ => DATAGRAM,
    }
}

/// Whether a TCP packet opens a connection: SYN without ACK.
fn is_syn(flags: u8) -> bool {
    flags & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN
}
