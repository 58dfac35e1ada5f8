//! Deliveries through the built server: alerts posted to `palisade serve`
//! reach each configured sink in its destination's wire format, routed by
//! severity, rule and namespace; refusals are dead-lettered, temporary
//! failures retried as `Retry-After` says, and a delivery pending when the
//! server stops is made after it restarts. Alertmanager and rsyslog are
//! the real ones (Debian's packages); the destinations that cannot run
//! here are stand-ins that check the documented wire format.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use support::receiver::{Answer, Receiver, Request};
use support::{Daemon, Server, alertmanager, free_port, have, post_alerts, scratch, wait_until};

const BYPASS: &str = r#"{"id":"bypass-1","origin":"node-a","time":"2026-12-02T10:00:00Z","first_seen":"2026-12-02T10:00:00Z","rule":"FLOW-001","name":"policy-bypass","severity":"critical","summary":"web/fe reached shop/db:5432, which the policy denies","src":{"kind":"pod","ip":"10.0.1.5","namespace":"web","pod":"fe-1","workload":"web/fe[Deployment]"},"dst":{"kind":"pod","ip":"10.0.2.9","namespace":"shop","pod":"db-0","workload":"shop/db[StatefulSet]"},"protocol":"TCP","port":5432,"connections":1,"evidence":{"records":[]}}"#;
const BLOCKED: &str = r#"{"id":"blocked-1","origin":"node-a","first_seen":"2026-12-01T10:00:01Z","rule":"FLOW-003","name":"blocked-attempt","severity":"low","summary":"web/fe tried shop/db:9000, denied","src":{"kind":"pod","namespace":"web","workload":"web/fe[Deployment]"},"dst":{"kind":"pod","namespace":"shop","workload":"shop/db[StatefulSet]"},"protocol":"TCP","port":9000,"connections":4,"evidence":{"records":[]}}"#;

/// rsyslogd on loopback (UDP and TCP), writing what it parsed of each
/// message, field by field, to `out`.
fn rsyslog(dir: &Path, out: &Path) -> (Daemon, u16, u16) {
    let (udp, tcp) = (free_port(), free_port());
    let conf = format!(
        "global(workDirectory=\"{dir}\")\nmodule(load=\"imudp\")\nmodule(load=\"imtcp\")\ninput(type=\"imudp\" address=\"127.0.0.1\" port=\"{udp}\")\ninput(type=\"imtcp\" address=\"127.0.0.1\" port=\"{tcp}\")\ntemplate(name=\"fields\" type=\"string\" string=\"%syslogfacility%|%syslogseverity%|%hostname%|%app-name%|%msgid%|%structured-data%|%msg%\\n\")\n*.* action(type=\"omfile\" file=\"{out}\" template=\"fields\")\n",
        dir = dir.display(),
        out = out.display()
    );
    std::fs::write(dir.join("rsyslog.conf"), conf).unwrap();
    let child = Command::new("/usr/sbin/rsyslogd")
        .args(["-n", "-f"])
        .arg(dir.join("rsyslog.conf"))
        .arg("-i")
        .arg(dir.join("rsyslog.pid"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let listening = wait_until(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", tcp)).is_ok()
    });
    assert!(listening, "rsyslogd did not start");
    (Daemon(child), udp, tcp)
}

fn sinks_status(server: &Server) -> Value {
    let text = support::get(format!("{}/api/v1/sinks", server.url))
        .unwrap()
        .text()
        .unwrap();
    serde_json::from_str(&text).unwrap()
}

fn sink<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["sinks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no sink {name} in {status}"))
}

/// Falcosidekick's input check: 400 unless priority, rule, a time and
/// output fields are there.
fn falcosidekick(request: &Request, _: usize) -> Answer {
    let p = request.json();
    let valid = p["priority"].as_str().is_some_and(|s| !s.is_empty())
        && p["rule"].as_str().is_some_and(|s| !s.is_empty())
        && p["time"].as_str().is_some_and(|s| s.len() >= 20)
        && p["output_fields"]
            .as_object()
            .is_some_and(|o| !o.is_empty());
    if valid {
        (200, vec![], String::new())
    } else {
        (400, vec![], "invalid payload".into())
    }
}

/// Elasticsearch's `_bulk`: 200 with one item per action; every document
/// is created.
fn elasticsearch(request: &Request, _: usize) -> Answer {
    let actions = request.body.lines().step_by(2).count();
    let items: Vec<Value> = (0..actions)
        .map(|_| json!({"create": {"_index": ".ds-logs-palisade.alerts-default-2026.12.02-000001", "status": 201, "result": "created"}}))
        .collect();
    (
        200,
        vec![],
        json!({"took": 3, "errors": false, "items": items}).to_string(),
    )
}

#[test]
fn alerts_reach_every_sink_in_its_wire_format() {
    let test = "alerts_reach_every_sink_in_its_wire_format";
    if !have(
        &["/usr/bin/prometheus-alertmanager", "/usr/sbin/rsyslogd"],
        test,
    ) {
        return;
    }
    let dir = scratch("sinks-all");
    let (_am, am_url) = alertmanager(&dir);
    let syslog_out = dir.join("syslog.out");
    let (_rsyslog, udp, tcp) = rsyslog(&dir, &syslog_out);
    let (webhook, slack, teams) = (Receiver::ok(), Receiver::ok(), Receiver::ok());
    let falco = Receiver::start(falcosidekick);
    let es = Receiver::start(elasticsearch);
    let jsonl = dir.join("alerts.jsonl");
    let config = format!(
        "sinks:
- {{name: hook, type: webhook, url: '{}/hook', headers: {{X-Team: netsec}}}}
- {{name: chat, type: slack, url: '{}/services/T0/B0/x', min_severity: critical}}
- {{name: teams, type: teams, url: '{}/webhookb2/x', rules: [FLOW-003]}}
- {{name: sidekick, type: falcosidekick, url: '{}/'}}
- {{name: siem, type: elasticsearch, url: '{}', headers: {{Authorization: ApiKey abc}}}}
- {{name: oncall, type: alertmanager, url: '{am_url}', classes: [bypass], namespaces: [shop]}}
- {{name: syslog-udp, type: syslog, address: '127.0.0.1:{udp}'}}
- {{name: syslog-tcp, type: syslog, address: '127.0.0.1:{tcp}', transport: tcp, facility: 16}}
- {{name: file, type: jsonl, path: '{}'}}
",
        webhook.url,
        slack.url,
        teams.url,
        falco.url,
        es.url,
        jsonl.display()
    );
    std::fs::write(dir.join("serve.yaml"), config).unwrap();
    let config_arg = dir.join("serve.yaml").display().to_string();
    let server = Server::start(&dir.join("alerts.db"), &["--config", &config_arg]);
    post_alerts(&server, &format!("{BYPASS}\n{BLOCKED}\n"));
    let within = Duration::from_secs(10);

    let hooks = webhook.wait_for(2, within);
    assert_eq!(hooks.len(), 2);
    for hook in &hooks {
        assert_eq!(
            (hook.method.as_str(), hook.path.as_str()),
            ("POST", "/hook")
        );
        assert_eq!(hook.header("content-type"), Some("application/json"));
        assert_eq!(hook.header("x-team"), Some("netsec"));
        let id = hook.json()["id"].as_str().unwrap().to_string();
        assert_eq!(hook.header("idempotency-key"), Some(id.as_str()));
    }

    let chat = slack.wait_for(1, within);
    assert_eq!(chat.len(), 1, "only the critical alert is routed to chat");
    let message = chat[0].json();
    assert!(
        message["text"]
            .as_str()
            .unwrap()
            .contains("FLOW-001 policy-bypass")
    );
    assert_eq!(message["attachments"][0]["color"], "#dd0000");

    let cards = teams.wait_for(1, within);
    assert_eq!(cards.len(), 1, "only FLOW-003 is routed to teams");
    assert_eq!(cards[0].json()["@type"], "MessageCard");
    assert!(cards[0].json()["text"].as_str().unwrap().contains("9000"));

    let falco_posts = falco.wait_for(2, within);
    assert_eq!(falco_posts.len(), 2);
    assert!(
        falco_posts
            .iter()
            .any(|p| p.json()["priority"] == "Critical")
    );
    assert!(falco_posts.iter().any(|p| p.json()["priority"] == "Notice"));

    let bulks = es.wait_for(1, within);
    let bulk = &bulks[0];
    assert_eq!(bulk.path, "/_bulk");
    assert_eq!(bulk.header("content-type"), Some("application/x-ndjson"));
    assert_eq!(bulk.header("authorization"), Some("ApiKey abc"));
    assert!(bulk.body.ends_with('\n'), "_bulk bodies end with a newline");
    let lines: Vec<Value> = bulk
        .body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let total: usize = bulks.iter().map(|b| b.body.lines().count()).sum();
    assert_eq!(total, 4, "two actions, two documents");
    assert_eq!(lines[0]["create"]["_index"], "logs-palisade.alerts-default");
    assert!(lines[0]["create"]["_id"].is_string());
    assert_eq!(lines[1]["ecs"]["version"], "9.4.0");
    assert_eq!(lines[1]["event"]["kind"], "alert");

    let listed = support::alertmanager_alerts(&am_url, within);
    assert!(
        listed.as_array().is_some_and(|a| !a.is_empty()),
        "alertmanager has the alert: {listed} {}",
        sinks_status(&server)
    );
    let am = &listed[0];
    assert_eq!(
        listed.as_array().unwrap().len(),
        1,
        "only the bypass is routed there"
    );
    assert_eq!(am["labels"]["alertname"], "policy-bypass");
    assert_eq!(am["labels"]["namespace"], "shop");
    assert_eq!(am["labels"]["severity"], "critical");
    assert_eq!(am["annotations"]["alert_id"], "bypass-1");
    // The alert's time is ahead of this machine's clock until 10:00 UTC;
    // Alertmanager refuses starts in the future, so it is clamped.
    let starts = am["startsAt"].as_str().unwrap();
    assert!(starts <= "2026-12-02T10:00:00.000Z", "{starts}");

    let mut logged = String::new();
    let both = wait_until(within, || {
        logged = std::fs::read_to_string(&syslog_out).unwrap_or_default();
        logged.lines().count() >= 4
    });
    assert!(both, "rsyslog got both alerts on both transports: {logged}");
    // facility|severity|host|app|msgid|structured data|message
    assert!(
        logged.lines().any(|l| l.starts_with("13|2|node-a|palisade|FLOW-001|[palisade@32473 id=\"bypass-1\" rule=\"FLOW-001\" severity=\"critical\" class=\"bypass\" src=\"web/fe[Deployment\\]\"")),
        "{logged}"
    );
    assert!(
        logged
            .lines()
            .any(|l| l.starts_with("16|5|node-a|palisade|FLOW-003|")),
        "{logged}"
    );

    let file = std::fs::read_to_string(&jsonl).unwrap_or_default();
    assert_eq!(file.lines().count(), 2, "{file}");

    let mut status = Value::Null;
    let settled = wait_until(within, || {
        status = sinks_status(&server);
        status["sinks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["pending"] == 0 && s["dead"] == 0)
    });
    assert!(settled, "{status}");
    assert_eq!(sink(&status, "hook")["delivered"], 2);
    assert_eq!(sink(&status, "chat")["delivered"], 1);
    server.stop();
}

#[test]
fn refusals_are_dead_lettered_and_temporary_failures_retried() {
    let dir = scratch("sinks-retry");
    // 503 with Retry-After: 1 the first time, then taken.
    let flaky = Receiver::start(|_, n| {
        if n == 0 {
            (503, vec![("retry-after", "1".into())], "busy".into())
        } else {
            (200, vec![], "ok".into())
        }
    });
    let refusing = Receiver::start(|_, _| (400, vec![], "invalid_payload".into()));
    // Per-item answers of a 200 _bulk: created, a mapping error, a 429.
    let es = Receiver::start(|request, n| {
        let actions = request.body.lines().step_by(2).count();
        let items: Vec<Value> = (0..actions)
            .map(|i| match (n, i) {
                (0, 1) => json!({"create": {"status": 400, "error": {"type": "document_parsing_exception", "reason": "failed to parse field [port]"}}}),
                (0, 2) => json!({"create": {"status": 429, "error": {"type": "es_rejected_execution_exception", "reason": "queue full"}}}),
                _ => json!({"create": {"status": 201}}),
            })
            .collect();
        (
            200,
            vec![],
            json!({"errors": true, "items": items}).to_string(),
        )
    });
    let config = format!(
        "sinks:\n- {{name: flaky, type: webhook, url: '{}'}}\n- {{name: refusing, type: slack, url: '{}'}}\n- {{name: siem, type: elasticsearch, url: '{}'}}\n",
        flaky.url, refusing.url, es.url
    );
    std::fs::write(dir.join("serve.yaml"), &config).unwrap();
    let config_arg = dir.join("serve.yaml").display().to_string();
    let server = Server::start(&dir.join("alerts.db"), &["--config", &config_arg]);
    let third = BLOCKED.replace("blocked-1", "blocked-2");
    post_alerts(&server, &format!("{BYPASS}\n{BLOCKED}\n{third}\n"));
    let within = Duration::from_secs(10);
    let mut status = Value::Null;
    let settled = wait_until(within, || {
        status = sinks_status(&server);
        sink(&status, "flaky")["delivered"] == 3
            && sink(&status, "refusing")["dead"] == 3
            && sink(&status, "siem")["pending"] == 0
    });
    assert!(settled, "{status}");
    let tries = flaky.requests();
    assert_eq!(tries.len(), 4, "one retry, for the alert that met the 503");
    let first = tries[0].header("idempotency-key").unwrap();
    assert_eq!(
        tries
            .iter()
            .filter(|t| t.header("idempotency-key") == Some(first))
            .count(),
        2,
        "the retry carries the same idempotency key"
    );
    assert_eq!(refusing.requests().len(), 3, "a 400 is not retried");
    assert!(
        sink(&status, "refusing")["last_error"]
            .as_str()
            .unwrap()
            .contains("invalid_payload")
    );
    let siem = sink(&status, "siem");
    assert_eq!(siem["dead"], 1, "the mapping error: {status}");
    assert_eq!(siem["delivered"], 2, "created, and the 429 on its retry");
    assert!(siem["last_error"].as_str().is_some());
    server.stop();
}

#[test]
fn a_delivery_pending_when_the_server_stops_is_made_after_it_restarts() {
    let dir = scratch("sinks-restart");
    let port = free_port();
    let config =
        format!("sinks:\n- {{name: hook, type: webhook, url: 'http://127.0.0.1:{port}/in'}}\n");
    std::fs::write(dir.join("serve.yaml"), &config).unwrap();
    let config_arg = dir.join("serve.yaml").display().to_string();
    let db = dir.join("alerts.db");
    let server = Server::start(&db, &["--config", &config_arg]);
    post_alerts(&server, BYPASS);
    let mut status = Value::Null;
    let tried = wait_until(Duration::from_secs(5), || {
        status = sinks_status(&server);
        sink(&status, "hook")["retried"].as_u64() >= Some(1)
    });
    assert!(tried, "the unreachable webhook was tried: {status}");
    assert_eq!(sink(&status, "hook")["pending"], 1);
    server.stop();

    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let hook = Receiver::on(listener, |_, _| (200, vec![], "ok".into()));
    let server = Server::start(&db, &["--config", &config_arg]);
    let got = hook.wait_for(1, Duration::from_secs(10));
    assert_eq!(got.len(), 1, "delivered after the restart");
    assert_eq!(got[0].json()["id"], "bypass-1");
    server.stop();
}
