//! The agent's Prometheus metrics, in the text exposition format (0.0.4),
//! served on `--metrics-addr` by a small HTTP/1.1 responder (only
//! `GET /metrics`; anything else is answered 404 or 400, never a panic).
//!
//! Names follow Prometheus conventions: `palisade_agent_` prefix, `_total`
//! counters, base units (`_seconds`).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Every metric: its help text and type, then its series.
const METRICS: [(&str, &str, &str); 14] = [
    (
        "palisade_agent_events_total",
        "counter",
        "Sensor events received, by kind.",
    ),
    (
        "palisade_agent_events_lost_total",
        "counter",
        "Events the kernel could not queue (ring buffer full).",
    ),
    (
        "palisade_agent_events_undecodable_total",
        "counter",
        "Sensor records that did not decode.",
    ),
    (
        "palisade_agent_tcp_records_unpaired_total",
        "counter",
        "TCP records not paired with their socket's connect or close (lost, or older than the agent); reported as the kernel gave them.",
    ),
    (
        "palisade_agent_tcp_sockets_forgotten_total",
        "counter",
        "Sockets the sensor's join forgot, oldest first, because its tables were full.",
    ),
    (
        "palisade_agent_attribution_misses_total",
        "counter",
        "Events whose cgroup or pod could not be attributed, by what was missing.",
    ),
    (
        "palisade_agent_alerts_total",
        "counter",
        "Alerts sent (first occurrences and window updates), by rule.",
    ),
    (
        "palisade_agent_kernel_drops_total",
        "counter",
        "Packets the kernel dropped, by drop reason.",
    ),
    (
        "palisade_agent_inventory_reloads_total",
        "counter",
        "Policy reloads, by result (loaded or rejected).",
    ),
    (
        "palisade_agent_forwarded_total",
        "counter",
        "Alerts the server (or JetStream) took, by outcome (delivered, rejected).",
    ),
    (
        "palisade_agent_spool_pending",
        "gauge",
        "Alerts waiting in the spool for the server.",
    ),
    (
        "palisade_agent_forward_outages_total",
        "counter",
        "Rounds of delivery that ended with the server out of reach.",
    ),
    (
        "palisade_agent_open_alert_groups",
        "gauge",
        "Alert groups in their repeat window.",
    ),
    (
        "palisade_agent_verdict_latency_seconds",
        "histogram",
        "From reading an event off the ring buffer to its verdict.",
    ),
];

/// Upper bounds of the verdict latency histogram, in seconds.
const LATENCY_BUCKETS: [f64; 6] = [0.000_01, 0.000_1, 0.001, 0.01, 0.1, 1.0];

#[derive(Default)]
struct State {
    /// Series by metric name, then by label text (`kind="connect"`).
    series: BTreeMap<&'static str, BTreeMap<String, f64>>,
    latency_buckets: [u64; LATENCY_BUCKETS.len()],
    latency_count: u64,
    latency_sum: f64,
}

#[derive(Clone, Default)]
pub struct Metrics {
    state: Arc<Mutex<State>>,
}

impl Metrics {
    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        // A panic while holding the lock leaves counts that are still
        // counts: keep serving them.
        f(&mut self.state.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Adds `n` to the series `name{labels}`.
    pub fn add(&self, name: &'static str, labels: &str, n: u64) {
        self.with(|s| {
            *s.series
                .entry(name)
                .or_default()
                .entry(labels.to_string())
                .or_insert(0.0) += n as f64;
        });
    }

    pub fn set(&self, name: &'static str, labels: &str, value: f64) {
        self.with(|s| {
            s.series
                .entry(name)
                .or_default()
                .insert(labels.to_string(), value);
        });
    }

    pub fn observe_latency(&self, seconds: f64) {
        self.with(|s| {
            for (bucket, bound) in s.latency_buckets.iter_mut().zip(LATENCY_BUCKETS) {
                if seconds <= bound {
                    *bucket += 1;
                }
            }
            s.latency_count += 1;
            s.latency_sum += seconds;
        });
    }

    /// The value of one series (tests, the shutdown summary).
    pub fn value(&self, name: &str, labels: &str) -> f64 {
        self.with(|s| {
            s.series
                .get(name)
                .and_then(|series| series.get(labels))
                .copied()
                .unwrap_or(0.0)
        })
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        self.with(|s| {
            let mut out = String::new();
            for (name, kind, help) in METRICS {
                out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
                if kind == "histogram" {
                    for (count, bound) in s.latency_buckets.iter().zip(LATENCY_BUCKETS) {
                        out.push_str(&format!("{name}_bucket{{le=\"{bound}\"}} {count}\n"));
                    }
                    let n = s.latency_count;
                    out.push_str(&format!("{name}_bucket{{le=\"+Inf\"}} {n}\n"));
                    out.push_str(&format!("{name}_sum {}\n{name}_count {n}\n", s.latency_sum));
                    continue;
                }
                for (labels, value) in s.series.get(name).into_iter().flatten() {
                    let labels = if labels.is_empty() {
                        String::new()
                    } else {
                        format!("{{{labels}}}")
                    };
                    out.push_str(&format!("{name}{labels} {value}\n"));
                }
            }
            out
        })
    }
}

/// A label value, escaped as the exposition format wants.
pub fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Serves `GET /metrics` on `listener` from a thread of its own.
pub fn serve(listener: TcpListener, metrics: Metrics) {
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            // One slow client must not stop the others for long.
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = respond(stream, &metrics);
        }
    });
}

/// Longest request head read; longer ones are answered 400.
const MAX_HEAD: usize = 8192;

fn respond(stream: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request = String::new();
    let mut head = 0;
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = (&mut reader)
            .take((MAX_HEAD + 1 - head) as u64)
            .read_until(b'\n', &mut line)?;
        head += n;
        if head > MAX_HEAD {
            return reply(stream, "400 Bad Request", "request head too long\n");
        }
        if request.is_empty() {
            request = String::from_utf8_lossy(&line).trim_end().to_string();
        }
        if n == 0 || line == b"\r\n" || line == b"\n" {
            break;
        }
    }
    let mut parts = request.split(' ');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("GET"), Some(path), Some(version)) if version.starts_with("HTTP/1.") => {
            if path == "/metrics" || path.starts_with("/metrics?") {
                reply(stream, "200 OK", &metrics.render())
            } else {
                reply(stream, "404 Not Found", "only /metrics is served here\n")
            }
        }
        _ => reply(
            stream,
            "400 Bad Request",
            "expected GET /metrics HTTP/1.1\n",
        ),
    }
}

fn reply(mut stream: TcpStream, status: &str, body: &str) -> std::io::Result<()> {
    let content_type = if status.starts_with("200") {
        "text/plain; version=0.0.4; charset=utf-8"
    } else {
        "text/plain; charset=utf-8"
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(addr: std::net::SocketAddr, request: &[u8]) -> String {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.write_all(request).unwrap();
        let _ = stream.shutdown(std::net::Shutdown::Write);
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
    }

    #[test]
    fn serves_the_exposition_format_and_rejects_everything_else() {
        let metrics = Metrics::default();
        metrics.add("palisade_agent_events_total", "kind=\"connect\"", 3);
        metrics.add("palisade_agent_events_total", "kind=\"connect\"", 2);
        metrics.observe_latency(0.000_05);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        serve(listener, metrics.clone());

        let ok = ask(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.1 200 OK"), "{ok}");
        assert!(ok.contains("version=0.0.4"));
        assert!(ok.contains("palisade_agent_events_total{kind=\"connect\"} 5\n"));
        assert!(ok.contains("# TYPE palisade_agent_events_lost_total counter"));
        assert!(ok.contains("palisade_agent_verdict_latency_seconds_bucket{le=\"0.0001\"} 1"));
        assert!(ok.contains("palisade_agent_verdict_latency_seconds_count 1"));

        assert!(ask(addr, b"GET / HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
        for bad in [
            &b"garbage\r\n\r\n"[..],
            b"\r\n",
            b"",
            b"GET /metrics\r\n\r\n",
            &[0xff; 64],
        ] {
            assert!(ask(addr, bad).starts_with("HTTP/1.1 400"), "{bad:?}");
        }
        let long = [
            b"GET /metrics HTTP/1.1\r\nX: ".as_slice(),
            &[b'a'; 9000],
            b"\r\n\r\n",
        ]
        .concat();
        assert!(ask(addr, &long).starts_with("HTTP/1.1 400"));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
