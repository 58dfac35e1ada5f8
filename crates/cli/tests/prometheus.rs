//! Debian's Prometheus scrapes a live `palisade serve` and a live
//! `palisade agent` (root and BPF: the agent's queries are skipped loudly
//! without them, and fail in CI), and every query of the Grafana dashboard
//! shipped in `deploy/grafana` is evaluated against them: each must be
//! valid PromQL over metrics Palisade really exports, and return data.

#[path = "../../sense/tests/lab/mod.rs"]
mod lab;
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
    // An agent forwarding to the server, watching this machine.
    let agent_metrics = format!("127.0.0.1:{}", free_port());
    let mut command = Command::new(env!("CARGO_BIN_EXE_palisade"));
    command
        .args(["agent", "--node", "ci-node", "--server", &server.url])
        .args([
            "--policy",
            concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/shop"),
        ])
        .args(["--metrics-addr", &agent_metrics])
        .arg("--spool")
        .arg(dir.join("spool.jsonl"))
        .arg("--output")
        .arg(dir.join("agent.jsonl"));
    let agent = lab::start_agent(command);
    if agent.is_none() {
        lab::skip_or_fail(
            &format!("{test} (the agent's panels)"),
            "the agent did not start",
        );
    }
    let port = free_port();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!("global: {{scrape_interval: 1s}}\nscrape_configs:\n- job_name: palisade\n  static_configs: [{{targets: ['{target}']}}]\n- job_name: agent\n  static_configs: [{{targets: ['{agent_metrics}']}}]\n"),
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
        // A new connection, for the agent to see.
        drop(std::net::TcpStream::connect(&target));
        std::thread::sleep(Duration::from_millis(500));
        // How many of the targets have been scraped four times.
        let up = query(&prometheus, "count(count_over_time(up[1m]) >= 4)");
        let ready = up["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|v| v.parse::<usize>().ok());
        if n >= 4 && ready == Some(1 + usize::from(agent.is_some())) {
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
    if agent.is_some() {
        let up = query(&prometheus, "up{job=\"agent\"}");
        assert_eq!(up["data"]["result"][0]["value"][1], "1", "{up}");
    }
    for expr in dashboard_queries() {
        if agent.is_none() && expr.contains("palisade_agent_") {
            continue;
        }
        let answer = query(&prometheus, &expr);
        assert_eq!(answer["status"], "success", "{expr}: {answer}");
        let result = answer["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(!result.is_empty(), "{expr} returned nothing");
    }
    if let Some(agent) = agent {
        lab::stop_agent(agent);
    }
    server.stop();
}
