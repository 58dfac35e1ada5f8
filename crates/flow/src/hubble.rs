//! Hubble flows: the output of `hubble observe -o json` (one jsonpb
//! `GetFlowsResponse` per line, `{"flow":{...},"node_name":..,"time":..}`),
//! or bare `Flow` objects as Hubble exporters write them.
//!
//! Each Hubble flow is one packet (or one L7 message) seen at one point of
//! the data path, so one line becomes one [`Flow`] with `connections` = 1.
//! Mapping decisions:
//!
//! - `verdict`: `FORWARDED`, `AUDIT` (audit mode: policy would have dropped,
//!   but the packet went through), `REDIRECTED` (to the L7 proxy),
//!   `TRACED`, `TRANSLATED` → [`Outcome::Forwarded`]; `DROPPED`, `ERROR` →
//!   [`Outcome::Dropped`]; missing or unknown → skipped with a diagnostic.
//! - Policy-verdict events (`event_type.type` 5) are kept as flows: they are
//!   the data plane's own policy decision for the connection's first packet,
//!   which is exactly what Palisade compares its verdicts with.
//! - `is_reply` (or the older `reply`) true: the packet went from responder
//!   to initiator, so source and destination are swapped to keep the
//!   initiator in `src`, and the packet counts in index 1; a forwarded reply
//!   is [`Outcome::Established`] (the destination answered). When Hubble
//!   says neither, it did not know, and `direction_inferred` is set.
//! - Labels: `k8s:` prefixes are removed; the labels Cilium derives rather
//!   than reads from the pod (`io.kubernetes.pod.namespace`,
//!   `io.cilium.k8s.*`) are left out so `labels` are the pod's labels;
//!   `reserved:host` and the like become `Identity.entity` ("host");
//!   `cidr:`, `fqdn:` and other sources are left out (the IP says it).
//! - A pod name missing but `workloads` present gives the aggregated name
//!   `<workload>-*`.
//! - `traffic_direction` → `reporter` ("ingress"/"egress"); the
//!   `*_allowed_by` / `*_denied_by` policies → `dataplane_policies` as
//!   `namespace/name` (`name` alone for cluster-wide policies).
//! - `drop_reason_desc` → `drop_reason` (the enum name, e.g.
//!   `POLICY_DENIED`); only the deprecated number → "drop reason N".
//! - L3/L4 events count one packet; L7 events (HTTP, DNS, Kafka messages)
//!   count none, since they describe a message, not a packet.
//! - `node_status`, `agent_event` and `debug_event` responses are counted
//!   as skipped; `lost_events` are counted, with the number of events
//!   Hubble lost added to [`crate::generic::LOST_EVENTS_REASON`].

use std::borrow::Cow;
use std::io::BufRead;
use std::net::IpAddr;
use std::sync::Arc;

use crate::diagnostics::ReadStats;
use crate::generic::ParsedLine;
use crate::generic::lines::{parse_json, read_independent_lines, utf8};
use crate::generic::time::parse_rfc3339;
use crate::model::{Flow, FlowEndpoint, Format, Identity, Outcome, RecordRef, Transport};

mod scan;
mod wire;

use crate::generic::json::{Scalar, Text};
use wire::{IDENTITIES, Layer4, Policy, RawJson, Record};

/// Reads `hubble observe -o json` output, one flow per line.
pub fn read_hubble<R: BufRead + Send>(
    input: R,
    file: Arc<str>,
    sink: &mut dyn FnMut(Flow),
) -> ReadStats {
    read_independent_lines(input, file, Format::Hubble, parse_hubble_line, &|f| f, sink)
}

/// Parses one line of Hubble JSON. `Err` is the reason the line could not
/// be read.
///
/// Plain lines take a fast path (see [`scan`]); any line it gives up on,
/// or whose content it cannot turn into a flow, is read again with serde,
/// so results and messages are serde's wherever the two could differ.
pub fn parse_hubble_line(line: &[u8], evidence: RecordRef) -> Result<ParsedLine, String> {
    let text = utf8(line)?;
    if let Some(parsed) = parse_plain(text, &evidence) {
        return Ok(parsed);
    }
    parse_hubble_line_by_serde(line, evidence)
}

/// The fast path: `None` when serde must read the line.
fn parse_plain(text: &str, evidence: &RecordRef) -> Option<ParsedLine> {
    let (record, flow) = scan::record(text)?;
    let parsed = match flow {
        // Endpoints beside a response's flow are not used, so nothing
        // would check their text: such odd lines are serde's.
        Some(_) if record.source.is_some() || record.destination.is_some() => return None,
        Some(flow) => flow_from(flow, record.time, evidence),
        None => from_record(record, evidence),
    };
    parsed.ok()
}

/// [`parse_hubble_line`] without the fast path: the reference the fast path
/// is tested and fuzzed against.
#[doc(hidden)]
pub fn parse_hubble_line_by_serde(line: &[u8], evidence: RecordRef) -> Result<ParsedLine, String> {
    let record: Record<'_> = parse_json(line)?;
    from_record(record, &evidence)
}

fn from_record(record: Record<'_>, evidence: &RecordRef) -> Result<ParsedLine, String> {
    let outer_time = record.time.clone();
    let flow = match record.flow {
        Some(flow) => *flow,
        None => return not_a_flow(record, evidence),
    };
    flow_from(flow, outer_time, evidence)
}

/// A response that carries no `flow`: one of the other kinds, or a bare
/// flow object.
fn not_a_flow(record: Record<'_>, evidence: &RecordRef) -> Result<ParsedLine, String> {
    if let Some(lost) = record.lost_events {
        let events = lost.num_events_lost.and_then(|n| n.as_u64()).unwrap_or(0);
        let source = lost
            .source
            .as_ref()
            .map_or("unknown source".into(), Scalar::text);
        return Ok(ParsedLine::Lost {
            events,
            message: format!("Hubble reports {events} events lost ({source})"),
        });
    }
    if record.node_status.is_some() {
        return Ok(ParsedLine::Skip("hubble node_status"));
    }
    if record.agent_event.is_some() {
        return Ok(ParsedLine::Skip("hubble agent_event"));
    }
    if record.debug_event.is_some() {
        return Ok(ParsedLine::Skip("hubble debug_event"));
    }
    if record.verdict.is_some() || record.ip.is_some() || record.l4.is_some() {
        let time = record.time.clone();
        return flow_from(record, time, evidence);
    }
    Err("not a Hubble record: no flow, lost_events or node_status".to_string())
}

fn flow_from(
    record: Record<'_>,
    outer_time: Option<Text<'_>>,
    evidence: &RecordRef,
) -> Result<ParsedLine, String> {
    // First, so that an endpoint the fast path has not checked is checked
    // whatever else the record holds (see [`scan`]).
    let src_identity = identity(record.source, "source")?;
    let dst_identity = identity(record.destination, "destination")?;
    let outcome = match verdict_outcome(record.verdict.as_ref()) {
        Ok(outcome) => outcome,
        Err(message) => {
            return Ok(ParsedLine::SkipNoted {
                reason: "hubble flow with unknown verdict",
                message,
            });
        }
    };
    let Some(ip) = &record.ip else {
        return Ok(ParsedLine::Skip("hubble flow without IP layer"));
    };
    let Some((transport, ports, icmp)) = layer4(record.l4.as_ref())? else {
        return Ok(ParsedLine::Skip("hubble flow without known layer 4"));
    };
    let mut flow = Flow::new(evidence.clone(), transport, outcome);
    flow.drop_reason = drop_reason(&record, outcome);
    let time = record.time.as_ref().or(outer_time.as_ref());
    if let Some(time) = time {
        let micros = parse_rfc3339(time).map_err(|e| format!("time {time:?}: {e}"))?;
        flow.first_seen = Some(micros);
        flow.last_seen = Some(micros);
    }
    flow.src = endpoint(ip.source.as_deref(), ports.0, src_identity, "source")?;
    flow.dst = endpoint(
        ip.destination.as_deref(),
        ports.1,
        dst_identity,
        "destination",
    )?;
    flow.icmp = icmp;
    let is_l7 = record.flow_type.as_ref().is_some_and(|t| t.is("L7", 2));
    let packets = u64::from(!is_l7);
    match record.is_reply.or(record.reply) {
        Some(true) => {
            std::mem::swap(&mut flow.src, &mut flow.dst);
            flow.packets = [0, packets];
            // A reply that went through shows the destination answered,
            // wherever it was recorded.
            if flow.outcome == Outcome::Forwarded {
                flow.outcome = Outcome::Established;
            }
        }
        reply => {
            flow.packets = [packets, 0];
            flow.direction_inferred = reply.is_none();
        }
    }
    flow.reporter = direction(record.traffic_direction.as_ref());
    flow.dataplane_policies = policies([
        record.egress_allowed_by,
        record.ingress_allowed_by,
        record.egress_denied_by,
        record.ingress_denied_by,
    ]);
    Ok(ParsedLine::Flow(flow))
}

fn verdict_outcome(verdict: Option<&Scalar<'_>>) -> Result<Outcome, String> {
    let Some(verdict) = verdict else {
        return Err("flow has no verdict (VERDICT_UNKNOWN)".to_string());
    };
    const FORWARDED: [(&str, i64); 5] = [
        ("FORWARDED", 1),
        ("AUDIT", 4),
        ("REDIRECTED", 5),
        ("TRACED", 6),
        ("TRANSLATED", 7),
    ];
    if FORWARDED.iter().any(|(name, n)| verdict.is(name, *n)) {
        Ok(Outcome::Forwarded)
    } else if verdict.is("DROPPED", 2) || verdict.is("ERROR", 3) {
        Ok(Outcome::Dropped)
    } else {
        Err(format!("unknown verdict {}", verdict.text()))
    }
}

type Layer4Facts = (Transport, (Option<u16>, Option<u16>), Option<(u8, u8)>);

fn layer4(l4: Option<&Layer4>) -> Result<Option<Layer4Facts>, String> {
    let Some(l4) = l4 else { return Ok(None) };
    let with_ports = [
        (Transport::Tcp, &l4.tcp),
        (Transport::Udp, &l4.udp),
        (Transport::Sctp, &l4.sctp),
    ];
    for (transport, ports) in with_ports {
        if let Some(ports) = ports {
            let src = port(ports.source_port, "source_port")?;
            let dst = port(ports.destination_port, "destination_port")?;
            return Ok(Some((transport, (src, dst), None)));
        }
    }
    for (transport, icmp) in [
        (Transport::Icmp, &l4.icmpv4),
        (Transport::Icmpv6, &l4.icmpv6),
    ] {
        if let Some(icmp) = icmp {
            let kind = u8::try_from(icmp.icmp_type.unwrap_or(0));
            let code = u8::try_from(icmp.code.unwrap_or(0));
            let (Ok(kind), Ok(code)) = (kind, code) else {
                return Err("ICMP type or code above 255".to_string());
            };
            return Ok(Some((transport, (None, None), Some((kind, code)))));
        }
    }
    // Newer Hubble versions describe these two without ports.
    if l4.igmp.is_some() {
        return Ok(Some((Transport::Other(2), (None, None), None)));
    }
    if l4.vrrp.is_some() {
        return Ok(Some((Transport::Other(112), (None, None), None)));
    }
    Ok(None)
}

/// jsonpb omits zero values, so a missing port is port 0: "no port".
fn port(value: Option<u32>, field: &str) -> Result<Option<u16>, String> {
    match value {
        None | Some(0) => Ok(None),
        Some(n) => u16::try_from(n)
            .map(Some)
            .map_err(|_| format!("{field} {n} is not a port")),
    }
}

/// The identity an endpoint object describes, parsed once per distinct
/// text (see [`wire::IdentityCache`]).
fn identity(endpoint: Option<RawJson<'_>>, side: &str) -> Result<Option<Arc<Identity>>, String> {
    match endpoint {
        Some(RawJson(text)) => IDENTITIES
            .with_borrow_mut(|cache| cache.identity(text))
            .map_err(|error| format!("{side}: {error}")),
        None => Ok(None),
    }
}

fn endpoint(
    ip: Option<&str>,
    port: Option<u16>,
    identity: Option<Arc<Identity>>,
    side: &str,
) -> Result<FlowEndpoint, String> {
    let ip = match ip {
        None | Some("") => None,
        Some(text) => Some(
            text.parse::<IpAddr>()
                .map_err(|_| format!("IP {side} {text:?} is not an IP address"))?,
        ),
    };
    Ok(FlowEndpoint { ip, port, identity })
}

fn drop_reason(record: &Record<'_>, outcome: Outcome) -> Option<String> {
    if let Some(desc) = &record.drop_reason_desc
        && !desc.is("DROP_REASON_UNKNOWN", 0)
    {
        return Some(desc.text().into_owned());
    }
    match record.drop_reason {
        Some(n) if n != 0 && outcome == Outcome::Dropped => Some(format!("drop reason {n}")),
        _ => None,
    }
}

fn direction(direction: Option<&Scalar<'_>>) -> Option<Cow<'static, str>> {
    let direction = direction?;
    if direction.is("INGRESS", 1) {
        Some(Cow::Borrowed("ingress"))
    } else if direction.is("EGRESS", 2) {
        Some(Cow::Borrowed("egress"))
    } else {
        None
    }
}

fn policies(lists: [Option<Vec<Policy<'_>>>; 4]) -> Vec<String> {
    let mut names = Vec::new();
    for policy in lists.into_iter().flatten().flatten() {
        let name = policy.name.as_deref().unwrap_or("");
        match policy.namespace.as_deref() {
            Some(ns) if !ns.is_empty() => names.push(format!("{ns}/{name}")),
            _ => names.push(name.to_string()),
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<ParsedLine, String> {
        let evidence = RecordRef {
            file: Arc::from("t"),
            format: Format::Hubble,
            record: 1,
        };
        parse_hubble_line(line.as_bytes(), evidence)
    }

    fn flow(line: &str) -> Flow {
        match parse(line) {
            Ok(ParsedLine::Flow(flow)) => flow,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn dropped_udp_flow_with_policy_and_reason() {
        let f = flow(
            r#"{"flow":{"time":"2024-01-02T03:04:05.000001Z","verdict":"DROPPED","drop_reason":133,
            "drop_reason_desc":"POLICY_DENIED","IP":{"source":"fd00::1","destination":"fd00::2"},
            "l4":{"UDP":{"source_port":5000,"destination_port":53}},
            "source":{"ID":12,"namespace":"a","pod_name":"p","labels":["k8s:app=x","reserved:init"]},
            "destination":{"labels":["reserved:world"]},"is_reply":false,
            "traffic_direction":"EGRESS","egress_denied_by":[{"name":"deny","namespace":"a"}]}}"#,
        );
        assert_eq!(f.outcome, Outcome::Dropped);
        assert_eq!(f.transport, Transport::Udp);
        assert_eq!(f.drop_reason.as_deref(), Some("POLICY_DENIED"));
        assert_eq!(f.dataplane_policies, vec!["a/deny"]);
        assert_eq!(f.reporter.as_deref(), Some("egress"));
        assert_eq!(f.first_seen, Some(1_704_164_645_000_001));
        assert_eq!(f.dst.identity.unwrap().entity.as_deref(), Some("world"));
        let src = f.src.identity.unwrap();
        assert_eq!(src.labels, vec!["app=x"]);
        assert_eq!(src.entity.as_deref(), Some("init"));
        assert!(
            src.node_local,
            "an endpoint ID makes it local to the reporting node"
        );
        assert!(!f.direction_inferred);
    }

    #[test]
    fn bare_flow_icmp_and_numeric_enums() {
        let f = flow(
            r#"{"verdict":1,"IP":{"source":"10.0.0.1","destination":"10.0.0.2"},
            "l4":{"ICMPv4":{"type":8}},"source":{"workloads":[{"name":"web","kind":"Deployment"}],
            "namespace":"n"},"traffic_direction":1}"#,
        );
        assert_eq!(f.outcome, Outcome::Forwarded);
        assert_eq!(f.icmp, Some((8, 0)));
        assert_eq!(f.src.port, None);
        assert_eq!(f.src.identity.unwrap().pod.as_deref(), Some("web-*"));
        assert!(f.direction_inferred);
    }

    #[test]
    fn repeated_endpoints_share_one_identity() {
        let line = |port: u16| {
            format!(
                r#"{{"flow":{{"verdict":"FORWARDED","IP":{{"source":"10.0.0.1","destination":"10.0.0.2"}},
                "l4":{{"TCP":{{"destination_port":{port}}}}},
                "source":{{"namespace":"a","pod_name":"p","labels":["k8s:app=x"]}}}}}}"#
            )
        };
        let (first, second) = (flow(&line(80)), flow(&line(443)));
        let (a, b) = (first.src.identity.unwrap(), second.src.identity.unwrap());
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(a.labels, vec!["app=x"]);
        assert_eq!(second.dst.port, Some(443));
        let bad = line(80).replace(r#""labels":["k8s:app=x"]"#, r#""labels":7"#);
        assert!(
            parse(&bad)
                .unwrap_err()
                .starts_with("source: unexpected endpoint content")
        );
    }

    #[test]
    fn an_endpoint_named_only_by_labels_takes_its_namespace_from_them() {
        let f = flow(
            r#"{"flow":{"verdict":"FORWARDED","IP":{"source":"10.0.0.1","destination":"10.0.0.2"},
            "l4":{"TCP":{"destination_port":9080}},"source":{"identity":3418,"labels":[
            "k8s:app=productpage","k8s:io.kubernetes.pod.namespace=bookinfo",
            "k8s:io.cilium.k8s.policy.cluster=kind"]}}}"#,
        );
        let src = f.src.identity.unwrap();
        assert_eq!(src.namespace.as_deref(), Some("bookinfo"));
        assert_eq!(src.pod, None);
        assert_eq!(src.labels, vec!["app=productpage"]);
        assert!(!src.node_local);
    }

    #[test]
    fn other_response_kinds_are_counted() {
        let lost = r#"{"lost_events":{"source":"PERF_EVENT_RING_BUFFER","num_events_lost":"42"}}"#;
        assert!(matches!(
            parse(lost),
            Ok(ParsedLine::Lost { events: 42, .. })
        ));
        let status = r#"{"node_status":{"state_change":"NODE_CONNECTED"},"time":"x"}"#;
        assert_eq!(parse(status), Ok(ParsedLine::Skip("hubble node_status")));
        assert!(parse("{}").is_err());
        assert!(matches!(
            parse(r#"{"flow":{"verdict":"MAYBE","IP":{}}}"#),
            Ok(ParsedLine::SkipNoted { .. })
        ));
    }

    #[test]
    fn out_of_range_values_are_errors() {
        let bad_port = r#"{"flow":{"verdict":"FORWARDED","IP":{"source":"10.0.0.1"},
            "l4":{"TCP":{"source_port":70000}}}}"#;
        assert!(parse(bad_port).unwrap_err().contains("70000"));
        let bad_ip = r#"{"flow":{"verdict":"FORWARDED","IP":{"source":"10.0.0.300"},
            "l4":{"TCP":{}}}}"#;
        assert!(parse(bad_ip).is_err());
        let bad_time = r#"{"flow":{"time":"2021-02-30T00:00:00Z","verdict":"FORWARDED",
            "IP":{},"l4":{"TCP":{}}}}"#;
        assert!(parse(bad_time).is_err());
    }
}
