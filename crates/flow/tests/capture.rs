//! Packet captures to connections, end to end through `read_capture`: real
//! captures from the lab (tests/data, copied from the shared samples), and
//! generated ones for every link type, encapsulation and container format,
//! and malformed input.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use palisade_flow::packet::{link, tcp_flags};
use palisade_flow::pcap::{CaptureOptions, read_capture};
use palisade_flow::pcap_writer::{PacketSpec, PcapOptions, PcapWriter, ip_packet};
use palisade_flow::{Flow, Format, Micros, Outcome, ReadStats, Transport};

#[path = "capture/formats.rs"]
mod formats;
#[path = "capture/malformed.rs"]
mod malformed;
#[path = "capture/support.rs"]
mod support;

use support::*;

pub fn data(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub fn read(bytes: &[u8]) -> (Vec<Flow>, ReadStats) {
    read_with(bytes, &CaptureOptions::default())
}

pub fn read_with(bytes: &[u8], options: &CaptureOptions) -> (Vec<Flow>, ReadStats) {
    let mut flows = Vec::new();
    let stats = read_capture(bytes, Arc::from("test.pcap"), options, &mut |f| {
        flows.push(f)
    });
    assert_eq!(
        stats.flows,
        flows.len() as u64,
        "stats count every flow handed out"
    );
    (flows, stats)
}

pub fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

pub fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// The flow's (src, dst) as socket addresses, port 0 when there is none.
pub fn ends(flow: &Flow) -> (SocketAddr, SocketAddr) {
    let end = |e: &palisade_flow::FlowEndpoint| SocketAddr::new(e.ip.unwrap(), e.port.unwrap_or(0));
    (end(&flow.src), end(&flow.dst))
}

pub fn only(flows: &[Flow]) -> &Flow {
    assert_eq!(flows.len(), 1, "expected one flow, got {flows:#?}");
    &flows[0]
}

// ---------------------------------------------------------------- samples

#[test]
fn lab_bridge_capture_yields_exactly_the_five_lab_connections() {
    let (flows, stats) = read(&data("lab-bridge.pcap"));
    let summary: Vec<_> = flows
        .iter()
        .map(|f| {
            (
                f.transport,
                ends(f),
                f.outcome,
                f.packets,
                f.bytes,
                f.evidence.record,
            )
        })
        .collect();
    let pod = |text: &str| addr(text);
    assert_eq!(
        summary,
        vec![
            // Emitted when they end: FIN/FIN/ACK, RST, FIN/FIN/ACK...
            (
                Transport::Tcp,
                (pod("10.77.0.11:51298"), pod("10.77.0.12:8080")),
                Outcome::Established,
                [5, 3],
                [6, 0],
                21
            ),
            (
                Transport::Tcp,
                (pod("10.77.0.11:59868"), pod("10.77.0.12:8081")),
                Outcome::Refused,
                [1, 1],
                [0, 0],
                32
            ),
            (
                Transport::Tcp,
                (pod("10.77.0.12:53752"), pod("10.77.0.13:9090")),
                Outcome::Established,
                [5, 3],
                [3, 0],
                41
            ),
            // ...then, at the end of the capture, what never ended.
            (
                Transport::Tcp,
                (pod("10.77.0.11:56788"), pod("10.77.0.13:9090")),
                Outcome::Unanswered,
                [1, 0],
                [0, 0],
                36
            ),
            (
                Transport::Udp,
                (pod("10.77.0.12:51693"), pod("10.77.0.13:5353")),
                Outcome::Unanswered,
                [1, 0],
                [2, 0],
                39
            ),
        ]
    );
    assert!(
        flows
            .iter()
            .all(|f| !f.direction_inferred && f.connections == 1)
    );
    assert_eq!(flows[0].first_seen, Some(1_795_345_195_358_384));
    assert_eq!(flows[0].last_seen, Some(1_795_345_196_360_214));
    assert_eq!(flows[0].evidence.format, Format::Pcap);
    // Bridge chatter is no connection, but every frame is accounted for.
    assert_eq!(stats.records, 56);
    assert_eq!(stats.skipped.get("ARP frame"), Some(&10));
    assert_eq!(stats.skipped.get("IPv6 neighbour discovery"), Some(&13));
    assert_eq!(
        stats.skipped.get("multicast group management (MLD, IGMP)"),
        Some(&13)
    );
    assert_eq!(
        stats.records,
        stats.skipped_total() + 20,
        "20 packets belong to the 5 connections"
    );
    assert!(stats.diagnostics.is_empty() && !stats.truncated);
}

#[test]
fn nmap_probes_that_got_a_syn_ack_are_established_even_half_open() {
    let (flows, stats) = read(&data("nmap_80_vanilla.pcap"));
    let mut summary: Vec<_> = flows
        .iter()
        .map(|f| (ends(f), f.outcome, f.packets))
        .collect();
    summary.sort();
    let scanner = |port| SocketAddr::new(ip("10.87.1.10"), port);
    let target = |port| SocketAddr::new(ip("130.211.223.103"), port);
    assert_eq!(
        summary,
        vec![
            // Full connect, then reset by the scanner.
            ((scanner(50116), target(443)), Outcome::Established, [3, 1]),
            // SYN, SYN-ACK, RST: the port answered, so it was reachable.
            ((scanner(52478), target(80)), Outcome::Established, [2, 1]),
            ((scanner(52482), target(80)), Outcome::Established, [3, 1]),
        ]
    );
    assert_eq!(stats.records, 11);
    assert!(stats.skipped.is_empty());
}

#[test]
fn a_lone_syn_is_an_unanswered_connection() {
    let (flows, _) = read(&data("single_syn.pcap"));
    let flow = only(&flows);
    assert_eq!(ends(flow), (addr("10.0.0.10:30692"), addr("10.0.0.80:80")));
    assert_eq!((flow.outcome, flow.packets), (Outcome::Unanswered, [1, 0]));
}

// ------------------------------------------------------- outcome rules

#[test]
fn writer_helpers_give_each_outcome() {
    let mut w = PcapWriter::new(Vec::new()).unwrap();
    let t = w
        .tcp_connection(
            0,
            addr("10.0.0.1:40000"),
            addr("10.0.0.2:80"),
            b"GET /",
            b"200 OK!",
        )
        .unwrap();
    let t = w
        .refused_connection(t, addr("10.0.0.1:40001"), addr("10.0.0.2:81"))
        .unwrap();
    let t = w
        .unanswered_syn(t, addr("10.0.0.1:40002"), addr("10.0.0.3:82"), 3)
        .unwrap();
    let t = w
        .udp_exchange(
            t,
            addr("10.0.0.1:40003"),
            addr("10.0.0.4:53"),
            b"query",
            Some(b"answer!"),
        )
        .unwrap();
    w.udp_exchange(
        t,
        addr("10.0.0.1:40004"),
        addr("10.0.0.4:54"),
        b"lost",
        None,
    )
    .unwrap();
    let (flows, stats) = read(&w.into_inner().unwrap());
    let summary: Vec<_> = flows
        .iter()
        .map(|f| (f.dst.port, f.outcome, f.packets, f.bytes))
        .collect();
    assert_eq!(
        summary,
        vec![
            (Some(80), Outcome::Established, [6, 4], [5, 7]),
            (Some(81), Outcome::Refused, [1, 1], [0, 0]),
            // Retransmissions of one SYN are one connection.
            (Some(82), Outcome::Unanswered, [3, 0], [0, 0]),
            (Some(53), Outcome::Established, [1, 1], [5, 7]),
            (Some(54), Outcome::Unanswered, [1, 0], [4, 0]),
        ]
    );
    assert_eq!(stats.records, 10 + 2 + 3 + 2 + 1);
    assert!(stats.skipped.is_empty());
}

#[test]
fn a_syn_ack_seen_first_names_the_initiator_without_guessing() {
    let frames = tcp_frames(link::ETHERNET, "10.0.0.1:80", "10.0.0.2:81", b"x", b"y");
    // Lose the SYN: the SYN-ACK comes from the server (port 81).
    let (flows, _) = read(&capture_of(link::ETHERNET, &frames[1..]));
    let flow = only(&flows);
    assert_eq!(ends(flow), (addr("10.0.0.1:80"), addr("10.0.0.2:81")));
    assert!(!flow.direction_inferred);
    assert_eq!(flow.outcome, Outcome::Established);
}

#[test]
fn mid_stream_connections_infer_the_initiator_from_the_ephemeral_port() {
    let frames = tcp_frames(
        link::ETHERNET,
        "10.0.0.1:45000",
        "10.0.0.2:8080",
        b"req",
        b"resp",
    );
    // Capture starts after the handshake and the request: the first packet
    // is the server's ACK, yet the client is the initiator.
    for skip in [3, 4] {
        let (flows, _) = read(&capture_of(link::ETHERNET, &frames[skip..]));
        let flow = only(&flows);
        assert_eq!(
            ends(flow),
            (addr("10.0.0.1:45000"), addr("10.0.0.2:8080")),
            "skip {skip}"
        );
        assert!(flow.direction_inferred);
        assert_eq!(flow.outcome, Outcome::Established);
    }
    // Only one direction captured: nothing shows an answer.
    let client_only: Vec<_> = frames[3..]
        .iter()
        .filter(|(_, f)| f[26..30] == [10, 0, 0, 1])
        .cloned()
        .collect();
    let (flows, _) = read(&capture_of(link::ETHERNET, &client_only));
    assert_eq!(
        (only(&flows).outcome, only(&flows).direction_inferred),
        (Outcome::Unanswered, true)
    );
    // Equal ports: the first sender is taken as the initiator.
    let frames = tcp_frames(link::ETHERNET, "10.0.0.1:5000", "10.0.0.2:5000", b"a", b"b");
    let (flows, _) = read(&capture_of(link::ETHERNET, &frames[4..]));
    assert_eq!(
        ends(only(&flows)),
        (addr("10.0.0.2:5000"), addr("10.0.0.1:5000"))
    );
}

#[test]
fn a_reused_tuple_after_close_is_a_new_connection() {
    let (client, server) = (addr("10.0.0.1:40000"), addr("10.0.0.2:80"));
    let mut w = PcapWriter::new(Vec::new()).unwrap();
    let t = w.tcp_connection(0, client, server, b"one", b"1").unwrap();
    let t = w.refused_connection(t + 1000, client, server).unwrap();
    // A new SYN right after the RST: another sequence number, so another
    // connection, although the old one is still remembered.
    let mut w = write_syn(w, t + 10, client, server, 777);
    w.tcp_connection(t + 20_000, client, server, b"two", b"22")
        .unwrap();
    let (flows, stats) = read(&w.into_inner().unwrap());
    let outcomes: Vec<_> = flows.iter().map(|f| (f.outcome, f.bytes)).collect();
    assert_eq!(
        outcomes,
        vec![
            (Outcome::Established, [3, 1]),
            (Outcome::Refused, [0, 0]),
            (Outcome::Unanswered, [0, 0]),
            (Outcome::Established, [3, 2]),
        ]
    );
    assert!(stats.skipped.is_empty());
}

#[test]
fn packets_after_a_reset_are_counted_as_stragglers_not_new_connections() {
    let (client, server) = (addr("10.0.0.1:40000"), addr("10.0.0.2:81"));
    let mut w = PcapWriter::new(Vec::new()).unwrap();
    let t = w.refused_connection(0, client, server).unwrap();
    let ack = PacketSpec::tcp(client, server, tcp_flags::ACK, 5, 0, &[]);
    w.write_packet(t, &ack).unwrap();
    // A RST that resets nothing seen is not a connection either.
    let rst = PacketSpec::tcp(addr("10.0.0.9:1234"), server, tcp_flags::RST, 5, 0, &[]);
    w.write_packet(t + 1, &rst).unwrap();
    let (flows, stats) = read(&w.into_inner().unwrap());
    assert_eq!(only(&flows).outcome, Outcome::Refused);
    assert_eq!(
        stats.skipped.get("TCP packet after its connection closed"),
        Some(&1)
    );
    assert_eq!(
        stats.skipped.get("TCP reset outside a known connection"),
        Some(&1)
    );
}

#[test]
fn idle_connections_are_emitted_at_their_timeout_by_capture_time() {
    let (client, server) = (addr("10.0.0.1:40000"), addr("10.0.0.2:53"));
    let minute = 60_000_000;
    let mut w = PcapWriter::new(Vec::new()).unwrap();
    w.udp_exchange(0, client, server, b"a", Some(b"b")).unwrap();
    // Same tuple after 2 minutes of silence: a new exchange.
    w.udp_exchange(2 * minute, client, server, b"c", None)
        .unwrap();
    let mut syn = write_syn(
        w,
        3 * minute,
        addr("10.0.0.1:40001"),
        addr("10.0.0.3:80"),
        1,
    );
    // The same SYN retransmitted 40 s later: past the 30 s handshake
    // timeout, so the first attempt was already given up.
    syn = write_syn(
        syn,
        3 * minute + 40_000_000,
        addr("10.0.0.1:40001"),
        addr("10.0.0.3:80"),
        1,
    );
    let bytes = syn.into_inner().unwrap();
    let (flows, _) = read(&bytes);
    let summary: Vec<_> = flows
        .iter()
        .map(|f| (f.transport, f.outcome, f.packets))
        .collect();
    assert_eq!(
        summary,
        vec![
            (Transport::Udp, Outcome::Established, [1, 1]),
            (Transport::Udp, Outcome::Unanswered, [1, 0]),
            (Transport::Tcp, Outcome::Unanswered, [1, 0]),
            (Transport::Tcp, Outcome::Unanswered, [1, 0]),
        ]
    );
    // Longer timeouts keep them together.
    let patient = CaptureOptions {
        timeouts: palisade_flow::reconstruct::Timeouts {
            datagram: Duration::from_secs(600),
            tcp_handshake: Duration::from_secs(600),
            ..Default::default()
        },
    };
    let (flows, _) = read_with(&bytes, &patient);
    let packets: Vec<_> = flows.iter().map(|f| (f.outcome, f.packets)).collect();
    assert_eq!(
        packets,
        vec![
            (Outcome::Established, [2, 1]),
            (Outcome::Unanswered, [2, 0])
        ]
    );
}

#[test]
fn idle_connections_are_released_while_reading_not_only_at_the_end() {
    // 1000 UDP exchanges one second apart: with a 60 s timeout, no more
    // than ~60 may be open at once, and the flows come out in order while
    // the capture is read.
    let mut w = PcapWriter::new(Vec::new()).unwrap();
    for i in 0..1000u16 {
        let client = SocketAddr::new(ip("10.0.0.1"), 20000 + i);
        w.udp_exchange(
            Micros::from(i) * 1_000_000,
            client,
            addr("10.0.0.2:53"),
            b"q",
            Some(b"a"),
        )
        .unwrap();
    }
    let bytes = w.into_inner().unwrap();
    let mut recon = palisade_flow::reconstruct::Reconstructor::new(
        Arc::from("t"),
        Format::Pcap,
        Default::default(),
    );
    let mut emitted = 0u64;
    let mut most_open = 0;
    for (record, (time, frame)) in records(&bytes).iter().enumerate() {
        let packet =
            palisade_flow::packet::decode(link::ETHERNET, frame, frame.len() as u32, *time)
                .unwrap();
        recon
            .push(&packet, record as u64 + 1, &mut |_| emitted += 1)
            .unwrap();
        most_open = most_open.max(recon.open_connections());
    }
    assert!(most_open <= 62, "{most_open} connections open at once");
    assert!(
        emitted >= 930,
        "only {emitted} flows emitted before the end"
    );
    recon.finish(&mut |_| emitted += 1);
    assert_eq!((emitted, recon.open_connections()), (1000, 0));
}

#[test]
fn icmp_echo_pairs_and_unreachables_refuse_what_they_quote() {
    let (a, b) = (ip("10.0.0.1"), ip("10.0.0.2"));
    let mut w = PcapWriter::new(Vec::new()).unwrap();
    w.write_packet(0, &PacketSpec::icmp(a, b, 8, 0, &[0, 7, 0, 1, b'p', b'i']))
        .unwrap();
    w.write_packet(10, &PacketSpec::icmp(b, a, 0, 0, &[0, 7, 0, 1, b'p', b'i']))
        .unwrap();
    // Another identifier: another ping, unanswered.
    w.write_packet(20, &PacketSpec::icmp(a, b, 8, 0, &[0, 8, 0, 1]))
        .unwrap();
    // A UDP datagram to a closed port, and the port unreachable about it.
    let datagram = PacketSpec::udp(addr("10.0.0.1:40000"), addr("10.0.0.2:69"), b"get");
    w.write_packet(30, &datagram).unwrap();
    let mut quoted = vec![0, 0, 0, 0];
    ip_packet(&datagram, &mut quoted).unwrap();
    w.write_packet(40, &PacketSpec::icmp(b, a, 3, 3, &quoted))
        .unwrap();
    let (flows, stats) = read(&w.into_inner().unwrap());
    let summary: Vec<_> = flows
        .iter()
        .map(|f| (f.transport, f.dst.port, f.outcome, f.packets, f.icmp))
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                Transport::Icmp,
                None,
                Outcome::Established,
                [1, 1],
                Some((8, 0))
            ),
            (
                Transport::Icmp,
                None,
                Outcome::Unanswered,
                [1, 0],
                Some((8, 0))
            ),
            (Transport::Udp, Some(69), Outcome::Refused, [1, 1], None),
        ]
    );
    assert_eq!(stats.records, 5);
}

#[test]
fn capture_bytes_count_what_went_over_the_wire_despite_the_snaplen() {
    let options = PcapOptions {
        snaplen: 60,
        ..PcapOptions::default()
    };
    let mut w = PcapWriter::with_options(Vec::new(), options).unwrap();
    w.tcp_connection(
        0,
        addr("10.0.0.1:40000"),
        addr("10.0.0.2:80"),
        &[1; 500],
        &[2; 1400],
    )
    .unwrap();
    let (flows, stats) = read(&w.into_inner().unwrap());
    assert_eq!(only(&flows).bytes, [500, 1400]);
    assert!(!stats.truncated, "a short snaplen is not a truncated file");
}
