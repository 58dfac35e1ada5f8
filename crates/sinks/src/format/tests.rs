use palisade_inventory::severity::Severity;
use palisade_store::{AlertRecord, StoredAlert};
use serde_json::json;

use super::*;

fn stored() -> StoredAlert {
    let doc = json!({
        "id": "a1b2", "origin": "node-a", "rule": "FLOW-001", "name": "policy-bypass",
        "severity": "critical", "summary": "web/fe reached db/pg:5432 although denied",
        "src": {"kind": "pod", "ip": "10.0.1.5", "namespace": "web", "pod": "fe-1", "workload": "web/fe[Deployment]"},
        "dst": {"kind": "pod", "ip": "10.0.2.9", "namespace": "db", "pod": "pg-0", "workload": "db/pg[StatefulSet]"},
        "protocol": "TCP", "port": 5432, "connections": 3,
        "process": {"pid": 42, "comm": "curl", "executable": "/usr/bin/curl"},
        "evidence": {"records": [], "decision": {"allowed": false}},
    });
    StoredAlert {
        record: AlertRecord {
            id: "a1b2".into(),
            origin: "node-a".into(),
            time_us: 1_796_205_600_123_456,
            rule: "FLOW-001".into(),
            severity: Severity::Critical,
            class: Some("bypass".into()),
            src_namespace: Some("web".into()),
            src_workload: Some("web/fe[Deployment]".into()),
            dst_namespace: Some("db".into()),
            dst_workload: Some("db/pg[StatefulSet]".into()),
            protocol: "TCP".into(),
            port: Some(5432),
            connections: 3,
            last_seen_us: None,
            summary: "web/fe reached db/pg:5432 although denied".into(),
            doc: doc.to_string(),
        },
        received_us: 0,
        deliveries: 1,
    }
}

#[test]
fn falco_payload_meets_falcosidekicks_input_contract() {
    let s = stored();
    let p = falco(&Item::new(&s));
    assert_eq!(p["priority"], "Critical");
    assert_eq!(p["rule"], "policy-bypass");
    assert_eq!(
        p["time"], "2026-12-02T10:00:00.123456000Z",
        "RFC 3339, nanoseconds"
    );
    assert_eq!(p["source"], "palisade");
    assert_eq!(p["hostname"], "node-a");
    assert_eq!(p["output_fields"]["k8s.ns.name"], "web");
    assert_eq!(p["output_fields"]["k8s.pod.name"], "fe-1");
    assert_eq!(p["output_fields"]["fd.sip"], "10.0.2.9");
    assert_eq!(p["output_fields"]["fd.sport"], 5432);
    assert_eq!(p["output_fields"]["proc.name"], "curl");
    assert_eq!(
        p["tags"],
        json!(["network", "k8s_networkpolicy", "FLOW-001"])
    );
    for (severity, priority) in [
        (Severity::High, "Error"),
        (Severity::Medium, "Warning"),
        (Severity::Low, "Notice"),
        (Severity::Info, "Informational"),
    ] {
        assert_eq!(falco_priority(severity), priority);
    }
}

#[test]
fn alertmanager_labels_are_bounded_and_identify_the_edge() {
    let s = stored();
    let a = alertmanager(&Item::new(&s), i64::MAX);
    let labels = a["labels"].as_object().unwrap();
    assert_eq!(labels["alertname"], "policy-bypass");
    assert_eq!(labels["severity"], "critical");
    assert_eq!(labels["namespace"], "db");
    assert_eq!(labels["dst_workload"], "db/pg[StatefulSet]");
    assert!(!labels.contains_key("pod"), "no per-pod label");
    assert!(labels.keys().all(|k| !k.contains("ip")), "no addresses");
    assert_eq!(a["annotations"]["alert_id"], "a1b2");
    assert_eq!(a["startsAt"], "2026-12-02T10:00:00.123456Z");
    let early = alertmanager(&Item::new(&s), 1_796_205_000_000_000);
    assert_eq!(
        early["startsAt"], "2026-12-02T09:50:00.000000Z",
        "never in the future"
    );
}

#[test]
fn ecs_document_uses_the_schemas_fields_and_values() {
    let s = stored();
    let d = ecs(&Item::new(&s), "0.1.0");
    assert_eq!(d["ecs"]["version"], ECS_VERSION);
    assert_eq!(d["event"]["kind"], "alert");
    assert_eq!(
        d["event"]["category"],
        json!(["network", "intrusion_detection"])
    );
    assert_eq!(d["event"]["type"], json!(["connection", "allowed"]));
    assert_eq!(d["event"]["outcome"], "success");
    assert_eq!(d["event"]["severity"], 99);
    assert_eq!(d["event"]["dataset"], "palisade.alerts");
    assert_eq!(d["source"]["ip"], "10.0.1.5");
    assert_eq!(d["destination"]["port"], 5432);
    assert_eq!(d["network"]["transport"], "tcp");
    assert_eq!(d["network"]["iana_number"], "6");
    assert_eq!(d["orchestrator"]["resource"]["name"], "pg-0");
    assert_eq!(d["rule"]["id"], "FLOW-001");
    assert_eq!(d["palisade"]["src"]["workload"], "web/fe[Deployment]");
    let mut blocked = stored();
    blocked.record.class = Some("blocked-attempt".into());
    let d = ecs(&Item::new(&blocked), "0.1.0");
    assert_eq!(d["event"]["type"], json!(["connection", "denied"]));
    assert_eq!(d["event"]["outcome"], "failure");
}

#[test]
fn syslog_messages_follow_rfc_5424_and_escape_structured_data() {
    let mut s = stored();
    s.record.summary = "line one\nline \"two\"".into();
    s.record.origin = "node a".into();
    let line = syslog(&Item::new(&s), 13);
    // facility 13 (log audit) * 8 + severity 2 (critical) = 106
    assert!(
        line.starts_with("<106>1 2026-12-02T10:00:00.123456Z nodea palisade - FLOW-001 [palisade@32473 id=\"a1b2\" rule=\"FLOW-001\" severity=\"critical\" class=\"bypass\" src=\"web/fe[Deployment\\]\" dst=\"db/pg[StatefulSet\\]\" port=\"5432\" connections=\"3\"] "),
        "{line}"
    );
    assert!(line.ends_with(" line one line \"two\""), "{line}");
}

#[test]
fn chat_messages_carry_the_summary_and_the_colour_of_the_severity() {
    let s = stored();
    let m = slack(&Item::new(&s));
    assert!(
        m["text"]
            .as_str()
            .unwrap()
            .starts_with("[CRITICAL] FLOW-001 policy-bypass: ")
    );
    assert_eq!(m["attachments"][0]["color"], "#dd0000");
    assert_eq!(
        m["attachments"][0]["title"],
        "web/fe[Deployment] → db/pg[StatefulSet]:5432 (TCP)"
    );
    let t = teams(&Item::new(&s));
    assert_eq!(t["@type"], "MessageCard");
    assert_eq!(t["themeColor"], "dd0000");
    assert_eq!(t["sections"][0]["facts"][1]["value"], "db/pg[StatefulSet]");
}
