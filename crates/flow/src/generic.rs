//! Generic flow records, for any source Palisade has no reader of its own
//! for: JSON lines (one object per line) or CSV with a header row. Also the
//! pieces all text readers share, and [`sniff`], which recognises a text
//! format from the start of a file.
//!
//! # Schema
//!
//! | field | required | meaning |
//! |---|---|---|
//! | `time` | no | when the connection was first seen: RFC 3339 (`2024-05-01T10:00:00.25Z`, any UTC offset) or epoch seconds (`1714557600.25`) |
//! | `end_time` | no | when it was last seen, in the same forms; defaults to `time` |
//! | `src_ip` | `src_ip` or `src_pod` | the initiator's IPv4 or IPv6 address |
//! | `src_port` | no | the initiator's port |
//! | `dst_ip` | `dst_ip` or `dst_pod` | the responder's address |
//! | `dst_port` | no | the responder's port; ignored for protocols without ports |
//! | `protocol` | yes | `tcp`, `udp`, `sctp`, `icmp`, `icmpv6`, or an IP protocol number (`6`) |
//! | `outcome` | yes | `established` (the responder answered), `refused` (RST, ICMP unreachable), `unanswered` (no reply), `forwarded` (a data plane let it through), `dropped` (a data plane dropped it); also `allow`, `deny`, `reset`, `timeout` |
//! | `src_namespace`, `src_pod` | no | the initiator's Kubernetes namespace and pod; a pod name ending in `*` stands for a group of pods (`web-7d9f-*`) |
//! | `dst_namespace`, `dst_pod` | no | the same for the responder |
//! | `packets_out`, `bytes_out` | no | sent by the initiator |
//! | `packets_in`, `bytes_in` | no | sent by the responder |
//! | `connections` | no | how many connections the record stands for, at least 1 (default 1) |
//!
//! The initiator is always the `src` side. A port of 0 means "no port".
//!
//! **JSON lines**: each line is one object. Numbers may be JSON numbers or
//! strings (`"dst_port": "443"`); `null` is the same as absent; other fields
//! are ignored; a field given twice is an error.
//!
//! **CSV**: the first row names the columns, in any order and any letter
//! case; columns not in the schema are ignored; an empty cell is absent.
//! Quoting follows RFC 4180: a field in double quotes may contain commas,
//! line breaks and doubled quotes (`"say ""hi"""`). Rows must have as many
//! cells as the header.
//!
//! ```text
//! time,src_ip,src_port,dst_ip,dst_port,protocol,outcome,dst_namespace,dst_pod
//! 2024-05-01T10:00:00Z,10.0.0.1,40000,10.0.0.2,8080,tcp,established,shop,api-1
//! ```

use std::io::BufRead;
use std::net::IpAddr;
use std::sync::Arc;

use crate::diagnostics::ReadStats;
use crate::model::{Flow, FlowEndpoint, Format, Identity, Outcome, RecordRef, Transport};

mod csv;
mod fields;
pub mod json;
pub(crate) mod lines;
pub(crate) mod parallel;
mod sniff;
pub(crate) mod time;

pub use fields::CsvHeader;
pub use lines::{LOST_EVENTS_REASON, MAX_LINE_BYTES, ParsedLine, UNREADABLE_REASON, record_line};
pub use sniff::sniff;
pub use time::{parse_epoch_seconds, parse_rfc3339};

use fields::{Field, Values};
use lines::{LineReader, read_independent_lines};

/// Reads generic JSON lines records.
pub fn read_jsonl<R: BufRead + Send>(
    input: R,
    file: Arc<str>,
    sink: &mut dyn FnMut(Flow),
) -> ReadStats {
    read_independent_lines(
        input,
        file,
        Format::Jsonl,
        parse_generic_json_line,
        &|f| f,
        sink,
    )
}

/// Parses one generic JSON lines record.
pub fn parse_generic_json_line(line: &[u8], evidence: RecordRef) -> Result<ParsedLine, String> {
    let values: Values<'_> = lines::parse_json(line)?;
    build_flow(&values, evidence).map(ParsedLine::Flow)
}

/// Parses one CSV row (which may span lines inside quoted fields) under a
/// header read with [`CsvHeader::parse`].
pub fn parse_csv_row(
    header: &CsvHeader,
    row: &[u8],
    evidence: RecordRef,
) -> Result<ParsedLine, String> {
    let mut cells = csv::Fields::default();
    parse_row_with(header, row, evidence, &mut cells)
}

fn parse_row_with(
    header: &CsvHeader,
    row: &[u8],
    evidence: RecordRef,
    cells: &mut csv::Fields,
) -> Result<ParsedLine, String> {
    let row = lines::utf8(row)?;
    cells.split(row)?;
    if header.is_repeated_header(cells) {
        return Ok(ParsedLine::Skip("repeated CSV header"));
    }
    let values = header.values(cells)?;
    build_flow(&values, evidence).map(ParsedLine::Flow)
}

/// Reads a generic CSV file: a header row, then one record per row.
pub fn read_csv<R: BufRead>(input: R, file: Arc<str>, sink: &mut dyn FnMut(Flow)) -> ReadStats {
    let mut stats = ReadStats::default();
    let mut reader = CsvReader {
        header: None,
        cells: csv::Fields::default(),
        file: file.clone(),
    };
    let mut lines = LineReader::new(input);
    let mut row = Vec::new();
    let mut state = csv::QuoteState::FieldStart;
    let mut first_line = 0;
    while let Some(line) = lines.next_raw_line(&mut stats, &file) {
        if row.is_empty() {
            if lines::is_blank(line.bytes) {
                continue;
            }
            first_line = line.number;
        } else {
            row.push(b'\n');
        }
        row.extend_from_slice(line.bytes);
        state = state.scan(line.bytes);
        let give_up = row.len() > MAX_LINE_BYTES || line.unterminated;
        if state.record_complete() || give_up {
            reader.row(&row, first_line, line.unterminated, &mut stats, sink);
            row.clear();
            state = csv::QuoteState::FieldStart;
        }
    }
    if !row.is_empty() {
        // The input ended inside a quoted field.
        reader.row(&row, first_line, true, &mut stats, sink);
    }
    stats
}

struct CsvReader {
    /// The header, or why it is unusable.
    header: Option<Result<CsvHeader, String>>,
    cells: csv::Fields,
    file: Arc<str>,
}

impl CsvReader {
    fn row(
        &mut self,
        row: &[u8],
        number: u64,
        unterminated: bool,
        stats: &mut ReadStats,
        sink: &mut dyn FnMut(Flow),
    ) {
        stats.records += 1;
        let result = match &self.header {
            None => {
                let header = CsvHeader::parse(row);
                let result = match &header {
                    Ok(_) => Ok(ParsedLine::Skip("CSV header")),
                    Err(message) => Err(format!("unusable CSV header: {message}")),
                };
                self.header = Some(header);
                result
            }
            Some(Err(_)) => Ok(ParsedLine::Skip("CSV row under an unusable header")),
            Some(Ok(header)) => {
                let evidence = RecordRef {
                    file: self.file.clone(),
                    format: Format::Csv,
                    record: number,
                };
                parse_row_with(header, row, evidence, &mut self.cells)
            }
        };
        let result = result.map_err(|mut message| {
            if unterminated {
                message.push_str(lines::TRUNCATION_HINT);
                stats.truncated = true;
            }
            message
        });
        record_line(stats, &self.file, number, result, sink);
    }
}

/// Turns a record's values into a flow, checking each against the schema.
fn build_flow(values: &Values<'_>, evidence: RecordRef) -> Result<Flow, String> {
    let protocol = values.required(Field::Protocol)?;
    let transport = Transport::parse(&protocol)
        .ok_or_else(|| format!("protocol {protocol:?} is not tcp, udp, sctp, icmp or a number"))?;
    let outcome_text = values.required(Field::Outcome)?;
    let outcome = Outcome::parse(&outcome_text).ok_or_else(|| {
        format!(
            "outcome {outcome_text:?} is not established, refused, unanswered, forwarded or dropped"
        )
    })?;
    let mut flow = Flow::new(evidence, transport, outcome);
    flow.first_seen = values.time(Field::Time)?;
    flow.last_seen = values.time(Field::EndTime)?.or(flow.first_seen);
    let src = [
        Field::SrcIp,
        Field::SrcPort,
        Field::SrcNamespace,
        Field::SrcPod,
    ];
    let dst = [
        Field::DstIp,
        Field::DstPort,
        Field::DstNamespace,
        Field::DstPod,
    ];
    flow.src = endpoint(values, src, transport)?;
    flow.dst = endpoint(values, dst, transport)?;
    flow.packets = [
        values.count(Field::PacketsOut)?,
        values.count(Field::PacketsIn)?,
    ];
    flow.bytes = [
        values.count(Field::BytesOut)?,
        values.count(Field::BytesIn)?,
    ];
    flow.connections = match values.get(Field::Connections) {
        None => 1,
        Some(_) => match values.count(Field::Connections)? {
            0 => return Err("connections is 0; a record stands for at least one".to_string()),
            n => n,
        },
    };
    Ok(flow)
}

fn endpoint(
    values: &Values<'_>,
    [ip_field, port_field, namespace_field, pod_field]: [Field; 4],
    transport: Transport,
) -> Result<FlowEndpoint, String> {
    let ip = match values.text(ip_field) {
        None => None,
        Some(text) => Some(
            text.trim()
                .parse::<IpAddr>()
                .map_err(|_| format!("{} {text:?} is not an IP address", ip_field.name()))?,
        ),
    };
    let port = values.port(port_field)?.filter(|_| transport.has_ports());
    let namespace = values.text(namespace_field).map(|t| t.trim().to_string());
    let pod = values.text(pod_field).map(|t| t.trim().to_string());
    if ip.is_none() && pod.is_none() {
        return Err(format!(
            "neither {} nor {} is given",
            ip_field.name(),
            pod_field.name()
        ));
    }
    let identity = (namespace.is_some() || pod.is_some()).then(|| {
        Arc::new(Identity {
            namespace,
            pod,
            ..Identity::default()
        })
    });
    Ok(FlowEndpoint { ip, port, identity })
}
