//! Calico flow logs: the JSON lines Felix writes (Calico Enterprise / Cloud
//! `flows.log`), one aggregated record per line.
//!
//! A record stands for `num_flows` connections between two endpoints (or
//! two groups of endpoints: Calico aggregates pods of one controller into
//! `frontend-7d9f-*` and drops their addresses) over the export interval.
//! Mapping decisions:
//!
//! - `start_time` / `end_time` (epoch seconds) → `first_seen` / `last_seen`:
//!   the export interval, not the connections' own times.
//! - `action` `allow` → [`Outcome::Forwarded`], `deny` → [`Outcome::Dropped`]
//!   (see [`Outcome::parse`] for the other spellings); anything else is
//!   skipped with a diagnostic.
//! - Endpoint by `*_type`: `wep` (a pod) → namespace, pod (`*_name` unless
//!   it is `-`, else `*_name_aggr`) and labels (`*_labels.labels`, already
//!   `key=value`); `hep` → entity `hep:<name>`; `ns` (a NetworkSet) →
//!   entity `ns:<namespace>/<name>`; `net` → entity `pub` or `pvt` (public
//!   or private address space). Labels of non-pod endpoints are left out:
//!   they are not pod labels. A namespace of `-` means none.
//! - `num_flows` → `connections` (at least 1: the record exists because
//!   something was seen).
//! - Counters are from the reporting endpoint's point of view, so with
//!   `reporter` `src` `*_out` went initiator → responder (index 0) and `*_in`
//!   came back (index 1); with `reporter` `dst` it is the other way round.
//!   Without a known reporter the `src` reading is used.
//! - `reporter` is kept verbatim; `policies.all_policies` entries
//!   (`index|tier|policy|action`) are kept verbatim in `dataplane_policies`
//!   (`enforced_policies` when there is no `all_policies`).

use std::borrow::Cow;
use std::io::BufRead;
use std::net::IpAddr;
use std::sync::Arc;

use serde::Deserialize;

use crate::diagnostics::ReadStats;
use crate::generic::ParsedLine;
use crate::generic::json::{Scalar, Text};
use crate::generic::lines::{parse_json, read_independent_lines};
use crate::generic::time::scalar_time;
use crate::model::{Flow, FlowEndpoint, Format, Identity, Micros, Outcome, RecordRef, Transport};

/// Reads a Calico flow log, one record per line.
pub fn read_calico<R: BufRead + Send>(
    input: R,
    file: Arc<str>,
    sink: &mut dyn FnMut(Flow),
) -> ReadStats {
    read_independent_lines(input, file, Format::Calico, parse_calico_line, &|f| f, sink)
}

#[derive(Deserialize)]
struct Record<'a> {
    #[serde(borrow)]
    start_time: Option<Scalar<'a>>,
    #[serde(borrow)]
    end_time: Option<Scalar<'a>>,
    #[serde(borrow)]
    proto: Option<Scalar<'a>>,
    #[serde(borrow)]
    action: Option<Text<'a>>,
    #[serde(borrow)]
    reporter: Option<Text<'a>>,
    policies: Option<Policies>,
    #[serde(borrow)]
    num_flows: Option<Scalar<'a>>,
    #[serde(borrow)]
    packets_in: Option<Scalar<'a>>,
    #[serde(borrow)]
    packets_out: Option<Scalar<'a>>,
    #[serde(borrow)]
    bytes_in: Option<Scalar<'a>>,
    #[serde(borrow)]
    bytes_out: Option<Scalar<'a>>,
    #[serde(borrow)]
    source_ip: Option<Text<'a>>,
    #[serde(borrow)]
    source_port: Option<Scalar<'a>>,
    #[serde(borrow)]
    source_name: Option<Text<'a>>,
    #[serde(borrow)]
    source_name_aggr: Option<Text<'a>>,
    #[serde(borrow)]
    source_namespace: Option<Text<'a>>,
    #[serde(borrow)]
    source_type: Option<Text<'a>>,
    source_labels: Option<LabelSet>,
    #[serde(borrow)]
    dest_ip: Option<Text<'a>>,
    #[serde(borrow)]
    dest_port: Option<Scalar<'a>>,
    #[serde(borrow)]
    dest_name: Option<Text<'a>>,
    #[serde(borrow)]
    dest_name_aggr: Option<Text<'a>>,
    #[serde(borrow)]
    dest_namespace: Option<Text<'a>>,
    #[serde(borrow)]
    dest_type: Option<Text<'a>>,
    dest_labels: Option<LabelSet>,
}

#[derive(Deserialize)]
struct Policies {
    all_policies: Option<Vec<String>>,
    enforced_policies: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct LabelSet {
    labels: Option<Vec<String>>,
}

/// One side of a record, before it becomes a [`FlowEndpoint`].
struct Side<'r, 'a> {
    name: &'static str,
    ip: &'r Option<Text<'a>>,
    port: &'r Option<Scalar<'a>>,
    endpoint_name: &'r Option<Text<'a>>,
    name_aggr: &'r Option<Text<'a>>,
    namespace: &'r Option<Text<'a>>,
    kind: &'r Option<Text<'a>>,
    labels: Option<LabelSet>,
}

/// Parses one line of a Calico flow log.
pub fn parse_calico_line(line: &[u8], evidence: RecordRef) -> Result<ParsedLine, String> {
    let mut record: Record<'_> = parse_json(line)?;
    let Some(action) = record.action.as_deref() else {
        return Err("record has no action".to_string());
    };
    // Only the data plane's two verdicts; "established" is not an action.
    let outcome =
        Outcome::parse(action).filter(|o| matches!(o, Outcome::Forwarded | Outcome::Dropped));
    let Some(outcome) = outcome else {
        return Ok(ParsedLine::SkipNoted {
            reason: "calico record with unknown action",
            message: format!("unknown action {action:?}"),
        });
    };
    let transport = transport(record.proto.as_ref())?;
    let mut flow = Flow::new(evidence, transport, outcome);
    flow.first_seen = time(record.start_time.as_ref(), "start_time")?;
    flow.last_seen = time(record.end_time.as_ref(), "end_time")?;
    flow.connections = count(record.num_flows.as_ref(), "num_flows")?.max(1);
    let counters = [
        count(record.packets_out.as_ref(), "packets_out")?,
        count(record.packets_in.as_ref(), "packets_in")?,
        count(record.bytes_out.as_ref(), "bytes_out")?,
        count(record.bytes_in.as_ref(), "bytes_in")?,
    ];
    let [packets_out, packets_in, bytes_out, bytes_in] = counters;
    let reporter = record.reporter.as_deref().filter(|r| !r.is_empty());
    (flow.packets, flow.bytes) = if reporter == Some("dst") {
        ([packets_in, packets_out], [bytes_in, bytes_out])
    } else {
        ([packets_out, packets_in], [bytes_out, bytes_in])
    };
    flow.reporter = reporter.map(|r| match r {
        "src" => Cow::Borrowed("src"),
        "dst" => Cow::Borrowed("dst"),
        other => Cow::Owned(other.to_string()),
    });
    flow.dataplane_policies = record
        .policies
        .take()
        .and_then(|p| p.all_policies.or(p.enforced_policies))
        .unwrap_or_default();
    let (source, dest) = sides(&mut record);
    flow.src = source.into_endpoint()?;
    flow.dst = dest.into_endpoint()?;
    Ok(ParsedLine::Flow(flow))
}

fn sides<'r, 'a>(record: &'r mut Record<'a>) -> (Side<'r, 'a>, Side<'r, 'a>) {
    let source_labels = record.source_labels.take();
    let dest_labels = record.dest_labels.take();
    let source = Side {
        name: "source",
        ip: &record.source_ip,
        port: &record.source_port,
        endpoint_name: &record.source_name,
        name_aggr: &record.source_name_aggr,
        namespace: &record.source_namespace,
        kind: &record.source_type,
        labels: source_labels,
    };
    let dest = Side {
        name: "dest",
        ip: &record.dest_ip,
        port: &record.dest_port,
        endpoint_name: &record.dest_name,
        name_aggr: &record.dest_name_aggr,
        namespace: &record.dest_namespace,
        kind: &record.dest_type,
        labels: dest_labels,
    };
    (source, dest)
}

impl Side<'_, '_> {
    fn into_endpoint(self) -> Result<FlowEndpoint, String> {
        let ip = match known(self.ip) {
            None => None,
            Some(text) => Some(
                text.parse::<IpAddr>()
                    .map_err(|_| format!("{}_ip {text:?} is not an IP address", self.name))?,
            ),
        };
        let port = match self.port {
            None => None,
            Some(port) => {
                let n = port.as_u64().ok_or_else(|| self.bad("port", port))?;
                let n = u16::try_from(n).map_err(|_| self.bad("port", port))?;
                (n != 0).then_some(n)
            }
        };
        let identity = self.identity().map(Arc::new);
        Ok(FlowEndpoint { ip, port, identity })
    }

    fn bad(&self, field: &str, value: &Scalar<'_>) -> String {
        format!("{}_{field} {} is not a port", self.name, value.text())
    }

    fn identity(self) -> Option<Identity> {
        let name = known(self.endpoint_name).or_else(|| known(self.name_aggr));
        let namespace = known(self.namespace);
        let mut identity = Identity::default();
        match known(self.kind).unwrap_or("wep") {
            "wep" => {
                identity.namespace = namespace.map(str::to_string);
                identity.pod = name.map(str::to_string);
                identity.labels = self.labels.and_then(|l| l.labels).unwrap_or_default();
            }
            "hep" => identity.entity = Some(qualified("hep", None, name)),
            "ns" => identity.entity = Some(qualified("ns", namespace, name)),
            "net" => identity.entity = Some(name.unwrap_or("net").to_string()),
            other => identity.entity = Some(qualified(other, namespace, name)),
        }
        (identity != Identity::default()).then_some(identity)
    }
}

/// `hep:node-1`, `ns:team-a/partners`, or the bare type when unnamed.
fn qualified(kind: &str, namespace: Option<&str>, name: Option<&str>) -> String {
    match (namespace, name) {
        (Some(ns), Some(name)) => format!("{kind}:{ns}/{name}"),
        (None, Some(name)) => format!("{kind}:{name}"),
        _ => kind.to_string(),
    }
}

/// Calico writes `-` (and sometimes an empty string) for "not known".
fn known<'r>(text: &'r Option<Text<'_>>) -> Option<&'r str> {
    text.as_deref().filter(|t| !t.is_empty() && *t != "-")
}

fn transport(proto: Option<&Scalar<'_>>) -> Result<Transport, String> {
    let proto = proto.ok_or("record has no proto")?;
    let parsed = match proto {
        Scalar::Text(text) => Transport::parse(text),
        other => other
            .as_u64()
            .and_then(|n| u8::try_from(n).ok())
            .map(Transport::from_ip_protocol),
    };
    parsed.ok_or_else(|| format!("proto {} is not a protocol", proto.text()))
}

fn time(value: Option<&Scalar<'_>>, field: &str) -> Result<Option<Micros>, String> {
    let Some(value) = value else { return Ok(None) };
    scalar_time(value)
        .map(Some)
        .map_err(|e| format!("{field} {}: {e}", value.text()))
}

fn count(value: Option<&Scalar<'_>>, field: &str) -> Result<u64, String> {
    match value {
        None => Ok(0),
        Some(v) => v
            .as_u64()
            .ok_or_else(|| format!("{field} {} is not a count", v.text())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<ParsedLine, String> {
        let evidence = RecordRef {
            file: Arc::from("t"),
            format: Format::Calico,
            record: 1,
        };
        parse_calico_line(line.as_bytes(), evidence)
    }

    fn flow(line: &str) -> Flow {
        match parse(line) {
            Ok(ParsedLine::Flow(flow)) => flow,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn denied_tcp_to_public_network_reported_by_source() {
        let f = flow(
            r#"{"start_time":10,"end_time":20,"source_ip":"10.1.2.3","source_name":"web-1",
            "source_name_aggr":"web-*","source_namespace":"shop","source_type":"wep",
            "source_labels":{"labels":["app=web"]},"dest_ip":"8.8.8.8","dest_name":"-",
            "dest_name_aggr":"pub","dest_namespace":"-","dest_type":"net","dest_port":443,
            "proto":"6","action":"deny","reporter":"src","num_flows":3,
            "packets_out":5,"packets_in":0,"bytes_out":300,"bytes_in":0}"#,
        );
        assert_eq!(f.outcome, Outcome::Dropped);
        assert_eq!(f.transport, Transport::Tcp);
        assert_eq!(f.connections, 3);
        assert_eq!(f.packets, [5, 0]);
        assert_eq!(f.bytes, [300, 0]);
        assert_eq!(f.dst.port, Some(443));
        assert_eq!(f.dst.identity.unwrap().entity.as_deref(), Some("pub"));
        let src = f.src.identity.unwrap();
        assert_eq!(src.pod.as_deref(), Some("web-1"));
        assert_eq!(src.labels, vec!["app=web"]);
        assert_eq!(f.first_seen, Some(10_000_000));
    }

    #[test]
    fn host_and_network_set_endpoints_are_entities() {
        let f = flow(
            r#"{"source_type":"hep","source_name":"-","source_name_aggr":"node-1",
            "source_namespace":"-","dest_type":"ns","dest_name":"partners",
            "dest_namespace":"team-a","dest_labels":{"labels":["k=v"]},
            "proto":"icmp","action":"allow","reporter":"dst"}"#,
        );
        assert_eq!(f.transport, Transport::Icmp);
        let src = f.src.identity.unwrap();
        assert_eq!(src.entity.as_deref(), Some("hep:node-1"));
        let dst = f.dst.identity.unwrap();
        assert_eq!(dst.entity.as_deref(), Some("ns:team-a/partners"));
        assert!(dst.labels.is_empty() && dst.namespace.is_none());
        assert_eq!(f.connections, 1);
    }

    #[test]
    fn bad_values_are_errors_and_unknown_actions_are_noted() {
        assert!(parse(r#"{"proto":"tcp"}"#).is_err());
        assert!(parse(r#"{"action":"allow","proto":"quic"}"#).is_err());
        assert!(parse(r#"{"action":"allow","proto":"tcp","dest_port":70000}"#).is_err());
        assert!(parse(r#"{"action":"allow","proto":"tcp","num_flows":-1}"#).is_err());
        assert!(parse(r#"{"action":"allow","proto":"tcp","dest_ip":"x"}"#).is_err());
        assert!(matches!(
            parse(r#"{"action":"pass","proto":"tcp"}"#),
            Ok(ParsedLine::SkipNoted { .. })
        ));
    }
}
