//! `palisade up` on the lab: the server and the node's agent in one
//! process. A bypass made in the lab must reach the store, through the
//! agent's forwarder and the server's ingest, and be listed by the read
//! API within seconds; from the store it must be delivered to a webhook
//! receiver and to Debian's Alertmanager, and appear on the dashboard in
//! headless Chromium. On SIGTERM the process exits 0 with nothing left in
//! the spool. Root and BPF only.

#[path = "../../sense/tests/lab/mod.rs"]
mod lab;
mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use lab::{Lab, client_and_db, shop_manifests, skip_or_fail, start_agent, stop_agent};
use support::browser::{Browser, CHROMEDRIVER};
use support::receiver::Receiver;
use support::{alertmanager, alertmanager_alerts, free_port, get_json, have};

const ALERTMANAGER: &str = "/usr/bin/prometheus-alertmanager";

#[test]
fn a_bypass_in_the_lab_reaches_the_store_of_palisade_up() {
    let test = "a_bypass_in_the_lab_reaches_the_store_of_palisade_up";
    if !have(&[ALERTMANAGER, CHROMEDRIVER, "/usr/bin/chromium"], test) {
        return;
    }
    let mut lab = match Lab::start(&client_and_db(&[5432, 6379])) {
        Ok(lab) => lab,
        Err(why) => return skip_or_fail(test, &why),
    };
    let dir = std::env::temp_dir().join(format!("palisade-up-lab-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let policy = dir.join("shop.yaml");
    std::fs::write(&policy, shop_manifests(&lab, &[5432])).unwrap();
    let (_alertmanager, am_url) = alertmanager(&dir);
    let webhook = Receiver::ok();
    let sinks = dir.join("sinks.yaml");
    std::fs::write(
        &sinks,
        format!(
            "sinks:\n- {{name: hook, type: webhook, url: '{}/hook'}}\n- {{name: oncall, type: alertmanager, url: '{am_url}'}}\n",
            webhook.url
        ),
    )
    .unwrap();
    let port = free_port();
    let metrics = format!("127.0.0.1:{}", free_port());
    let mut command = Command::new(env!("CARGO_BIN_EXE_palisade"));
    command
        .args([
            "up",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--node",
            "lab-node",
        ])
        .arg("--store")
        .arg(format!("sqlite:{}", dir.join("alerts.db").display()))
        .arg("--spool")
        .arg(dir.join("spool.jsonl"))
        .arg("--policy")
        .arg(&policy)
        .arg("--server-config")
        .arg(&sinks)
        .arg("--output")
        .arg(dir.join("alerts.jsonl"))
        .args(["--metrics-addr", &metrics]);
    let Some(up) = start_agent(command) else {
        return skip_or_fail(test, "palisade up did not start its agent");
    };

    lab.serve_tcp("db", 6379).unwrap();
    assert!(lab.connect_tcp("client", "db", 6379, Duration::from_millis(700)));
    let url = format!("http://127.0.0.1:{port}/api/v1/alerts?rule=FLOW-001&namespace=shop");
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut answer = get_json(&url);
    while answer["count"] != 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        answer = get_json(&url);
    }
    assert_eq!(answer["count"], 1, "{answer}");
    let bypass = &answer["alerts"][0]["alert"];
    assert_eq!(bypass["origin"], "lab-node");
    assert_eq!(bypass["port"], 6379);
    assert_eq!(bypass["src"]["pod"], "client");
    assert_eq!(bypass["dst"]["pod"], "db");
    assert_eq!(bypass["process"]["pod_uid"], lab.pod("client").uid.as_str());
    let id = bypass["id"].as_str().unwrap().to_string();
    // The store keeps the snapshot the agent judged it against.
    let version = bypass["evidence"]["snapshot"].as_str().unwrap();
    let snapshot = get_json(&format!(
        "http://127.0.0.1:{port}/api/v1/snapshots/{version}"
    ));
    assert_eq!(snapshot["version"], version, "{snapshot}");
    assert!(
        snapshot["graph"]["edges"]
            .as_array()
            .is_some_and(|e| !e.is_empty())
    );

    // Delivered from the store: to the webhook, with its id as the
    // idempotency key, and to Alertmanager.
    let hooks = webhook.wait_for(1, Duration::from_secs(10));
    assert_eq!(hooks.len(), 1, "one delivery to the webhook");
    assert_eq!(hooks[0].json()["id"], id.as_str());
    assert_eq!(hooks[0].header("idempotency-key"), Some(id.as_str()));
    let held = alertmanager_alerts(&am_url, Duration::from_secs(10));
    assert!(
        held.as_array().is_some_and(|a| !a.is_empty()),
        "alertmanager holds the bypass: {held}"
    );
    assert_eq!(held[0]["labels"]["rule_id"], "FLOW-001", "{held}");
    assert_eq!(held[0]["labels"]["namespace"], "shop", "{held}");

    // On the dashboard: the bypass edge in red on the graph, and the alert
    // in the table.
    let browser = Browser::start();
    browser.open(&format!("http://127.0.0.1:{port}/"));
    let within = Duration::from_secs(20);
    assert!(
        browser.wait_for("return window.palisadeGraph !== undefined", within),
        "the graph never drew: {}",
        browser.run("return window.palisadeError || document.body.innerText.slice(0, 500)")
    );
    let colour = browser.run(
        "const e = window.palisadeCy.edges(\"[class = 'bypass']\"); return e.length ? e[0].style('line-color') : null",
    );
    assert_eq!(colour, "rgb(221,0,0)", "the bypass edge is red");
    browser.run("document.querySelector('nav button[data-page=alerts]').click()");
    let row =
        format!("return document.querySelector('#alerts tbody tr[data-id=\"{id}\"]') !== null");
    assert!(
        browser.wait_for(&row, within),
        "the bypass is in the alerts table"
    );
    drop(browser);

    // The agent's metrics count what its forwarder delivered.
    let scrape = format!("http://{metrics}/metrics");
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut text = String::new();
    while !text.contains("palisade_agent_forwarded_total{outcome=\"delivered\"} 1")
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(200));
        text = palisade_send::http::client()
            .get(&scrape)
            .send()
            .and_then(|r| r.text())
            .unwrap_or_default();
    }
    assert!(
        text.contains("palisade_agent_forwarded_total{outcome=\"delivered\"} 1"),
        "{text}"
    );
    assert!(text.contains("palisade_agent_spool_pending 0"), "{text}");

    stop_agent(up);
    let spool = std::fs::read_to_string(dir.join("spool.jsonl")).unwrap_or_default();
    assert!(spool.is_empty(), "everything was delivered: {spool}");
    let _ = std::fs::remove_dir_all(&dir);
}
