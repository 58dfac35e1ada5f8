//! Packet captures: classic pcap (both byte orders, microsecond and
//! nanosecond timestamps) and pcapng (sections in either byte order,
//! per-interface link types and timestamp resolutions), read as a stream
//! into connections.
//!
//! Memory is bounded whatever the file's size: one 1 MiB read buffer, one
//! record buffer allocated once, and the connections still open. A record
//! longer than any capture allows means the file is corrupt from there on:
//! classic pcap has no markers to resynchronise on, so reading stops with a
//! diagnostic and what came before is kept. A file that ends inside a
//! record (a capture still being written, a cut copy) sets
//! [`ReadStats::truncated`].

use std::io::{self, BufReader, Read};
use std::sync::Arc;

use crate::diagnostics::{FlowDiagnostic, ReadStats};
use crate::model::{Flow, Format, Micros};
use crate::packet::{self, link};
use crate::reconstruct::{Reconstructor, Timeouts};

mod ng;

/// The largest record accepted. libpcap's own bound (`MAXIMUM_SNAPLEN`) is
/// 262144 bytes; anything longer is corruption, not a packet.
pub const MAX_RECORD_LEN: usize = 256 * 1024;
/// A pcapng packet block holds the record plus its header and options.
const MAX_BLOCK_LEN: usize = MAX_RECORD_LEN + 64 * 1024;
const READ_BUFFER: usize = 1 << 20;

const PCAP_MICROS: u32 = 0xa1b2_c3d4;
const PCAP_NANOS: u32 = 0xa1b2_3c4d;
const PCAPNG_SECTION: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];

/// How captures are turned into connections.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptureOptions {
    pub timeouts: Timeouts,
}

/// The capture format the first bytes of a file announce, if any.
pub fn is_capture(head: &[u8]) -> Option<Format> {
    let magic: [u8; 4] = head.get(..4)?.try_into().ok()?;
    if magic == PCAPNG_SECTION {
        // The byte-order magic follows the block length, when present.
        return match head.get(8..12) {
            None | Some([0x1a, 0x2b, 0x3c, 0x4d] | [0x4d, 0x3c, 0x2b, 0x1a]) => {
                Some(Format::Pcapng)
            }
            Some(_) => None,
        };
    }
    classic_magic(magic).map(|_| Format::Pcap)
}

/// Byte order and whether timestamps are in nanoseconds.
fn classic_magic(magic: [u8; 4]) -> Option<(Order, bool)> {
    match (u32::from_le_bytes(magic), u32::from_be_bytes(magic)) {
        (PCAP_MICROS, _) => Some((Order::Little, false)),
        (PCAP_NANOS, _) => Some((Order::Little, true)),
        (_, PCAP_MICROS) => Some((Order::Big, false)),
        (_, PCAP_NANOS) => Some((Order::Big, true)),
        _ => None,
    }
}

/// Reads a capture, hands each connection to `sink` as soon as it is over,
/// and accounts for every record. Never panics; an I/O error ends the
/// reading with a diagnostic.
pub fn read_capture<R: Read>(
    input: R,
    file: Arc<str>,
    options: &CaptureOptions,
    sink: &mut dyn FnMut(Flow),
) -> ReadStats {
    let mut input = BufReader::with_capacity(READ_BUFFER, input);
    let mut magic = [0u8; 4];
    let mut stats = ReadStats::default();
    let diagnostic = |message: &str| FlowDiagnostic {
        file: Arc::clone(&file),
        record: 0,
        offset: Some(0),
        message: message.to_string(),
    };
    let format = match read_full(&mut input, &mut magic) {
        Ok(0) => {
            stats.diagnose(diagnostic("empty input: no capture header"));
            return stats;
        }
        Ok(4) => is_capture(&magic),
        Ok(_) => {
            stats.truncated = true;
            stats.diagnose(diagnostic("input ends inside the capture file header"));
            return stats;
        }
        Err(error) => {
            stats.diagnose(diagnostic(&format!("read error: {error}")));
            return stats;
        }
    };
    let Some(format) = format else {
        let message = format!("not a pcap or pcapng file (starts with {magic:02x?})");
        stats.diagnose(diagnostic(&message));
        return stats;
    };
    let mut reader = CaptureReader {
        input,
        offset: 4,
        buf: vec![0; MAX_BLOCK_LEN],
        recon: Reconstructor::new(Arc::clone(&file), format, options.timeouts),
        file,
        stats,
        sink,
        packets: 0,
    };
    match format {
        Format::Pcapng => ng::read(&mut reader),
        _ => read_classic(&mut reader, magic),
    }
    reader.finish()
}

/// Reads until `out` is full or the input ends; returns how much was read.
fn read_full(input: &mut impl Read, out: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < out.len() {
        match input.read(&mut out[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Order {
    Little,
    Big,
}

impl Order {
    /// Callers check lengths first; a short slice reads as 0 rather than
    /// panicking.
    fn u16(self, data: &[u8], at: usize) -> u16 {
        let Some(&[a, b]) = data.get(at..).and_then(|d| d.get(..2)) else {
            return 0;
        };
        match self {
            Order::Little => u16::from_le_bytes([a, b]),
            Order::Big => u16::from_be_bytes([a, b]),
        }
    }

    fn u32(self, data: &[u8], at: usize) -> u32 {
        let Some(&[a, b, c, d]) = data.get(at..).and_then(|d| d.get(..4)) else {
            return 0;
        };
        match self {
            Order::Little => u32::from_le_bytes([a, b, c, d]),
            Order::Big => u32::from_be_bytes([a, b, c, d]),
        }
    }
}

/// How a read into a record went.
enum Fill {
    Full,
    /// Nothing at all: a clean end between records.
    End,
    /// Some bytes, then the end: a truncated record.
    Partial(usize),
    Failed(io::Error),
}

/// The reading state shared by the pcap and pcapng parsers.
struct CaptureReader<'s, R> {
    input: BufReader<R>,
    /// Bytes consumed so far: where the next read starts.
    offset: u64,
    /// Allocated once, [`MAX_BLOCK_LEN`] bytes, never resized.
    buf: Vec<u8>,
    file: Arc<str>,
    stats: ReadStats,
    recon: Reconstructor,
    sink: &'s mut dyn FnMut(Flow),
    /// Packet records read; the next one is `packets + 1`.
    packets: u64,
}

impl<R: Read> CaptureReader<'_, R> {
    fn fill_slice(input: &mut BufReader<R>, offset: &mut u64, out: &mut [u8]) -> Fill {
        match read_full(input, out) {
            Ok(n) => {
                *offset += n as u64;
                match n {
                    0 if !out.is_empty() => Fill::End,
                    n if n == out.len() => Fill::Full,
                    n => Fill::Partial(n),
                }
            }
            Err(error) => Fill::Failed(error),
        }
    }

    /// Reads a small header into `out`.
    fn fill_header(&mut self, out: &mut [u8]) -> Fill {
        Self::fill_slice(&mut self.input, &mut self.offset, out)
    }

    /// Reads `len` bytes (at most [`MAX_BLOCK_LEN`]) into the record buffer.
    fn fill_record(&mut self, len: usize) -> Fill {
        match self.buf.get_mut(..len) {
            Some(out) => Self::fill_slice(&mut self.input, &mut self.offset, out),
            None => Fill::Failed(io::Error::other("record larger than the buffer")),
        }
    }

    /// Consumes `len` bytes without keeping them: blocks of no interest
    /// may be of any size.
    fn skip(&mut self, len: u64) -> Fill {
        match io::copy(&mut (&mut self.input).take(len), &mut io::sink()) {
            Ok(n) => {
                self.offset += n;
                if n == len {
                    Fill::Full
                } else {
                    Fill::Partial(n as usize)
                }
            }
            Err(error) => Fill::Failed(error),
        }
    }

    fn diagnose(&mut self, record: u64, offset: u64, message: String) {
        self.stats.diagnose(FlowDiagnostic {
            file: Arc::clone(&self.file),
            record,
            offset: Some(offset),
            message,
        });
    }

    /// Reports a read that did not fill a record: the end of input inside
    /// it, or an I/O error. Returns whether reading can go on (never: both
    /// end the input), so callers can `if !self.complete(..) { break }`.
    fn complete(&mut self, fill: Fill, record: u64, offset: u64, what: &str) -> bool {
        match fill {
            Fill::Full => true,
            Fill::End => false,
            Fill::Partial(n) => {
                self.stats.truncated = true;
                let message = format!("input ends inside {what} ({n} bytes of it present)");
                self.diagnose(record, offset, message);
                false
            }
            Fill::Failed(error) => {
                self.diagnose(record, offset, format!("read error: {error}"));
                false
            }
        }
    }

    /// Decodes the frame at `start..start + len` of the record buffer and
    /// accounts it.
    fn packet(
        &mut self,
        link_type: u32,
        start: usize,
        len: usize,
        original_len: u32,
        time: Micros,
    ) {
        self.packets += 1;
        self.stats.records += 1;
        let frame = self
            .buf
            .get(start..)
            .and_then(|b| b.get(..len))
            .unwrap_or_default();
        let result = packet::decode(link_type, frame, original_len, time)
            .and_then(|p| self.recon.push(&p, self.packets, &mut *self.sink));
        if let Err(skip) = result {
            self.stats.skip(skip.0);
        }
    }

    fn check_link_type(&mut self, link_type: u32, offset: u64) {
        if !link::is_supported(link_type) {
            let message =
                format!("link type {link_type} is not supported: its packets are skipped");
            self.diagnose(self.packets + 1, offset, message);
        }
    }

    fn finish(mut self) -> ReadStats {
        self.recon.finish(&mut *self.sink);
        self.stats.flows = self.recon.flows_emitted();
        self.stats
    }
}

fn read_classic<R: Read>(reader: &mut CaptureReader<'_, R>, magic: [u8; 4]) {
    let Some((order, nanos)) = classic_magic(magic) else {
        return;
    };
    let mut header = [0u8; 20];
    let fill = reader.fill_header(&mut header);
    if matches!(fill, Fill::End) {
        reader.stats.truncated = true;
        reader.diagnose(0, 0, "input ends inside the pcap file header".to_string());
        return;
    }
    if !reader.complete(fill, 0, 0, "the pcap file header") {
        return;
    }
    // The top bits of the link type field describe the FCS, not the link.
    let link_type = order.u32(&header, 16) & 0x0fff_ffff;
    reader.check_link_type(link_type, 20);
    loop {
        let offset = reader.offset;
        let record = reader.packets + 1;
        let mut record_header = [0u8; 16];
        let fill = reader.fill_header(&mut record_header);
        if !reader.complete(fill, record, offset, "a record header") {
            break;
        }
        let seconds = order.u32(&record_header, 0);
        let fraction = order.u32(&record_header, 4);
        let captured = order.u32(&record_header, 8) as usize;
        let original = order.u32(&record_header, 12);
        if captured > MAX_RECORD_LEN {
            let message = format!(
                "record length {captured} exceeds the {MAX_RECORD_LEN}-byte bound: \
                 the file is corrupt from here; reading stopped"
            );
            reader.diagnose(record, offset, message);
            break;
        }
        let fill = reader.fill_record(captured);
        if !reader.complete(
            Fill::partial_if_end(fill, captured),
            record,
            offset,
            "a packet record",
        ) {
            break;
        }
        let fraction = if nanos { fraction / 1000 } else { fraction };
        let time = Micros::from(seconds) * 1_000_000 + Micros::from(fraction);
        reader.packet(link_type, 0, captured, original, time);
    }
}

impl Fill {
    /// Inside a record whose header was read, no bytes at all is a
    /// truncation too, not a clean end.
    fn partial_if_end(self, wanted: usize) -> Fill {
        match self {
            Fill::End if wanted > 0 => Fill::Partial(0),
            other => other,
        }
    }
}
