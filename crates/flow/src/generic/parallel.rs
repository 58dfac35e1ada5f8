//! Independent lines parsed on every core while the calling thread reads
//! the input and consumes the flows in input order.
//!
//! JSON parsing is most of the cost of a Hubble or Calico file, and lines do
//! not depend on each other, so the reading thread cuts the input into
//! batches of whole lines, parsing threads turn batches into results, and
//! the reading thread accounts for the results batch by batch, in order.
//! Flows, counts and diagnostics are the same as when reading on one
//! thread (diagnostics are sorted by record at the end), with one
//! exception: past the 100 diagnostics kept, a read error or over-long
//! line, which the reading thread reports at once, may take a place that a
//! parse error on an earlier line would have taken.
//!
//! Memory is bounded: at most two batches per parsing thread are in flight,
//! and their buffers go round between the threads instead of being freed
//! and allocated again (which costs page faults at this size).

use std::io::BufRead;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use crate::diagnostics::ReadStats;
use crate::generic::ParsedLine;
use crate::generic::lines::{Line, LineReader, TRUNCATION_HINT, record_line};
use crate::model::{Flow, Format, RecordRef};

/// A parser of one line; a plain function so it can run on any thread.
pub(crate) type LineParser = fn(&[u8], RecordRef) -> Result<ParsedLine, String>;

/// Bytes of lines per batch: large enough that handing a batch over costs
/// little next to parsing it, small enough to keep memory flat.
const BATCH_BYTES: usize = 1 << 20;
/// Batches in flight per parsing thread.
const IN_FLIGHT: usize = 2;

#[derive(Default)]
struct Batch {
    text: Vec<u8>,
    /// Line number, end offset in `text`, no newline after it.
    lines: Vec<(u64, usize, bool)>,
    /// What the parsing thread made of the lines.
    parsed: Vec<Parsed>,
}

impl Batch {
    fn push(&mut self, line: &Line<'_>) {
        self.text.extend_from_slice(line.bytes);
        self.lines
            .push((line.number, self.text.len(), line.unterminated));
    }

    fn clear(&mut self) {
        self.text.clear();
        self.lines.clear();
        self.parsed.clear();
    }
}

/// One line's result, with what `record_line` needs to account for it.
struct Parsed {
    number: u64,
    unterminated: bool,
    result: Result<ParsedLine, String>,
}

/// A parsing thread: where batches go, and where they come back parsed.
type Worker = (SyncSender<Batch>, Receiver<Batch>);

/// How many threads parse: the machine's cores, at most eight.
pub(crate) fn parsing_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
}

/// Reads `input` line by line, parses the lines on `threads` threads and
/// hands each flow to `sink` on the calling thread, in input order.
pub(crate) fn read_lines_in_parallel<R: BufRead>(
    input: R,
    file: Arc<str>,
    format: Format,
    parse: LineParser,
    threads: usize,
    sink: &mut dyn FnMut(Flow),
) -> ReadStats {
    let mut stats = ReadStats::default();
    std::thread::scope(|scope| {
        let workers: Vec<Worker> = (0..threads.max(1))
            .map(|_| spawn_worker(scope, file.clone(), format, parse))
            .collect();
        let mut lines = LineReader::new(input);
        let (mut sent, mut received) = (0usize, 0usize);
        let mut batch = Batch::default();
        let mut spare: Vec<Batch> = Vec::new();
        // Accounts for a parsed batch and hands back its emptied buffers.
        let mut account = |stats: &mut ReadStats, mut done: Batch| {
            for Parsed {
                number,
                unterminated,
                result,
            } in done.parsed.drain(..)
            {
                stats.truncated |= unterminated && result.is_err();
                record_line(stats, &file, number, result, sink);
            }
            done.clear();
            done
        };
        loop {
            let more = match lines.next_line(&mut stats, &file) {
                Some(line) => {
                    batch.push(&line);
                    true
                }
                None => false,
            };
            if batch.text.len() >= BATCH_BYTES || (!more && !batch.lines.is_empty()) {
                if sent - received == IN_FLIGHT * workers.len() {
                    if let Some(done) = receive(&workers, received) {
                        spare.push(account(&mut stats, done));
                    }
                    received += 1;
                }
                let next = spare.pop().unwrap_or_default();
                // A worker only stops when its batch sender is dropped.
                let _ = workers[sent % workers.len()]
                    .0
                    .send(std::mem::replace(&mut batch, next));
                sent += 1;
            }
            if !more {
                break;
            }
        }
        while received < sent {
            if let Some(done) = receive(&workers, received) {
                account(&mut stats, done);
            }
            received += 1;
        }
    });
    stats.diagnostics.sort_by_key(|d| d.record);
    stats
}

fn spawn_worker<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    file: Arc<str>,
    format: Format,
    parse: LineParser,
) -> Worker {
    let (batches, batch_rx) = sync_channel::<Batch>(IN_FLIGHT);
    let (results_tx, results) = sync_channel(IN_FLIGHT);
    scope.spawn(move || {
        for mut batch in batch_rx {
            parse_batch(&mut batch, &file, format, parse);
            if results_tx.send(batch).is_err() {
                break;
            }
        }
    });
    (batches, results)
}

/// Batch number `index`, parsed (batches go round-robin).
fn receive(workers: &[Worker], index: usize) -> Option<Batch> {
    // A worker that panicked has dropped its sender: nothing to account
    // here, and the scope re-raises the panic when it ends, so no line is
    // lost silently.
    workers[index % workers.len()].1.recv().ok()
}

fn parse_batch(batch: &mut Batch, file: &Arc<str>, format: Format, parse: LineParser) {
    let Batch {
        text,
        lines,
        parsed,
    } = batch;
    let mut start = 0;
    parsed.extend(lines.iter().map(|&(number, end, unterminated)| {
        let evidence = RecordRef {
            file: file.clone(),
            format,
            record: number,
        };
        let mut result = parse(&text[start..end], evidence);
        start = end;
        if let Err(message) = &mut result
            && unterminated
        {
            message.push_str(TRUNCATION_HINT);
        }
        Parsed {
            number,
            unterminated,
            result,
        }
    }));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generic::lines::read_lines_in_order;
    use crate::hubble::parse_hubble_line;

    const SAMPLE: &[u8] = include_bytes!("../../tests/data/hubble-basic-sample-400-tcp-flows.json");

    fn read(input: &[u8], threads: usize) -> (Vec<Flow>, ReadStats) {
        let mut flows = Vec::new();
        let file: Arc<str> = Arc::from("t");
        let format = Format::Hubble;
        let sink = &mut |flow| flows.push(flow);
        let stats = match threads {
            0 => read_lines_in_order(input, file, format, parse_hubble_line, sink),
            n => read_lines_in_parallel(input, file, format, parse_hubble_line, n, sink),
        };
        (flows, stats)
    }

    #[test]
    fn parallel_reading_gives_what_reading_in_order_gives() {
        // Several batches' worth, with unreadable and blank lines between
        // them and a truncated last line.
        let mut input = Vec::new();
        for _ in 0..6 {
            input.extend_from_slice(SAMPLE);
            input.extend_from_slice(b"{not json\n  \r\n");
        }
        input.extend_from_slice(br#"{"flow":{"verdict":"FORWARDED""#);
        assert!(input.len() > 3 * BATCH_BYTES);
        let (flows, stats) = read(&input, 0);
        assert_eq!(stats.flows, 2400);
        assert_eq!(stats.diagnostics.len(), 7);
        assert!(stats.truncated);
        for threads in [1, 2, 3] {
            let (parallel_flows, parallel_stats) = read(&input, threads);
            assert_eq!(parallel_stats, stats, "{threads} threads");
            assert!(parallel_flows == flows, "{threads} threads: flows differ");
        }
    }

    #[test]
    fn empty_input_reads_nothing() {
        let (flows, stats) = read(b"", 2);
        assert!(flows.is_empty());
        assert_eq!(stats, ReadStats::default());
    }
}
