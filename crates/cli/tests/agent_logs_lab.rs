//! The agent follows a node's pod logs and an audit log with the log
//! rules, beside its kernel sensor: lines written while it runs raise
//! alerts in its one output, and after a restart it resumes where it was
//! (lines written while it was down are read, none twice). Root and BPF
//! only (the agent starts its eBPF sensor).

#[path = "../../sense/tests/lab/mod.rs"]
mod lab;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use lab::{KillOnDrop, skip_or_fail, start_agent, stop_agent as stop};

const POLICY: &str = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: db, namespace: shop, labels: {app: db}}\nspec: {containers: [{name: c, image: postgres}]}\n---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: db-ingress, namespace: shop}\nspec:\n  podSelector: {matchLabels: {app: db}}\n  policyTypes: [Ingress]\n";

/// An Istio sidecar's access-log line for a request its RBAC refused, as
/// the kubelet writes it (CRI format).
fn denied(n: u32) -> String {
    format!(
        "2026-12-02T10:00:0{n}.000000000Z stdout F [2026-12-02T10:00:0{n}.000Z] \"GET / HTTP/1.1\" 403 - rbac_access_denied_matched_policy[none] - \"-\" 0 19 0 - \"10.244.1.1\" \"curl/8.14.1\" \"id{n}\" \"db.shop\" \"-\" inbound|5432|| - 10.244.1.9:5432 10.244.1.1:0 x default"
    )
}

fn policy_deleted(id: &str) -> String {
    format!(
        r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"{id}","stage":"ResponseComplete","verb":"delete","user":{{"username":"mallory"}},"sourceIPs":["192.0.2.5"],"objectRef":{{"resource":"networkpolicies","namespace":"shop","name":"db-ingress","apiGroup":"networking.k8s.io"}},"responseStatus":{{"code":200}},"stageTimestamp":"2026-12-02T10:00:00Z"}}"#
    )
}

fn append(path: &Path, line: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    writeln!(f, "{line}").unwrap();
}

struct Files {
    dir: PathBuf,
    pods: PathBuf,
    container_log: PathBuf,
    audit: PathBuf,
    output: PathBuf,
}

fn files() -> Files {
    let dir = std::env::temp_dir().join(format!("palisade-agent-logs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let pods = dir.join("pods");
    let container = pods.join("shop_db_0000a11e-0000-4000-8000-000000000001/istio-proxy");
    std::fs::create_dir_all(&container).unwrap();
    std::fs::write(dir.join("policy.yaml"), POLICY).unwrap();
    Files {
        container_log: container.join("0.log"),
        audit: dir.join("audit.log"),
        output: dir.join("alerts.jsonl"),
        pods,
        dir,
    }
}

fn start(f: &Files) -> Option<KillOnDrop> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_palisade"));
    command
        .args(["agent", "--policy"])
        .arg(f.dir.join("policy.yaml"))
        .arg("--pod-logs")
        .arg(&f.pods)
        .arg("--audit-log")
        .arg(&f.audit)
        .arg("--log-state")
        .arg(f.dir.join("logs-state.json"))
        .arg("--output")
        .arg(&f.output);
    start_agent(command)
}

/// The log alerts written so far: (rule, file name, line).
fn log_alerts(output: &Path) -> Vec<(String, String, u64)> {
    let text = std::fs::read_to_string(output).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|a| {
            a["rule"]
                .as_str()
                .is_some_and(|r| r.starts_with("LOG-") || r.starts_with("AUDIT-"))
        })
        .map(|a| {
            let record = &a["evidence"]["records"][0];
            let file = record["file"].as_str().unwrap_or_default();
            let name = Path::new(file).file_name().unwrap_or_default();
            (
                a["rule"].as_str().unwrap().to_string(),
                name.to_string_lossy().to_string(),
                record["record"].as_u64().unwrap_or_default(),
            )
        })
        .collect()
}

fn wait_for(output: &Path, count: usize) -> Vec<(String, String, u64)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let alerts = log_alerts(output);
        if alerts.len() >= count || Instant::now() > deadline {
            return alerts;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_agent_follows_pod_and_audit_logs_and_resumes_after_a_restart() {
    let test = "the_agent_follows_pod_and_audit_logs";
    let f = files();
    // History from before the first start is not news.
    append(&f.container_log, &denied(1));
    std::fs::write(&f.audit, "").unwrap();
    let Some(agent) = start(&f) else {
        return skip_or_fail(test, "the agent did not start (root and BPF needed)");
    };
    // The first poll places the files at their end; give it time.
    std::thread::sleep(Duration::from_millis(1200));
    append(&f.container_log, &denied(2));
    append(&f.audit, &policy_deleted("a1"));
    let alerts = wait_for(&f.output, 3);
    let mut seen = alerts.clone();
    seen.sort();
    // The delete is AUDIT-001, and judged against the seed (the policy
    // manifests) it opens every port of db: AUDIT-013.
    assert_eq!(
        seen,
        [
            ("AUDIT-001".to_string(), "audit.log".to_string(), 1),
            ("AUDIT-013".to_string(), "audit.log".to_string(), 1),
            ("LOG-003".to_string(), "0.log".to_string(), 2),
        ],
        "{alerts:?}"
    );
    stop(agent);

    // Written while the agent is down: read after the restart, once.
    append(&f.container_log, &denied(3));
    let agent = start(&f).expect("the agent starts again");
    let alerts = wait_for(&f.output, 4);
    stop(agent);
    assert_eq!(alerts.len(), 4, "{alerts:?}");
    assert_eq!(alerts[3], ("LOG-003".to_string(), "0.log".to_string(), 3));
    let _ = std::fs::remove_dir_all(&f.dir);
}
