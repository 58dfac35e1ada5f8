//! Independent lines parsed on every core while one thread reads the input
//! and the calling thread consumes the flows in input order.
//!
//! JSON parsing is most of the cost of a Hubble or Calico file, and lines do
//! not depend on each other, so a reading thread reads the input in
//! batches of about two megabytes cut after a newline, and does nothing else
//! with the bytes but count their lines: parsing threads split a batch into
//! lines, parse them, and run the caller's preparation step on each flow
//! (for `flows verify`: resolving the endpoints and judging the
//! connection). The calling thread then accounts for the results batch by
//! batch, in order. Flows, counts and diagnostics are the same as when
//! reading on one thread (diagnostics are sorted by record at the end),
//! with one exception: past the 100 diagnostics kept, a read error or
//! over-long line may take a place that a parse error on an earlier line
//! would have taken.
//!
//! Memory is bounded: at most three batches per parsing thread exist, and
//! their buffers go round between the threads instead of being freed and
//! allocated again (which costs page faults at this size).

use std::io::{BufRead, ErrorKind};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, channel, sync_channel};

use crate::diagnostics::ReadStats;
use crate::generic::ParsedLine;
use crate::generic::lines::{
    MAX_LINE_BYTES, TRUNCATION_HINT, diagnostic, is_blank, record_line, strip_terminator,
};
use crate::model::{Flow, Format, RecordRef};

/// A parser of one line; a plain function so it can run on any thread.
pub(crate) type LineParser = fn(&[u8], RecordRef) -> Result<ParsedLine, String>;

/// What the parsing threads run on each flow before handing it back.
pub(crate) type Prepare<'p, T> = &'p (dyn Fn(Flow) -> T + Sync);

/// Bytes read per batch: large enough that handing a batch over costs
/// little next to parsing it, small enough to keep memory flat. Larger
/// than the callers' read buffers (1 MiB), so that reads bypass them
/// instead of being copied twice.
const BATCH_BYTES: usize = 2 << 20;
/// Batches in flight per parsing thread.
const IN_FLIGHT: usize = 2;

/// Something the reading thread met right after a batch's text, accounted
/// for after the batch's lines so that line numbers stay in order.
enum After {
    /// A line longer than [`MAX_LINE_BYTES`], skipped up to its newline.
    LongLine,
    /// Reading failed; nothing after this batch was read.
    ReadError(std::io::Error),
}

struct Batch<T> {
    /// Allocated once and never shrunk; the text is `buf[..len]`: whole
    /// lines, each with its newline, except an unterminated last line at
    /// the end of the input.
    buf: Vec<u8>,
    len: usize,
    unterminated: bool,
    /// Lines before this batch's text, and in it (blank ones included, as
    /// they count in line numbers).
    lines_before: u64,
    lines: u64,
    after: Option<After>,
    /// Filled by the parsing thread: the non-blank lines and their results.
    records: u64,
    parsed: Vec<Parsed<T>>,
}

impl<T> Batch<T> {
    fn new() -> Batch<T> {
        Batch {
            buf: vec![0; BATCH_BYTES],
            len: 0,
            unterminated: false,
            lines_before: 0,
            lines: 0,
            after: None,
            records: 0,
            parsed: Vec::new(),
        }
    }
}

/// One line's result.
struct Parsed<T> {
    number: u64,
    unterminated: bool,
    result: Result<ParsedLine<T>, String>,
}

/// A parsing thread: where batches go, and where they come back parsed.
type Worker<T> = (SyncSender<Batch<T>>, Receiver<Batch<T>>);

/// How many threads parse: the machine's cores, at most eight.
pub(crate) fn parsing_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
}

/// Reads `input`, parses its lines and prepares their flows on `threads`
/// threads, and hands each prepared flow to `sink` on the calling thread,
/// in input order.
pub(crate) fn read_lines_in_parallel<R: BufRead + Send, T: Send>(
    input: R,
    file: Arc<str>,
    format: Format,
    parse: LineParser,
    prepare: Prepare<'_, T>,
    threads: usize,
    sink: &mut dyn FnMut(T),
) -> ReadStats {
    let mut stats = ReadStats::default();
    std::thread::scope(|scope| {
        let (senders, results): (Vec<_>, Vec<_>) = (0..threads.max(1))
            .map(|_| spawn_worker(scope, file.clone(), format, parse, prepare))
            .unzip();
        // Reading (the kernel's copy of the file, and counting lines) has a
        // thread of its own, so that the calling thread only accounts.
        let (spare_tx, spare_rx) = channel::<Batch<T>>();
        scope.spawn(move || read_batches(input, &senders, &spare_rx));
        let mut accountant = Accountant {
            stats: &mut stats,
            file: &file,
            sink,
        };
        // Batches go round-robin, so batch `n` comes from worker `n %
        // workers`. A worker whose results end has no more batches: the
        // reading thread is done (or a worker panicked, which the scope
        // re-raises when it ends, so no line is lost silently).
        for received in 0.. {
            let Ok(done) = results[received % results.len()].recv() else {
                break;
            };
            // The reading thread may be gone already.
            let _ = spare_tx.send(accountant.account(done));
        }
    });
    stats.diagnostics.sort_by_key(|d| d.record);
    stats
}

/// The reading thread: fills batches (new ones up to the bound on memory,
/// then those the calling thread hands back) and deals them out to the
/// parsing threads in turn.
fn read_batches<R: BufRead, T>(
    input: R,
    workers: &[SyncSender<Batch<T>>],
    spare: &Receiver<Batch<T>>,
) {
    let mut reader = BatchReader::new(input);
    let most = (IN_FLIGHT + 1) * workers.len();
    let (mut made, mut sent) = (0usize, 0usize);
    while !reader.done {
        let mut batch = match spare.try_recv() {
            Ok(batch) => batch,
            Err(_) if made < most => {
                made += 1;
                Batch::new()
            }
            Err(_) => match spare.recv() {
                Ok(batch) => batch,
                Err(_) => return,
            },
        };
        reader.fill(&mut batch);
        if workers[sent % workers.len()].send(batch).is_err() {
            return;
        }
        sent += 1;
    }
}

/// Fills batches from the input, cutting each after its last newline and
/// carrying the partial line that follows into the next one.
struct BatchReader<R> {
    input: R,
    carry: Vec<u8>,
    /// Lines read so far (counted here so that every parsing thread knows
    /// its lines' numbers).
    lines: u64,
    done: bool,
}

impl<R: BufRead> BatchReader<R> {
    fn new(input: R) -> Self {
        BatchReader {
            input,
            carry: Vec::new(),
            lines: 0,
            done: false,
        }
    }

    fn fill<T>(&mut self, batch: &mut Batch<T>) {
        self.read(batch);
        batch.lines_before = self.lines;
        batch.lines = memchr::memchr_iter(b'\n', &batch.buf[..batch.len]).count() as u64
            + u64::from(batch.unterminated);
        self.lines += batch.lines + u64::from(matches!(batch.after, Some(After::LongLine)));
    }

    fn read<T>(&mut self, batch: &mut Batch<T>) {
        batch.unterminated = false;
        batch.after = None;
        batch.len = self.carry.len();
        if batch.buf.len() < batch.len {
            batch.buf.resize(batch.len.next_power_of_two(), 0);
        }
        batch.buf[..batch.len].copy_from_slice(&self.carry);
        self.carry.clear();
        loop {
            if batch.len == batch.buf.len() && self.cut(batch) {
                return;
            }
            match self.input.read(&mut batch.buf[batch.len..]) {
                Ok(0) => {
                    self.done = true;
                    batch.unterminated = batch.len > 0 && batch.buf[batch.len - 1] != b'\n';
                    return;
                }
                Ok(n) => batch.len += n,
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) => {
                    // The partial line read before the error is not used.
                    batch.len = last_newline(&batch.buf[..batch.len]).map_or(0, |i| i + 1);
                    batch.after = Some(After::ReadError(error));
                    self.done = true;
                    return;
                }
            }
        }
    }

    /// With the batch full: cuts it after its last newline (true), or, when
    /// one line fills it, makes room (false) or skips that line once it is
    /// longer than [`MAX_LINE_BYTES`] (true).
    fn cut<T>(&mut self, batch: &mut Batch<T>) -> bool {
        if let Some(i) = last_newline(&batch.buf[..batch.len]) {
            self.carry.extend_from_slice(&batch.buf[i + 1..batch.len]);
            batch.len = i + 1;
            return true;
        }
        if batch.len > MAX_LINE_BYTES {
            batch.len = 0;
            batch.after = Some(match self.input.skip_until(b'\n') {
                Ok(_) => After::LongLine,
                Err(error) => {
                    self.done = true;
                    After::ReadError(error)
                }
            });
            return true;
        }
        let room = (batch.buf.len() * 2).min(MAX_LINE_BYTES + 1);
        batch.buf.resize(room, 0);
        false
    }
}

fn last_newline(text: &[u8]) -> Option<usize> {
    memchr::memrchr(b'\n', text)
}

/// Accounts for parsed batches in order.
struct Accountant<'s, T> {
    stats: &'s mut ReadStats,
    file: &'s Arc<str>,
    sink: &'s mut dyn FnMut(T),
}

impl<T> Accountant<'_, T> {
    /// Accounts for a parsed batch and hands it back for reuse.
    fn account(&mut self, mut done: Batch<T>) -> Batch<T> {
        let stats = &mut *self.stats;
        stats.records += done.records;
        for Parsed {
            number,
            unterminated,
            result,
        } in done.parsed.drain(..)
        {
            stats.truncated |= unterminated && result.is_err();
            record_line(stats, self.file, number, result, self.sink);
        }
        let last = done.lines_before + done.lines;
        match done.after.take() {
            None => {}
            Some(After::LongLine) => {
                stats.records += 1;
                let message = format!("line longer than {MAX_LINE_BYTES} bytes, skipped");
                record_line(stats, self.file, last + 1, Err(message), self.sink);
            }
            Some(After::ReadError(error)) => {
                stats.truncated = true;
                let message = format!("read error after line {last}: {error}");
                stats.diagnose(diagnostic(self.file, last + 1, message));
            }
        }
        done
    }
}

fn spawn_worker<'scope, T: Send + 'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    file: Arc<str>,
    format: Format,
    parse: LineParser,
    prepare: Prepare<'scope, T>,
) -> Worker<T> {
    let (batches, batch_rx) = sync_channel::<Batch<T>>(IN_FLIGHT);
    let (results_tx, results) = sync_channel(IN_FLIGHT);
    scope.spawn(move || {
        // Every flow holds the file name; a copy per thread keeps the
        // threads from contending for one reference count.
        let file: Arc<str> = Arc::from(&*file);
        for mut batch in batch_rx {
            parse_batch(&mut batch, &file, format, parse, prepare);
            if results_tx.send(batch).is_err() {
                break;
            }
        }
    });
    (batches, results)
}

fn parse_batch<T>(
    batch: &mut Batch<T>,
    file: &Arc<str>,
    format: Format,
    parse: LineParser,
    prepare: Prepare<'_, T>,
) {
    let text = &batch.buf[..batch.len];
    let (mut number, mut records) = (batch.lines_before, 0u64);
    let mut start = 0;
    while start < text.len() {
        let end = memchr::memchr(b'\n', &text[start..]).map_or(text.len(), |i| start + i + 1);
        let line = strip_terminator(&text[start..end]);
        let unterminated = end == text.len() && batch.unterminated;
        start = end;
        number += 1;
        if is_blank(line) {
            continue;
        }
        records += 1;
        let evidence = RecordRef {
            file: file.clone(),
            format,
            record: number,
        };
        let mut result = parse(line, evidence).map(|parsed| parsed.prepare(prepare));
        if let Err(message) = &mut result
            && unterminated
        {
            message.push_str(TRUNCATION_HINT);
        }
        batch.parsed.push(Parsed {
            number,
            unterminated,
            result,
        });
    }
    batch.records = records;
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
            n => read_lines_in_parallel(input, file, format, parse_hubble_line, &|f| f, n, sink),
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
        // A line longer than a batch, and one longer than a line may be.
        input.extend_from_slice(&vec![b'x'; 3 * BATCH_BYTES]);
        input.extend_from_slice(b"\r\n");
        input.extend_from_slice(&vec![b'y'; MAX_LINE_BYTES + 10]);
        input.extend_from_slice(b"\n");
        input.extend_from_slice(SAMPLE);
        input.extend_from_slice(br#"{"flow":{"verdict":"FORWARDED""#);
        assert!(input.len() > 3 * BATCH_BYTES);
        let (flows, stats) = read(&input, 0);
        assert_eq!(stats.flows, 2800);
        assert_eq!(stats.diagnostics.len(), 9);
        assert!(stats.truncated);
        for threads in [1, 2, 3] {
            let (parallel_flows, parallel_stats) = read(&input, threads);
            assert_eq!(parallel_stats, stats, "{threads} threads");
            assert!(parallel_flows == flows, "{threads} threads: flows differ");
        }
    }

    /// Gives `data`, then fails.
    struct FailingAfter<'a>(&'a [u8]);

    impl std::io::Read for FailingAfter<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0.is_empty() {
                return Err(std::io::Error::other("disk on fire"));
            }
            let n = buf.len().min(self.0.len()).min(1000);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn a_read_error_ends_the_input_after_the_last_whole_line() {
        let (flows, stats) = read_lines_in_order_from(FailingAfter(&SAMPLE[..SAMPLE.len() - 7]));
        let mut parallel_flows = Vec::new();
        let parallel_stats = read_lines_in_parallel(
            std::io::BufReader::new(FailingAfter(&SAMPLE[..SAMPLE.len() - 7])),
            Arc::from("t"),
            Format::Hubble,
            parse_hubble_line,
            &|f| f,
            2,
            &mut |flow| parallel_flows.push(flow),
        );
        assert_eq!(stats.flows, 399);
        assert!(stats.truncated);
        assert!(stats.diagnostics[0].message.contains("disk on fire"));
        assert_eq!(parallel_stats, stats);
        assert!(parallel_flows == flows);
    }

    fn read_lines_in_order_from(input: FailingAfter<'_>) -> (Vec<Flow>, ReadStats) {
        let mut flows = Vec::new();
        let stats = read_lines_in_order(
            std::io::BufReader::new(input),
            Arc::from("t"),
            Format::Hubble,
            parse_hubble_line,
            &mut |flow| flows.push(flow),
        );
        (flows, stats)
    }

    #[test]
    fn empty_input_reads_nothing() {
        let (flows, stats) = read(b"", 2);
        assert!(flows.is_empty());
        assert_eq!(stats, ReadStats::default());
    }
}
