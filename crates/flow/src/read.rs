//! One entry point for every format: recognise it from the first bytes,
//! then stream it through the right reader.

use std::io::BufRead;
use std::sync::Arc;

use crate::generic::lines::read_independent_lines;
use crate::generic::parallel::LineParser;
use crate::pcap::CaptureOptions;
use crate::{Flow, Format, ReadStats};

/// Recognises a format from the start of an input (capture magic numbers,
/// then the shape of the first text record).
pub fn sniff_format(head: &[u8]) -> Option<Format> {
    crate::pcap::is_capture(head).or_else(|| crate::generic::sniff(head))
}

/// Reads one input in `format`, handing each flow to `sink` as soon as it
/// is complete.
pub fn read_flows<R: BufRead + Send>(
    format: Format,
    input: R,
    file: Arc<str>,
    capture: &CaptureOptions,
    sink: &mut dyn FnMut(Flow),
) -> ReadStats {
    read_flows_prepared(format, input, file, capture, &|flow| flow, sink)
}

/// [`read_flows`] with a step that runs on each flow before `sink` gets
/// it. For the formats of independent lines (Hubble, Calico, JSON lines)
/// `prepare` runs on the parsing threads, so work that needs only the flow
/// (resolving its endpoints, judging it) is spread over the cores too;
/// `sink` still receives the results on the calling thread, in input order.
pub fn read_flows_prepared<R: BufRead + Send, T: Send>(
    format: Format,
    input: R,
    file: Arc<str>,
    capture: &CaptureOptions,
    prepare: &(dyn Fn(Flow) -> T + Sync),
    sink: &mut dyn FnMut(T),
) -> ReadStats {
    let parse: LineParser = match format {
        Format::Hubble => crate::hubble::parse_hubble_line,
        Format::Calico => crate::calico::parse_calico_line,
        Format::Jsonl => crate::generic::parse_generic_json_line,
        Format::DropLog => crate::droplog::parse_drop_log_line,
        Format::Pcap | Format::Pcapng => {
            return crate::pcap::read_capture(input, file, capture, &mut |f| sink(prepare(f)));
        }
        Format::Conntrack => {
            return crate::conntrack::read_conntrack(input, file, &mut |f| sink(prepare(f)));
        }
        Format::Csv => return crate::generic::read_csv(input, file, &mut |f| sink(prepare(f))),
        Format::Ebpf | Format::AuditLog | Format::ContainerLog => {
            let mut stats = ReadStats::default();
            let message =
                "sensor events and logs are not flow files (palisade agent, palisade logs)";
            stats.diagnose(crate::generic::lines::diagnostic(&file, 0, message.into()));
            return stats;
        }
    };
    read_independent_lines(input, file, format, parse, prepare, sink)
}
