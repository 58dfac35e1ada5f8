//! Kubernetes API audit events (`audit.k8s.io/v1`, and `v1beta1`), as the
//! API server writes them: one JSON event per line from the log backend,
//! `EventList` bodies from the webhook backend (one list per line when
//! saved), and AKS's wrapper (`properties.log`, a string or an object
//! holding the event). Read the way real logs need:
//!
//! - lenient: `apiVersion` and `kind` may be missing (old captures), any
//!   field may be absent; v1beta1's `timestamp` stands in for
//!   `requestReceivedTimestamp`;
//! - every record is accounted for: an event, a duplicate (the same
//!   `auditID`, `stage`, `stageTimestamp`, `verb` and `requestURI` seen
//!   before: webhook retries, overlapping log files; a client-chosen
//!   `Audit-ID` alone does not make one), or a skip with its reason; lines that are not JSON get a
//!   diagnostic with their line number, and the rest is still read;
//! - [`AuditEvent::changed_state`] says whether an event records a change
//!   that happened (a `ResponseComplete` with a 2xx code), and
//!   [`sort_by_stage_time`] orders events as they took effect.

use std::collections::BTreeMap;

use rustc_hash::FxHashSet;
use std::io::BufRead;

use serde::Deserialize;
use serde_json::Value;

/// When in a request's life an event was written.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stage {
    RequestReceived,
    /// Long-running requests only (watch, exec): headers sent.
    ResponseStarted,
    ResponseComplete,
    Panic,
    Other(String),
}

impl Stage {
    fn parse(text: &str) -> Stage {
        match text {
            "RequestReceived" => Stage::RequestReceived,
            "ResponseStarted" => Stage::ResponseStarted,
            "ResponseComplete" => Stage::ResponseComplete,
            "Panic" => Stage::Panic,
            other => Stage::Other(other.to_string()),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct User {
    pub username: String,
    pub uid: Option<String>,
    pub groups: Vec<String>,
}

/// The object a request was about.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ObjectRef {
    pub resource: String,
    pub subresource: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub uid: Option<String>,
    pub api_group: Option<String>,
    pub api_version: Option<String>,
    pub resource_version: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct AuditEvent {
    pub audit_id: String,
    pub stage: Stage,
    /// None, Metadata, Request or RequestResponse: what the event carries.
    pub level: Option<String>,
    pub verb: String,
    pub request_uri: Option<String>,
    pub user: User,
    pub impersonated_user: Option<User>,
    /// The last entry is the one the API server saw; earlier ones come
    /// from headers (X-Forwarded-For) and can be forged.
    pub source_ips: Vec<String>,
    pub user_agent: Option<String>,
    pub object_ref: Option<ObjectRef>,
    pub response_code: Option<u16>,
    pub request_object: Option<Value>,
    pub response_object: Option<Value>,
    /// RFC 3339 text, as written.
    pub request_received: Option<String>,
    pub stage_timestamp: Option<String>,
    pub annotations: BTreeMap<String, String>,
    /// The line the event is on (1-based).
    pub line: u64,
    /// The event as written, for rules that match any field.
    pub raw: Value,
}

impl AuditEvent {
    /// The request completed successfully: what it asked for happened.
    pub fn changed_state(&self) -> bool {
        self.stage == Stage::ResponseComplete
            && self.response_code.is_some_and(|c| (200..300).contains(&c))
    }

    /// The source address the API server itself saw.
    pub fn source_ip(&self) -> Option<&str> {
        self.source_ips.last().map(String::as_str)
    }
}

/// The wire shape, every field optional.
#[derive(Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Wire {
    #[serde(rename = "auditID")]
    audit_id: Option<String>,
    stage: Option<String>,
    level: Option<String>,
    verb: Option<String>,
    #[serde(rename = "requestURI")]
    request_uri: Option<String>,
    user: Option<User>,
    impersonated_user: Option<User>,
    #[serde(rename = "sourceIPs")]
    source_ips: Vec<String>,
    user_agent: Option<String>,
    object_ref: Option<ObjectRef>,
    response_status: Option<ResponseStatus>,
    request_object: Option<Value>,
    response_object: Option<Value>,
    request_received_timestamp: Option<String>,
    /// v1beta1.
    timestamp: Option<String>,
    stage_timestamp: Option<String>,
    annotations: BTreeMap<String, String>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct ResponseStatus {
    code: Option<u16>,
}

/// What reading a log found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditStats {
    /// Non-blank lines read.
    pub lines: u64,
    pub events: u64,
    /// Lines of well-formed JSON that no rule could fire on anything in,
    /// left unparsed ([`read_audit_log_gated`]).
    pub gated: u64,
    /// Events seen before (same auditID and stage), not handed out again.
    pub duplicates: u64,
    /// Records that are not audit events, by reason.
    pub skipped: BTreeMap<String, u64>,
    /// Line and reason, the first [`MAX_DIAGNOSTICS`] of them.
    pub diagnostics: Vec<(u64, String)>,
    pub diagnostics_dropped: u64,
}

pub const MAX_DIAGNOSTICS: usize = 100;

impl AuditStats {
    fn skip(&mut self, reason: &str) {
        *self.skipped.entry(reason.to_string()).or_insert(0) += 1;
    }

    fn diagnose(&mut self, line: u64, message: String) {
        if self.diagnostics.len() < MAX_DIAGNOSTICS {
            self.diagnostics.push((line, message));
        } else {
            self.diagnostics_dropped += 1;
        }
    }
}

/// Reads an audit log, handing each new event to `sink` in file order.
pub fn read_audit_log<R: BufRead>(input: R, sink: &mut dyn FnMut(AuditEvent)) -> AuditStats {
    read_audit_log_gated(input, &|_| true, sink)
}

/// [`read_audit_log`], where a line `admit` refuses is only checked to be
/// well-formed JSON (so that bad input is still reported) and counted in
/// `gated`, not parsed into events: most of an audit log is reads no rule
/// concerns, and parsing is the cost.
pub fn read_audit_log_gated<R: BufRead>(
    input: R,
    admit: &dyn Fn(&[u8]) -> bool,
    sink: &mut dyn FnMut(AuditEvent),
) -> AuditStats {
    let mut stats = AuditStats::default();
    let mut seen: FxHashSet<u128> = FxHashSet::default();
    let mut input = input;
    // One buffer for every line: `split` would allocate one per line.
    let mut buffer = Vec::new();
    for n in 0u64.. {
        let number = n + 1;
        buffer.clear();
        match input.read_until(b'\n', &mut buffer) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                stats.diagnose(number, format!("read error: {e}"));
                break;
            }
        }
        let line = buffer.strip_suffix(b"\n").unwrap_or(&buffer);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        stats.lines += 1;
        if !admit(line)
            && let Some(identity) = gated_identity(line)
        {
            // Not parsed, but known: a later record with its identity is
            // a duplicate, exactly as if the line had been read.
            seen.insert(identity);
            stats.gated += 1;
            continue;
        }
        let value: Value = match serde_json::from_slice(line) {
            Ok(value) => value,
            Err(e) => {
                // Skipping a value checks less than reading it (UTF-8 in
                // strings, number ranges, depth): a line the gate would
                // have taken records its identity here too.
                if let Some(identity) = gated_identity(line) {
                    seen.insert(identity);
                }
                stats.skip("not JSON");
                stats.diagnose(number, format!("not valid JSON: {e}"));
                continue;
            }
        };
        let mut events = Vec::new();
        collect(value, &mut events);
        if events.is_empty() {
            stats.skip("not an audit event");
            continue;
        }
        for value in events {
            // Recorded whether or not the record makes an event, as a
            // gated line's is.
            let fresh = identity_of(&value).is_none_or(|identity| seen.insert(identity));
            match event_of(value, number) {
                Some(_) if !fresh => stats.duplicates += 1,
                Some(event) => {
                    stats.events += 1;
                    sink(event);
                }
                None => stats.skip("not an audit event"),
            }
        }
    }
    stats
}

/// What makes two records the same event: its `auditID` and `stage`, as
/// the API server's retries and overlapping log files repeat them, and
/// also its `stageTimestamp`, `verb` and `requestURI`. A client may set
/// the `Audit-ID` header and so reuse the ID of an earlier request; with
/// the ID alone, its own request would be dropped as a duplicate of that
/// one. A real repeat has every field equal. Kept as a 128-bit hash
/// (foldhash, seeded per process: an input cannot be made to collide
/// without the seed), so that a million events cost tens of megabytes.
fn identity(
    audit_id: Option<&str>,
    stage: Option<&str>,
    stage_timestamp: Option<&str>,
    verb: Option<&str>,
    request_uri: Option<&str>,
) -> u128 {
    use std::hash::BuildHasher;
    static KEY: std::sync::LazyLock<foldhash::quality::RandomState> =
        std::sync::LazyLock::new(foldhash::quality::RandomState::default);
    let stage = Stage::parse(stage.unwrap_or("ResponseComplete"));
    let half =
        |salt: u8| KEY.hash_one((salt, audit_id, &stage, stage_timestamp, verb, request_uri));
    (u128::from(half(0)) << 64) | u128::from(half(1))
}

/// The identity of a record read as JSON: only an object with a string
/// `auditID` has one (every event does; `event_of` needs the same).
fn identity_of(record: &Value) -> Option<u128> {
    let text = |key: &str| record.get(key).and_then(Value::as_str);
    text("auditID")?;
    Some(identity(
        text("auditID"),
        text("stage"),
        text("stageTimestamp"),
        text("verb"),
        text("requestURI"),
    ))
}

/// The fields of a plain event that make its identity, read without
/// building the event (strings borrowed: one with an escape fails, and
/// its line is read), and the keys that make a line something else.
#[derive(Deserialize)]
struct IdentityFields<'a> {
    #[serde(rename = "auditID", borrow, default)]
    audit_id: Option<&'a str>,
    #[serde(borrow, default)]
    stage: Option<&'a str>,
    #[serde(rename = "stageTimestamp", borrow, default)]
    stage_timestamp: Option<&'a str>,
    #[serde(borrow, default)]
    verb: Option<&'a str>,
    #[serde(rename = "requestURI", borrow, default)]
    request_uri: Option<&'a str>,
    /// An `EventList`, GKE's and AKS's wrappers: [`collect`] finds their
    /// events, so such lines are read.
    #[serde(default)]
    items: Option<serde::de::IgnoredAny>,
    #[serde(rename = "protoPayload", default)]
    proto_payload: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    properties: Option<serde::de::IgnoredAny>,
}

/// The identity of a line the gate leaves unparsed, or `None` when the
/// line must be read after all: not a JSON object with a string `auditID`,
/// or one that [`collect`] would unwrap. With this, a gated line records
/// exactly the identity that reading it records.
fn gated_identity(line: &[u8]) -> Option<u128> {
    // A derived struct would also read an array, by position.
    if line.trim_ascii_start().first() != Some(&b'{') {
        return None;
    }
    let fields: IdentityFields = serde_json::from_slice(line).ok()?;
    let wrapped =
        fields.items.is_some() || fields.proto_payload.is_some() || fields.properties.is_some();
    if wrapped || fields.audit_id.is_none() {
        return None;
    }
    Some(identity(
        fields.audit_id,
        fields.stage,
        fields.stage_timestamp,
        fields.verb,
        fields.request_uri,
    ))
}

/// A GKE Cloud Audit Logs entry as the audit event it records. GKE
/// names the call `io.k8s.<group>.<version>.<resource>[.<subresource>].<verb>`
/// and the object `<group>/<version>/namespaces/<ns>/<resource>/<name>[/<sub>]`
/// (`core` for the core group); the status is a gRPC code, absent when OK.
/// Entries of other services hold no Kubernetes event.
fn from_gke(
    payload: &serde_json::Map<String, Value>,
    entry: &serde_json::Map<String, Value>,
) -> Option<Value> {
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
    let method = text(payload.get("methodName"))?;
    let call = method.strip_prefix("io.k8s.")?;
    let verb = call.rsplit('.').next()?.to_string();
    let resource_name = text(payload.get("resourceName")).unwrap_or_default();
    let parts: Vec<&str> = resource_name.split('/').filter(|p| !p.is_empty()).collect();
    let (group, version) = (parts.first().copied()?, parts.get(1).copied()?);
    let rest = &parts[2..];
    let (namespace, rest) = match rest {
        ["namespaces", ns, resource, more @ ..] => (Some(*ns), {
            let mut r = vec![*resource];
            r.extend_from_slice(more);
            r
        }),
        other => (None, other.to_vec()),
    };
    let (resource, name, subresource) = match rest.as_slice() {
        [resource] => (*resource, None, None),
        [resource, name] => (*resource, Some(*name), None),
        [resource, name, sub, ..] => (*resource, Some(*name), Some(*sub)),
        [] => return None,
    };
    // gRPC codes, as the HTTP answers the API server gave.
    let code = match payload
        .get("status")
        .and_then(|s| s.get("code"))
        .and_then(Value::as_u64)
    {
        None | Some(0) => 200,
        Some(3) => 400,
        Some(5) => 404,
        Some(6) => 409,
        Some(7) => 403,
        Some(16) => 401,
        Some(_) => 500,
    };
    let auth = payload.get("authenticationInfo");
    let metadata = payload.get("requestMetadata");
    let id = text(entry.get("operation").and_then(|o| o.get("id")))
        .or(text(entry.get("insertId")))
        .unwrap_or_default();
    let time = text(entry.get("timestamp"));
    let mut event = serde_json::json!({
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "auditID": id,
        "stage": "ResponseComplete",
        "verb": verb,
        "user": {"username": text(auth.and_then(|a| a.get("principalEmail"))).unwrap_or_default()},
        "sourceIPs": text(metadata.and_then(|m| m.get("callerIp"))).into_iter().collect::<Vec<_>>(),
        "userAgent": text(metadata.and_then(|m| m.get("callerSuppliedUserAgent"))),
        "objectRef": {
            "resource": resource, "namespace": namespace, "name": name,
            "subresource": subresource,
            "apiGroup": if group == "core" { "" } else { group }, "apiVersion": version,
        },
        "responseStatus": {"code": code},
        "requestReceivedTimestamp": time,
        "stageTimestamp": time,
    });
    for (from, to) in [("request", "requestObject"), ("response", "responseObject")] {
        if let Some(body) = payload.get(from) {
            event[to] = body.clone();
        }
    }
    Some(event)
}

/// The events a record holds: itself, the items of an `EventList`, what
/// an AKS record's `properties.log` wraps, or a GKE entry's `protoPayload`.
fn collect(value: Value, out: &mut Vec<Value>) {
    let Value::Object(mut map) = value else {
        return;
    };
    if let Some(Value::Array(items)) = map.remove("items") {
        out.extend(items);
        return;
    }
    if let Some(Value::Object(payload)) = map.get("protoPayload") {
        if let Some(event) = from_gke(payload, &map) {
            out.push(event);
        }
        return;
    }
    if let Some(Value::Object(mut properties)) = map.remove("properties")
        && let Some(log) = properties.remove("log")
    {
        match log {
            Value::String(text) => {
                if let Ok(inner) = serde_json::from_str(&text) {
                    collect(inner, out);
                }
            }
            inner @ Value::Object(_) => collect(inner, out),
            _ => {}
        }
        return;
    }
    out.push(Value::Object(map));
}

/// An event, if the record has what makes one (an audit ID and a verb).
fn event_of(value: Value, line: u64) -> Option<AuditEvent> {
    // From a reference: the typed fields copy what they keep, and the
    // whole event is not cloned.
    let wire = Wire::deserialize(&value).ok()?;
    Some(AuditEvent {
        audit_id: wire.audit_id?,
        verb: wire.verb?,
        stage: Stage::parse(wire.stage.as_deref().unwrap_or("ResponseComplete")),
        level: wire.level,
        request_uri: wire.request_uri,
        user: wire.user.unwrap_or_default(),
        impersonated_user: wire.impersonated_user,
        source_ips: wire.source_ips,
        user_agent: wire.user_agent,
        object_ref: wire.object_ref,
        response_code: wire.response_status.and_then(|s| s.code),
        request_object: wire.request_object,
        response_object: wire.response_object,
        request_received: wire.request_received_timestamp.or(wire.timestamp),
        stage_timestamp: wire.stage_timestamp,
        annotations: wire.annotations,
        line,
        raw: value,
    })
}

/// Orders events as they took effect: by `stageTimestamp` (RFC 3339 in
/// UTC sorts as text), then by the resulting object's resourceVersion
/// (numeric where it is), then by line. The sort is stable.
pub fn sort_by_stage_time(events: &mut [AuditEvent]) {
    events.sort_by(|a, b| {
        let version = |e: &AuditEvent| {
            e.response_object
                .as_ref()
                .and_then(|o| o.pointer("/metadata/resourceVersion"))
                .and_then(Value::as_str)
                .and_then(|v| v.parse::<u64>().ok())
        };
        (a.stage_timestamp.as_deref(), version(a), a.line).cmp(&(
            b.stage_timestamp.as_deref(),
            version(b),
            b.line,
        ))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A NetworkPolicy deleted, as the log backend writes it.
    const DELETE: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"5f1b","stage":"ResponseComplete","requestURI":"/apis/networking.k8s.io/v1/namespaces/shop/networkpolicies/db-ingress","verb":"delete","user":{"username":"mallory","groups":["system:authenticated"]},"sourceIPs":["203.0.113.9","10.0.0.5"],"userAgent":"kubectl/v1.30.0","objectRef":{"resource":"networkpolicies","namespace":"shop","name":"db-ingress","apiGroup":"networking.k8s.io","apiVersion":"v1"},"responseStatus":{"metadata":{},"status":"Success","code":200},"requestReceivedTimestamp":"2026-11-30T10:00:00.000000Z","stageTimestamp":"2026-11-30T10:00:00.010000Z","annotations":{"authorization.k8s.io/decision":"allow"}}"#;

    fn read(text: &str) -> (Vec<AuditEvent>, AuditStats) {
        let mut events = Vec::new();
        let stats = read_audit_log(text.as_bytes(), &mut |e| events.push(e));
        (events, stats)
    }

    #[test]
    fn reads_a_log_backend_event() {
        let (events, stats) = read(DELETE);
        assert_eq!(stats.events, 1);
        let e = &events[0];
        assert_eq!(
            (e.verb.as_str(), &e.stage),
            ("delete", &Stage::ResponseComplete)
        );
        assert_eq!(e.user.username, "mallory");
        assert_eq!(
            e.source_ip(),
            Some("10.0.0.5"),
            "the last address is the API server's"
        );
        let object = e.object_ref.as_ref().unwrap();
        assert_eq!(object.resource, "networkpolicies");
        assert_eq!(object.name.as_deref(), Some("db-ingress"));
        assert!(e.changed_state());
        assert_eq!(e.annotations["authorization.k8s.io/decision"], "allow");
    }

    #[test]
    fn reads_gke_cloud_audit_log_entries() {
        let entry = |method: &str, resource: &str, status: &str| {
            format!(
                r#"{{"insertId":"g1","timestamp":"2026-11-30T10:00:00Z","logName":"projects/p/logs/cloudaudit.googleapis.com%2Factivity","operation":{{"id":"op-{method}","first":true,"last":true}},"protoPayload":{{"@type":"type.googleapis.com/google.cloud.audit.AuditLog","serviceName":"k8s.io","methodName":"{method}","resourceName":"{resource}","authenticationInfo":{{"principalEmail":"mallory@example.com"}},"requestMetadata":{{"callerIp":"203.0.113.9","callerSuppliedUserAgent":"kubectl/v1.30"}},"status":{status}}}}}"#
            )
        };
        let text = [
            entry(
                "io.k8s.networking.v1.networkpolicies.delete",
                "networking.k8s.io/v1/namespaces/shop/networkpolicies/db",
                "{}",
            ),
            entry(
                "io.k8s.core.v1.pods.exec.create",
                "core/v1/namespaces/shop/pods/api-1/exec",
                r#"{"code":7}"#,
            ),
            entry(
                "io.k8s.core.v1.namespaces.update",
                "core/v1/namespaces/other",
                "{}",
            ),
            entry(
                "v1.compute.instances.insert",
                "projects/x/zones/y/instances/z",
                "{}",
            ),
        ]
        .join("\n");
        let mut events = Vec::new();
        let stats = read_audit_log(text.as_bytes(), &mut |e| events.push(e));
        assert_eq!(stats.events, 3);
        assert_eq!(
            stats.skipped.get("not an audit event"),
            Some(&1),
            "the compute entry"
        );
        let summary: Vec<String> = events
            .iter()
            .map(|e| {
                let o = e.object_ref.as_ref().unwrap();
                let part = |v: &Option<String>| v.clone().unwrap_or("-".into());
                format!(
                    "{} {}/{} {}/{} {}",
                    e.verb,
                    o.resource,
                    part(&o.subresource),
                    part(&o.namespace),
                    part(&o.name),
                    e.response_code.unwrap_or(0)
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                "delete networkpolicies/- shop/db 200",
                "create pods/exec shop/api-1 403",
                "update namespaces/- -/other 200",
            ]
        );
        let first = &events[0];
        assert_eq!(first.user.username, "mallory@example.com");
        assert_eq!(first.source_ip(), Some("203.0.113.9"));
        assert_eq!(
            first.object_ref.as_ref().unwrap().api_group.as_deref(),
            Some("networking.k8s.io")
        );
        assert_eq!(
            first.stage_timestamp.as_deref(),
            Some("2026-11-30T10:00:00Z")
        );
    }

    #[test]
    fn reads_webhook_lists_and_aks_wrappers_and_drops_duplicates() {
        let list =
            format!(r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{DELETE}]}}"#);
        let escaped = serde_json::to_string(DELETE).unwrap();
        let aks_string = format!(r#"{{"category":"kube-audit","properties":{{"log":{escaped}}}}}"#);
        let aks_object = format!(
            r#"{{"properties":{{"log":{}}}}}"#,
            DELETE.replace("5f1b", "77aa")
        );
        let text = [DELETE, &list, &aks_string, &aks_object].join("\n");
        let (events, stats) = read(&text);
        assert_eq!(stats.events, 2);
        assert_eq!(stats.duplicates, 2, "the same auditID and stage, resent");
        assert_eq!(events[1].audit_id, "77aa");
    }

    /// A client may send its own `Audit-ID`: reusing an earlier request's
    /// ID must not make its request vanish as a duplicate.
    #[test]
    fn a_reused_audit_id_is_not_a_duplicate_but_a_resent_event_is() {
        let reused = DELETE
            .replace("\"verb\":\"delete\"", "\"verb\":\"get\"")
            .replace("10:00:00.010000Z", "09:59:00.000000Z");
        let text = [reused.as_str(), DELETE, DELETE].join("\n");
        let (events, stats) = read(&text);
        assert_eq!((stats.events, stats.duplicates), (2, 1));
        assert_eq!(events[1].verb, "delete");
        // The same when the gate leaves the first unparsed.
        let mut verbs = Vec::new();
        let admit = |line: &[u8]| !line.windows(12).any(|w| w == b"\"verb\":\"get\"");
        let stats = read_audit_log_gated(text.as_bytes(), &admit, &mut |e| verbs.push(e.verb));
        assert_eq!((stats.gated, stats.events, stats.duplicates), (1, 1, 1));
        assert_eq!(verbs, ["delete"]);
    }

    /// The events read from `text` with a gate that leaves its first line
    /// unparsed, and (gated, events, duplicates).
    fn read_gating_the_first(text: &str) -> (Vec<String>, (u64, u64, u64)) {
        let calls = std::cell::Cell::new(0);
        let admit = |_: &[u8]| {
            calls.set(calls.get() + 1);
            calls.get() > 1
        };
        let mut verbs = Vec::new();
        let stats = read_audit_log_gated(text.as_bytes(), &admit, &mut |e| {
            verbs.push(format!("{} {}", e.line, e.verb))
        });
        (verbs, (stats.gated, stats.events, stats.duplicates))
    }

    /// A gated line records its event's identity, so that a later record
    /// with it is a duplicate whether or not the gate read the first; lines
    /// whose events only reading finds (lists, wrappers) are read.
    #[test]
    fn a_gated_event_makes_its_repeat_a_duplicate() {
        let (_, counts) = read_gating_the_first(&format!("{DELETE}\n{DELETE}\n"));
        assert_eq!(counts, (1, 0, 1));
        let list = format!(r#"{{"kind":"EventList","items":[{DELETE}]}}"#);
        let (_, counts) = read_gating_the_first(&format!("{list}\n{DELETE}\n"));
        assert_eq!(counts, (0, 1, 1), "an EventList is read");
        let wrapped = format!(r#"{{"properties":{{"log":{DELETE}}}}}"#);
        let stats = read_audit_log_gated(wrapped.as_bytes(), &|_: &[u8]| false, &mut |_| {});
        assert_eq!((stats.gated, stats.events), (0, 1));
    }

    /// Records that look like an event to the gate's reader but not to the
    /// event reader (or the other way round) decide alike with and without
    /// the gate (found by review: each made the gated scan drop the create).
    #[test]
    fn odd_first_records_decide_duplicates_alike_gated_or_not() {
        let create = r#"{"auditID":"x","stage":"ResponseComplete","stageTimestamp":"t","verb":"create","requestURI":"/u"}"#;
        for first in [
            // Not an event (user is not an object), but it has an identity.
            r#"{"auditID":"x","stage":"ResponseComplete","stageTimestamp":"t","verb":"create","requestURI":"/u","user":"m"}"#,
            // An array is no event, whatever its elements.
            r#"["x","ResponseComplete","t","create","/u"]"#,
            // A wrapper is read for the event it wraps, not its own ID.
            r#"{"auditID":"x","stage":"ResponseComplete","stageTimestamp":"t","verb":"create","requestURI":"/u","properties":{"log":{"auditID":"y","verb":"get"}}}"#,
            // Invalid UTF-8 in a string the gate's reader skips.
            "{\"auditID\":\"x\",\"stage\":\"ResponseComplete\",\"stageTimestamp\":\"t\",\"verb\":\"create\",\"requestURI\":\"/u\",\"z\":\"\u{FFFD}\"}",
        ] {
            // What the gate may change is only the first line's own event:
            // the second's fate must be the same.
            let text = format!("{first}\n{create}\n");
            let (ungated, _) = read(&text);
            let (mut gated, _) = read_gating_the_first(&text);
            gated.retain(|e| e.starts_with("2 "));
            let second = |e: &AuditEvent| (e.line == 2).then(|| format!("2 {}", e.verb));
            let ungated: Vec<String> = ungated.iter().filter_map(second).collect();
            assert_eq!(gated, ungated, "{first}");
        }
        let mut bytes = br#"{"auditID":"x","stage":"ResponseComplete","stageTimestamp":"t","verb":"create","requestURI":"/u","z":""#.to_vec();
        bytes.extend_from_slice(b"\xff\"}\n");
        bytes.extend_from_slice(create.as_bytes());
        let calls = std::cell::Cell::new(0);
        let admit = |_: &[u8]| {
            calls.set(calls.get() + 1);
            calls.get() > 1
        };
        let count = |admit: &dyn Fn(&[u8]) -> bool| {
            let mut n = 0;
            read_audit_log_gated(&bytes[..], admit, &mut |e| n += usize::from(e.line == 2));
            n
        };
        assert_eq!(count(&admit), count(&|_: &[u8]| true), "invalid UTF-8");
    }

    #[test]
    fn old_captures_and_partial_events_are_read_leniently() {
        // v1beta1 with `timestamp`, no apiVersion, no responseStatus.
        let old = r#"{"auditID":"a1","stage":"ResponseComplete","verb":"create","timestamp":"2018-10-25T13:58:49Z","objectRef":{"resource":"pods","namespace":"default","name":"nginx"}}"#;
        let (events, _) = read(old);
        assert_eq!(
            events[0].request_received.as_deref(),
            Some("2018-10-25T13:58:49Z")
        );
        assert!(
            !events[0].changed_state(),
            "no status: not known to have happened"
        );
        let received = DELETE.replace("ResponseComplete", "RequestReceived");
        let (events, _) = read(&received);
        assert!(!events[0].changed_state());
    }

    #[test]
    fn bad_records_are_counted_and_the_rest_is_read() {
        let text = format!(
            "{DELETE}\nnot json\n{{\"kind\":\"Pod\"}}\n[1,2]\n\n{}\n{{\"auditID\":",
            DELETE.replace("5f1b", "second")
        );
        let (events, stats) = read(&text);
        assert_eq!(events.len(), 2);
        assert_eq!(
            stats.skipped["not JSON"], 2,
            "the garbage and the truncated last line"
        );
        assert_eq!(stats.skipped["not an audit event"], 2);
        assert_eq!(stats.diagnostics[0].0, 2);
        for end in 0..DELETE.len() {
            let _ = read(&DELETE[..end]);
        }
    }

    #[test]
    fn events_sort_as_they_took_effect() {
        let later = DELETE
            .replace("5f1b", "b")
            .replace("10:00:00.010000Z", "10:00:05.000000Z");
        let text = format!("{later}\n{DELETE}");
        let (mut events, _) = read(&text);
        sort_by_stage_time(&mut events);
        assert_eq!(events[0].audit_id, "5f1b");
    }
}
