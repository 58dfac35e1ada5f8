//! Generated captures with a known answer: many interleaved connections of
//! every outcome, for benchmarks and for tests that need volume.

use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{PacketSpec, PcapOptions, PcapWriter, initial_sequence};
use crate::model::Micros;
use crate::packet::tcp_flags::{ACK, FIN, PSH, RST, SYN};

/// What a generated capture holds, to check a reader against.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyntheticSummary {
    pub packets: u64,
    pub connections: u64,
    pub established: u64,
    pub refused: u64,
    pub unanswered: u64,
    /// Connections over IPv6 (the rest are IPv4).
    pub ipv6: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    TcpEstablished,
    TcpRefused,
    TcpUnanswered,
    UdpAnswered,
    UdpUnanswered,
}

impl Kind {
    /// The mix: mostly established TCP, some failures, some UDP.
    fn pick(roll: u64) -> Kind {
        match roll % 100 {
            0..80 => Kind::TcpEstablished,
            80..86 => Kind::TcpRefused,
            86..90 => Kind::TcpUnanswered,
            90..98 => Kind::UdpAnswered,
            _ => Kind::UdpUnanswered,
        }
    }

    /// Packets without data: handshake and close, a SYN and its RST, a SYN
    /// and two retransmissions, a query and its answer, a lone datagram.
    fn base_packets(self) -> u64 {
        match self {
            Kind::TcpEstablished => 7,
            Kind::TcpRefused => 2,
            Kind::TcpUnanswered => 3,
            Kind::UdpAnswered => 2,
            Kind::UdpUnanswered => 1,
        }
    }
}

/// splitmix64: tiny, fast, and the same sequence on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// One connection being written, a packet at a time.
struct Script {
    kind: Kind,
    client: SocketAddr,
    server: SocketAddr,
    step: u64,
    steps: u64,
    /// Next sequence number of the client, then of the server.
    next: [u32; 2],
}

/// Payload bytes; only the first few survive the snaplen.
static PAYLOAD: [u8; 1448] = [0x5a; 1448];

impl Script {
    fn new(index: u64, kind: Kind, extra: u64, rng: &mut Rng) -> Script {
        let v6 = rng.next().is_multiple_of(10);
        let server_index = (rng.next() % 512) as u32;
        let (client_ip, server_ip) = addresses(index, server_index, v6);
        let port = match kind {
            Kind::UdpAnswered | Kind::UdpUnanswered => [53, 5353, 8125][(rng.next() % 3) as usize],
            _ => [80, 443, 8080, 5432, 6379, 9090][(rng.next() % 6) as usize],
        };
        let client = SocketAddr::new(client_ip, 32768 + (index % 28_000) as u16);
        let server = SocketAddr::new(server_ip, port);
        Script {
            kind,
            client,
            server,
            step: 0,
            steps: kind.base_packets() + extra,
            next: [
                initial_sequence(client, server, 0),
                initial_sequence(server, client, 0),
            ],
        }
    }

    fn done(&self) -> bool {
        self.step >= self.steps
    }

    /// The next packet: who sends it, flags, payload length.
    fn next_packet(&mut self) -> (bool, u8, usize) {
        let step = self.step;
        self.step += 1;
        match self.kind {
            Kind::TcpEstablished => established_step(step, self.steps),
            Kind::TcpRefused if step == 0 => (true, SYN, 0),
            Kind::TcpRefused => (false, RST | ACK, 0),
            Kind::TcpUnanswered => (true, SYN, 0),
            Kind::UdpAnswered => (step.is_multiple_of(2), 0, 40 + (step % 7) as usize * 30),
            Kind::UdpUnanswered => (true, 0, 48),
        }
    }

    fn write<W: Write>(&mut self, writer: &mut PcapWriter<W>, time: Micros) -> io::Result<()> {
        let retransmission = self.kind == Kind::TcpUnanswered && self.step > 0;
        let (from_client, flags, len) = self.next_packet();
        let payload = &PAYLOAD[..len.min(PAYLOAD.len())];
        let (src, dst) = if from_client {
            (self.client, self.server)
        } else {
            (self.server, self.client)
        };
        if matches!(self.kind, Kind::UdpAnswered | Kind::UdpUnanswered) {
            return writer.write_packet(time, &PacketSpec::udp(src, dst, payload));
        }
        let (me, other) = if from_client { (0, 1) } else { (1, 0) };
        let seq = if retransmission {
            self.next[me].wrapping_sub(1)
        } else {
            self.next[me]
        };
        writer.write_packet(
            time,
            &PacketSpec::tcp(src, dst, flags, seq, self.next[other], payload),
        )?;
        let control = u32::from(flags & (SYN | FIN) != 0 && !retransmission);
        self.next[me] = self.next[me].wrapping_add(len as u32 + control);
        Ok(())
    }
}

/// Handshake, data (a request, two response segments, an ACK, repeated),
/// then FIN, ACK, FIN, ACK.
fn established_step(step: u64, steps: u64) -> (bool, u8, usize) {
    let close = steps - 4;
    match step {
        0 => (true, SYN, 0),
        1 => (false, SYN | ACK, 0),
        2 => (true, ACK, 0),
        s if s == close => (true, FIN | ACK, 0),
        s if s == close + 1 => (false, ACK, 0),
        s if s == close + 2 => (false, FIN | ACK, 0),
        s if s > close + 2 => (true, ACK, 0),
        s => match (s - 3) % 4 {
            0 => (true, PSH | ACK, 64 + ((s * 37) % 448) as usize),
            1 | 2 => (false, ACK, PAYLOAD.len()),
            _ => (true, ACK, 0),
        },
    }
}

/// Client addresses are unique per connection together with the port;
/// servers are a pool of 512.
fn addresses(index: u64, server: u32, v6: bool) -> (IpAddr, IpAddr) {
    let client_host = (index / 28_000) as u32;
    if v6 {
        let client = Ipv6Addr::new(
            0xfd00,
            0,
            0,
            1,
            0,
            0,
            (client_host >> 16) as u16,
            client_host as u16,
        );
        let server = Ipv6Addr::new(0xfd00, 0, 0, 2, 0, 0, 0, server as u16);
        (IpAddr::V6(client), IpAddr::V6(server))
    } else {
        let client = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 64, 0, 1)) + client_host);
        let server = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 1)) + server);
        (IpAddr::V4(client), IpAddr::V4(server))
    }
}

/// Writes a capture of `connections` interleaved connections, about
/// `packets` packets in all (at least each connection's handshake or
/// equivalent), like `tcpdump -s 96` on a busy node: 80 % established TCP
/// with data both ways, 6 % refused, 4 % unanswered SYNs, 8 % UDP
/// exchanges, 2 % lone datagrams, one in ten over IPv6. The same seed gives
/// the same bytes.
pub fn synthetic_capture(
    connections: usize,
    packets: usize,
    seed: u64,
    out: impl Write,
) -> io::Result<SyntheticSummary> {
    let mut rng = Rng(seed);
    let mut plan = Plan::new(connections, packets as u64, &mut rng);
    let options = PcapOptions {
        snaplen: 96,
        ..PcapOptions::default()
    };
    let mut writer = PcapWriter::with_options(out, options)?;
    let mut summary = SyntheticSummary::default();
    // A few thousand connections open at once, as on a busy node.
    let window = connections.min(4096);
    let mut active: Vec<Script> = (0..window)
        .map(|i| plan.script(i, &mut rng, &mut summary))
        .collect();
    let mut started = window;
    let mut time: Micros = 1_700_000_000_000_000;
    while !active.is_empty() {
        let slot = (rng.next() % active.len() as u64) as usize;
        active[slot].write(&mut writer, time)?;
        time += 1 + (rng.next() % 16) as Micros;
        if active[slot].done() {
            if started < connections {
                active[slot] = plan.script(started, &mut rng, &mut summary);
                started += 1;
            } else {
                active.swap_remove(slot);
            }
        }
    }
    summary.packets = writer.packets_written();
    writer.into_inner()?;
    Ok(summary)
}

/// Each connection's kind, and how the packets beyond the minimum are
/// shared: as data of the established TCP connections.
struct Plan {
    kinds: Vec<Kind>,
    per_connection: u64,
    remainder: u64,
    established_started: u64,
}

impl Plan {
    fn new(connections: usize, packets: u64, rng: &mut Rng) -> Plan {
        let kinds: Vec<Kind> = (0..connections).map(|_| Kind::pick(rng.next())).collect();
        let base: u64 = kinds.iter().map(|k| k.base_packets()).sum();
        let established = kinds.iter().filter(|&&k| k == Kind::TcpEstablished).count() as u64;
        let extra = packets.saturating_sub(base);
        let (per_connection, remainder) = match established {
            0 => (0, 0),
            n => (extra / n, extra % n),
        };
        Plan {
            kinds,
            per_connection,
            remainder,
            established_started: 0,
        }
    }

    /// The script of connection `index`, accounted in `summary`.
    fn script(&mut self, index: usize, rng: &mut Rng, summary: &mut SyntheticSummary) -> Script {
        let kind = self.kinds[index];
        let mut data = 0;
        if kind == Kind::TcpEstablished {
            data = self.per_connection + u64::from(self.established_started < self.remainder);
            self.established_started += 1;
        }
        let script = Script::new(index as u64, kind, data, rng);
        summary.connections += 1;
        summary.ipv6 += u64::from(script.client.is_ipv6());
        match kind {
            Kind::TcpEstablished | Kind::UdpAnswered => summary.established += 1,
            Kind::TcpRefused => summary.refused += 1,
            Kind::TcpUnanswered | Kind::UdpUnanswered => summary.unanswered += 1,
        }
        script
    }
}
