//! What each destination receives, built from the alert as stored (its
//! JSON document and the fields the store indexes). Pure functions: every
//! format is tested without a network.

use palisade_inventory::severity::Severity;
use palisade_store::StoredAlert;
use serde_json::{Map, Value, json};

/// The ECS version the documents follow.
pub const ECS_VERSION: &str = "9.4.0";

/// An alert ready to serialize: the stored record and its document.
pub struct Item<'a> {
    pub stored: &'a StoredAlert,
    pub doc: Value,
}

impl<'a> Item<'a> {
    /// A document that no longer parses (edited by hand) still goes out,
    /// with what the indexed fields say.
    pub fn new(stored: &'a StoredAlert) -> Item<'a> {
        let doc = serde_json::from_str(&stored.record.doc).unwrap_or(Value::Null);
        Item { stored, doc }
    }

    fn id(&self) -> &str {
        &self.stored.record.id
    }

    fn time(&self) -> String {
        palisade_detect::rfc3339(self.stored.record.time_us)
    }

    fn text(&self, path: &[&str]) -> Option<&str> {
        let mut v = &self.doc;
        for key in path {
            v = v.get(key)?;
        }
        v.as_str()
    }

    fn number(&self, path: &[&str]) -> Option<u64> {
        let mut v = &self.doc;
        for key in path {
            v = v.get(key)?;
        }
        v.as_u64()
    }

    /// `ns/workload`, a node, or an address: how an endpoint reads.
    fn endpoint(&self, side: &str) -> String {
        let of = |k: &str| self.text(&[side, k]);
        of("workload")
            .map(str::to_string)
            .or_else(|| of("node").map(|n| format!("node/{n}")))
            .or_else(|| of("ip").map(str::to_string))
            .or_else(|| match (of("namespace"), of("pod")) {
                (Some(ns), Some(pod)) => Some(format!("{ns}/{pod}")),
                _ => None,
            })
            .unwrap_or_else(|| "?".into())
    }

    fn rule_name(&self) -> &str {
        self.text(&["name"]).unwrap_or(&self.stored.record.rule)
    }

    fn severity(&self) -> Severity {
        self.stored.record.severity
    }
}

/// The generic webhook: the alert document as the server received it.
pub fn webhook(item: &Item) -> Value {
    item.doc.clone()
}

/// Falco's output contract (what Falcosidekick's `POST /` takes).
pub fn falco(item: &Item) -> Value {
    let r = &item.stored.record;
    let mut fields = Map::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            fields.insert(k.to_string(), v);
        }
    };
    // Sidekick and its outputs read the source side as the k8s fields.
    put(
        "k8s.ns.name",
        item.text(&["src", "namespace"]).map(Value::from),
    );
    put("k8s.pod.name", item.text(&["src", "pod"]).map(Value::from));
    put("fd.cip", item.text(&["src", "ip"]).map(Value::from));
    put("fd.sip", item.text(&["dst", "ip"]).map(Value::from));
    put("fd.sport", r.port.map(Value::from));
    put(
        "fd.l4proto",
        Some(Value::from(r.protocol.to_ascii_lowercase())),
    );
    put("palisade.id", Some(Value::from(item.id())));
    put("palisade.rule_id", Some(Value::from(r.rule.as_str())));
    put("palisade.class", r.class.clone().map(Value::from));
    put("palisade.src", Some(Value::from(item.endpoint("src"))));
    put("palisade.dst", Some(Value::from(item.endpoint("dst"))));
    put(
        "palisade.dst.namespace",
        item.text(&["dst", "namespace"]).map(Value::from),
    );
    put(
        "palisade.dst.pod",
        item.text(&["dst", "pod"]).map(Value::from),
    );
    put("palisade.connections", Some(Value::from(r.connections)));
    put(
        "proc.name",
        item.text(&["process", "comm"]).map(Value::from),
    );
    put(
        "proc.exepath",
        item.text(&["process", "executable"]).map(Value::from),
    );
    put(
        "proc.pid",
        item.number(&["process", "pid"]).map(Value::from),
    );
    put("user.name", item.text(&["actor", "user"]).map(Value::from));
    json!({
        "uuid": item.id(),
        "output": r.summary,
        "priority": falco_priority(item.severity()),
        "rule": item.rule_name(),
        "time": falco_time(r.time_us),
        "source": "palisade",
        "tags": ["network", "k8s_networkpolicy", r.rule],
        "hostname": r.origin,
        "output_fields": fields,
    })
}

/// Falco's priorities, from ours (its eight levels; ours are five).
pub fn falco_priority(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "Critical",
        Severity::High => "Error",
        Severity::Medium => "Warning",
        Severity::Low => "Notice",
        Severity::Info => "Informational",
    }
}

/// RFC 3339 with nanoseconds, as Falco writes `time`.
fn falco_time(micros: i64) -> String {
    let text = palisade_detect::rfc3339(micros);
    // `...:SS.ffffffZ` → `...:SS.ffffff000Z`
    match text.strip_suffix('Z') {
        Some(head) => format!("{head}000Z"),
        None => text,
    }
}

/// One alert for Alertmanager's `POST /api/v2/alerts`. Labels identify
/// the alert (Alertmanager groups and deduplicates by them) and stay
/// bounded: rule, severity, namespaces and workloads, never addresses
/// or pods, which would make every connection its own alert.
/// Alertmanager refuses a batch with a start in the future, so a sender's
/// clock ahead of ours is clamped to `now_us`.
pub fn alertmanager(item: &Item, now_us: i64) -> Value {
    let r = &item.stored.record;
    let mut labels = Map::new();
    let mut label = |k: &str, v: Option<&str>| {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            labels.insert(k.to_string(), Value::from(v));
        }
    };
    label("alertname", Some(item.rule_name()));
    label("rule_id", Some(&r.rule));
    label("severity", Some(r.severity.as_str()));
    label("class", r.class.as_deref());
    label(
        "namespace",
        r.dst_namespace.as_deref().or(r.src_namespace.as_deref()),
    );
    label("src_namespace", r.src_namespace.as_deref());
    label("src_workload", r.src_workload.as_deref());
    label("dst_namespace", r.dst_namespace.as_deref());
    label("dst_workload", r.dst_workload.as_deref());
    let port = r.port.map(|p| p.to_string());
    label("port", port.as_deref());
    label("origin", Some(&r.origin));
    label("source", Some("palisade"));
    json!({
        "labels": labels,
        "annotations": {
            "summary": r.summary,
            "alert_id": item.id(),
            "connections": r.connections.to_string(),
        },
        "startsAt": palisade_detect::rfc3339(r.time_us.min(now_us)),
    })
}

fn severity_colour(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "#dd0000",
        Severity::High => "#ff6600",
        Severity::Medium => "#ffaa00",
        Severity::Low => "#3366cc",
        Severity::Info => "#999999",
    }
}

/// Slack's (and Mattermost's) incoming-webhook message: a fallback text
/// and one coloured attachment with the facts.
pub fn slack(item: &Item) -> Value {
    let r = &item.stored.record;
    let port = r.port.map_or(String::new(), |p| format!(":{p}"));
    let text = format!(
        "[{}] {} {}: {}",
        r.severity.as_str().to_uppercase(),
        r.rule,
        item.rule_name(),
        r.summary
    );
    json!({
        "text": text,
        "attachments": [{
            "color": severity_colour(r.severity),
            "fallback": text,
            "title": format!("{} → {}{port} ({})", item.endpoint("src"), item.endpoint("dst"), r.protocol),
            "fields": [
                {"title": "rule", "value": format!("{} {}", r.rule, item.rule_name()), "short": true},
                {"title": "severity", "value": r.severity.as_str(), "short": true},
                {"title": "connections", "value": r.connections.to_string(), "short": true},
                {"title": "origin", "value": r.origin, "short": true},
                {"title": "first seen", "value": item.time(), "short": true},
                {"title": "alert id", "value": item.id(), "short": true},
            ],
        }],
    })
}

/// A Microsoft Teams incoming-webhook MessageCard.
pub fn teams(item: &Item) -> Value {
    let r = &item.stored.record;
    json!({
        "@type": "MessageCard",
        "@context": "https://schema.org/extensions",
        "summary": format!("{} {}", r.rule, item.rule_name()),
        "themeColor": severity_colour(r.severity).trim_start_matches('#'),
        "title": format!("[{}] {}", r.severity.as_str().to_uppercase(), item.rule_name()),
        "text": r.summary,
        "sections": [{
            "facts": [
                {"name": "source", "value": item.endpoint("src")},
                {"name": "destination", "value": item.endpoint("dst")},
                {"name": "port", "value": r.port.map_or("-".into(), |p| p.to_string())},
                {"name": "connections", "value": r.connections.to_string()},
                {"name": "origin", "value": r.origin},
                {"name": "alert id", "value": item.id()},
            ],
        }],
    })
}

/// ECS severity: a number, higher is worse (Elastic's detection rules
/// use 21/47/73/99 for low/medium/high/critical).
fn ecs_severity(severity: Severity) -> u64 {
    match severity {
        Severity::Info => 0,
        Severity::Low => 21,
        Severity::Medium => 47,
        Severity::High => 73,
        Severity::Critical => 99,
    }
}

/// An Elastic Common Schema document for a `logs-palisade.alerts-*` data
/// stream. Both endpoints' Kubernetes facts go under `palisade.*`: ECS has
/// no per-endpoint pod fields, and `orchestrator.resource` holds one
/// resource (the destination).
pub fn ecs(item: &Item, observer_version: &str) -> Value {
    let r = &item.stored.record;
    let (types, outcome, categories) = match r.class.as_deref() {
        Some("bypass") => (
            vec!["connection", "allowed"],
            "success",
            vec!["network", "intrusion_detection"],
        ),
        Some("blocked-attempt" | "unexpected-drop") => (
            vec!["connection", "denied"],
            "failure",
            vec!["network", "intrusion_detection"],
        ),
        _ => (vec!["info"], "unknown", vec!["intrusion_detection"]),
    };
    let transport = r.protocol.to_ascii_lowercase();
    let iana = match transport.as_str() {
        "tcp" => Some("6"),
        "udp" => Some("17"),
        "sctp" => Some("132"),
        "icmp" => Some("1"),
        _ => None,
    };
    let mut doc = json!({
        "@timestamp": item.time(),
        "ecs": {"version": ECS_VERSION},
        "message": r.summary,
        "event": {
            "kind": "alert",
            "category": categories,
            "type": types,
            "action": item.rule_name(),
            "outcome": outcome,
            "severity": ecs_severity(r.severity),
            "id": item.id(),
            "dataset": "palisade.alerts",
            "module": "palisade",
            "count": r.connections,
        },
        "rule": {"id": r.rule, "name": item.rule_name(), "ruleset": "palisade"},
        "network": {"transport": transport},
        "observer": {
            "type": "ids",
            "vendor": "Palisade",
            "product": "palisade",
            "version": observer_version,
            "hostname": r.origin,
        },
        "host": {"name": r.origin},
        "palisade": {
            "class": r.class,
            "src": item.doc.get("src").cloned().unwrap_or(Value::Null),
            "dst": item.doc.get("dst").cloned().unwrap_or(Value::Null),
            "decision": item.doc.pointer("/evidence/decision").cloned().unwrap_or(Value::Null),
        },
    });
    let obj = doc.as_object_mut().expect("a literal object");
    if let Some(iana) = iana {
        obj["network"]["iana_number"] = Value::from(iana);
    }
    let mut side = |ecs_name: &str, side: &str| {
        let mut v = Map::new();
        if let Some(ip) = item.text(&[side, "ip"]) {
            v.insert("ip".into(), Value::from(ip));
        }
        if ecs_name == "destination"
            && let Some(port) = r.port
        {
            v.insert("port".into(), Value::from(port));
        }
        if !v.is_empty() {
            obj.insert(ecs_name.into(), Value::Object(v));
        }
    };
    side("source", "src");
    side("destination", "dst");
    if let Some(ns) = r.dst_namespace.as_deref().or(r.src_namespace.as_deref()) {
        let mut orchestrator = json!({"type": "kubernetes", "namespace": ns});
        if let Some(pod) = item.text(&["dst", "pod"]) {
            orchestrator["resource"] = json!({"type": "pod", "name": pod});
        }
        obj.insert("orchestrator".into(), orchestrator);
    }
    doc
}

/// The syslog severity (RFC 5424 table 2) of ours.
fn syslog_severity(severity: Severity) -> u8 {
    match severity {
        Severity::Critical => 2,
        Severity::High => 3,
        Severity::Medium => 4,
        Severity::Low => 5,
        Severity::Info => 6,
    }
}

/// The private enterprise number RFC 5612 reserves for documentation;
/// structured data needs an `@number` on names that are not IANA's.
const SD_ID: &str = "palisade@32473";

/// One RFC 5424 message: `<PRI>1 TIME HOST APP - MSGID [SD] MSG`.
pub fn syslog(item: &Item, facility: u8) -> String {
    let r = &item.stored.record;
    let pri = u16::from(facility) * 8 + u16::from(syslog_severity(r.severity));
    let mut sd = format!(
        "[{SD_ID} id=\"{}\" rule=\"{}\" severity=\"{}\"",
        sd_escape(item.id()),
        sd_escape(&r.rule),
        r.severity.as_str()
    );
    for (name, value) in [
        ("class", r.class.clone()),
        ("src", Some(item.endpoint("src"))),
        ("dst", Some(item.endpoint("dst"))),
        ("port", r.port.map(|p| p.to_string())),
        ("connections", Some(r.connections.to_string())),
    ] {
        if let Some(value) = value {
            sd.push_str(&format!(" {name}=\"{}\"", sd_escape(&value)));
        }
    }
    sd.push(']');
    format!(
        "<{pri}>1 {} {} palisade - {} {sd} {}",
        item.time(),
        header_field(&r.origin, 255),
        header_field(&r.rule, 32),
        r.summary.replace(['\n', '\r'], " ")
    )
}

/// SD-PARAM values escape `"`, `\` and `]` (RFC 5424 section 6.3.3).
fn sd_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Header fields are printable US-ASCII without spaces, of bounded length;
/// `-` stands for none.
fn header_field(value: &str, max: usize) -> String {
    let clean: String = value
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if clean.is_empty() { "-".into() } else { clean }
}

#[cfg(test)]
mod tests;
