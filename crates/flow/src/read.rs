//! One entry point for every format: recognise it from the first bytes,
//! then stream it through the right reader.

use std::io::BufRead;
use std::sync::Arc;

use crate::pcap::CaptureOptions;
use crate::{Flow, Format, ReadStats};

/// Recognises a format from the start of an input (capture magic numbers,
/// then the shape of the first text record).
pub fn sniff_format(head: &[u8]) -> Option<Format> {
    crate::pcap::is_capture(head).or_else(|| crate::generic::sniff(head))
}

/// Reads one input in `format`, handing each flow to `sink` as soon as it
/// is complete.
pub fn read_flows<R: BufRead>(
    format: Format,
    input: R,
    file: Arc<str>,
    capture: &CaptureOptions,
    sink: &mut dyn FnMut(Flow),
) -> ReadStats {
    match format {
        Format::Pcap | Format::Pcapng => crate::pcap::read_capture(input, file, capture, sink),
        Format::Hubble => crate::hubble::read_hubble(input, file, sink),
        Format::Calico => crate::calico::read_calico(input, file, sink),
        Format::Conntrack => crate::conntrack::read_conntrack(input, file, sink),
        Format::Jsonl => crate::generic::read_jsonl(input, file, sink),
        Format::Csv => crate::generic::read_csv(input, file, sink),
    }
}
