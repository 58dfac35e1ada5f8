//! Sends alerts to `palisade serve` so that none is lost: each alert goes
//! to the spool file before the first attempt, and leaves it only once
//! the server answered that it committed it (or refused it for good). A
//! sender killed at any point, or a server that is down, leaves the unsent
//! alerts in the spool, and the next run sends them first.
//!
//! Retries follow the usual contract: connect errors, timeouts, 408, 429
//! and 5xx are retried with exponential backoff and jitter, honouring
//! `Retry-After`; other 4xx are not (the batch would fail again). A body
//! too large (413) is split in halves until it fits.

mod forward;
pub mod http;
mod nats;
mod spool;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use palisade_detect::Alert;
use serde::{Deserialize, Serialize};

pub use forward::{ForwardHandle, ForwardStats, Forwarder};
pub use nats::{STREAM, SUBJECTS, message_id, stream_config, subject};
pub use spool::Spool;

/// The ingest endpoint, under the server's base URL.
pub const INGEST_PATH: &str = "/api/v1/ingest/alerts";

#[derive(Clone, Debug)]
pub struct SendOptions {
    /// The server's base URL, `http://host:port`, or `nats://host:port`.
    pub server: String,
    pub token: Option<String>,
    /// Alerts per request.
    pub batch: usize,
    /// Give up retrying (and leave the rest in the spool) after this long.
    pub patience: Duration,
    pub spool: PathBuf,
    /// The CA and client certificate for an https server.
    pub tls: http::ClientTls,
}

/// The alert as the server takes it: its own fields plus id and origin.
#[derive(Serialize)]
struct WireAlert<'a> {
    id: String,
    origin: &'a str,
    #[serde(flatten)]
    alert: &'a Alert,
}

/// One line of the wire format (JSON lines) for `alert` from `origin`.
pub fn wire_line(alert: &Alert, origin: &str) -> String {
    let wire = WireAlert {
        id: alert.id(origin),
        origin,
        alert,
    };
    // An Alert holds only strings, numbers and maps with string keys:
    // serializing it cannot fail.
    serde_json::to_string(&wire).unwrap_or_default()
}

/// What became of the alerts of one [`Sender::send`].
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SendReport {
    /// Committed by the server (including ones left by earlier runs).
    pub delivered: usize,
    /// Of those, how many came from the spool.
    pub from_spool: usize,
    /// Refused by the server for good, with its reason (not retried).
    pub rejected: Vec<String>,
    /// Still in the spool, for the next run.
    pub spooled: usize,
    /// Why sending stopped early, if it did.
    pub stopped: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("spool {path}: {reason}")]
    Spool { path: String, reason: String },
    #[error("{0}")]
    Client(String),
}

/// Holds the spool (locked) for as long as it lives.
pub struct Sender {
    options: SendOptions,
    transport: Box<dyn Transport>,
    spool: Spool,
}

/// How batches leave: HTTP to the server's ingest, or JetStream.
trait Transport: Send {
    fn attempt(&mut self, lines: &[String]) -> Attempt;
}

/// The outcome of one request.
pub(crate) enum Attempt {
    Committed {
        rejected: Vec<String>,
    },
    TooLarge,
    Retry {
        after: Option<Duration>,
        why: String,
    },
    Refused(String),
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    rejected: Vec<RejectedItem>,
}

#[derive(Deserialize)]
struct RejectedItem {
    index: usize,
    reason: String,
}

impl Sender {
    /// A sender to `options.server`: `http(s)://` is the server's ingest,
    /// `nats://` a JetStream stream (subject `palisade.alerts.<origin>`).
    pub fn new(options: SendOptions, origin: &str) -> Result<Sender, SendError> {
        let transport: Box<dyn Transport> = if options.server.starts_with("nats://") {
            Box::new(nats::JetStream::connect(&options.server, origin)?)
        } else {
            Box::new(Http::new(&options)?)
        };
        let spool = Spool::open(&options.spool)?;
        Ok(Sender {
            options,
            transport,
            spool,
        })
    }

    /// Alerts waiting in the spool.
    pub fn pending(&self) -> usize {
        self.spool.pending().len()
    }

    /// Spools `lines` (wire lines), then sends the whole spool, oldest
    /// first, until it is empty or the server cannot be reached within
    /// the patience.
    pub fn send(&mut self, lines: &[String]) -> Result<SendReport, SendError> {
        let spool = &mut self.spool;
        let from_spool = spool.pending().len();
        spool.append(lines)?;
        let mut report = SendReport::default();
        let deadline = Instant::now() + self.options.patience;
        let mut batch = self.options.batch.max(1);
        let mut backoff = Backoff::new();
        while !spool.pending().is_empty() {
            let take = batch.min(spool.pending().len());
            match self.transport.attempt(&spool.pending()[..take]) {
                Attempt::Committed { rejected } => {
                    report.delivered += take - rejected.len();
                    report.rejected.extend(rejected);
                    spool.acknowledge(take)?;
                    backoff = Backoff::new();
                }
                Attempt::TooLarge if take > 1 => batch = take / 2,
                Attempt::TooLarge => {
                    report
                        .rejected
                        .push("an alert larger than the server's body limit".into());
                    spool.acknowledge(1)?;
                }
                Attempt::Retry { after, why } => {
                    let wait = after.unwrap_or_else(|| backoff.wait());
                    if Instant::now() + wait > deadline {
                        report.stopped = Some(why);
                        break;
                    }
                    std::thread::sleep(wait);
                }
                Attempt::Refused(why) => {
                    report.stopped = Some(why);
                    break;
                }
            }
        }
        report.from_spool = from_spool.min(report.delivered);
        report.spooled = spool.pending().len();
        Ok(report)
    }
}

struct Http {
    client: reqwest::blocking::Client,
    url: String,
    server: String,
    token: Option<String>,
}

impl Http {
    fn new(options: &SendOptions) -> Result<Http, SendError> {
        let client = http_client(options)?;
        Ok(Http {
            client,
            url: format!("{}{INGEST_PATH}", options.server.trim_end_matches('/')),
            server: options.server.clone(),
            token: options.token.clone(),
        })
    }
}

impl Transport for Http {
    fn attempt(&mut self, lines: &[String]) -> Attempt {
        post(self, lines)
    }
}

/// One request with `lines` as its body.
fn post(http: &Http, lines: &[String]) -> Attempt {
    let mut body = String::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
    for line in lines {
        body.push_str(line);
        body.push('\n');
    }
    let mut request = http
        .client
        .post(&http.url)
        .header("content-type", "application/x-ndjson")
        .body(body);
    if let Some(token) = &http.token {
        request = request.bearer_auth(token);
    }
    let response = match request.send() {
        Ok(r) => r,
        Err(e) => {
            return Attempt::Retry {
                after: None,
                why: format!("{}: {}", http.server, error_chain(&e)),
            };
        }
    };
    let status = response.status().as_u16();
    let after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|s| Duration::from_secs(s.min(300)));
    let text = response.text().unwrap_or_default();
    match status {
        200 | 422 => {
            let answer: Answer = serde_json::from_str(&text).unwrap_or(Answer {
                rejected: Vec::new(),
            });
            let rejected = answer
                .rejected
                .into_iter()
                .map(|r| format!("alert {} of the batch: {}", r.index, r.reason))
                .collect();
            Attempt::Committed { rejected }
        }
        413 => Attempt::TooLarge,
        408 | 429 | 500..=599 => Attempt::Retry {
            after,
            why: format!("the server answered {status}: {}", text.trim()),
        },
        _ => Attempt::Refused(format!("the server answered {status}: {}", text.trim())),
    }
}

/// An error with its causes: reqwest's say "error sending request" and
/// keep the reason inside.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn http_client(options: &SendOptions) -> Result<reqwest::blocking::Client, SendError> {
    http::client_builder(&options.tls)
        .and_then(|builder| {
            builder
                .timeout(Duration::from_secs(30))
                .connect_timeout(Duration::from_secs(5))
                .build()
                .map_err(|e| e.to_string())
        })
        .map_err(SendError::Client)
}

/// What became of the documents of a document spool.
#[derive(Debug, Default)]
pub struct DocumentReport {
    /// The server's answers to those it took, oldest first.
    pub delivered: Vec<String>,
    /// Those the server refused (4xx other than 408 and 429), with why:
    /// sending them again would be refused again, so they leave the spool.
    pub refused: Vec<String>,
    /// Still in the spool, for the next run; why the first was not taken.
    pub waiting: usize,
    pub why_waiting: Option<String>,
}

/// Appends `body` (one JSON document: an audit run) to the document spool
/// at `spool`, then posts every document waiting there to `path` of the
/// server, oldest first, each retried as alerts are retried. A document
/// leaves the spool only once the server took or refused it, so an audit
/// run made while the server is away is delivered by a later run.
pub fn send_documents(
    options: &SendOptions,
    spool: &Path,
    path: &str,
    body: &str,
) -> Result<DocumentReport, SendError> {
    let mut spool = Spool::open(spool)?;
    spool.append(&[body.to_string()])?;
    let client = http_client(options)?;
    let url = format!("{}{path}", options.server.trim_end_matches('/'));
    let mut report = DocumentReport::default();
    while let Some(document) = spool.pending().first().cloned() {
        match post_document(&client, options, &url, &document) {
            Posted::Taken(answer) => report.delivered.push(answer),
            Posted::Refused(why) => report.refused.push(why),
            Posted::GaveUp(why) => {
                report.waiting = spool.pending().len();
                report.why_waiting = Some(why);
                break;
            }
        }
        spool.acknowledge(1)?;
    }
    Ok(report)
}

enum Posted {
    Taken(String),
    Refused(String),
    GaveUp(String),
}

/// Posts one document, retrying until `options.patience` is spent.
fn post_document(
    client: &reqwest::blocking::Client,
    options: &SendOptions,
    url: &str,
    body: &str,
) -> Posted {
    let deadline = Instant::now() + options.patience;
    let mut backoff = Backoff::new();
    loop {
        let mut request = client
            .post(url)
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(token) = &options.token {
            request = request.bearer_auth(token);
        }
        let why = match request.send() {
            Ok(r) if r.status().is_success() => return Posted::Taken(r.text().unwrap_or_default()),
            Ok(r) => {
                let status = r.status().as_u16();
                let text = r.text().unwrap_or_default();
                let why = format!("the server answered {status}: {}", text.trim());
                if !(status == 408 || status == 429 || status >= 500) {
                    return Posted::Refused(why);
                }
                why
            }
            Err(e) => format!("{}: {}", options.server, error_chain(&e)),
        };
        let wait = backoff.wait();
        if Instant::now() + wait > deadline {
            return Posted::GaveUp(why);
        }
        std::thread::sleep(wait);
    }
}

/// Exponential backoff from 100 ms to 10 s with full jitter, so that many
/// senders cut off by one outage do not all come back at the same moment.
/// Waits between retries: doubling from 100 ms to 10 s, each drawn at
/// random from its upper half so that many clients do not retry in step.
pub struct Backoff {
    next_ms: u64,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff::new()
    }
}

impl Backoff {
    pub fn new() -> Backoff {
        Backoff { next_ms: 100 }
    }

    /// After a success: the next failure waits the shortest time again.
    pub fn reset(&mut self) {
        self.next_ms = 100;
    }

    /// How long to wait before the next attempt.
    pub fn wait(&mut self) -> Duration {
        let ceiling = self.next_ms;
        self.next_ms = (self.next_ms * 2).min(10_000);
        Duration::from_millis(ceiling / 2 + jitter() % (ceiling / 2 + 1))
    }
}

/// Enough randomness for spreading retries: the clock's nanoseconds.
fn jitter() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::from(d.subsec_nanos()) / 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_ten_seconds_and_stays_above_half() {
        let mut backoff = Backoff::new();
        let waits: Vec<u128> = (0..10).map(|_| backoff.wait().as_millis()).collect();
        assert!((50..=100).contains(&waits[0]), "{waits:?}");
        assert!((5_000..=10_000).contains(&waits[9]), "{waits:?}");
    }
}
