//! The observed-traffic model every reader produces: one [`Flow`] per
//! connection (or per data-plane record, for sources that aggregate), with
//! the initiator always on the `src` side.

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use palisade_inventory::Protocol;
use serde::Serialize;

/// Microseconds since the Unix epoch.
pub type Micros = i64;

/// The transport a flow used. Only TCP, UDP and SCTP are governed by
/// NetworkPolicy ports; ICMP is governed only as "all connections".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transport {
    Tcp,
    Udp,
    Sctp,
    Icmp,
    Icmpv6,
    Other(u8),
}

impl Transport {
    pub fn from_ip_protocol(number: u8) -> Transport {
        match number {
            6 => Transport::Tcp,
            17 => Transport::Udp,
            132 => Transport::Sctp,
            1 => Transport::Icmp,
            58 => Transport::Icmpv6,
            n => Transport::Other(n),
        }
    }

    /// Accepts the spellings flow sources use: `tcp`, `TCP`, `6`, `ICMPv6`...
    pub fn parse(text: &str) -> Option<Transport> {
        let lower = text.trim().to_ascii_lowercase();
        Some(match lower.as_str() {
            "tcp" => Transport::Tcp,
            "udp" => Transport::Udp,
            "sctp" => Transport::Sctp,
            "icmp" | "icmpv4" => Transport::Icmp,
            "icmpv6" | "ipv6-icmp" => Transport::Icmpv6,
            other => Transport::from_ip_protocol(other.parse().ok()?),
        })
    }

    /// The NetworkPolicy protocol, for transports that policies name.
    pub fn policy_protocol(self) -> Option<Protocol> {
        match self {
            Transport::Tcp => Some(Protocol::Tcp),
            Transport::Udp => Some(Protocol::Udp),
            Transport::Sctp => Some(Protocol::Sctp),
            _ => None,
        }
    }

    /// Whether the transport has ports.
    pub fn has_ports(self) -> bool {
        self.policy_protocol().is_some()
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Transport::Tcp => f.write_str("TCP"),
            Transport::Udp => f.write_str("UDP"),
            Transport::Sctp => f.write_str("SCTP"),
            Transport::Icmp => f.write_str("ICMP"),
            Transport::Icmpv6 => f.write_str("ICMPv6"),
            Transport::Other(n) => write!(f, "IP/{n}"),
        }
    }
}

impl Serialize for Transport {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// What a flow source says about an endpoint beyond its address: Hubble's
/// and Calico's view of the pod. Names may be aggregated (`frontend-7d9f-*`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Identity {
    pub namespace: Option<String>,
    /// Pod name, or an aggregated name ending in `*` (Calico `*_name_aggr`).
    pub pod: Option<String>,
    /// Pod labels as `key=value`, source prefixes (`k8s:`) removed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// A non-pod entity the source names: Hubble `reserved:host`,
    /// `reserved:world`; Calico endpoint types `hep`, `net`, `ns`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity: Option<String>,
    /// The data plane says the endpoint runs on the node that recorded the
    /// flow (Hubble gives local endpoints an endpoint `ID`). With a source
    /// of entity `host` this is traffic from the pod's own node.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub node_local: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FlowEndpoint {
    pub ip: Option<IpAddr>,
    /// TCP/UDP/SCTP port; `None` for ICMP or when the source aggregated it.
    pub port: Option<u16>,
    /// Shared: a flow log names the same few endpoints millions of times,
    /// and readers hand out one copy of each.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<Arc<Identity>>,
}

/// What happened to the connection, as far as the evidence shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// The destination answered: TCP handshake completed (or data flowed
    /// both ways mid-stream), a UDP/ICMP reply, conntrack ASSURED or replied.
    Established,
    /// The destination (or something on the path) refused: TCP RST to the
    /// SYN, ICMP unreachable.
    Refused,
    /// Nothing answered: SYN retransmissions or a lone datagram.
    Unanswered,
    /// The data plane says it forwarded the traffic (Hubble `FORWARDED`,
    /// Calico `allow`); no end-to-end evidence either way.
    Forwarded,
    /// The data plane says it dropped the traffic (Hubble `DROPPED`,
    /// Calico `deny`).
    Dropped,
}

impl Outcome {
    /// Traffic that got through: established, or forwarded by the data plane.
    pub fn got_through(self) -> bool {
        matches!(self, Outcome::Established | Outcome::Forwarded)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Established => "established",
            Outcome::Refused => "refused",
            Outcome::Unanswered => "unanswered",
            Outcome::Forwarded => "forwarded",
            Outcome::Dropped => "dropped",
        }
    }

    pub fn parse(text: &str) -> Option<Outcome> {
        Some(match text.trim().to_ascii_lowercase().as_str() {
            "established" => Outcome::Established,
            "refused" | "rejected" | "reset" => Outcome::Refused,
            "unanswered" | "timeout" | "no-reply" => Outcome::Unanswered,
            "forwarded" | "allow" | "allowed" | "accept" => Outcome::Forwarded,
            "dropped" | "deny" | "denied" | "drop" => Outcome::Dropped,
            _ => return None,
        })
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The input formats Palisade reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    Pcap,
    Pcapng,
    Hubble,
    Calico,
    Conntrack,
    Jsonl,
    Csv,
    /// Events of the node agent's eBPF sensor (live, not a file format).
    Ebpf,
    /// Data-plane log lines recording policy drops (netfilter LOG, Cilium
    /// monitor, OVN ACL audit).
    DropLog,
    /// Kubernetes API audit events (palisade-logs).
    AuditLog,
    /// Container logs (palisade-logs).
    ContainerLog,
}

impl Format {
    pub const ALL: [Format; 11] = [
        Format::Pcap,
        Format::Pcapng,
        Format::Hubble,
        Format::Calico,
        Format::Conntrack,
        Format::Jsonl,
        Format::Csv,
        Format::Ebpf,
        Format::DropLog,
        Format::AuditLog,
        Format::ContainerLog,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Pcap => "pcap",
            Format::Pcapng => "pcapng",
            Format::Hubble => "hubble",
            Format::Calico => "calico",
            Format::Conntrack => "conntrack",
            Format::Jsonl => "jsonl",
            Format::Csv => "csv",
            Format::Ebpf => "ebpf",
            Format::DropLog => "drop-log",
            Format::AuditLog => "audit-log",
            Format::ContainerLog => "container-log",
        }
    }

    pub fn parse(text: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|f| f.as_str() == text)
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a flow's evidence is: the file and the record (packet number, line
/// number) where the connection was first seen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RecordRef {
    pub file: Arc<str>,
    pub format: Format,
    /// 1-based packet number (pcap) or line number (text formats).
    pub record: u64,
}

impl fmt::Display for RecordRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.format {
            Format::Pcap | Format::Pcapng => "packet",
            Format::Ebpf => "event",
            _ => "line",
        };
        write!(f, "{} {unit} {}", self.file, self.record)
    }
}

/// One observed connection (or one aggregated data-plane record).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Flow {
    pub first_seen: Option<Micros>,
    pub last_seen: Option<Micros>,
    pub transport: Transport,
    /// The initiator.
    pub src: FlowEndpoint,
    pub dst: FlowEndpoint,
    pub outcome: Outcome,
    /// Set when the initiator was not seen initiating (capture started
    /// mid-stream) and was inferred from ports and data.
    pub direction_inferred: bool,
    /// Packets and bytes from the initiator, then from the responder.
    pub packets: [u64; 2],
    pub bytes: [u64; 2],
    /// How many connections the record stands for (Calico aggregates; 1
    /// otherwise).
    pub connections: u64,
    /// ICMP type and code of the first packet, for ICMP flows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icmp: Option<(u8, u8)>,
    /// The data plane's drop reason (Hubble `drop_reason_desc`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drop_reason: Option<String>,
    /// Policies the data plane says decided (Calico `policies`, Hubble
    /// policy names), verbatim.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dataplane_policies: Vec<String>,
    /// Which side reported the record (Calico `reporter`, Hubble
    /// `traffic_direction`), when the source says. Borrowed when it is one
    /// of a few fixed words, so most records allocate nothing for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reporter: Option<Cow<'static, str>>,
    pub evidence: RecordRef,
}

impl Flow {
    /// A flow between two addresses with nothing observed yet; readers fill
    /// in the rest.
    pub fn new(evidence: RecordRef, transport: Transport, outcome: Outcome) -> Flow {
        Flow {
            first_seen: None,
            last_seen: None,
            transport,
            src: FlowEndpoint::default(),
            dst: FlowEndpoint::default(),
            outcome,
            direction_inferred: false,
            packets: [0, 0],
            bytes: [0, 0],
            connections: 1,
            icmp: None,
            drop_reason: None,
            dataplane_policies: Vec::new(),
            reporter: None,
            evidence,
        }
    }

    /// A data-plane record made at the source (Hubble `traffic_direction`
    /// EGRESS, Calico `reporter` src) of traffic that drew no reply: it
    /// shows what the source's egress did, not whether the destination
    /// accepted it, which the destination's node decides and records.
    pub fn shows_source_side_only(&self) -> bool {
        let answered = self.outcome == Outcome::Established || self.packets[1] > 0;
        matches!(self.reporter.as_deref(), Some("egress" | "src")) && !answered
    }

    /// The traffic got through to the destination, as far as this record
    /// shows.
    pub fn reached_destination(&self) -> bool {
        self.outcome.got_through() && !self.shows_source_side_only()
    }
}
