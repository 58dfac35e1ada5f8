//! The line loop every text reader shares: one reused buffer, 1-based line
//! numbers, CRLF and a missing final newline accepted, blank lines ignored,
//! over-long lines and read errors reported instead of aborting the run.
//!
//! The per-line parsers return a [`ParsedLine`] so that a caller can parse
//! lines on several threads and still account for them exactly as the
//! streaming readers do, by handing each result to [`record_line`] in order.

use std::io::{BufRead, Read};
use std::sync::Arc;

use crate::diagnostics::{FlowDiagnostic, ReadStats};
use crate::generic::parallel::{LineParser, parsing_threads, read_lines_in_parallel};
use crate::model::{Flow, Format, RecordRef};

/// A line longer than this is reported and skipped rather than buffered:
/// a file with no newlines must not be read into memory whole. Real flow
/// records are a few kilobytes.
pub const MAX_LINE_BYTES: usize = 16 << 20;

/// What one line of a text flow source turned out to be.
// Nearly every line is a flow: boxing it would cost an allocation per line
// to shrink a value that is moved once.
#[allow(clippy::large_enum_variant)]
///
/// `F` is what a flow line yields: the [`Flow`] itself, or what a caller's
/// preparation step made of it on the parsing thread (see
/// [`crate::read_flows_prepared`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParsedLine<F = Flow> {
    Flow(F),
    /// A well-formed record that is not a flow, counted under this reason
    /// (Hubble `node_status`, a CSV header repeated mid-file).
    Skip(&'static str),
    /// A record that is not used, counted under `reason` and also reported
    /// with `message` because the user should know (an unknown verdict).
    SkipNoted {
        reason: &'static str,
        message: String,
    },
    /// The source says it lost `events` events before writing them (Hubble
    /// `lost_events`). Counted in [`LOST_EVENTS_REASON`] and reported.
    Lost {
        events: u64,
        message: String,
    },
}

/// The skip reason under which lines that could not be read are counted
/// (each also has a diagnostic).
pub const UNREADABLE_REASON: &str = "unreadable line";
/// The skip reason under which events a source lost upstream are counted:
/// they are not lines of the file, but the user must see that they exist.
pub const LOST_EVENTS_REASON: &str = "events the source reported lost before export";
const LOST_NOTICE_REASON: &str = "lost-events notice";

impl ParsedLine {
    /// The same result with the flow, if it is one, turned into `prepare`'s
    /// output.
    pub fn prepare<T>(self, prepare: &dyn Fn(Flow) -> T) -> ParsedLine<T> {
        match self {
            ParsedLine::Flow(flow) => ParsedLine::Flow(prepare(flow)),
            ParsedLine::Skip(reason) => ParsedLine::Skip(reason),
            ParsedLine::SkipNoted { reason, message } => ParsedLine::SkipNoted { reason, message },
            ParsedLine::Lost { events, message } => ParsedLine::Lost { events, message },
        }
    }
}

/// Accounts for one line's result exactly as the streaming readers do.
pub fn record_line<F>(
    stats: &mut ReadStats,
    file: &Arc<str>,
    line: u64,
    result: Result<ParsedLine<F>, String>,
    sink: &mut dyn FnMut(F),
) {
    match result {
        Ok(ParsedLine::Flow(flow)) => {
            stats.flows += 1;
            sink(flow);
        }
        Ok(ParsedLine::Skip(reason)) => stats.skip(reason),
        Ok(ParsedLine::SkipNoted { reason, message }) => {
            stats.skip(reason);
            stats.diagnose(diagnostic(file, line, message));
        }
        Ok(ParsedLine::Lost { events, message }) => {
            stats.skip(LOST_NOTICE_REASON);
            *stats
                .skipped
                .entry(LOST_EVENTS_REASON.to_string())
                .or_insert(0) += events;
            stats.diagnose(diagnostic(file, line, message));
        }
        Err(message) => {
            stats.skip(UNREADABLE_REASON);
            stats.diagnose(diagnostic(file, line, message));
        }
    }
}

pub(crate) fn diagnostic(file: &Arc<str>, record: u64, message: String) -> FlowDiagnostic {
    FlowDiagnostic {
        file: file.clone(),
        record,
        offset: None,
        message,
    }
}

/// Reads a file of independent lines (JSON lines formats) with `parse`,
/// on every core when there are several.
/// `prepare` runs on the parsing threads, `sink` on the calling thread.
pub(crate) fn read_independent_lines<R: BufRead + Send, T: Send>(
    input: R,
    file: Arc<str>,
    format: Format,
    parse: LineParser,
    prepare: &(dyn Fn(Flow) -> T + Sync),
    sink: &mut dyn FnMut(T),
) -> ReadStats {
    match parsing_threads() {
        1 => read_lines_in_order(input, file, format, parse, &mut |flow| sink(prepare(flow))),
        threads => read_lines_in_parallel(input, file, format, parse, prepare, threads, sink),
    }
}

/// [`read_independent_lines`] on the calling thread alone.
pub(crate) fn read_lines_in_order<R: BufRead>(
    input: R,
    file: Arc<str>,
    format: Format,
    parse: LineParser,
    sink: &mut dyn FnMut(Flow),
) -> ReadStats {
    let mut stats = ReadStats::default();
    let mut lines = LineReader::new(input);
    while let Some(line) = lines.next_line(&mut stats, &file) {
        let evidence = RecordRef {
            file: file.clone(),
            format,
            record: line.number,
        };
        let mut result = parse(line.bytes, evidence);
        if let Err(message) = &mut result
            && line.unterminated
        {
            message.push_str(TRUNCATION_HINT);
            stats.truncated = true;
        }
        record_line(&mut stats, &file, line.number, result, sink);
    }
    stats
}

/// Appended to the reason a last line without a newline could not be read.
pub(crate) const TRUNCATION_HINT: &str =
    " (the last line has no newline: the file may be truncated)";

/// One line, without its line terminator.
pub(crate) struct Line<'a> {
    pub number: u64,
    pub bytes: &'a [u8],
    /// The input ended without a newline after this line.
    pub unterminated: bool,
}

pub(crate) struct LineReader<R> {
    input: R,
    buf: Vec<u8>,
    number: u64,
    done: bool,
}

impl<R: BufRead> LineReader<R> {
    pub fn new(input: R) -> Self {
        LineReader {
            input,
            buf: Vec::with_capacity(4096),
            number: 0,
            done: false,
        }
    }

    /// The next non-blank line, counted in `stats.records`; `None` at the
    /// end of the input or after a read error (reported in `stats`).
    pub fn next_line(&mut self, stats: &mut ReadStats, file: &Arc<str>) -> Option<Line<'_>> {
        let unterminated = self.fill_next(stats, file, true)?;
        stats.records += 1;
        Some(self.line(unterminated))
    }

    /// The next line, blank or not, not counted: for formats whose records
    /// may span lines (CSV).
    pub fn next_raw_line(&mut self, stats: &mut ReadStats, file: &Arc<str>) -> Option<Line<'_>> {
        let unterminated = self.fill_next(stats, file, false)?;
        Some(self.line(unterminated))
    }

    fn line(&self, unterminated: bool) -> Line<'_> {
        Line {
            number: self.number,
            bytes: strip_terminator(&self.buf),
            unterminated,
        }
    }

    /// Reads up to the next (non-blank) line into the buffer; returns
    /// whether it lacks a newline.
    fn fill_next(
        &mut self,
        stats: &mut ReadStats,
        file: &Arc<str>,
        skip_blank: bool,
    ) -> Option<bool> {
        while !self.done {
            self.buf.clear();
            let limit = MAX_LINE_BYTES as u64 + 1;
            match Read::take(&mut self.input, limit).read_until(b'\n', &mut self.buf) {
                Ok(0) => self.done = true,
                Ok(_) => {
                    self.number += 1;
                    let unterminated = self.buf.last() != Some(&b'\n');
                    if self.buf.len() > MAX_LINE_BYTES && unterminated {
                        self.skip_long_line(stats, file);
                    } else if !skip_blank || !is_blank(strip_terminator(&self.buf)) {
                        return Some(unterminated);
                    }
                }
                Err(error) => self.fail(stats, file, &error),
            }
        }
        None
    }

    fn skip_long_line(&mut self, stats: &mut ReadStats, file: &Arc<str>) {
        stats.records += 1;
        if let Err(error) = self.input.skip_until(b'\n') {
            self.fail(stats, file, &error);
            return;
        }
        let message = format!("line longer than {MAX_LINE_BYTES} bytes, skipped");
        record_line::<Flow>(stats, file, self.number, Err(message), &mut |_| {});
    }

    fn fail(&mut self, stats: &mut ReadStats, file: &Arc<str>, error: &std::io::Error) {
        stats.truncated = true;
        let message = format!("read error after line {}: {error}", self.number);
        stats.diagnose(diagnostic(file, self.number + 1, message));
        self.done = true;
    }
}

pub(crate) fn is_blank(line: &[u8]) -> bool {
    line.iter().all(u8::is_ascii_whitespace)
}

pub(crate) fn strip_terminator(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The line as text, or why it is not.
pub(crate) fn utf8(line: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(line).map_err(|error| {
        format!(
            "not UTF-8 text (invalid byte at column {})",
            error.valid_up_to() + 1
        )
    })
}

/// Deserializes one JSON line. Validating UTF-8 once for the whole line and
/// parsing from `&str` is markedly faster than letting serde_json validate
/// every string and key on its own.
pub(crate) fn parse_json<'a, T: serde::Deserialize<'a>>(line: &'a [u8]) -> Result<T, String> {
    let text = utf8(line)?;
    serde_json::from_str(text).map_err(|error| json_error(text, &error))
}

/// Describes why a line is not the JSON expected, in the user's terms.
fn json_error(line: &str, error: &serde_json::Error) -> String {
    if error.is_eof() {
        return format!("truncated JSON: the line ends at column {}", line.len());
    }
    match error.classify() {
        serde_json::error::Category::Data => format!("unexpected JSON content: {error}"),
        _ => format!("not valid JSON: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(input: &[u8]) -> (Vec<(u64, Vec<u8>, bool)>, ReadStats) {
        let file: Arc<str> = Arc::from("t");
        let mut stats = ReadStats::default();
        let mut reader = LineReader::new(input);
        let mut out = Vec::new();
        while let Some(line) = reader.next_line(&mut stats, &file) {
            out.push((line.number, line.bytes.to_vec(), line.unterminated));
        }
        (out, stats)
    }

    #[test]
    fn numbers_lines_and_strips_terminators() {
        let (lines, stats) = lines_of(b"a\r\n\n  \r\nb\nc");
        assert_eq!(
            lines,
            vec![
                (1, b"a".to_vec(), false),
                (4, b"b".to_vec(), false),
                (5, b"c".to_vec(), true)
            ]
        );
        assert_eq!(stats.records, 3);
    }

    #[test]
    fn over_long_line_is_reported_and_reading_goes_on() {
        let mut input = vec![b'x'; MAX_LINE_BYTES + 10];
        input.extend_from_slice(b"\nnext\n");
        let (lines, stats) = lines_of(&input);
        assert_eq!(lines, vec![(2, b"next".to_vec(), false)]);
        assert_eq!(stats.diagnostics[0].record, 1);
        assert_eq!(stats.skipped[UNREADABLE_REASON], 1);
    }
}
