//! Link types, VLANs, IP options and extension headers, tunnels, and the
//! container formats (pcap variants, pcapng), plus volume.

use palisade_flow::packet::link;
use palisade_flow::pcap::is_capture;
use palisade_flow::pcap_writer::{
    PacketSpec, PcapOptions, PcapWriter, ethernet_frame, synthetic_capture,
};
use palisade_flow::{Format, Outcome};

use crate::support::*;
use crate::{addr, ends, ip, only, read};

// ------------------------------------------ link types and encapsulation

#[test]
fn every_link_type_reads_the_same_connection() {
    for link_type in [
        link::ETHERNET,
        link::RAW,
        link::IPV4,
        link::LINUX_SLL,
        link::LINUX_SLL2,
        link::NULL,
    ] {
        let frames = match link_type {
            link::NULL => tcp_frames(
                link::RAW,
                "10.1.0.1:40000",
                "10.1.0.2:443",
                b"hello",
                b"world!",
            )
            .into_iter()
            .map(|(t, f)| (t, [&2u32.to_le_bytes()[..], &f].concat()))
            .collect(),
            other => tcp_frames(other, "10.1.0.1:40000", "10.1.0.2:443", b"hello", b"world!"),
        };
        let (flows, stats) = read(&capture_of(link_type, &frames));
        let flow = only(&flows);
        assert_eq!(
            ends(flow),
            (addr("10.1.0.1:40000"), addr("10.1.0.2:443")),
            "link {link_type}"
        );
        assert_eq!(
            (flow.outcome, flow.bytes),
            (Outcome::Established, [5, 6]),
            "link {link_type}"
        );
        assert!(
            stats.skipped.is_empty() && stats.diagnostics.is_empty(),
            "link {link_type}: {stats:?}"
        );
    }
    let frames = tcp_frames(link::IPV6, "[fd00::1]:40000", "[fd00::2]:443", b"v6", b"");
    let (flows, _) = read(&capture_of(link::IPV6, &frames));
    assert_eq!(
        ends(only(&flows)),
        (addr("[fd00::1]:40000"), addr("[fd00::2]:443"))
    );
}

#[test]
fn vlan_tags_single_and_stacked_are_stripped() {
    let frames = tcp_frames(link::ETHERNET, "10.2.0.1:40000", "10.2.0.2:80", b"q", b"r");
    for tags in [
        &[0x8100u16][..],
        &[0x88a8, 0x8100],
        &[0x8100, 0x8100, 0x8100],
    ] {
        let tagged: Vec<_> = frames
            .iter()
            .map(|(t, f)| (*t, with_vlan_tags(f, tags)))
            .collect();
        let (flows, _) = read(&capture_of(link::ETHERNET, &tagged));
        assert_eq!(only(&flows).outcome, Outcome::Established, "tags {tags:x?}");
        assert_eq!(only(&flows).dst.port, Some(80));
    }
}

#[test]
fn ipv4_options_are_skipped_and_only_first_fragments_carry_ports() {
    let frames = tcp_frames(
        link::ETHERNET,
        "10.3.0.1:40000",
        "10.3.0.2:80",
        b"abc",
        b"de",
    );
    let with_options: Vec<_> = frames
        .iter()
        .map(|(t, f)| (*t, with_ipv4_options(f)))
        .collect();
    let (flows, _) = read(&capture_of(link::ETHERNET, &with_options));
    assert_eq!(
        (only(&flows).outcome, only(&flows).bytes),
        (Outcome::Established, [3, 2])
    );
    // A first fragment (more-fragments set) still has its ports; the next
    // fragment (offset 185 × 8) has none and is skipped.
    let datagram = PacketSpec::udp(addr("10.3.0.1:5000"), addr("10.3.0.2:6000"), &[0; 64]);
    let mut first = Vec::new();
    ethernet_frame(&datagram, &mut first).unwrap();
    first[20] = 0x20; // MF
    let mut later = first.clone();
    later[20] = 0x00;
    later[21] = 185;
    let (flows, stats) = read(&capture_of(link::ETHERNET, &[(0, first), (1, later)]));
    assert_eq!(only(&flows).dst.port, Some(6000));
    assert_eq!(stats.skipped.get("non-first IP fragment"), Some(&1));
}

#[test]
fn ipv6_extension_headers_are_walked_to_the_transport() {
    let frames = tcp_frames(
        link::ETHERNET,
        "[fd00::1]:40000",
        "[fd00::2]:8443",
        b"hello",
        b"ok",
    );
    let extended: Vec<_> = frames
        .iter()
        .map(|(t, f)| (*t, with_ipv6_extensions(f, 0)))
        .collect();
    let (flows, stats) = read(&capture_of(link::ETHERNET, &extended));
    let flow = only(&flows);
    assert_eq!(
        ends(flow),
        (addr("[fd00::1]:40000"), addr("[fd00::2]:8443"))
    );
    assert_eq!(
        (flow.outcome, flow.bytes),
        (Outcome::Established, [5, 2]),
        "extension bytes are not payload"
    );
    assert!(stats.skipped.is_empty());
    // The same with a fragment header of a non-first fragment.
    let later: Vec<_> = frames
        .iter()
        .map(|(t, f)| (*t, with_ipv6_extensions(f, 1480)))
        .collect();
    let (flows, stats) = read(&capture_of(link::ETHERNET, &later));
    assert!(flows.is_empty());
    assert_eq!(
        stats.skipped.get("non-first IP fragment"),
        Some(&(frames.len() as u64))
    );
}

#[test]
fn overlay_traffic_is_seen_between_pods_not_nodes() {
    let frames = tcp_frames(
        link::ETHERNET,
        "10.244.1.5:40000",
        "10.244.2.7:8080",
        b"pod",
        b"traffic",
    );
    let (node1, node2) = (ip("192.168.0.1"), ip("192.168.0.2"));
    type Tunnel = Box<dyn Fn(&[u8]) -> Vec<u8>>;
    let tunnels: [(&str, Tunnel); 5] = [
        (
            "VXLAN 4789",
            Box::new(move |f| vxlan(node1, node2, 4789, f)),
        ),
        (
            "VXLAN 8472 (Flannel, Cilium)",
            Box::new(move |f| vxlan(node1, node2, 8472, f)),
        ),
        ("Geneve", Box::new(move |f| geneve(node1, node2, f))),
        (
            "IP in IP (Calico)",
            Box::new(move |f| ipip(node1, node2, f)),
        ),
        (
            "VXLAN in VXLAN",
            Box::new(move |f| vxlan(node1, node2, 4789, &vxlan(node1, node2, 8472, f))),
        ),
    ];
    for (name, tunnel) in &tunnels {
        let wrapped: Vec<_> = frames.iter().map(|(t, f)| (*t, tunnel(f))).collect();
        let (flows, stats) = read(&capture_of(link::ETHERNET, &wrapped));
        let flow = only(&flows);
        assert_eq!(
            ends(flow),
            (addr("10.244.1.5:40000"), addr("10.244.2.7:8080")),
            "{name}"
        );
        assert_eq!(
            (flow.outcome, flow.bytes),
            (Outcome::Established, [3, 7]),
            "{name}"
        );
        assert!(stats.skipped.is_empty(), "{name}: {stats:?}");
    }
    // Ten tunnels deep is refused, not followed.
    let mut deep = frames[0].1.clone();
    for _ in 0..10 {
        deep = vxlan(node1, node2, 4789, &deep);
    }
    let (flows, stats) = read(&capture_of(link::ETHERNET, &[(0, deep)]));
    assert!(flows.is_empty());
    assert_eq!(
        stats.skipped.get("encapsulation nested too deeply"),
        Some(&1)
    );
}

// ----------------------------------------------------- container formats

#[test]
fn nanosecond_and_big_endian_pcaps_read_the_same_times() {
    for (nanosecond, big_endian) in [(false, false), (true, false), (false, true), (true, true)] {
        let options = PcapOptions {
            nanosecond,
            big_endian,
            ..PcapOptions::default()
        };
        let mut w = PcapWriter::with_options(Vec::new(), options).unwrap();
        let start = 1_700_000_000_123_456;
        w.tcp_connection(
            start,
            addr("10.0.0.1:40000"),
            addr("10.0.0.2:80"),
            b"x",
            b"y",
        )
        .unwrap();
        let bytes = w.into_inner().unwrap();
        assert_eq!(is_capture(&bytes), Some(Format::Pcap));
        let (flows, _) = read(&bytes);
        let flow = only(&flows);
        assert_eq!(
            (flow.first_seen, flow.last_seen),
            (Some(start), Some(start + 900)),
            "ns {nanosecond} be {big_endian}"
        );
        assert_eq!(flow.outcome, Outcome::Established);
    }
}

#[test]
fn pcapng_sections_interfaces_and_resolutions() {
    let v4 = tcp_frames(link::ETHERNET, "10.0.0.1:40000", "10.0.0.2:80", b"ng", b"!");
    let raw = tcp_frames(link::RAW, "10.0.0.3:40001", "10.0.0.4:81", b"", b"");
    let v6 = tcp_frames(
        link::ETHERNET,
        "[fd00::1]:40002",
        "[fd00::2]:82",
        b"six",
        b"",
    );
    let mut ng = PcapngBuilder::new(false);
    ng.interface(link::ETHERNET as u16, Some(9)); // nanoseconds
    ng.interface(link::RAW as u16, None); // microseconds
    ng.unknown_block(0x0bad_0001, 100);
    for (i, (t, f)) in v4.iter().enumerate() {
        ng.enhanced(0, *t as u64 * 1000, f);
        if i == 2 {
            ng.enhanced(1, raw[0].0 as u64, &raw[0].1); // a SYN on the other interface
        }
    }
    // A big-endian section: interfaces start over, 2^-20 s resolution.
    ng.section(true);
    ng.interface(link::ETHERNET as u16, Some(0x80 | 20));
    for (t, f) in &v6 {
        ng.enhanced(0, (((*t as u128) << 20) / 1_000_000) as u64, f);
    }
    // A simple packet block (no timestamp, no interface) repeating the
    // SYN: a straggler of the connection that just closed.
    ng.simple(&v6[0].1);
    let bytes = ng.finish();
    assert_eq!(is_capture(&bytes), Some(Format::Pcapng));
    let (flows, stats) = read(&bytes);
    let summary: Vec<_> = flows
        .iter()
        .map(|f| (f.dst.port, f.outcome, f.first_seen, f.evidence.format))
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                Some(80),
                Outcome::Established,
                Some(v4[0].0),
                Format::Pcapng
            ),
            (
                Some(82),
                Outcome::Established,
                Some(v6[0].0),
                Format::Pcapng
            ),
            (
                Some(81),
                Outcome::Unanswered,
                Some(raw[0].0),
                Format::Pcapng
            ),
        ]
    );
    assert_eq!(stats.records as usize, v4.len() + 1 + v6.len() + 1);
    assert!(stats.diagnostics.is_empty(), "{:?}", stats.diagnostics);
    assert_eq!(
        stats.skipped.get("TCP packet after its connection closed"),
        Some(&1)
    );
}

#[test]
fn capture_formats_are_recognised_by_their_magic() {
    let pcap = PcapWriter::new(Vec::new()).unwrap().into_inner().unwrap();
    assert_eq!(is_capture(&pcap), Some(Format::Pcap));
    assert_eq!(
        is_capture(&PcapngBuilder::new(true).finish()),
        Some(Format::Pcapng)
    );
    assert_eq!(is_capture(b"{\"flow\": {}}"), None);
    assert_eq!(is_capture(&[0xa1, 0xb2]), None);
    // A pcapng section header with a broken byte-order magic is not one.
    assert_eq!(
        is_capture(&[0x0a, 0x0d, 0x0d, 0x0a, 28, 0, 0, 0, 1, 2, 3, 4]),
        None
    );
}

#[test]
fn an_unsupported_link_type_is_diagnosed_once_and_its_packets_counted() {
    let frames = tcp_frames(link::ETHERNET, "10.0.0.1:1", "10.0.0.2:2", b"", b"");
    let (flows, stats) = read(&capture_of(147, &frames));
    assert!(flows.is_empty());
    assert_eq!(stats.diagnostics.len(), 1);
    assert!(stats.diagnostics[0].message.contains("link type 147"));
    assert_eq!(
        stats.skipped.get("unsupported link type"),
        Some(&(frames.len() as u64))
    );
}

// ------------------------------------------------------------- volume

#[test]
fn a_synthetic_capture_reconstructs_to_its_known_answer() {
    let mut bytes = Vec::new();
    let summary = synthetic_capture(3000, 60_000, 7, &mut bytes).unwrap();
    assert_eq!(summary.connections, 3000);
    assert!(summary.packets >= 60_000 && summary.ipv6 > 0);
    let (flows, stats) = read(&bytes);
    assert_eq!(stats.records, summary.packets);
    assert!(stats.skipped.is_empty(), "{:?}", stats.skipped);
    let count = |o| flows.iter().filter(|f| f.outcome == o).count() as u64;
    assert_eq!(flows.len() as u64, summary.connections);
    assert_eq!(count(Outcome::Established), summary.established);
    assert_eq!(count(Outcome::Refused), summary.refused);
    assert_eq!(count(Outcome::Unanswered), summary.unanswered);
    let packets: u64 = flows.iter().map(|f| f.packets[0] + f.packets[1]).sum();
    assert_eq!(packets, summary.packets);
    assert!(
        flows
            .iter()
            .all(|f| !f.direction_inferred && f.src.port.unwrap() >= 32768)
    );
    // Same seed, same bytes.
    let mut again = Vec::new();
    synthetic_capture(3000, 60_000, 7, &mut again).unwrap();
    assert!(again == bytes);
}
