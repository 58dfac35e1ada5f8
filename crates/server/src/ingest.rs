//! What senders post to `/api/v1/ingest/alerts`: alerts in Palisade's
//! alert schema plus the `id` and `origin` the sender gives them, as a JSON
//! array or as JSON lines (`application/x-ndjson`). Every item is checked
//! on its own; a bad one is rejected with its index and reason and never
//! keeps the good ones of its batch from being committed.

use palisade_flow::parse_rfc3339;
use palisade_inventory::severity::Severity;
use palisade_store::AlertRecord;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Longest id and origin accepted: ids are 32 hex digits; origins are
/// node or host names (at most 253 characters in DNS).
const MAX_ID: usize = 128;
const MAX_ORIGIN: usize = 253;

#[derive(Deserialize)]
struct WireAlert {
    id: String,
    origin: String,
    #[serde(default)]
    time: Option<String>,
    #[serde(default)]
    first_seen: Option<String>,
    #[serde(default)]
    last_seen: Option<String>,
    rule: String,
    severity: String,
    summary: String,
    #[serde(default)]
    src: WireEndpoint,
    #[serde(default)]
    dst: WireEndpoint,
    #[serde(default)]
    protocol: String,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default = "one")]
    connections: u64,
}

fn one() -> u64 {
    1
}

#[derive(Deserialize, Default)]
struct WireEndpoint {
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    workload: Option<String>,
}

/// An item the server refused, by its place in the batch (0-based).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rejected {
    pub index: usize,
    pub reason: String,
}

/// The batch split into what will be committed and what was refused.
#[derive(Debug, Default)]
pub struct Checked {
    pub records: Vec<AlertRecord>,
    pub rejected: Vec<Rejected>,
}

/// The body could not be read as a batch at all.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BodyError {
    #[error("the body is empty")]
    Empty,
    #[error("the body is not UTF-8")]
    NotUtf8,
    #[error("the body is not a JSON array of alerts: {0}")]
    Array(String),
}

/// Splits and checks a body: a JSON array, or JSON lines. `now_us`
/// stands in for a missing time.
pub fn check_body(body: &[u8], now_us: i64) -> Result<Checked, BodyError> {
    let text = std::str::from_utf8(body).map_err(|_| BodyError::NotUtf8)?;
    if text.trim().is_empty() {
        return Err(BodyError::Empty);
    }
    let mut checked = Checked::default();
    // An array is read as one JSON value; anything else as JSON lines,
    // one alert per line.
    if text.trim_start().starts_with('[') {
        let items: Vec<&RawValue> =
            serde_json::from_str(text).map_err(|e| BodyError::Array(e.to_string()))?;
        for (index, item) in items.into_iter().enumerate() {
            checked.push(index, check_item(item.get(), now_us));
        }
        return Ok(checked);
    }
    for (index, line) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        checked.push(index, check_item(line, now_us));
    }
    Ok(checked)
}

impl Checked {
    fn push(&mut self, index: usize, item: Result<AlertRecord, String>) {
        match item {
            Ok(record) => self.records.push(record),
            Err(reason) => self.rejected.push(Rejected { index, reason }),
        }
    }
}

/// One alert, checked; the document stored is the item as sent.
pub fn check_item(json: &str, now_us: i64) -> Result<AlertRecord, String> {
    let wire: WireAlert = serde_json::from_str(json).map_err(|e| e.to_string())?;
    if wire.id.is_empty() || wire.id.len() > MAX_ID {
        return Err(format!("`id` must be 1 to {MAX_ID} characters"));
    }
    if wire.origin.is_empty() || wire.origin.len() > MAX_ORIGIN {
        return Err(format!("`origin` must be 1 to {MAX_ORIGIN} characters"));
    }
    if wire.rule.is_empty() {
        return Err("`rule` is empty".into());
    }
    let severity = Severity::parse(&wire.severity).ok_or_else(|| {
        format!(
            "`severity` `{}` is not info, low, medium, high or critical",
            wire.severity
        )
    })?;
    let time_us = match wire.first_seen.as_deref().or(wire.time.as_deref()) {
        Some(t) => parse_rfc3339(t).map_err(|e| format!("`first_seen` `{t}`: {e}"))?,
        None => now_us,
    };
    let last_seen_us = match wire.last_seen.as_deref() {
        Some(t) => Some(parse_rfc3339(t).map_err(|e| format!("`last_seen` `{t}`: {e}"))?),
        None => None,
    };
    Ok(AlertRecord {
        class: palisade_detect::class_of_rule(&wire.rule).map(|c| c.as_str().to_string()),
        id: wire.id,
        origin: wire.origin,
        time_us,
        rule: wire.rule,
        severity,
        src_namespace: wire.src.namespace,
        src_workload: wire.src.workload,
        dst_namespace: wire.dst.namespace,
        dst_workload: wire.dst.workload,
        protocol: wire.protocol,
        port: wire.port,
        connections: wire.connections,
        last_seen_us,
        summary: wire.summary,
        doc: json.trim().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"id":"a1","origin":"node-a","time":"2026-12-02T10:00:00Z","rule":"FLOW-001","name":"policy-bypass","severity":"critical","summary":"s","src":{"kind":"pod","namespace":"web","workload":"web/fe[Deployment]"},"dst":{"kind":"pod","namespace":"db"},"protocol":"tcp","port":5432,"connections":3,"first_seen":"2026-12-02T10:00:00.5Z","last_seen":"2026-12-02T10:00:09Z"}"#;

    #[test]
    fn a_good_alert_keeps_its_fields_and_its_document() {
        let record = check_item(GOOD, 0).unwrap();
        assert_eq!(record.id, "a1");
        assert_eq!(record.class.as_deref(), Some("bypass"));
        assert_eq!(record.time_us, 1_796_205_600_500_000, "first_seen wins");
        assert_eq!(record.last_seen_us, Some(1_796_205_609_000_000));
        assert_eq!(record.src_workload.as_deref(), Some("web/fe[Deployment]"));
        assert_eq!(record.dst_namespace.as_deref(), Some("db"));
        assert_eq!(record.port, Some(5432));
        assert_eq!(record.connections, 3);
        assert_eq!(record.doc, GOOD);
    }

    #[test]
    fn each_bad_item_is_named_and_the_good_ones_stay() {
        let body = format!(
            "[{GOOD}, {{\"id\":\"b\"}}, {}, {}, {}, 7]",
            GOOD.replace("critical", "urgent"),
            GOOD.replace("\"a1\"", "\"\""),
            GOOD.replace("2026-12-02T10:00:00.5Z", "yesterday"),
        );
        let checked = check_body(body.as_bytes(), 0).unwrap();
        assert_eq!(checked.records.len(), 1);
        let reasons: Vec<(usize, &str)> = checked
            .rejected
            .iter()
            .map(|r| (r.index, r.reason.as_str()))
            .collect();
        assert_eq!(reasons.len(), 5, "{reasons:?}");
        assert!(
            reasons[0].1.contains("missing field `origin`"),
            "{reasons:?}"
        );
        assert!(reasons[1].1.contains("`urgent`"), "{reasons:?}");
        assert!(reasons[2].1.contains("`id`"), "{reasons:?}");
        assert!(reasons[3].1.contains("`yesterday`"), "{reasons:?}");
        assert_eq!(reasons[4].0, 5);
    }

    #[test]
    fn json_lines_are_checked_line_by_line() {
        let body = format!("{GOOD}\n{{not json\n\n{GOOD}\n");
        let checked = check_body(body.as_bytes(), 0).unwrap();
        assert_eq!(checked.records.len(), 2);
        assert_eq!(checked.rejected.len(), 1);
        assert_eq!(checked.rejected[0].index, 1);
    }

    #[test]
    fn a_body_that_is_no_batch_is_refused_whole() {
        assert_eq!(check_body(b"  ", 0).unwrap_err(), BodyError::Empty);
        assert_eq!(
            check_body(&[0xff, 0xfe], 0).unwrap_err(),
            BodyError::NotUtf8
        );
        assert!(matches!(
            check_body(b"[{\"id\":1}", 0),
            Err(BodyError::Array(_))
        ));
    }

    #[test]
    fn a_missing_time_is_the_time_of_arrival() {
        let json = r#"{"id":"x","origin":"o","rule":"LOG-1","severity":"low","summary":"s"}"#;
        let record = check_item(json, 77).unwrap();
        assert_eq!(record.time_us, 77);
        assert_eq!(record.class, None);
        assert_eq!(record.connections, 1);
    }
}
