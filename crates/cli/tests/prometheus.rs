//! Debian's Prometheus scrapes a live `palisade serve`, and every query of
//! the Grafana dashboard shipped in `deploy/grafana` is evaluated against
//! it: each must be valid PromQL over metrics the server really exports,
//! and return data.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::receiver::Receiver;
use support::{Daemon, Server, free_port, have, scratch};

fn query(prometheus: &str, expr: &str) -> Value {
    let encoded: String = expr
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    let text = support::get(format!("{prometheus}/api/v1/query?query={encoded}"))
        .and_then(|r| r.text())
        .unwrap_or_default();
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

fn dashboard_queries() -> Vec<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/grafana/palisade.json"
    );
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "panels use the template variable"
        );
        for target in panel["targets"].as_array().unwrap() {
            exprs.push(target["expr"].as_str().unwrap().to_string());
        }
    }
    exprs
}

#[test]
fn every_dashboard_query_returns_data_from_a_live_server() {
    let test = "every_dashboard_query_returns_data_from_a_live_server";
    if !have(&["/usr/bin/prometheus"], test) {
        return;
    }
    let dir = scratch("prometheus");
    let hook = Receiver::ok();
    std::fs::write(
        dir.join("serve.yaml"),
        format!(
            "sinks:\n- {{name: hook, type: webhook, url: '{}'}}\n",
            hook.url
        ),
    )
    .unwrap();
    let config = dir.join("serve.yaml").display().to_string();
    let server = Server::start(&dir.join("alerts.db"), &["--config", &config]);
    let target = server.url.trim_start_matches("http://").to_string();
    let port = free_port();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!("global: {{scrape_interval: 1s}}\nscrape_configs:\n- job_name: palisade\n  static_configs: [{{targets: ['{target}']}}]\n"),
    )
    .unwrap();
    let _prometheus = Daemon(
        Command::new("/usr/bin/prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let prometheus = format!("http://127.0.0.1:{port}");

    // Traffic for every panel: alerts of two rules, delivered once each,
    // over several scrapes so that rates have two samples.
    let client = palisade_send::http::client();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut scraped = false;
    for n in 0.. {
        let body = format!(
            r#"{{"id":"a{n}","origin":"o","rule":"FLOW-00{}","severity":"critical","summary":"s","protocol":"TCP"}}"#,
            1 + n % 2
        );
        client
            .post(format!("{}/api/v1/ingest/alerts", server.url))
            .body(body)
            .send()
            .unwrap();
        std::thread::sleep(Duration::from_millis(500));
        let up = query(&prometheus, "count_over_time(up{job=\"palisade\"}[1m])");
        let samples = up["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|v| v.parse::<u32>().ok());
        if n >= 4 && samples.is_some_and(|s| s >= 4) {
            scraped = true;
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never scraped the server: {up}"
        );
    }
    assert!(scraped);
    let up = query(&prometheus, "up{job=\"palisade\"}");
    assert_eq!(up["data"]["result"][0]["value"][1], "1", "{up}");
    for expr in dashboard_queries() {
        let answer = query(&prometheus, &expr);
        assert_eq!(answer["status"], "success", "{expr}: {answer}");
        let result = answer["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(!result.is_empty(), "{expr} returned nothing");
    }
    server.stop();
}
