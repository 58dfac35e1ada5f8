//! Single-core throughput of the text flow readers on generated volume: a
//! sample file repeated until it has the requested number of lines, read
//! from memory through the public streaming readers (line splitting
//! included).
//!
//! ```text
//! cargo run --release -p palisade-flow --example text_throughput -- hubble 1000000
//! ```
//!
//! Formats: `hubble` (the 400-flow sample), `calico`, `generic-jsonl`,
//! `csv`, `conntrack` (the lab events with distinct ports per round), and
//! `hubble-parallel <lines> <threads>`: the per-line API on several threads
//! (lines already split in memory).

use std::io::{BufRead, Read};
use std::sync::Arc;
use std::time::Instant;

use palisade_flow::generic::ParsedLine;
use palisade_flow::{Flow, Format, ReadStats, RecordRef, calico, conntrack, generic, hubble};

const HUBBLE: &[u8] = include_bytes!("../tests/data/hubble-basic-sample-400-tcp-flows.json");
const CALICO: &[u8] = include_bytes!("../tests/data/calico-flows.log");
const CONNTRACK: &[u8] = include_bytes!("../tests/data/conntrack-lab-events-timestamp.txt");
const JSONL: &[u8] = br#"{"time":"2024-05-01T10:00:00.123456Z","src_ip":"10.0.0.1","src_port":40000,"dst_ip":"10.0.0.2","dst_port":8080,"protocol":"tcp","outcome":"established","src_namespace":"a","src_pod":"web-1","dst_namespace":"b","dst_pod":"api-2","packets_out":10,"packets_in":8,"bytes_out":1200,"bytes_in":5000}
"#;
const CSV_HEADER: &[u8] = b"time,src_ip,src_port,dst_ip,dst_port,protocol,outcome,src_namespace,src_pod,dst_namespace,dst_pod,packets_out,packets_in,bytes_out,bytes_in\n";
const CSV_ROW: &[u8] = b"1714557600.123456,10.0.0.1,40000,10.0.0.2,8080,tcp,established,a,web-1,b,api-2,10,8,1200,5000\n";

/// A reader that yields `head` once, then `body` over and over.
struct Repeat {
    head: &'static [u8],
    body: Vec<u8>,
    rounds: u64,
    pos: usize,
    in_head: bool,
}

impl Read for Repeat {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = {
            let available = self.fill_buf()?;
            let n = available.len().min(out.len());
            out[..n].copy_from_slice(&available[..n]);
            n
        };
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for Repeat {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        if self.in_head && self.pos >= self.head.len() {
            self.in_head = false;
            self.pos = 0;
        }
        if self.in_head {
            return Ok(&self.head[self.pos..]);
        }
        if self.rounds == 0 {
            return Ok(&[]);
        }
        Ok(&self.body[self.pos..])
    }

    fn consume(&mut self, n: usize) {
        self.pos += n;
        let len = if self.in_head {
            self.head.len()
        } else {
            self.body.len()
        };
        if self.pos >= len {
            self.pos = 0;
            if self.in_head {
                self.in_head = false;
            } else {
                self.rounds = self.rounds.saturating_sub(1);
            }
        }
    }
}

/// The conntrack sample with each round's ports shifted, so rounds are
/// distinct connections rather than one connection seen again.
fn conntrack_body(rounds_in_body: u16) -> Vec<u8> {
    let text = std::str::from_utf8(CONNTRACK).unwrap_or_default();
    let mut body = String::new();
    for round in 0..rounds_in_body {
        let shifted = text
            .replace("33772", &(20000 + round).to_string())
            .replace("34772", &(30000 + round).to_string())
            .replace("60936", &(40000 + round).to_string())
            .replace("50034", &(50000 + round).to_string());
        body.push_str(&shifted);
    }
    body.into_bytes()
}

/// Hubble lines parsed on `threads` threads with the per-line API, each
/// thread taking every n-th line, as a parallel caller would.
fn hubble_parallel(lines: u64, threads: usize) {
    let sample_lines = HUBBLE.iter().filter(|&&b| b == b'\n').count() as u64;
    let text = HUBBLE.repeat(lines.div_ceil(sample_lines) as usize);
    let all: Vec<&[u8]> = text
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let file: Arc<str> = Arc::from("generated");
    let started = Instant::now();
    let flows: usize = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (all, file) = (&all, file.clone());
                scope.spawn(move || {
                    let mut flows = 0;
                    for (i, line) in all.iter().enumerate().skip(t).step_by(threads) {
                        let evidence = RecordRef {
                            file: file.clone(),
                            format: Format::Hubble,
                            record: i as u64 + 1,
                        };
                        if let Ok(ParsedLine::Flow(_)) = hubble::parse_hubble_line(line, evidence) {
                            flows += 1;
                        }
                    }
                    flows
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap_or(0)).sum()
    });
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "hubble on {threads} threads: {flows} flows in {seconds:.3} s: {:.0} flows/s",
        flows as f64 / seconds
    );
}

fn main() {
    let mut args = std::env::args().skip(1);
    let format = args.next().unwrap_or_else(|| "hubble".to_string());
    let lines: u64 = args
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    if format == "hubble-parallel" {
        let threads = args.next().and_then(|n| n.parse().ok()).unwrap_or(2);
        hubble_parallel(lines, threads);
        return;
    }
    let (head, body): (&'static [u8], Vec<u8>) = match format.as_str() {
        "hubble" => (b"", HUBBLE.to_vec()),
        "calico" => (b"", CALICO.to_vec()),
        "generic-jsonl" => (b"", JSONL.to_vec()),
        "csv" => (CSV_HEADER, CSV_ROW.to_vec()),
        "conntrack" => (b"", conntrack_body(10_000)),
        other => panic!("unknown format {other}"),
    };
    let body_lines = body.iter().filter(|&&b| b == b'\n').count() as u64;
    let rounds = lines.div_ceil(body_lines);
    let input = Repeat {
        head,
        body: body.clone(),
        rounds,
        pos: 0,
        in_head: true,
    };
    let file: Arc<str> = Arc::from("generated");
    let mut flows = 0u64;
    let mut sink = |_flow: Flow| flows += 1;
    let started = Instant::now();
    let stats: ReadStats = match format.as_str() {
        "hubble" => hubble::read_hubble(input, file, &mut sink),
        "calico" => calico::read_calico(input, file, &mut sink),
        "generic-jsonl" => generic::read_jsonl(input, file, &mut sink),
        "csv" => generic::read_csv(input, file, &mut sink),
        _ => conntrack::read_conntrack(input, file, &mut sink),
    };
    let seconds = started.elapsed().as_secs_f64();
    let bytes = body.len() as f64 * rounds as f64;
    println!(
        "{format}: {} lines, {flows} flows in {seconds:.3} s: {:.0} lines/s, {:.0} flows/s, {:.0} MB/s; skipped {:?}, {} diagnostics",
        stats.records,
        stats.records as f64 / seconds,
        flows as f64 / seconds,
        bytes / seconds / 1e6,
        stats.skipped,
        stats.diagnostics.len() as u64 + stats.diagnostics_dropped,
    );
}
