//! Logs through the rules: each audit event or container log line is
//! matched against the built-in rules (`rules/builtin.yaml`) and the
//! user's, and each firing becomes an alert of the one alert schema, with
//! the actor and the object for audit events and the pod for container
//! logs.

use std::io::BufRead;
use std::sync::Arc;

use palisade_detect::{Actor, Alert, AlertEndpoint, AlertObject, Evidence};
use palisade_flow::{Format, RecordRef};
use palisade_inventory::severity::Severity;
use serde_json::{Value, json};

use crate::access::{parse_coredns, parse_envoy};
use crate::audit::{AuditEvent, AuditStats, read_audit_log};
use crate::container::{LogLine, LogSource, LogStats, read_container_log};
use crate::rules::{Firing, RuleSet};

/// The rules Palisade ships.
pub const BUILTIN_RULES: &str = include_str!("../rules/builtin.yaml");

pub struct Scanner {
    rules: RuleSet,
}

impl Scanner {
    /// The built-in rules, then `files` (name, text) in order.
    pub fn new(files: &[(&str, &str)]) -> Result<Scanner, String> {
        let mut all = vec![("built-in rules", BUILTIN_RULES)];
        all.extend_from_slice(files);
        Ok(Scanner {
            rules: RuleSet::load(&all)?,
        })
    }

    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    pub fn audit<R: BufRead>(
        &mut self,
        input: R,
        file: &Arc<str>,
        sink: &mut dyn FnMut(Alert),
    ) -> AuditStats {
        let rules = &mut self.rules;
        read_audit_log(input, &mut |event| {
            let micros = event
                .stage_timestamp
                .as_deref()
                .or(event.request_received.as_deref())
                .and_then(|t| palisade_flow::generic::parse_rfc3339(t).ok())
                .unwrap_or(0);
            for firing in rules.evaluate("k8s_audit", &event.raw, micros) {
                sink(audit_alert(&firing, &event, file));
            }
        })
    }

    pub fn container<R: BufRead>(
        &mut self,
        input: R,
        file: &Arc<str>,
        source: Option<&LogSource>,
        sink: &mut dyn FnMut(Alert),
    ) -> LogStats {
        let rules = &mut self.rules;
        read_container_log(input, source, &mut |line| {
            let record = container_record(&line);
            let micros = line
                .time
                .as_deref()
                .and_then(|t| palisade_flow::generic::parse_rfc3339(t).ok())
                .unwrap_or(0);
            for firing in rules.evaluate("container_log", &record, micros) {
                sink(container_alert(&firing, &line, file));
            }
        })
    }
}

/// What rules see of a container log line: its text, its source, and what
/// it says when it is an Envoy access line or a CoreDNS query.
fn container_record(line: &LogLine) -> Value {
    let mut record = json!({
        "message": line.message,
        "stream": format!("{:?}", line.stream).to_ascii_lowercase(),
        "time": line.time,
    });
    if let Some(source) = &line.source {
        record["source"] = json!({
            "namespace": source.namespace,
            "pod": source.pod,
            "pod_uid": source.pod_uid,
            "container": source.container,
        });
    }
    if let Some(envoy) = parse_envoy(&line.message) {
        record["envoy"] = json!({
            "method": envoy.method, "path": envoy.path, "status": envoy.status,
            "flags": envoy.flags, "details": envoy.details,
            "upstream_host": envoy.upstream_host, "user_agent": envoy.user_agent,
        });
    }
    // CoreDNS lines start with their level, `[INFO]`.
    let dns_line = line.message.trim_start_matches(|c: char| c != '[');
    if let Some(dns) = parse_coredns(dns_line) {
        record["dns"] = json!({
            "client": dns.client, "type": dns.qtype, "name": dns.name, "rcode": dns.rcode,
        });
    }
    record
}

/// Falco's priorities and the common words, as severities.
pub fn severity(priority: &str) -> Severity {
    match priority.to_ascii_lowercase().as_str() {
        "emergency" | "alert" | "critical" => Severity::Critical,
        "error" | "high" => Severity::High,
        "warning" | "medium" => Severity::Medium,
        "notice" | "low" => Severity::Low,
        _ => Severity::Info,
    }
}

fn alert(firing: &Firing, time: Option<String>, record: RecordRef) -> Alert {
    Alert {
        time: time.clone(),
        rule: firing.rule_id.clone().into(),
        name: firing.name.clone().into(),
        severity: severity(&firing.priority),
        summary: firing.output.clone(),
        src: AlertEndpoint::default(),
        dst: AlertEndpoint::default(),
        protocol: String::new(),
        port: None,
        connections: 1,
        first_seen: time.clone(),
        last_seen: time,
        process: None,
        actor: None,
        object: None,
        evidence: Evidence {
            flow: None,
            records: vec![record],
            decision: None,
            figures: Default::default(),
        },
    }
}

fn audit_alert(firing: &Firing, event: &AuditEvent, file: &Arc<str>) -> Alert {
    let time = event
        .stage_timestamp
        .clone()
        .or(event.request_received.clone());
    let record = RecordRef {
        file: file.clone(),
        format: Format::AuditLog,
        record: event.line,
    };
    let mut alert = alert(firing, time, record);
    alert.actor = Some(Actor {
        user: event.user.username.clone(),
        groups: event.user.groups.clone(),
        source_ip: event.source_ip().map(str::to_string),
        user_agent: event.user_agent.clone(),
    });
    alert.src = AlertEndpoint {
        kind: "user",
        ip: event.source_ip().and_then(|ip| ip.parse().ok()),
        ..AlertEndpoint::default()
    };
    if let Some(object) = &event.object_ref {
        let kind = match &object.subresource {
            Some(sub) => format!("{}/{sub}", object.resource),
            None => object.resource.clone(),
        };
        alert.object = Some(AlertObject {
            kind,
            namespace: object.namespace.clone(),
            name: object.name.clone(),
        });
        alert.dst = AlertEndpoint {
            kind: "object",
            namespace: object.namespace.clone(),
            ..AlertEndpoint::default()
        };
    }
    alert
}

fn container_alert(firing: &Firing, line: &LogLine, file: &Arc<str>) -> Alert {
    let record = RecordRef {
        file: file.clone(),
        format: Format::ContainerLog,
        record: line.line,
    };
    let mut alert = alert(firing, line.time.clone(), record);
    if let Some(source) = &line.source {
        alert.src = AlertEndpoint {
            kind: "pod",
            namespace: Some(source.namespace.clone()),
            pod: Some(source.pod.clone()),
            ..AlertEndpoint::default()
        };
    }
    alert
}

#[cfg(test)]
mod tests {
    use super::*;

    fn audit(line: &str) -> Vec<Alert> {
        let mut scanner = Scanner::new(&[]).unwrap();
        let mut alerts = Vec::new();
        scanner.audit(line.as_bytes(), &Arc::from("audit.log"), &mut |a| {
            alerts.push(a)
        });
        alerts
    }

    const DELETE: &str = r#"{"auditID":"1","stage":"ResponseComplete","verb":"delete","user":{"username":"mallory","groups":["dev"]},"sourceIPs":["10.0.0.5"],"userAgent":"kubectl/v1.30","objectRef":{"resource":"networkpolicies","namespace":"shop","name":"db","apiGroup":"networking.k8s.io"},"responseStatus":{"code":200},"stageTimestamp":"2026-11-30T10:00:00Z"}"#;

    #[test]
    fn a_deleted_policy_is_an_alert_with_its_actor_and_object() {
        let alerts = audit(DELETE);
        assert_eq!(alerts.len(), 1);
        let a = &alerts[0];
        assert_eq!(a.rule, "AUDIT-001");
        assert_eq!(a.severity, Severity::High);
        assert_eq!(a.summary, "mallory deleted networkpolicies shop/db");
        let actor = a.actor.as_ref().unwrap();
        assert_eq!(
            (actor.user.as_str(), actor.source_ip.as_deref()),
            ("mallory", Some("10.0.0.5"))
        );
        assert_eq!(a.object.as_ref().unwrap().name.as_deref(), Some("db"));
        assert_eq!(a.evidence.records[0].record, 1);
        // Refused: nothing happened.
        assert!(audit(&DELETE.replace("\"code\":200", "\"code\":403")).is_empty());
    }

    #[test]
    fn every_built_in_audit_rule_fires_on_its_event() {
        let pod = |spec: &str| {
            format!(
                r#"{{"auditID":"x","stage":"ResponseComplete","verb":"create","user":{{"username":"u"}},"objectRef":{{"resource":"pods","namespace":"a","name":"p"}},"responseStatus":{{"code":201}},"requestObject":{{"spec":{spec}}}}}"#
            )
        };
        let cases = [
            ("AUDIT-002", DELETE.replace("\"delete\"", "\"patch\"")),
            (
                "AUDIT-003",
                DELETE
                    .replace("networkpolicies\"", "pods\",\"subresource\":\"exec\"")
                    .replace("200", "101"),
            ),
            ("AUDIT-005", pod(r#"{"hostNetwork":true}"#)),
            (
                "AUDIT-006",
                pod(r#"{"containers":[{"securityContext":{"privileged":true}}]}"#),
            ),
            (
                "AUDIT-007",
                pod(r#"{"containers":[{"securityContext":{"capabilities":{"add":["NET_RAW"]}}}]}"#),
            ),
            (
                "AUDIT-008",
                pod(r#"{"containers":[{"ports":[{"containerPort":80,"hostPort":8080}]}]}"#),
            ),
        ];
        for (rule, line) in cases {
            let rules: Vec<String> = audit(&line).iter().map(|a| a.rule.to_string()).collect();
            assert!(
                rules.contains(&rule.to_string()),
                "{rule}: {rules:?} for {line}"
            );
        }
        assert!(
            audit(&pod(r#"{"containers":[{"image":"nginx"}]}"#)).is_empty(),
            "a plain pod"
        );
    }

    #[test]
    fn container_log_rules_fire_on_bursts_and_proxies() {
        let mut scanner = Scanner::new(&[]).unwrap();
        let source = LogSource {
            namespace: "shop".into(),
            pod: "web-1".into(),
            pod_uid: None,
            container: "app".into(),
        };
        let mut text = String::new();
        for i in 0..25 {
            text.push_str(&format!("2026-11-30T10:00:{i:02}Z stdout F dial tcp 10.0.0.9:5432: connect: connection refused\n"));
        }
        text.push_str("2026-11-30T10:01:00Z stdout F [2025-07-22T17:55:52.085Z] \"GET / HTTP/1.1\" 403 - rbac_access_denied_matched_policy[none] - \"-\" 0 19 0 - \"10.244.1.1\" \"curl/8.14.1\" \"id\" \"172.18.10.10\" \"-\" inbound|80|| - 10.244.1.9:80 10.244.1.1:0 x default\n");
        let mut alerts = Vec::new();
        scanner.container(
            text.as_bytes(),
            &Arc::from("0.log"),
            Some(&source),
            &mut |a| alerts.push(a),
        );
        let rules: Vec<&str> = alerts.iter().map(|a| a.rule.as_ref()).collect();
        assert_eq!(rules, ["LOG-001", "LOG-003"]);
        assert_eq!(alerts[0].src.pod.as_deref(), Some("web-1"));
    }
}
