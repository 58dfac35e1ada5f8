//! Malformed input: diagnosed, counted, never a panic or a hang.

use palisade_flow::Outcome;
use palisade_flow::packet::link;

use crate::support::*;
use crate::{data, only, read};

// ------------------------------------------------------------ malformed

#[test]
fn empty_and_foreign_inputs_are_diagnosed() {
    let (flows, stats) = read(b"");
    assert!(flows.is_empty() && !stats.truncated);
    assert!(stats.diagnostics[0].message.contains("empty"));
    let (flows, stats) = read(b"this is a text file, not a capture at all");
    assert!(flows.is_empty() && !stats.truncated);
    assert!(stats.diagnostics[0].message.contains("not a pcap"));
}

#[test]
fn a_truncated_global_header_is_reported() {
    let lab = data("lab-bridge.pcap");
    for len in [2, 4, 10, 23] {
        let (flows, stats) = read(&lab[..len]);
        assert!(flows.is_empty());
        assert!(stats.truncated, "{len} bytes");
        assert_eq!(stats.diagnostics.len(), 1, "{len} bytes");
        assert!(
            stats.diagnostics[0].message.contains("header"),
            "{len}: {}",
            stats.diagnostics[0]
        );
    }
}

#[test]
fn a_truncated_last_record_keeps_everything_before_it() {
    let lab = data("lab-bridge.pcap");
    let boundaries = record_offsets(&lab);
    // Cut in the middle of packet 45 (the second connection to 9090's data).
    let cut = boundaries[44] + 30;
    let (flows, stats) = read(&lab[..cut]);
    assert!(stats.truncated);
    assert_eq!(stats.records, 44);
    let diagnostic = &stats.diagnostics[0];
    assert_eq!(
        (diagnostic.record, diagnostic.offset),
        (45, Some(boundaries[44] as u64))
    );
    assert!(diagnostic.message.contains("packet record"), "{diagnostic}");
    let ports: Vec<_> = flows.iter().map(|f| (f.dst.port, f.outcome)).collect();
    assert_eq!(
        ports,
        vec![
            (Some(8080), Outcome::Established),
            (Some(8081), Outcome::Refused),
            (Some(9090), Outcome::Unanswered),
            (Some(5353), Outcome::Unanswered),
            (Some(9090), Outcome::Established),
        ]
    );
}

#[test]
fn an_absurd_record_length_stops_reading_with_a_diagnostic() {
    let lab = data("lab-bridge.pcap");
    let boundaries = record_offsets(&lab);
    let mut corrupt = lab[..boundaries[31]].to_vec(); // 31 packets: 8080 is done
    corrupt.extend_from_slice(&[
        0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff, 0x7f,
    ]);
    corrupt.extend_from_slice(&lab[boundaries[31] + 16..]);
    let (flows, stats) = read(&corrupt);
    assert_eq!(stats.records, 31);
    assert!(!stats.truncated);
    assert_eq!(stats.diagnostics[0].record, 32);
    assert!(
        stats.diagnostics[0].message.contains("2147483647"),
        "{}",
        stats.diagnostics[0]
    );
    assert_eq!(only(&flows).dst.port, Some(8080));
}

#[test]
fn no_prefix_of_a_real_capture_panics_and_truncation_is_exact() {
    let lab = data("lab-bridge.pcap");
    let boundaries = record_offsets(&lab);
    for len in 0..=lab.len() {
        let (_, stats) = read(&lab[..len]);
        let at_boundary = len == 24 || boundaries.contains(&len) || len == lab.len();
        assert_eq!(
            stats.truncated,
            len > 0 && !at_boundary,
            "prefix of {len} bytes"
        );
        let complete = boundaries
            .iter()
            .filter(|&&b| b <= len)
            .count()
            .saturating_sub(1);
        assert_eq!(
            stats.records as usize,
            complete + usize::from(len == lab.len()),
            "prefix of {len} bytes"
        );
    }
}

#[test]
fn no_prefix_of_a_pcapng_panics() {
    let frames = tcp_frames(link::ETHERNET, "10.0.0.1:40000", "10.0.0.2:80", b"ng", b"!");
    let mut ng = PcapngBuilder::new(false);
    ng.interface(link::ETHERNET as u16, Some(6));
    for (t, f) in &frames {
        ng.enhanced(0, *t as u64, f);
    }
    let boundaries = ng.boundaries.clone();
    let bytes = ng.finish();
    for len in 0..=bytes.len() {
        let (flows, stats) = read(&bytes[..len]);
        let at_boundary = len == 0 || boundaries.contains(&len);
        assert_eq!(stats.truncated, !at_boundary, "prefix of {len} bytes");
        assert!(flows.len() <= 1);
    }
}

#[test]
fn corrupted_captures_never_panic() {
    // Deterministic byte flips over both formats, a cheap stand-in for the
    // fuzz target in CI.
    let mut ng = PcapngBuilder::new(false);
    ng.interface(link::ETHERNET as u16, Some(9));
    for (t, f) in tcp_frames(
        link::ETHERNET,
        "[fd00::1]:40000",
        "[fd00::2]:80",
        b"ng",
        b"!",
    ) {
        ng.enhanced(0, t as u64, &f);
    }
    let inputs = [
        data("lab-bridge.pcap"),
        data("nmap_80_vanilla.pcap"),
        ng.finish(),
    ];
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    for input in &inputs {
        for _ in 0..3000 {
            let mut corrupt = input.clone();
            for _ in 0..4 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let at = (state % corrupt.len() as u64) as usize;
                corrupt[at] = (state >> 32) as u8;
            }
            let _ = read(&corrupt);
        }
    }
}
