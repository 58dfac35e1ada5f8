//! A small, deterministic writer of classic pcap files, for tests, for the
//! benchmark's generated captures and for `palisade demo`.
//!
//! Frames are built with correct header lengths (IPv4 header checksum
//! included); TCP and UDP checksums are left at zero, which every reader
//! accepts. The same inputs always give the same bytes.

use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};

use crate::model::Micros;
use crate::packet::{link, tcp_flags};

mod synthetic;

pub use synthetic::{SyntheticSummary, synthetic_capture};

/// The file header's choices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PcapOptions {
    /// One of [`link`]'s Ethernet, raw IP, Linux cooked v1 or v2. Other
    /// link types can be written with [`PcapWriter::write_frame`].
    pub link_type: u32,
    /// Nanosecond timestamps (magic `a1b23c4d`).
    pub nanosecond: bool,
    pub big_endian: bool,
    /// Frames are cut to this many bytes, as `tcpdump -s` does; the record
    /// still states the length on the wire.
    pub snaplen: u32,
}

impl Default for PcapOptions {
    fn default() -> PcapOptions {
        PcapOptions {
            link_type: link::ETHERNET,
            nanosecond: false,
            big_endian: false,
            snaplen: 262_144,
        }
    }
}

/// One IP packet to write. Addresses must be of one family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketSpec<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IP protocol number: 6 (TCP) and 17 (UDP) get their headers built;
    /// 1 and 58 (ICMP) get `[icmp_type, icmp_code, 0, 0]`; for any other
    /// protocol the payload is the whole IP payload.
    pub protocol: u8,
    pub src_port: u16,
    pub dst_port: u16,
    pub tcp_flags: u8,
    pub seq: u32,
    pub ack: u32,
    pub icmp_type: u8,
    pub icmp_code: u8,
    pub payload: &'a [u8],
}

impl<'a> PacketSpec<'a> {
    pub fn tcp(
        src: SocketAddr,
        dst: SocketAddr,
        flags: u8,
        seq: u32,
        ack: u32,
        payload: &'a [u8],
    ) -> Self {
        PacketSpec {
            protocol: 6,
            tcp_flags: flags,
            seq,
            ack,
            ..PacketSpec::udp(src, dst, payload)
        }
    }

    pub fn udp(src: SocketAddr, dst: SocketAddr, payload: &'a [u8]) -> Self {
        PacketSpec {
            src: src.ip(),
            dst: dst.ip(),
            protocol: 17,
            src_port: src.port(),
            dst_port: dst.port(),
            tcp_flags: 0,
            seq: 0,
            ack: 0,
            icmp_type: 0,
            icmp_code: 0,
            payload,
        }
    }

    /// ICMP (or ICMPv6, by the addresses' family); `rest` follows the
    /// checksum: identifier and sequence for an echo, unused word and the
    /// quoted packet for an error.
    pub fn icmp(src: IpAddr, dst: IpAddr, icmp_type: u8, icmp_code: u8, rest: &'a [u8]) -> Self {
        let any = SocketAddr::new(src, 0);
        PacketSpec {
            src,
            dst,
            protocol: if src.is_ipv6() { 58 } else { 1 },
            icmp_type,
            icmp_code,
            ..PacketSpec::udp(any, SocketAddr::new(dst, 0), rest)
        }
    }

    fn transport_header_len(&self) -> usize {
        match self.protocol {
            6 => 20,
            17 => 8,
            1 | 58 => 4,
            _ => 0,
        }
    }
}

fn mixed_families() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "source and destination of different IP families",
    )
}

/// Appends the IP packet (header, transport header, payload) to `out`.
pub fn ip_packet(spec: &PacketSpec<'_>, out: &mut Vec<u8>) -> io::Result<()> {
    let transport_len = spec.transport_header_len() + spec.payload.len();
    match (spec.src, spec.dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            let total = u16::try_from(20 + transport_len)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "packet too long"))?;
            let start = out.len();
            out.extend_from_slice(&[0x45, 0]);
            out.extend_from_slice(&total.to_be_bytes());
            // Identification 0, don't fragment, TTL 64.
            out.extend_from_slice(&[0, 0, 0x40, 0, 64, spec.protocol, 0, 0]);
            out.extend_from_slice(&src.octets());
            out.extend_from_slice(&dst.octets());
            let checksum = ipv4_checksum(&out[start..]);
            out[start + 10..start + 12].copy_from_slice(&checksum.to_be_bytes());
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            let payload_len = u16::try_from(transport_len)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "packet too long"))?;
            out.extend_from_slice(&[0x60, 0, 0, 0]);
            out.extend_from_slice(&payload_len.to_be_bytes());
            out.extend_from_slice(&[spec.protocol, 64]);
            out.extend_from_slice(&src.octets());
            out.extend_from_slice(&dst.octets());
        }
        _ => return Err(mixed_families()),
    }
    transport_header(spec, out);
    out.extend_from_slice(spec.payload);
    Ok(())
}

fn transport_header(spec: &PacketSpec<'_>, out: &mut Vec<u8>) {
    match spec.protocol {
        6 => {
            out.extend_from_slice(&spec.src_port.to_be_bytes());
            out.extend_from_slice(&spec.dst_port.to_be_bytes());
            out.extend_from_slice(&spec.seq.to_be_bytes());
            let ack = if spec.tcp_flags & tcp_flags::ACK != 0 {
                spec.ack
            } else {
                0
            };
            out.extend_from_slice(&ack.to_be_bytes());
            // Data offset 5 words, window 64240, checksum and urgent 0.
            out.extend_from_slice(&[0x50, spec.tcp_flags, 0xfa, 0xf0, 0, 0, 0, 0]);
        }
        17 => {
            let len = u16::try_from(8 + spec.payload.len()).unwrap_or(u16::MAX);
            out.extend_from_slice(&spec.src_port.to_be_bytes());
            out.extend_from_slice(&spec.dst_port.to_be_bytes());
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&[0, 0]);
        }
        1 | 58 => out.extend_from_slice(&[spec.icmp_type, spec.icmp_code, 0, 0]),
        _ => {}
    }
}

fn ipv4_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A locally administered MAC derived from the address, so that frames are
/// deterministic and each host keeps its MAC.
fn mac_of(ip: IpAddr) -> [u8; 6] {
    let octets = match ip {
        IpAddr::V4(v4) => v4.octets(),
        IpAddr::V6(v6) => {
            let o = v6.octets();
            [o[12], o[13], o[14], o[15]]
        }
    };
    [0x02, 0x42, octets[0], octets[1], octets[2], octets[3]]
}

fn ethertype_of(ip: IpAddr) -> u16 {
    if ip.is_ipv4() { 0x0800 } else { 0x86dd }
}

/// Appends an Ethernet frame carrying the packet to `out`.
pub fn ethernet_frame(spec: &PacketSpec<'_>, out: &mut Vec<u8>) -> io::Result<()> {
    out.extend_from_slice(&mac_of(spec.dst));
    out.extend_from_slice(&mac_of(spec.src));
    out.extend_from_slice(&ethertype_of(spec.src).to_be_bytes());
    ip_packet(spec, out)
}

/// Appends the packet framed for `link_type` (Ethernet, raw IP, Linux
/// cooked v1 or v2).
pub fn link_frame(link_type: u32, spec: &PacketSpec<'_>, out: &mut Vec<u8>) -> io::Result<()> {
    let ethertype = ethertype_of(spec.src).to_be_bytes();
    let mac = mac_of(spec.src);
    match link_type {
        link::ETHERNET => return ethernet_frame(spec, out),
        link::RAW | link::IPV4 | link::IPV6 => {}
        link::LINUX_SLL => {
            // Sent by us (4), ARPHRD_ETHER, 6-byte address padded to 8.
            out.extend_from_slice(&[0, 4, 0, 1, 0, 6]);
            out.extend_from_slice(&mac);
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(&ethertype);
        }
        link::LINUX_SLL2 => {
            out.extend_from_slice(&ethertype);
            // Reserved, interface index 2, ARPHRD_ETHER, outgoing, 6 bytes.
            out.extend_from_slice(&[0, 0, 0, 0, 0, 2, 0, 1, 4, 6]);
            out.extend_from_slice(&mac);
            out.extend_from_slice(&[0, 0]);
        }
        other => {
            let message = format!("cannot frame packets for link type {other}");
            return Err(io::Error::new(io::ErrorKind::InvalidInput, message));
        }
    }
    ip_packet(spec, out)
}

/// Writes a classic pcap file, one record at a time.
pub struct PcapWriter<W: Write> {
    out: W,
    options: PcapOptions,
    frame: Vec<u8>,
    packets: u64,
}

impl<W: Write> PcapWriter<W> {
    /// A little-endian, microsecond, Ethernet capture.
    pub fn new(out: W) -> io::Result<Self> {
        PcapWriter::with_options(out, PcapOptions::default())
    }

    pub fn with_options(mut out: W, options: PcapOptions) -> io::Result<Self> {
        let magic: u32 = if options.nanosecond {
            0xa1b2_3c4d
        } else {
            0xa1b2_c3d4
        };
        let mut header = Vec::with_capacity(24);
        let fields32 = [magic, 0, 0, 0, options.snaplen, options.link_type];
        for (i, value) in fields32.into_iter().enumerate() {
            if i == 1 {
                // Version 2.4 takes the place of one 32-bit field.
                header.extend_from_slice(&endian16(2, options.big_endian));
                header.extend_from_slice(&endian16(4, options.big_endian));
            } else {
                header.extend_from_slice(&endian32(value, options.big_endian));
            }
        }
        out.write_all(&header)?;
        Ok(PcapWriter {
            out,
            options,
            frame: Vec::with_capacity(2048),
            packets: 0,
        })
    }

    pub fn packets_written(&self) -> u64 {
        self.packets
    }

    /// Writes one record holding `frame` as captured on the link (cut to
    /// the snaplen).
    pub fn write_frame(&mut self, time: Micros, frame: &[u8]) -> io::Result<()> {
        let captured = frame.len().min(self.options.snaplen as usize);
        let seconds = u32::try_from(time.div_euclid(1_000_000)).unwrap_or(0);
        let micros = time.rem_euclid(1_000_000) as u32;
        let fraction = if self.options.nanosecond {
            micros * 1000
        } else {
            micros
        };
        let big = self.options.big_endian;
        let wire = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        let mut header = [0u8; 16];
        for (slot, value) in header
            .chunks_mut(4)
            .zip([seconds, fraction, captured as u32, wire])
        {
            slot.copy_from_slice(&endian32(value, big));
        }
        self.out.write_all(&header)?;
        self.out.write_all(&frame[..captured])?;
        self.packets += 1;
        Ok(())
    }

    /// Writes one packet framed for the file's link type.
    pub fn write_packet(&mut self, time: Micros, spec: &PacketSpec<'_>) -> io::Result<()> {
        let mut frame = std::mem::take(&mut self.frame);
        frame.clear();
        let result = link_frame(self.options.link_type, spec, &mut frame)
            .and_then(|()| self.write_frame(time, &frame));
        self.frame = frame;
        result
    }

    /// Handshake, the request and the response (each acknowledged, when
    /// not empty), then FIN from the client, FIN from the server, last ACK:
    /// 10 packets with data both ways. Packets are 100 µs apart; returns
    /// the time after the last.
    pub fn tcp_connection(
        &mut self,
        start: Micros,
        client: SocketAddr,
        server: SocketAddr,
        request: &[u8],
        response: &[u8],
    ) -> io::Result<Micros> {
        let mut conversation = Conversation::new(self, start, client, server);
        conversation.handshake()?;
        if !request.is_empty() {
            conversation.send(true, tcp_flags::PSH | tcp_flags::ACK, request)?;
            conversation.send(false, tcp_flags::ACK, &[])?;
        }
        if !response.is_empty() {
            conversation.send(false, tcp_flags::PSH | tcp_flags::ACK, response)?;
            conversation.send(true, tcp_flags::ACK, &[])?;
        }
        conversation.close()?;
        Ok(conversation.time)
    }

    /// SYN answered by RST-ACK: nothing listens.
    pub fn refused_connection(
        &mut self,
        start: Micros,
        client: SocketAddr,
        server: SocketAddr,
    ) -> io::Result<Micros> {
        let mut conversation = Conversation::new(self, start, client, server);
        conversation.send(true, tcp_flags::SYN, &[])?;
        conversation.send(false, tcp_flags::RST | tcp_flags::ACK, &[])?;
        Ok(conversation.time)
    }

    /// A SYN and its retransmissions (1 s, 2 s, 4 s... later, as Linux
    /// does), all with the same sequence number, never answered.
    pub fn unanswered_syn(
        &mut self,
        start: Micros,
        client: SocketAddr,
        server: SocketAddr,
        attempts: u32,
    ) -> io::Result<Micros> {
        let seq = initial_sequence(client, server, start);
        let mut time = start;
        let mut backoff: Micros = 1_000_000;
        for _ in 0..attempts {
            self.write_packet(
                time,
                &PacketSpec::tcp(client, server, tcp_flags::SYN, seq, 0, &[]),
            )?;
            time += backoff;
            backoff *= 2;
        }
        Ok(time)
    }

    /// A datagram, and its reply when there is one.
    pub fn udp_exchange(
        &mut self,
        start: Micros,
        client: SocketAddr,
        server: SocketAddr,
        request: &[u8],
        response: Option<&[u8]>,
    ) -> io::Result<Micros> {
        self.write_packet(start, &PacketSpec::udp(client, server, request))?;
        match response {
            Some(response) => {
                self.write_packet(start + 100, &PacketSpec::udp(server, client, response))?;
                Ok(start + 200)
            }
            None => Ok(start + 100),
        }
    }

    /// Flushes and returns the output.
    pub fn into_inner(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

fn endian16(value: u16, big: bool) -> [u8; 2] {
    if big {
        value.to_be_bytes()
    } else {
        value.to_le_bytes()
    }
}

fn endian32(value: u32, big: bool) -> [u8; 4] {
    if big {
        value.to_be_bytes()
    } else {
        value.to_le_bytes()
    }
}

/// A deterministic initial sequence number per tuple and start time, so
/// that a reused tuple gets another one, as real stacks do.
fn initial_sequence(from: SocketAddr, to: SocketAddr, time: Micros) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for byte in format!("{from}{to}{time}").bytes() {
        h = (h ^ u32::from(byte)).wrapping_mul(0x0100_0193);
    }
    h
}

/// A TCP conversation's sequence numbers while it is being written.
struct Conversation<'w, W: Write> {
    writer: &'w mut PcapWriter<W>,
    time: Micros,
    client: SocketAddr,
    server: SocketAddr,
    /// Next sequence number of the client, then of the server.
    next: [u32; 2],
}

impl<'w, W: Write> Conversation<'w, W> {
    fn new(
        writer: &'w mut PcapWriter<W>,
        time: Micros,
        client: SocketAddr,
        server: SocketAddr,
    ) -> Self {
        let next = [
            initial_sequence(client, server, time),
            initial_sequence(server, client, time),
        ];
        Conversation {
            writer,
            time,
            client,
            server,
            next,
        }
    }

    fn send(&mut self, from_client: bool, flags: u8, payload: &[u8]) -> io::Result<()> {
        let (me, other) = if from_client { (0, 1) } else { (1, 0) };
        let (src, dst) = if from_client {
            (self.client, self.server)
        } else {
            (self.server, self.client)
        };
        let spec = PacketSpec::tcp(src, dst, flags, self.next[me], self.next[other], payload);
        self.writer.write_packet(self.time, &spec)?;
        // SYN and FIN take one sequence number each.
        let control = u32::from(flags & (tcp_flags::SYN | tcp_flags::FIN) != 0);
        self.next[me] = self.next[me].wrapping_add(payload.len() as u32 + control);
        self.time += 100;
        Ok(())
    }

    fn handshake(&mut self) -> io::Result<()> {
        self.send(true, tcp_flags::SYN, &[])?;
        self.send(false, tcp_flags::SYN | tcp_flags::ACK, &[])?;
        self.send(true, tcp_flags::ACK, &[])
    }

    fn close(&mut self) -> io::Result<()> {
        self.send(true, tcp_flags::FIN | tcp_flags::ACK, &[])?;
        self.send(false, tcp_flags::FIN | tcp_flags::ACK, &[])?;
        self.send(true, tcp_flags::ACK, &[])
    }
}
