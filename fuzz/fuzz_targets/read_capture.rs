//! Any bytes as a packet capture: reading must not panic or hang, and must
//! account for what it read. The bytes are tried as they are (so the
//! pcap and pcapng parsers see their own magic when the fuzzer finds it)
//! and behind a valid pcap header for each link type, so that the frame
//! decoder is reached on every input.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use palisade_flow::packet::link;
use palisade_flow::pcap::{CaptureOptions, read_capture};

fuzz_target!(|data: &[u8]| {
    let options = CaptureOptions::default();
    let mut flows = 0u64;
    let stats = read_capture(data, Arc::from("fuzz"), &options, &mut |_| flows += 1);
    assert_eq!(stats.flows, flows);

    // The first byte picks a link type; the rest are records.
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let links = [
        link::ETHERNET,
        link::RAW,
        link::LINUX_SLL,
        link::LINUX_SLL2,
        link::NULL,
        link::IPV6,
    ];
    let link_type = links[usize::from(pick) % links.len()];
    let mut capture = Vec::with_capacity(24 + rest.len());
    for field in [0xa1b2_c3d4u32, 0x0004_0002, 0, 0, 262_144, link_type] {
        capture.extend_from_slice(&field.to_le_bytes());
    }
    capture.extend_from_slice(rest);
    let mut flows = 0u64;
    let stats = read_capture(&capture[..], Arc::from("fuzz"), &options, &mut |_| {
        flows += 1
    });
    assert_eq!(stats.flows, flows);
});
