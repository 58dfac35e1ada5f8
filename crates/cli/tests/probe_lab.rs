//! `palisade probe`, the built binary, against the lab (see
//! `crates/sense/tests/lab`): the NetworkPolicy lets the client reach db
//! on 5432 only and denies all ingress to the client; the lab's nftables
//! enforcement has one gap (db's 6379 is open). The probe must find that
//! gap, a bypass, and nothing else, and exit 2. Root only.

#[path = "../../sense/tests/lab/mod.rs"]
mod lab;

use std::process::Command;

use lab::{Lab, client_and_db, pod_manifest, skip_or_fail};
use serde_json::Value;

fn manifests(lab: &Lab) -> String {
    let pod = |name: &str, ports: &str| pod_manifest(lab, name, ports);
    format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: shop}}\n---\n{}---\n{}---\n{}---\n{}",
        pod("client", ""),
        pod("db", "{containerPort: 5432}, {containerPort: 6379}"),
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: db-ingress, namespace: shop}\nspec:\n  podSelector: {matchLabels: {app: db}}\n  policyTypes: [Ingress]\n  ingress:\n  - from: [{podSelector: {matchLabels: {app: client}}}]\n    ports: [{port: 5432}]\n",
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: client-isolated, namespace: shop}\nspec:\n  podSelector: {matchLabels: {app: client}}\n  policyTypes: [Ingress]\n"
    )
}

#[test]
fn probe_finds_the_labs_enforcement_gap_and_nothing_else() {
    let test = "probe_finds_the_labs_gap";
    let pods = client_and_db(&[5432, 6379]);
    let mut lab = match Lab::start(&pods) {
        Ok(lab) => lab,
        Err(why) => return skip_or_fail(test, &why),
    };
    lab.serve_tcp("db", 5432).unwrap();
    lab.serve_tcp("db", 6379).unwrap();
    // The client needs a process for the probe to find its namespace by.
    lab.keep_alive("client");
    let dir = std::env::temp_dir().join(format!("palisade-probe-lab-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let policy = dir.join("shop.yaml");
    std::fs::write(&policy, manifests(&lab)).unwrap();

    let out = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(["probe", "--policy"])
        .arg(&policy)
        .args(["-o", "json", "--timeout-ms", "500", "--rate", "50"])
        .output()
        .expect("the palisade binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("no pod of the inventory runs on this node") {
        return skip_or_fail(test, &stderr);
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a finding gives exit 2: {stderr}{stdout}"
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    let probes = report["probes"].as_array().unwrap();
    let lines: Vec<String> = probes
        .iter()
        .map(|p| {
            format!(
                "{} -> {} {}/{} {} {} {}",
                p["from"].as_str().unwrap(),
                p["to"].as_str().unwrap(),
                p["protocol"].as_str().unwrap(),
                p["port"],
                p["policy"].as_str().unwrap(),
                p["observed"].as_str().unwrap(),
                p["finding"].as_str().unwrap_or("-")
            )
        })
        .collect();
    assert_eq!(
        lines,
        [
            "shop/client -> shop/db TCP/5432 allow reached -",
            "shop/client -> shop/db TCP/6379 deny reached bypass",
            "shop/client -> shop/db TCP/6380 deny blocked -",
            "shop/db -> shop/client TCP/8080 deny blocked -",
        ],
        "{stderr}"
    );
    assert_eq!(report["bypasses"], 1);
    assert_eq!(report["unexpected_drops"], 0);

    // The same as JUnit: one failure.
    let junit = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(["probe", "--policy"])
        .arg(&policy)
        .args(["-o", "junit", "--timeout-ms", "300", "--rate", "50"])
        .args(["--from", "shop/client", "--to", "db", "--port", "6379"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&junit.stdout);
    assert!(text.contains("tests=\"1\" failures=\"1\""), "{text}");
    assert!(text.contains("<failure type=\"BYPASS\""), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}
