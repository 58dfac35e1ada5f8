//! Any bytes as a text flow source: every text reader (Hubble, Calico,
//! conntrack, generic JSON lines, CSV and data-plane drop logs) must read them without panicking
//! or hanging, and account for every line it read. The sniffer must not
//! panic either. Hubble's fast path must read every line as serde does.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use palisade_flow::generic::{LOST_EVENTS_REASON, read_csv, read_jsonl, sniff};
use palisade_flow::{Flow, Format, ReadStats, RecordRef, calico, conntrack, droplog, hubble};

type Reader = fn(&[u8], Arc<str>, &mut dyn FnMut(Flow)) -> ReadStats;

fuzz_target!(|data: &[u8]| {
    let _ = sniff(data);
    for (number, line) in data.split(|&b| b == b'\n').enumerate() {
        let evidence = || RecordRef {
            file: Arc::from("fuzz"),
            format: Format::Hubble,
            record: number as u64 + 1,
        };
        assert_eq!(
            hubble::parse_hubble_line(line, evidence()),
            hubble::parse_hubble_line_by_serde(line, evidence())
        );
    }
    let line_readers: [Reader; 5] = [
        |input, file, sink| hubble::read_hubble(input, file, sink),
        |input, file, sink| calico::read_calico(input, file, sink),
        |input, file, sink| read_jsonl(input, file, sink),
        |input, file, sink| read_csv(input, file, sink),
        |input, file, sink| droplog::read_drop_log(input, file, sink),
    ];
    for reader in line_readers {
        let mut flows = 0u64;
        let stats = reader(data, Arc::from("fuzz"), &mut |_| flows += 1);
        assert_eq!(stats.flows, flows);
        // Every record became a flow or a counted skip (lost events are
        // counted with the skips but are not records).
        let lost = stats.skipped.get(LOST_EVENTS_REASON).copied().unwrap_or(0);
        assert_eq!(stats.records, stats.flows + stats.skipped_total() - lost);
    }
    let mut flows = 0u64;
    let stats = conntrack::read_conntrack(data, Arc::from("fuzz"), &mut |_| flows += 1);
    assert_eq!(stats.flows, flows);
    // Events gather into flows, so at most one flow per line.
    assert!(stats.flows <= stats.records);
});
