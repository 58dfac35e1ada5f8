//! Load for `palisade serve`'s ingest: SENDERS threads post ALERTS new
//! alerts in batches of BATCH (JSON lines) and the figures are printed:
//! alerts per second acknowledged, and request latency percentiles.
//!
//! cargo run --release --example ingest_load -- http://127.0.0.1:8470 200000 4 1000
//!
//! With STAMP set, each alert's `time` is the moment its request is sent
//! (RFC 3339, microseconds), so that a reader of a sink can measure
//! ingest-to-sink latency (`bench/ingest_to_sink.py`).

use std::time::{Duration, Instant};

fn alert(run: u128, n: usize) -> String {
    format!(
        r#"{{"id":"{run}-{n}","origin":"bench","time":"2026-12-02T10:00:00Z","first_seen":"2026-12-02T10:00:00Z","rule":"FLOW-001","name":"policy-bypass","severity":"critical","summary":"web/fe[Deployment] reached shop/db[StatefulSet]:5432, which the policy denies","src":{{"kind":"pod","ip":"10.0.1.5","namespace":"web","pod":"fe-{m}","workload":"web/fe[Deployment]"}},"dst":{{"kind":"pod","ip":"10.0.2.9","namespace":"shop","pod":"db-0","workload":"shop/db[StatefulSet]"}},"protocol":"TCP","port":5432,"connections":1,"evidence":{{"records":[{{"file":"ebpf","format":"ebpf","record":{n}}}]}}}}"#,
        m = n % 97
    )
}

/// The `time` every alert has unless STAMP is set.
const FIXED_TIME: &str = r#""time":"2026-12-02T10:00:00Z""#;

/// Now, as RFC 3339 with microseconds.
fn now() -> String {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64);
    palisade_detect::rfc3339(micros)
}

fn arg<T: std::str::FromStr>(n: usize, default: T) -> T {
    std::env::args()
        .nth(n)
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let base: String = arg(1, "http://127.0.0.1:8470".to_string());
    let url = format!("{base}/api/v1/ingest/alerts");
    let total: usize = arg(2, 100_000);
    let senders: usize = arg(3, 4);
    let batch: usize = arg(4, 1000);
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let per_sender = total / senders;
    // Bodies are made before the clock starts: the server is measured.
    let bodies: Vec<Vec<String>> = (0..senders)
        .map(|s| {
            (0..per_sender)
                .step_by(batch)
                .map(|start| {
                    (start..(start + batch).min(per_sender))
                        .map(|i| alert(run, s * per_sender + i) + "\n")
                        .collect()
                })
                .collect()
        })
        .collect();
    let started = Instant::now();
    let threads: Vec<_> = bodies
        .into_iter()
        .map(|bodies| {
            let url = url.clone();
            std::thread::spawn(move || {
                let client = palisade_send::http::client();
                let mut latencies = Vec::new();
                let stamp = std::env::var_os("STAMP").is_some();
                for body in bodies {
                    loop {
                        let sent = Instant::now();
                        let body = match stamp {
                            true => body.replace(FIXED_TIME, &format!("\"time\":\"{}\"", now())),
                            false => body.clone(),
                        };
                        let status = client
                            .post(&url)
                            .body(body)
                            .send()
                            .map(|r| r.status().as_u16());
                        latencies.push(sent.elapsed());
                        match status {
                            Ok(200) => break,
                            Ok(503) => std::thread::sleep(Duration::from_millis(10)),
                            other => panic!("ingest answered {other:?}"),
                        }
                    }
                }
                latencies
            })
        })
        .collect();
    let mut latencies: Vec<Duration> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let elapsed = started.elapsed();
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    println!(
        "{} alerts in {:.2} s: {:.0} alerts/s acknowledged; {} requests of {batch}, latency p50 {:?} p99 {:?} max {:?}",
        per_sender * senders,
        elapsed.as_secs_f64(),
        (per_sender * senders) as f64 / elapsed.as_secs_f64(),
        latencies.len(),
        at(0.5),
        at(0.99),
        latencies.last().unwrap()
    );
}
