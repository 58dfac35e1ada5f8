//! The dashboard in headless Chromium (Debian's chromium and
//! chromedriver): the graph of the shop example shows the declared edges
//! and the observed bypass in red, a click on it shows the policy decision,
//! an alert posted while the page is open appears without a reload, and a
//! filter narrows the table. A screenshot is kept as a CI artifact
//! (`target/artifacts/dashboard.png`).

mod support;

use std::path::Path;
use std::time::Duration;

use support::browser::{Browser, CHROMEDRIVER};
use support::{Server, have, post_alerts, scratch};

fn alert(id: &str, rule: &str, severity: &str, port: u16) -> String {
    let class_dst = "\"dst\":{\"kind\":\"pod\",\"namespace\":\"database\",\"pod\":\"postgres-0\",\"workload\":\"database/postgres[StatefulSet]\"}";
    format!(
        r#"{{"id":"{id}","origin":"node-a","rule":"{rule}","severity":"{severity}","summary":"frontend/webapp reached database/postgres:{port}","src":{{"kind":"pod","namespace":"frontend","pod":"webapp-1","workload":"frontend/webapp[Deployment]"}},{class_dst},"protocol":"TCP","port":{port},"connections":2,"evidence":{{"records":[],"decision":{{"allowed":false,"ingress":{{"isolated":true,"matched":[]}}}}}}}}"#
    )
}

#[test]
fn the_dashboard_shows_the_graph_live_alerts_and_filters_in_chromium() {
    let test = "the_dashboard_shows_the_graph_live_alerts_and_filters_in_chromium";
    if !have(&[CHROMEDRIVER, "/usr/bin/chromium"], test) {
        return;
    }
    let dir = scratch("dashboard");
    let shop = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/shop");
    let server = Server::start(&dir.join("alerts.db"), &["--manifests", shop]);
    post_alerts(
        &server,
        &format!(
            "{}\n{}\n",
            alert("b1", "FLOW-001", "critical", 5432),
            alert("l1", "FLOW-003", "low", 6379)
        ),
    );

    let browser = Browser::start();
    browser.open(&format!("{}/", server.url));
    let within = Duration::from_secs(20);
    assert!(
        browser.wait_for("return window.palisadeGraph !== undefined", within),
        "the graph never drew: {}",
        browser.run("return window.palisadeError || document.body.innerText.slice(0, 500)")
    );
    let graph = browser.run("return window.palisadeGraph");
    assert_eq!(graph["level"], "workload", "{graph}");
    assert!(
        graph["nodes"].as_u64().unwrap() > 10,
        "the shop's workloads: {graph}"
    );
    let colour = browser.run(
        "const e = window.palisadeCy.edges(\"[class = 'bypass']\"); return e.length ? e[0].style('line-color') : null",
    );
    assert_eq!(colour, "rgb(221,0,0)", "the bypass edge is red");
    let declared = browser.run("return window.palisadeCy.edges(\"[class = 'declared']\").length");
    assert!(declared.as_u64().unwrap() > 0, "declared edges are drawn");
    browser.run("window.palisadeCy.edges(\"[class = 'bypass']\")[0].emit('tap')");
    let detail = browser.run("return document.getElementById('edge-detail').innerText");
    assert!(
        detail.as_str().unwrap().contains("Policy decision"),
        "{detail}"
    );

    browser.run("document.querySelector('nav button[data-page=alerts]').click()");
    assert!(browser.wait_for(
        "return document.querySelectorAll('#alerts tbody tr').length === 2",
        within
    ));
    assert!(browser.wait_for(
        "return document.getElementById('live-state').textContent === 'live'",
        within
    ));
    post_alerts(&server, &alert("b2", "FLOW-001", "critical", 5433));
    assert!(
        browser.wait_for(
            "return document.querySelector('#alerts tbody tr[data-id=\"b2\"]') !== null",
            within
        ),
        "the live alert appears without a reload"
    );
    assert_eq!(browser.run("return window.palisadeLive"), 1);

    browser.run("document.getElementById('f-severity').value = 'critical'; document.getElementById('f-apply').click()");
    assert!(browser.wait_for(
        "const rows = [...document.querySelectorAll('#alerts tbody tr')]; return rows.length === 2 && rows.every(r => r.classList.contains('critical'))",
        within
    ), "the filter keeps the two critical alerts");

    // Findings: an audit run sent to the server, its scores and findings.
    let sent = std::process::Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args([
            "audit",
            shop,
            "-o",
            "json",
            "--send",
            &server.url,
            "--origin",
            "ci",
        ])
        .arg("--spool")
        .arg(dir.join("spool.jsonl"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&sent.stderr).contains("sent to"));
    browser.run("document.querySelector('nav button[data-page=findings]').click(); document.getElementById('g-apply').click()");
    assert!(
        browser.wait_for("return window.palisadeFindings > 0 && document.querySelectorAll('#scores .score').length > 0", within),
        "the findings page shows the run"
    );

    browser.run("document.querySelector('nav button[data-page=graph]').click()");
    let png = browser.screenshot();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    std::fs::write(artifacts.join("dashboard.png"), png).unwrap();
    server.stop();
}
