//! Getting formatted alerts to their destination: HTTP (one alert per
//! request, or a batch for Alertmanager and Elasticsearch), syslog over
//! UDP or TCP, and a JSON lines file.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::net::{TcpStream, ToSocketAddrs, UdpSocket};
use std::path::PathBuf;
use std::time::Duration;

use palisade_store::StoredAlert;
use serde_json::Value;

use crate::format::{self, Item};
use crate::{Attempt, Sink};
use palisade_send::error_chain;
use palisade_send::http::ClientTls;

#[derive(Clone, Debug)]
pub enum HttpFormat {
    Webhook,
    Slack,
    Teams,
    Falco,
    Alertmanager,
    Elasticsearch { index: String },
}

pub struct HttpSink {
    name: String,
    url: String,
    format: HttpFormat,
    client: reqwest::blocking::Client,
    headers: reqwest::header::HeaderMap,
}

impl HttpSink {
    pub fn new(
        name: &str,
        url: String,
        format: HttpFormat,
        headers: &BTreeMap<String, String>,
        tls: &ClientTls,
        timeout: Duration,
    ) -> Result<HttpSink, String> {
        let mut map = reqwest::header::HeaderMap::new();
        for (k, v) in headers {
            let key = reqwest::header::HeaderName::from_bytes(k.as_bytes())
                .map_err(|e| format!("sink {name}: header `{k}`: {e}"))?;
            let value = reqwest::header::HeaderValue::from_str(v)
                .map_err(|e| format!("sink {name}: header `{k}`: {e}"))?;
            map.insert(key, value);
        }
        let client = palisade_send::http::client_builder(tls)
            .map_err(|e| format!("sink {name}: {e}"))?
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("palisade/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("sink {name}: {e}"))?;
        Ok(HttpSink {
            name: name.to_string(),
            url,
            format,
            client,
            headers: map,
        })
    }

    fn post(&self, body: Vec<u8>, content_type: &str, idempotency_key: Option<&str>) -> Answer {
        let mut request = self
            .client
            .post(&self.url)
            .headers(self.headers.clone())
            .header("content-type", content_type)
            .body(body);
        if let Some(key) = idempotency_key {
            request = request.header("idempotency-key", key);
        }
        match request.send() {
            Err(e) => Answer::Unreachable(error_chain(&e)),
            Ok(response) => {
                let status = response.status().as_u16();
                let retry_after = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(|s| Duration::from_secs(s.min(3600)));
                let body = response.text().unwrap_or_default();
                Answer::Status {
                    status,
                    retry_after,
                    body,
                }
            }
        }
    }

    fn one_by_one(&self, alerts: &[StoredAlert]) -> Vec<Attempt> {
        alerts
            .iter()
            .map(|stored| {
                let item = Item::new(stored);
                let body = match &self.format {
                    HttpFormat::Slack => format::slack(&item),
                    HttpFormat::Teams => format::teams(&item),
                    HttpFormat::Falco => format::falco(&item),
                    _ => format::webhook(&item),
                };
                let bytes = serde_json::to_vec(&body).unwrap_or_default();
                self.post(bytes, "application/json", Some(&stored.record.id))
                    .attempt()
            })
            .collect()
    }

    fn alertmanager(&self, alerts: &[StoredAlert]) -> Vec<Attempt> {
        let body: Vec<Value> = alerts
            .iter()
            .map(|a| format::alertmanager(&Item::new(a), now_us()))
            .collect();
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let attempt = self.post(bytes, "application/json", None).attempt();
        vec![attempt; alerts.len()]
    }

    /// `_bulk` with one `create` per alert (data streams take nothing
    /// else), its id as `_id` so that a retry cannot index it twice. A 200
    /// answer still holds per-item errors, which are read item by item.
    fn elasticsearch(&self, alerts: &[StoredAlert], index: &str) -> Vec<Attempt> {
        let mut body = Vec::new();
        for stored in alerts {
            let action = serde_json::json!({"create": {"_index": index, "_id": stored.record.id}});
            let doc = format::ecs(&Item::new(stored), env!("CARGO_PKG_VERSION"));
            for line in [action, doc] {
                // serde_json writes a JSON value without newlines.
                let _ = serde_json::to_writer(&mut body, &line);
                body.push(b'\n');
            }
        }
        match self.post(body, "application/x-ndjson", None) {
            Answer::Status {
                status: 200, body, ..
            } => bulk_items(&body, alerts.len()),
            other => vec![other.attempt(); alerts.len()],
        }
    }
}

impl Sink for HttpSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn batch(&self) -> usize {
        match self.format {
            HttpFormat::Alertmanager => 100,
            HttpFormat::Elasticsearch { .. } => 500,
            _ => 1,
        }
    }

    fn deliver(&mut self, alerts: &[StoredAlert]) -> Vec<Attempt> {
        match &self.format {
            HttpFormat::Alertmanager => self.alertmanager(alerts),
            HttpFormat::Elasticsearch { index } => {
                let index = index.clone();
                self.elasticsearch(alerts, &index)
            }
            _ => self.one_by_one(alerts),
        }
    }
}

enum Answer {
    Unreachable(String),
    Status {
        status: u16,
        retry_after: Option<Duration>,
        body: String,
    },
}

impl Answer {
    /// The usual HTTP contract: 2xx taken; 408, 429 and 5xx worth another
    /// try; any other answer refused for good.
    fn attempt(self) -> Attempt {
        match self {
            Answer::Unreachable(error) => Attempt::Retry { after: None, error },
            Answer::Status { status, .. } if (200..300).contains(&status) => Attempt::Delivered,
            Answer::Status {
                status,
                retry_after,
                body,
            } => {
                let error = format!("{status}: {}", truncate(body.trim(), 300));
                if status == 408 || status == 429 || status >= 500 {
                    Attempt::Retry {
                        after: retry_after,
                        error,
                    }
                } else {
                    Attempt::Failed(error)
                }
            }
        }
    }
}

/// The per-item outcomes of a `_bulk` answer: 201 created; 409 means a
/// document with this `_id` is already there (an earlier attempt got
/// through), so it is delivered too; 429 and 5xx are retried.
pub(crate) fn bulk_items(body: &str, expected: usize) -> Vec<Attempt> {
    let malformed = |why: &str| {
        vec![
            Attempt::Retry {
                after: None,
                error: format!("a _bulk answer {why}"),
            };
            expected
        ]
    };
    let Ok(answer) = serde_json::from_str::<Value>(body) else {
        return malformed("that is not JSON");
    };
    let Some(items) = answer.get("items").and_then(Value::as_array) else {
        return malformed("without items");
    };
    if items.len() != expected {
        return malformed("with a different number of items");
    }
    items
        .iter()
        .map(|item| {
            let result = item
                .as_object()
                .and_then(|o| o.values().next())
                .cloned()
                .unwrap_or(Value::Null);
            let status = result.get("status").and_then(Value::as_u64).unwrap_or(0);
            let error = || {
                let e = &result["error"];
                format!(
                    "{status}: {} {}",
                    e["type"].as_str().unwrap_or("error"),
                    e["reason"].as_str().unwrap_or("")
                )
            };
            match status {
                200..=299 | 409 => Attempt::Delivered,
                429 | 500..=599 => Attempt::Retry {
                    after: None,
                    error: error(),
                },
                _ => Attempt::Failed(error()),
            }
        })
        .collect()
}

#[derive(Clone, Copy, Debug)]
pub enum SyslogTransport {
    /// One datagram per message (RFC 5426).
    Udp,
    /// Octet-counted frames on one connection (RFC 6587 section 3.4.1).
    Tcp,
}

pub struct SyslogSink {
    name: String,
    address: String,
    transport: SyslogTransport,
    facility: u8,
    timeout: Duration,
    tcp: Option<TcpStream>,
}

impl SyslogSink {
    pub fn new(
        name: &str,
        address: String,
        transport: SyslogTransport,
        facility: u8,
        timeout: Duration,
    ) -> SyslogSink {
        SyslogSink {
            name: name.to_string(),
            address,
            transport,
            facility,
            timeout,
            tcp: None,
        }
    }

    fn send(&mut self, frames: &[String]) -> std::io::Result<()> {
        let target = self
            .address
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| std::io::Error::other("the address resolves to nothing"))?;
        match self.transport {
            SyslogTransport::Udp => {
                let bind = if target.is_ipv4() {
                    "0.0.0.0:0"
                } else {
                    "[::]:0"
                };
                let socket = UdpSocket::bind(bind)?;
                for frame in frames {
                    socket.send_to(frame.as_bytes(), target)?;
                }
                Ok(())
            }
            SyslogTransport::Tcp => {
                if self.tcp.is_none() {
                    let stream = TcpStream::connect_timeout(&target, self.timeout)?;
                    stream.set_write_timeout(Some(self.timeout))?;
                    self.tcp = Some(stream);
                }
                let mut bytes = Vec::new();
                for frame in frames {
                    bytes.extend_from_slice(format!("{} {frame}", frame.len()).as_bytes());
                }
                let written = self.tcp.as_mut().map(|s| s.write_all(&bytes));
                if let Some(Err(e)) = written {
                    // A broken connection is reopened on the next attempt.
                    self.tcp = None;
                    return Err(e);
                }
                Ok(())
            }
        }
    }
}

impl Sink for SyslogSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn batch(&self) -> usize {
        500
    }

    fn deliver(&mut self, alerts: &[StoredAlert]) -> Vec<Attempt> {
        let frames: Vec<String> = alerts
            .iter()
            .map(|a| format::syslog(&Item::new(a), self.facility))
            .collect();
        let attempt = match self.send(&frames) {
            Ok(()) => Attempt::Delivered,
            Err(e) => Attempt::Retry {
                after: None,
                error: format!("{}: {e}", self.address),
            },
        };
        vec![attempt; alerts.len()]
    }
}

/// Appends each alert's document as a line, synced before the alerts
/// count as delivered; for Filebeat's or Fluent Bit's tail input.
pub struct JsonLinesSink {
    name: String,
    path: PathBuf,
}

impl JsonLinesSink {
    pub fn new(name: &str, path: PathBuf) -> JsonLinesSink {
        JsonLinesSink {
            name: name.to_string(),
            path,
        }
    }

    fn append(&self, alerts: &[StoredAlert]) -> std::io::Result<()> {
        let mut bytes = Vec::new();
        for a in alerts {
            bytes.extend_from_slice(a.record.doc.as_bytes());
            bytes.push(b'\n');
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        file.write_all(&bytes)?;
        file.sync_data()
    }
}

impl Sink for JsonLinesSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn batch(&self) -> usize {
        500
    }

    fn deliver(&mut self, alerts: &[StoredAlert]) -> Vec<Attempt> {
        let attempt = match self.append(alerts) {
            Ok(()) => Attempt::Delivered,
            Err(e) => Attempt::Retry {
                after: None,
                error: format!("{}: {e}", self.path.display()),
            },
        };
        vec![attempt; alerts.len()]
    }
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}
