//! Building blocks for the capture tests: frames from the pcap writer,
//! rewrapped with VLAN tags, IPv4 options, IPv6 extension headers, tunnels,
//! or into pcapng.

use std::net::{IpAddr, SocketAddr};

use palisade_flow::Micros;
use palisade_flow::packet::tcp_flags;
use palisade_flow::pcap_writer::{PacketSpec, PcapOptions, PcapWriter, ethernet_frame};

pub const START: Micros = 1_700_000_000_000_000;

/// Offsets of the record headers of a little-endian classic pcap.
pub fn record_offsets(pcap: &[u8]) -> Vec<usize> {
    let mut offsets = Vec::new();
    let mut at = 24;
    while at + 16 <= pcap.len() {
        offsets.push(at);
        let len = u32::from_le_bytes(pcap[at + 8..at + 12].try_into().unwrap()) as usize;
        at += 16 + len;
    }
    offsets
}

/// The (time, frame) records of a little-endian microsecond pcap.
pub fn records(pcap: &[u8]) -> Vec<(Micros, Vec<u8>)> {
    record_offsets(pcap)
        .into_iter()
        .map(|at| {
            let field = |i: usize| u32::from_le_bytes(pcap[at + i..at + i + 4].try_into().unwrap());
            let time = Micros::from(field(0)) * 1_000_000 + Micros::from(field(4));
            (time, pcap[at + 16..at + 16 + field(8) as usize].to_vec())
        })
        .collect()
}

/// The frames of a whole TCP connection (see `PcapWriter::tcp_connection`)
/// framed for `link_type`.
pub fn tcp_frames(
    link_type: u32,
    client: &str,
    server: &str,
    request: &[u8],
    response: &[u8],
) -> Vec<(Micros, Vec<u8>)> {
    let options = PcapOptions {
        link_type,
        ..PcapOptions::default()
    };
    let mut w = PcapWriter::with_options(Vec::new(), options).unwrap();
    w.tcp_connection(
        START,
        client.parse().unwrap(),
        server.parse().unwrap(),
        request,
        response,
    )
    .unwrap();
    records(&w.into_inner().unwrap())
}

/// A pcap of the given link type holding the frames.
pub fn capture_of(link_type: u32, frames: &[(Micros, Vec<u8>)]) -> Vec<u8> {
    let options = PcapOptions {
        link_type,
        ..PcapOptions::default()
    };
    let mut w = PcapWriter::with_options(Vec::new(), options).unwrap();
    for (time, frame) in frames {
        w.write_frame(*time, frame).unwrap();
    }
    w.into_inner().unwrap()
}

pub fn write_syn(
    mut w: PcapWriter<Vec<u8>>,
    time: Micros,
    client: SocketAddr,
    server: SocketAddr,
    seq: u32,
) -> PcapWriter<Vec<u8>> {
    w.write_packet(
        time,
        &PacketSpec::tcp(client, server, tcp_flags::SYN, seq, 0, &[]),
    )
    .unwrap();
    w
}

/// Inserts VLAN tags (TPID, then a tag control word) after the MACs.
pub fn with_vlan_tags(frame: &[u8], tpids: &[u16]) -> Vec<u8> {
    let mut out = frame[..12].to_vec();
    for (i, tpid) in tpids.iter().enumerate() {
        out.extend_from_slice(&tpid.to_be_bytes());
        out.extend_from_slice(&(100 + i as u16).to_be_bytes());
    }
    out.extend_from_slice(&frame[12..]);
    out
}

/// Gives an Ethernet/IPv4 frame a 4-byte options field (NOPs, then end).
pub fn with_ipv4_options(frame: &[u8]) -> Vec<u8> {
    let mut out = frame[..34].to_vec();
    out[14] = 0x46;
    let total = u16::from_be_bytes([out[16], out[17]]) + 4;
    out[16..18].copy_from_slice(&total.to_be_bytes());
    out.extend_from_slice(&[1, 1, 1, 0]);
    out.extend_from_slice(&frame[34..]);
    out
}

/// Puts hop-by-hop options, destination options and a fragment header
/// (at `fragment_offset` bytes) between an Ethernet/IPv6 frame's header
/// and its transport.
pub fn with_ipv6_extensions(frame: &[u8], fragment_offset: u16) -> Vec<u8> {
    let mut out = frame[..54].to_vec();
    let transport = out[20];
    out[20] = 0; // hop-by-hop first
    let len = u16::from_be_bytes([out[18], out[19]]) + 24;
    out[18..20].copy_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&[60, 0, 1, 4, 0, 0, 0, 0]); // then destination options
    out.extend_from_slice(&[44, 0, 1, 4, 0, 0, 0, 0]); // then a fragment header
    out.extend_from_slice(&[transport, 0]);
    out.extend_from_slice(&fragment_offset.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0x12, 0x34]);
    out.extend_from_slice(&frame[54..]);
    out
}

fn udp_frame(from: IpAddr, to: IpAddr, port: u16, payload: &[u8]) -> Vec<u8> {
    let spec = PacketSpec::udp(
        SocketAddr::new(from, 50_000),
        SocketAddr::new(to, port),
        payload,
    );
    let mut out = Vec::new();
    ethernet_frame(&spec, &mut out).unwrap();
    out
}

/// The frame inside VXLAN (VNI 42) inside UDP between two nodes.
pub fn vxlan(node1: IpAddr, node2: IpAddr, port: u16, inner: &[u8]) -> Vec<u8> {
    let payload = [&[0x08, 0, 0, 0, 0, 0, 42, 0][..], inner].concat();
    udp_frame(node1, node2, port, &payload)
}

/// The frame inside Geneve, with 8 bytes of options.
pub fn geneve(node1: IpAddr, node2: IpAddr, inner: &[u8]) -> Vec<u8> {
    let header = [
        0x02, 0, 0x65, 0x58, 0, 0, 42, 0, 0x01, 0x02, 0x80, 0x01, 0, 0, 0, 7,
    ];
    udp_frame(node1, node2, 6081, &[&header[..], inner].concat())
}

/// The IP packet of an Ethernet frame inside IPv4 (protocol 4).
pub fn ipip(node1: IpAddr, node2: IpAddr, inner: &[u8]) -> Vec<u8> {
    let any = |ip| SocketAddr::new(ip, 0);
    let spec = PacketSpec {
        protocol: 4,
        payload: &inner[14..],
        ..PacketSpec::udp(any(node1), any(node2), &[])
    };
    let mut out = Vec::new();
    ethernet_frame(&spec, &mut out).unwrap();
    out
}

/// A minimal pcapng writer, independent of the reader under test.
pub struct PcapngBuilder {
    out: Vec<u8>,
    big: bool,
    /// Offsets where a block ends: valid places for a file to end.
    pub boundaries: Vec<usize>,
}

impl PcapngBuilder {
    pub fn new(big: bool) -> PcapngBuilder {
        let mut builder = PcapngBuilder {
            out: Vec::new(),
            big,
            boundaries: Vec::new(),
        };
        builder.section(big);
        builder
    }

    fn u16(&self, v: u16) -> [u8; 2] {
        if self.big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }

    fn u32(&self, v: u32) -> [u8; 4] {
        if self.big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }

    fn block(&mut self, kind: u32, body: &[u8]) {
        let padded = body.len().div_ceil(4) * 4;
        let len = (12 + padded) as u32;
        let (kind, len) = (self.u32(kind), self.u32(len));
        self.out.extend_from_slice(&kind);
        self.out.extend_from_slice(&len);
        self.out.extend_from_slice(body);
        self.out.resize(self.out.len() + padded - body.len(), 0);
        self.out.extend_from_slice(&len);
        self.boundaries.push(self.out.len());
    }

    pub fn section(&mut self, big: bool) {
        self.big = big;
        let mut body = self.u32(0x1a2b_3c4d).to_vec();
        body.extend_from_slice(&self.u16(1));
        body.extend_from_slice(&self.u16(0));
        body.extend_from_slice(&[0xff; 8]); // section length unknown
        self.block(0x0a0d_0d0a, &body);
    }

    pub fn interface(&mut self, link_type: u16, resolution: Option<u8>) {
        let mut body = self.u16(link_type).to_vec();
        body.extend_from_slice(&[0, 0]);
        body.extend_from_slice(&self.u32(262_144));
        if let Some(resolution) = resolution {
            body.extend_from_slice(&self.u16(9));
            body.extend_from_slice(&self.u16(1));
            body.extend_from_slice(&[resolution, 0, 0, 0]);
        }
        body.extend_from_slice(&[0, 0, 0, 0]); // end of options
        self.block(1, &body);
    }

    pub fn enhanced(&mut self, interface: u32, units: u64, frame: &[u8]) {
        let mut body = self.u32(interface).to_vec();
        body.extend_from_slice(&self.u32((units >> 32) as u32));
        body.extend_from_slice(&self.u32(units as u32));
        body.extend_from_slice(&self.u32(frame.len() as u32));
        body.extend_from_slice(&self.u32(frame.len() as u32));
        body.extend_from_slice(frame);
        self.block(6, &body);
    }

    pub fn simple(&mut self, frame: &[u8]) {
        let mut body = self.u32(frame.len() as u32).to_vec();
        body.extend_from_slice(frame);
        self.block(3, &body);
    }

    pub fn unknown_block(&mut self, kind: u32, len: usize) {
        self.block(kind, &vec![0xee; len]);
    }

    pub fn finish(self) -> Vec<u8> {
        self.out
    }
}
