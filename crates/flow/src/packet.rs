//! One captured frame decoded into the few fields connection reconstruction
//! needs: addresses, transport, ports, TCP flags, payload length, ICMP type.
//!
//! This is the hot path of `palisade flows verify` on a capture, so decoding
//! borrows the frame and allocates nothing. Every read is bounds-checked
//! (`get`, never indexing past a checked length) and every loop is bounded
//! (VLAN tags, IPv6 extension headers, tunnel nesting), so no input can make
//! it panic or spin. A frame that carries no IP traffic (ARP, LLDP...) is not
//! an error: it comes back as a [`Skip`] with a reason the reader counts.
//!
//! Overlay traffic is decapsulated (VXLAN, Geneve, IP-in-IP) so that pod
//! traffic captured on a node's uplink is seen between pod addresses, which
//! is what policies talk about; the node-to-node tunnel itself is not
//! reported.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::model::{Micros, Transport};

/// Link-layer header types (the pcap `LINKTYPE_*` values) the decoder reads.
pub mod link {
    /// BSD loopback: a 4-byte address family in the capturing host's order.
    pub const NULL: u32 = 0;
    pub const ETHERNET: u32 = 1;
    /// Raw IP, version from the first nibble.
    pub const RAW: u32 = 101;
    /// Linux cooked capture v1 (`tcpdump -i any` before libpcap 1.10).
    pub const LINUX_SLL: u32 = 113;
    pub const IPV4: u32 = 228;
    pub const IPV6: u32 = 229;
    /// Linux cooked capture v2 (`tcpdump -i any` since libpcap 1.10).
    pub const LINUX_SLL2: u32 = 276;

    pub fn is_supported(link_type: u32) -> bool {
        matches!(
            link_type,
            NULL | ETHERNET | RAW | LINUX_SLL | IPV4 | IPV6 | LINUX_SLL2
        )
    }
}

/// TCP header flag bits, as in the flags byte of the header.
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
}

/// UDP destination ports carrying VXLAN: the IANA port and the Linux kernel
/// default that Flannel and Cilium use.
pub const VXLAN_PORTS: [u16; 2] = [4789, 8472];
pub const GENEVE_PORT: u16 = 6081;

/// Tunnels inside tunnels happen (VXLAN over IPsec-less IP-in-IP, nested
/// labs), but more than this is either an attack on the decoder or garbage.
pub const MAX_ENCAPSULATION_DEPTH: u8 = 4;
/// 802.1ad allows two tags; a few more cover odd provider setups.
const MAX_VLAN_TAGS: usize = 4;
/// Real IPv6 packets carry two or three extension headers at most.
const MAX_IPV6_EXTENSIONS: usize = 8;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_ARP: u16 = 0x0806;
const ETHERTYPE_LLDP: u16 = 0x88cc;
/// Geneve's protocol type for an Ethernet frame ("transparent Ethernet
/// bridging").
const ETHERTYPE_TEB: u16 = 0x6558;

/// Why a frame produced no packet. The reason is counted, never an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Skip(pub &'static str);

const TOO_SHORT: Skip = Skip("frame shorter than its link header");
const NON_FIRST_FRAGMENT: Skip = Skip("non-first IP fragment");

/// The connection an ICMP error message is about: the header it quotes, as
/// sent by the original sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quoted {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub transport: Transport,
    pub src_port: u16,
    pub dst_port: u16,
    pub icmp_type: u8,
    pub icmp_id: u16,
}

/// One decoded IP packet (the innermost one, for tunnelled traffic).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet {
    pub time: Micros,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub transport: Transport,
    /// 0 for transports without ports.
    pub src_port: u16,
    pub dst_port: u16,
    /// See [`tcp_flags`]; 0 for other transports.
    pub tcp_flags: u8,
    /// Sequence number, which tells a retransmitted SYN from a new
    /// connection on the same ports.
    pub tcp_seq: u32,
    /// Bytes above the transport header (TCP/UDP/SCTP data, ICMP data after
    /// the 8-byte header, the whole IP payload for other protocols), from
    /// the IP length fields: snaplen-truncated captures still count what
    /// went over the wire, and Ethernet padding is not counted.
    pub payload_len: u32,
    pub icmp_type: u8,
    pub icmp_code: u8,
    /// Echo (and timestamp...) identifier, which pairs requests and replies.
    pub icmp_id: u16,
    /// For ICMP errors: the packet the error is about.
    pub quoted: Option<Quoted>,
    /// The capture holds less than the packet: snaplen, or lengths in the
    /// headers larger than the frame.
    pub truncated: bool,
}

impl Packet {
    fn empty(time: Micros) -> Packet {
        Packet {
            time,
            src: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            dst: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            transport: Transport::Other(255),
            src_port: 0,
            dst_port: 0,
            tcp_flags: 0,
            tcp_seq: 0,
            payload_len: 0,
            icmp_type: 0,
            icmp_code: 0,
            icmp_id: 0,
            quoted: None,
            truncated: false,
        }
    }

    /// Link-local control traffic that is no connection and that no
    /// NetworkPolicy governs: IPv6 neighbour discovery, multicast group
    /// management. Every bridge carries it; turning it into flows would
    /// only be noise for the detectors, so readers count it as skipped.
    pub fn link_local_control(&self) -> Option<&'static str> {
        match (self.transport, self.icmp_type) {
            (Transport::Icmpv6, 133..=137 | 141 | 142) => Some("IPv6 neighbour discovery"),
            (Transport::Icmpv6, 130..=132 | 143 | 151..=153) | (Transport::Other(2), _) => {
                Some("multicast group management (MLD, IGMP)")
            }
            _ => None,
        }
    }
}

/// Decodes one frame of the given link type. `original_len` is the length
/// on the wire, from the capture's record header.
pub fn decode(
    link_type: u32,
    frame: &[u8],
    original_len: u32,
    time: Micros,
) -> Result<Packet, Skip> {
    let mut packet = Packet::empty(time);
    packet.truncated = (frame.len() as u64) < u64::from(original_len);
    match link_type {
        link::ETHERNET => ethernet(&mut packet, frame, 0)?,
        link::RAW => raw_ip(&mut packet, frame, 0)?,
        link::IPV4 => ipv4(&mut packet, frame, 0)?,
        link::IPV6 => ipv6(&mut packet, frame, 0)?,
        link::LINUX_SLL => linux_sll(&mut packet, frame)?,
        link::LINUX_SLL2 => linux_sll2(&mut packet, frame)?,
        link::NULL => loopback(&mut packet, frame)?,
        _ => return Err(Skip("unsupported link type")),
    }
    Ok(packet)
}

fn byte(data: &[u8], at: usize) -> Option<u8> {
    data.get(at).copied()
}

fn be16(data: &[u8], at: usize) -> Option<u16> {
    let bytes = data.get(at..)?.get(..2)?;
    Some(u16::from_be_bytes([bytes[0], bytes[1]]))
}

fn be32(data: &[u8], at: usize) -> Option<u32> {
    let bytes: [u8; 4] = data.get(at..)?.get(..4)?.try_into().ok()?;
    Some(u32::from_be_bytes(bytes))
}

fn ipv4_at(data: &[u8], at: usize) -> Option<IpAddr> {
    let bytes: [u8; 4] = data.get(at..)?.get(..4)?.try_into().ok()?;
    Some(IpAddr::V4(Ipv4Addr::from(bytes)))
}

fn ipv6_at(data: &[u8], at: usize) -> Option<IpAddr> {
    let bytes: [u8; 16] = data.get(at..)?.get(..16)?.try_into().ok()?;
    Some(IpAddr::V6(Ipv6Addr::from(bytes)))
}

/// The depth of a tunnel's inner packet, refused past the bound.
fn nested(depth: u8) -> Result<u8, Skip> {
    if depth >= MAX_ENCAPSULATION_DEPTH {
        Err(Skip("encapsulation nested too deeply"))
    } else {
        Ok(depth + 1)
    }
}

fn ethernet(packet: &mut Packet, frame: &[u8], depth: u8) -> Result<(), Skip> {
    let ethertype = be16(frame, 12).ok_or(TOO_SHORT)?;
    let rest = frame.get(14..).ok_or(TOO_SHORT)?;
    ethertype_payload(packet, ethertype, rest, depth)
}

fn is_vlan_tag(ethertype: u16) -> bool {
    // 802.1Q, 802.1ad, and the pre-standard QinQ value.
    matches!(ethertype, 0x8100 | 0x88a8 | 0x9100)
}

/// Strips VLAN tags (each is 2 bytes of tag control then the next type),
/// then dispatches on the network protocol.
fn ethertype_payload(
    packet: &mut Packet,
    mut ethertype: u16,
    mut data: &[u8],
    depth: u8,
) -> Result<(), Skip> {
    let mut tags = 0;
    while is_vlan_tag(ethertype) {
        if tags == MAX_VLAN_TAGS {
            return Err(Skip("too many VLAN tags"));
        }
        ethertype = be16(data, 2).ok_or(Skip("truncated VLAN tag"))?;
        data = data.get(4..).ok_or(Skip("truncated VLAN tag"))?;
        tags += 1;
    }
    match ethertype {
        ETHERTYPE_IPV4 => ipv4(packet, data, depth),
        ETHERTYPE_IPV6 => ipv6(packet, data, depth),
        ETHERTYPE_ARP => Err(Skip("ARP frame")),
        ETHERTYPE_LLDP => Err(Skip("LLDP frame")),
        _ => Err(Skip("non-IP frame")),
    }
}

fn raw_ip(packet: &mut Packet, data: &[u8], depth: u8) -> Result<(), Skip> {
    match byte(data, 0).map(|b| b >> 4) {
        Some(4) => ipv4(packet, data, depth),
        Some(6) => ipv6(packet, data, depth),
        Some(_) => Err(Skip("not an IP packet")),
        None => Err(TOO_SHORT),
    }
}

/// Linux cooked v1: packet type, ARPHRD type, address length, 8 address
/// bytes, then the protocol (an Ethertype for the link types that matter).
fn linux_sll(packet: &mut Packet, frame: &[u8]) -> Result<(), Skip> {
    let arphrd = be16(frame, 2).ok_or(TOO_SHORT)?;
    let protocol = be16(frame, 14).ok_or(TOO_SHORT)?;
    let rest = frame.get(16..).ok_or(TOO_SHORT)?;
    cooked_payload(packet, arphrd, protocol, rest)
}

/// Linux cooked v2: protocol first, then reserved, interface index, ARPHRD
/// type, packet type, address length and 8 address bytes.
fn linux_sll2(packet: &mut Packet, frame: &[u8]) -> Result<(), Skip> {
    let protocol = be16(frame, 0).ok_or(TOO_SHORT)?;
    let arphrd = be16(frame, 8).ok_or(TOO_SHORT)?;
    let rest = frame.get(20..).ok_or(TOO_SHORT)?;
    cooked_payload(packet, arphrd, protocol, rest)
}

fn cooked_payload(
    packet: &mut Packet,
    arphrd: u16,
    protocol: u16,
    rest: &[u8],
) -> Result<(), Skip> {
    const ARPHRD_NETLINK: u16 = 824;
    if arphrd == ARPHRD_NETLINK {
        return Err(Skip("netlink message"));
    }
    ethertype_payload(packet, protocol, rest, 0)
}

/// BSD loopback: the address family is in the capturing host's byte order,
/// so both orders are tried. IPv6 has a different number on each BSD.
fn loopback(packet: &mut Packet, frame: &[u8]) -> Result<(), Skip> {
    let bytes: [u8; 4] = frame
        .get(..4)
        .ok_or(TOO_SHORT)?
        .try_into()
        .map_err(|_| TOO_SHORT)?;
    let little = u32::from_le_bytes(bytes);
    let family = if little > 0xffff {
        little.swap_bytes()
    } else {
        little
    };
    let rest = frame.get(4..).ok_or(TOO_SHORT)?;
    match family {
        2 => ipv4(packet, rest, 0),
        10 | 24 | 28 | 30 => ipv6(packet, rest, 0),
        _ => Err(Skip("non-IP frame")),
    }
}

fn ipv4(packet: &mut Packet, data: &[u8], depth: u8) -> Result<(), Skip> {
    let header = data.get(..20).ok_or(Skip("truncated IPv4 header"))?;
    if header[0] >> 4 != 4 {
        return Err(Skip("bad IP version"));
    }
    let header_len = usize::from(header[0] & 0x0f) * 4;
    if header_len < 20 {
        return Err(Skip("bad IPv4 header length"));
    }
    if data.len() < header_len {
        return Err(Skip("truncated IPv4 header"));
    }
    if u16::from_be_bytes([header[6], header[7]]) & 0x1fff != 0 {
        return Err(NON_FIRST_FRAGMENT);
    }
    let total = usize::from(u16::from_be_bytes([header[2], header[3]]));
    // A zero total length is what segmentation offload shows on the
    // sending host: the frame's length is the best evidence then.
    let end = match total {
        0 => data.len(),
        t if t < header_len => return Err(Skip("bad IPv4 total length")),
        t => {
            packet.truncated |= t > data.len();
            t
        }
    };
    packet.src = ipv4_at(header, 12).ok_or(Skip("truncated IPv4 header"))?;
    packet.dst = ipv4_at(header, 16).ok_or(Skip("truncated IPv4 header"))?;
    let payload = data
        .get(header_len..end.min(data.len()))
        .unwrap_or_default();
    transport(packet, header[9], payload, end - header_len, depth)
}

fn ipv6(packet: &mut Packet, data: &[u8], depth: u8) -> Result<(), Skip> {
    let header = data.get(..40).ok_or(Skip("truncated IPv6 header"))?;
    if header[0] >> 4 != 6 {
        return Err(Skip("bad IP version"));
    }
    let body = data.get(40..).unwrap_or_default();
    let declared = match usize::from(u16::from_be_bytes([header[4], header[5]])) {
        // Jumbograms and segmentation offload: trust the frame.
        0 => body.len(),
        n => {
            packet.truncated |= n > body.len();
            n
        }
    };
    let body = body.get(..declared.min(body.len())).unwrap_or_default();
    let (protocol, offset) = ipv6_extensions(header[6], body)?;
    packet.src = ipv6_at(header, 8).ok_or(Skip("truncated IPv6 header"))?;
    packet.dst = ipv6_at(header, 24).ok_or(Skip("truncated IPv6 header"))?;
    let payload = body.get(offset..).unwrap_or_default();
    transport(
        packet,
        protocol,
        payload,
        declared.saturating_sub(offset),
        depth,
    )
}

/// Walks the extension header chain to the upper-layer protocol; returns
/// it with its offset in `body`. An unknown next header ends the walk: it is
/// taken as the upper-layer protocol.
fn ipv6_extensions(mut next: u8, body: &[u8]) -> Result<(u8, usize), Skip> {
    const TRUNCATED: Skip = Skip("truncated IPv6 extension header");
    let mut at = 0usize;
    for _ in 0..MAX_IPV6_EXTENSIONS {
        let len = match next {
            // Hop-by-hop, routing, destination options, mobility, HIP, shim6:
            // length in 8-byte units, not counting the first 8.
            0 | 43 | 60 | 135 | 139 | 140 => {
                (usize::from(byte(body, at + 1).ok_or(TRUNCATED)?) + 1) * 8
            }
            44 => {
                let offset = be16(body, at + 2).ok_or(TRUNCATED)? & 0xfff8;
                if offset != 0 {
                    return Err(NON_FIRST_FRAGMENT);
                }
                8
            }
            // Authentication header: length in 4-byte units, minus 2.
            51 => (usize::from(byte(body, at + 1).ok_or(TRUNCATED)?) + 2) * 4,
            _ => return Ok((next, at)),
        };
        next = byte(body, at).ok_or(TRUNCATED)?;
        at += len;
    }
    Err(Skip("IPv6 extension header chain too long"))
}

/// `declared` is the transport's length according to the IP header; `data`
/// is what the capture holds of it.
fn transport(
    packet: &mut Packet,
    protocol: u8,
    data: &[u8],
    declared: usize,
    depth: u8,
) -> Result<(), Skip> {
    // An inner packet replaces everything the outer one said.
    packet.transport = Transport::from_ip_protocol(protocol);
    packet.src_port = 0;
    packet.dst_port = 0;
    packet.tcp_flags = 0;
    packet.tcp_seq = 0;
    packet.icmp_type = 0;
    packet.icmp_code = 0;
    packet.icmp_id = 0;
    packet.quoted = None;
    match protocol {
        6 => tcp(packet, data, declared),
        17 => udp(packet, data, declared, depth),
        132 => sctp(packet, data, declared),
        1 => icmp(packet, data, declared, false),
        58 => icmp(packet, data, declared, true),
        // IP-in-IP (Calico's IPIP mode) and IPv6-in-IP.
        4 => ipv4(packet, data, nested(depth)?),
        41 => ipv6(packet, data, nested(depth)?),
        _ => {
            packet.payload_len = clamp_len(declared);
            Ok(())
        }
    }
}

fn clamp_len(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

fn tcp(packet: &mut Packet, data: &[u8], declared: usize) -> Result<(), Skip> {
    // Ports, sequence number and flags are in the first 14 bytes; options
    // may be cut by a short snaplen without harm.
    let header = data.get(..14).ok_or(Skip("truncated TCP header"))?;
    packet.src_port = u16::from_be_bytes([header[0], header[1]]);
    packet.dst_port = u16::from_be_bytes([header[2], header[3]]);
    packet.tcp_seq = be32(header, 4).unwrap_or(0);
    packet.tcp_flags = header[13];
    let header_len = usize::from(header[12] >> 4) * 4;
    packet.payload_len = clamp_len(declared.saturating_sub(header_len.max(20)));
    Ok(())
}

fn udp(packet: &mut Packet, data: &[u8], declared: usize, depth: u8) -> Result<(), Skip> {
    let header = data.get(..8).ok_or(Skip("truncated UDP header"))?;
    packet.src_port = u16::from_be_bytes([header[0], header[1]]);
    packet.dst_port = u16::from_be_bytes([header[2], header[3]]);
    packet.payload_len = clamp_len(declared.saturating_sub(8));
    let inner = data.get(8..).unwrap_or_default();
    if VXLAN_PORTS.contains(&packet.dst_port) {
        if let Some(frame) = vxlan(inner) {
            return ethernet(packet, frame, nested(depth)?);
        }
    } else if packet.dst_port == GENEVE_PORT
        && let Some((protocol, payload)) = geneve(inner)
    {
        let depth = nested(depth)?;
        return match protocol {
            ETHERTYPE_TEB => ethernet(packet, payload, depth),
            other => ethertype_payload(packet, other, payload, depth),
        };
    }
    Ok(())
}

/// The inner Ethernet frame, when the header looks like VXLAN (the
/// "VNI valid" flag set); otherwise the datagram is plain UDP on that port.
fn vxlan(data: &[u8]) -> Option<&[u8]> {
    let flags = byte(data, 0)?;
    if flags & 0x08 == 0 {
        return None;
    }
    data.get(8..)
}

/// The inner protocol and payload, when the header looks like Geneve
/// version 0 carrying Ethernet or IP.
fn geneve(data: &[u8]) -> Option<(u16, &[u8])> {
    let first = byte(data, 0)?;
    if first >> 6 != 0 {
        return None;
    }
    let options = usize::from(first & 0x3f) * 4;
    let protocol = be16(data, 2)?;
    if !matches!(protocol, ETHERTYPE_TEB | ETHERTYPE_IPV4 | ETHERTYPE_IPV6) {
        return None;
    }
    Some((protocol, data.get(8 + options..)?))
}

fn sctp(packet: &mut Packet, data: &[u8], declared: usize) -> Result<(), Skip> {
    let header = data.get(..4).ok_or(Skip("truncated SCTP header"))?;
    packet.src_port = u16::from_be_bytes([header[0], header[1]]);
    packet.dst_port = u16::from_be_bytes([header[2], header[3]]);
    // Common header: ports, verification tag, checksum.
    packet.payload_len = clamp_len(declared.saturating_sub(12));
    Ok(())
}

fn icmp(packet: &mut Packet, data: &[u8], declared: usize, v6: bool) -> Result<(), Skip> {
    let header = data.get(..4).ok_or(Skip("truncated ICMP header"))?;
    packet.icmp_type = header[0];
    packet.icmp_code = header[1];
    packet.payload_len = clamp_len(declared.saturating_sub(8));
    if icmp_has_identifier(header[0], v6) {
        packet.icmp_id = be16(data, 4).unwrap_or(0);
    }
    if icmp_is_error(header[0], v6) {
        packet.quoted = data.get(8..).and_then(quoted);
    }
    Ok(())
}

/// Query messages whose identifier pairs a request with its reply.
pub fn icmp_has_identifier(icmp_type: u8, v6: bool) -> bool {
    if v6 {
        matches!(icmp_type, 128 | 129)
    } else {
        matches!(icmp_type, 0 | 8 | 13..=18)
    }
}

/// Error messages, which quote the header of the packet they are about.
pub fn icmp_is_error(icmp_type: u8, v6: bool) -> bool {
    if v6 {
        matches!(icmp_type, 1..=4)
    } else {
        matches!(icmp_type, 3 | 4 | 5 | 11 | 12)
    }
}

/// The tuple of the packet an ICMP error quotes. Errors carry the IP header
/// and at least 8 bytes of the transport header, enough for ports.
fn quoted(data: &[u8]) -> Option<Quoted> {
    let (src, dst, protocol, rest) = match byte(data, 0)? >> 4 {
        4 => {
            let header_len = usize::from(data[0] & 0x0f) * 4;
            let header = data.get(..header_len.max(20))?;
            let rest = data.get(header.len()..)?;
            (ipv4_at(header, 12)?, ipv4_at(header, 16)?, header[9], rest)
        }
        6 => {
            let header = data.get(..40)?;
            let body = data.get(40..)?;
            let (protocol, offset) = ipv6_extensions(header[6], body).ok()?;
            (
                ipv6_at(header, 8)?,
                ipv6_at(header, 24)?,
                protocol,
                body.get(offset..)?,
            )
        }
        _ => return None,
    };
    let transport = Transport::from_ip_protocol(protocol);
    let mut quoted = Quoted {
        src,
        dst,
        transport,
        src_port: 0,
        dst_port: 0,
        icmp_type: 0,
        icmp_id: 0,
    };
    match transport {
        Transport::Tcp | Transport::Udp | Transport::Sctp => {
            quoted.src_port = be16(rest, 0)?;
            quoted.dst_port = be16(rest, 2)?;
        }
        Transport::Icmp | Transport::Icmpv6 => {
            quoted.icmp_type = byte(rest, 0)?;
            if icmp_has_identifier(quoted.icmp_type, transport == Transport::Icmpv6) {
                quoted.icmp_id = be16(rest, 4)?;
            }
        }
        Transport::Other(_) => {}
    }
    Some(quoted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn be_helpers_are_bounds_checked() {
        assert_eq!(be16(&[1, 2, 3], 1), Some(0x0203));
        assert_eq!(be16(&[1, 2, 3], 2), None);
        assert_eq!(be16(&[1, 2, 3], usize::MAX), None);
        assert_eq!(be32(&[0, 0, 1, 0], 0), Some(256));
    }

    #[test]
    fn every_prefix_of_a_tunnelled_frame_decodes_or_skips() {
        // VXLAN in IPv4 in Ethernet, inner TCP SYN: no prefix may panic.
        let mut frame = vec![0u8; 12];
        frame.extend([
            0x08, 0x00, 0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ]);
        frame.extend([
            0x12, 0x34, 0x12, 0xb5, 0, 0, 0, 0, 0x08, 0, 0, 0, 0, 0, 1, 0,
        ]);
        frame.extend([0u8; 12]);
        frame.extend([
            0x08, 0x00, 0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6, 0, 0, 10, 1, 0, 1, 10, 1, 0, 2,
        ]);
        frame.extend([
            0x9c, 0x40, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0, 0, 0, 0, 0, 0,
        ]);
        let full = decode(link::ETHERNET, &frame, frame.len() as u32, 0).unwrap();
        assert_eq!(full.dst_port, 80);
        assert_eq!(full.tcp_flags, tcp_flags::SYN);
        for len in 0..frame.len() {
            let _ = decode(link::ETHERNET, &frame[..len], frame.len() as u32, 0);
        }
    }
}
