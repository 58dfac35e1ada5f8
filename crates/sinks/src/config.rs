//! The sinks of `palisade serve --config`: each a name, a type with its
//! destination, and a route (which alerts it gets).
//!
//! ```yaml
//! sinks:
//! - name: oncall
//!   type: alertmanager          # webhook, slack, mattermost, teams,
//!   url: http://127.0.0.1:9093  # alertmanager, falcosidekick,
//!   min_severity: high          # elasticsearch, syslog, jsonl
//!   rules: [FLOW-001]
//!   namespaces: [shop]
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use palisade_inventory::severity::Severity;
use palisade_store::AlertRecord;
use serde::Deserialize;

use crate::Sink;
use crate::transport::{HttpFormat, HttpSink, JsonLinesSink, SyslogSink, SyslogTransport};
use palisade_send::http::ClientTls;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinksFile {
    #[serde(default)]
    pub sinks: Vec<SinkConfig>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// HTTP sinks: the destination (Alertmanager's and Elasticsearch's
    /// base URL; the webhook URL of the others).
    #[serde(default)]
    pub url: Option<String>,
    /// HTTP sinks: extra headers (an `Authorization` for Elasticsearch).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// HTTP sinks over https: a CA (PEM) trusted besides the system's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// HTTP sinks over https: a client certificate and its key (PEM), for
    /// a receiver that requires mutual TLS.
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    #[serde(default)]
    pub client_key: Option<PathBuf>,
    /// Elasticsearch: the data stream (default `logs-palisade.alerts-default`).
    #[serde(default)]
    pub index: Option<String>,
    /// syslog: `host:port`.
    #[serde(default)]
    pub address: Option<String>,
    /// syslog: `udp` (default) or `tcp` (octet-counted frames, RFC 6587).
    #[serde(default)]
    pub transport: Option<String>,
    /// syslog: the facility number (default 13, log audit; 16-23 are local0-7).
    #[serde(default)]
    pub facility: Option<u8>,
    /// jsonl: the file to append to.
    #[serde(default)]
    pub path: Option<PathBuf>,
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
    /// Attempts before an alert is dead-lettered (default 20).
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// The route: alerts of this severity and above...
    #[serde(default, deserialize_with = "severity")]
    pub min_severity: Option<Severity>,
    /// ... of these rule ids (`FLOW-001`, `AUDIT-013`)...
    #[serde(default)]
    pub rules: Vec<String>,
    /// ... with either side in one of these namespaces...
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// ... of these classes (`bypass`, `blocked-attempt`, ...).
    #[serde(default)]
    pub classes: Vec<String>,
}

/// Which alerts a sink gets: every condition set must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Route {
    pub min_severity: Option<Severity>,
    pub rules: Vec<String>,
    pub namespaces: Vec<String>,
    pub classes: Vec<String>,
}

fn severity<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Severity>, D::Error> {
    let text: Option<String> = Option::deserialize(d)?;
    text.map(|t| {
        Severity::parse(&t).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown severity `{t}` (critical, high, medium, low, info)"
            ))
        })
    })
    .transpose()
}

impl Route {
    pub fn admits(&self, alert: &AlertRecord) -> bool {
        let in_namespaces = || {
            self.namespaces.iter().any(|ns| {
                alert.src_namespace.as_deref() == Some(ns)
                    || alert.dst_namespace.as_deref() == Some(ns)
            })
        };
        self.min_severity.is_none_or(|s| alert.severity >= s)
            && (self.rules.is_empty() || self.rules.contains(&alert.rule))
            && (self.namespaces.is_empty() || in_namespaces())
            && (self.classes.is_empty()
                || alert
                    .class
                    .as_ref()
                    .is_some_and(|c| self.classes.contains(c)))
    }
}

impl SinkConfig {
    pub fn route(&self) -> Route {
        Route {
            min_severity: self.min_severity,
            rules: self.rules.clone(),
            namespaces: self.namespaces.clone(),
            classes: self.classes.clone(),
        }
    }

    pub fn max_attempts(&self) -> u32 {
        self.max_attempts.unwrap_or(20).max(1)
    }

    fn url(&self) -> Result<String, String> {
        let url = self
            .url
            .clone()
            .ok_or_else(|| format!("sink {}: type {} needs `url`", self.name, self.kind))?;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!(
                "sink {}: `url` must be http:// or https://",
                self.name
            ));
        }
        Ok(url)
    }

    fn client_tls(&self) -> Result<ClientTls, String> {
        let identity = match (&self.client_cert, &self.client_key) {
            (Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
            (None, None) => None,
            _ => {
                return Err(format!(
                    "sink {}: `client_cert` and `client_key` go together",
                    self.name
                ));
            }
        };
        Ok(ClientTls {
            ca_files: self.ca_file.iter().cloned().collect(),
            identity,
            only_named_cas: false,
        })
    }
}

/// Builds each configured sink; names must be unique (the outbox is
/// keyed by them).
pub fn build(configs: &[SinkConfig]) -> Result<Vec<Box<dyn Sink>>, String> {
    let mut names = std::collections::BTreeSet::new();
    let mut sinks = Vec::new();
    for c in configs {
        if c.name.is_empty() || !names.insert(c.name.as_str()) {
            return Err(format!(
                "sink names must be unique and not empty: `{}`",
                c.name
            ));
        }
        sinks.push(build_one(c)?);
    }
    Ok(sinks)
}

fn build_one(c: &SinkConfig) -> Result<Box<dyn Sink>, String> {
    let timeout = Duration::from_secs(c.timeout_seconds.unwrap_or(10).max(1));
    let http = |format: HttpFormat, url: String| -> Result<Box<dyn Sink>, String> {
        let tls = c.client_tls()?;
        Ok(Box::new(HttpSink::new(
            &c.name, url, format, &c.headers, &tls, timeout,
        )?))
    };
    match c.kind.as_str() {
        "webhook" => http(HttpFormat::Webhook, c.url()?),
        "slack" | "mattermost" => http(HttpFormat::Slack, c.url()?),
        "teams" => http(HttpFormat::Teams, c.url()?),
        "falcosidekick" => http(HttpFormat::Falco, c.url()?),
        "alertmanager" => {
            let url = format!("{}/api/v2/alerts", c.url()?.trim_end_matches('/'));
            http(HttpFormat::Alertmanager, url)
        }
        "elasticsearch" | "opensearch" => {
            let url = format!("{}/_bulk", c.url()?.trim_end_matches('/'));
            let index = c
                .index
                .clone()
                .unwrap_or_else(|| "logs-palisade.alerts-default".into());
            http(HttpFormat::Elasticsearch { index }, url)
        }
        "syslog" => {
            let address = c
                .address
                .clone()
                .ok_or_else(|| format!("sink {}: syslog needs `address`", c.name))?;
            let transport = match c.transport.as_deref().unwrap_or("udp") {
                "udp" => SyslogTransport::Udp,
                "tcp" => SyslogTransport::Tcp,
                other => return Err(format!("sink {}: transport `{other}` (udp, tcp)", c.name)),
            };
            let facility = c.facility.unwrap_or(13);
            if facility > 23 {
                return Err(format!(
                    "sink {}: facility {facility} is not 0 to 23",
                    c.name
                ));
            }
            Ok(Box::new(SyslogSink::new(
                &c.name, address, transport, facility, timeout,
            )))
        }
        "jsonl" => {
            let path = c
                .path
                .clone()
                .ok_or_else(|| format!("sink {}: jsonl needs `path`", c.name))?;
            Ok(Box::new(JsonLinesSink::new(&c.name, path)))
        }
        other => Err(format!(
            "sink {}: unknown type `{other}` (webhook, slack, mattermost, teams, alertmanager, falcosidekick, elasticsearch, opensearch, syslog, jsonl)",
            c.name
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<Vec<Box<dyn Sink>>, String> {
        let file: SinksFile = palisade_inventory::yaml::from_str(yaml)?;
        build(&file.sinks)
    }

    #[test]
    fn bad_sink_configurations_are_refused_with_the_sink_named() {
        for (yaml, reason) in [
            ("sinks: [{name: a, type: pager}]", "unknown type `pager`"),
            ("sinks: [{name: a, type: slack}]", "needs `url`"),
            (
                "sinks: [{name: a, type: webhook, url: 'ftp://x'}]",
                "http:// or https://",
            ),
            ("sinks: [{name: a, type: syslog}]", "needs `address`"),
            (
                "sinks: [{name: a, type: syslog, address: 'x:1', transport: sctp}]",
                "transport `sctp`",
            ),
            (
                "sinks: [{name: a, type: syslog, address: 'x:1', facility: 30}]",
                "facility 30",
            ),
            ("sinks: [{name: a, type: jsonl}]", "needs `path`"),
            (
                "sinks: [{name: a, type: jsonl, path: /tmp/x}, {name: a, type: jsonl, path: /tmp/y}]",
                "unique",
            ),
        ] {
            let error = parse(yaml)
                .err()
                .unwrap_or_else(|| panic!("{yaml} was taken"));
            assert!(error.contains(reason), "{yaml}: {error}");
        }
        assert!(
            parse("sinks: [{name: a, type: webhook, url: 'http://x', min_severity: urgent}]")
                .is_err()
        );
        assert!(
            parse("sinks: [{name: a, type: webhook, url: 'http://x', colour: red}]").is_err(),
            "unknown fields"
        );
        assert_eq!(parse("sinks: []").unwrap().len(), 0);
    }

    #[test]
    fn a_route_admits_only_what_every_condition_allows() {
        let file: SinksFile = palisade_inventory::yaml::from_str(
            "sinks: [{name: a, type: jsonl, path: /tmp/x, min_severity: high, namespaces: [shop], classes: [bypass]}]",
        )
        .unwrap();
        let route = file.sinks[0].route();
        let mut alert = AlertRecord {
            id: "i".into(),
            origin: "o".into(),
            time_us: 0,
            rule: "FLOW-001".into(),
            severity: Severity::Critical,
            class: Some("bypass".into()),
            src_namespace: Some("web".into()),
            src_workload: None,
            dst_namespace: Some("shop".into()),
            dst_workload: None,
            protocol: "TCP".into(),
            port: None,
            connections: 1,
            last_seen_us: None,
            summary: String::new(),
            doc: String::new(),
        };
        assert!(route.admits(&alert));
        alert.severity = Severity::Medium;
        assert!(!route.admits(&alert), "below the severity");
        alert.severity = Severity::High;
        alert.dst_namespace = Some("db".into());
        assert!(!route.admits(&alert), "neither side in shop");
    }
}
