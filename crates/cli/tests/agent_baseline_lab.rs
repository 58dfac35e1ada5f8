//! The process baseline (RUN-005) with the built agent and the lab: learned
//! from a connection made by Python, saved at SIGTERM; then, watching, a
//! connection by Python raises nothing and one by a copy of Python under
//! another name raises RUN-005 once. Root and BPF only.

#[path = "../../sense/tests/lab/mod.rs"]
mod lab;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use lab::{
    KillOnDrop, Lab, client_and_db, pod_manifest, skip_or_fail, start_agent, stop_agent as stop,
};

fn manifests(lab: &Lab) -> String {
    format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: shop}}\n---\n{}---\n{}",
        pod_manifest(lab, "client", ""),
        pod_manifest(lab, "db", "")
    )
}

fn start(policy: &Path, baseline: &Path, output: &Path, learn: bool) -> Option<KillOnDrop> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_palisade"));
    command
        .args(["agent", "--policy"])
        .arg(policy)
        .arg("--process-baseline")
        .arg(baseline)
        .arg("--output")
        .arg(output);
    if learn {
        command.arg("--learn-processes");
    }
    start_agent(command)
}

fn connect_from(lab: &mut Lab, python: &str) {
    let ip = lab.pod("db").ip.clone();
    let program =
        format!("import socket\nsocket.create_connection(('{ip}', 5432), timeout=1).close()\n");
    lab.run_in("client", &[python, "-c", &program])
        .expect("connects");
}

fn rules(output: &Path) -> Vec<String> {
    std::fs::read_to_string(output)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["rule"].to_string())
        .collect()
}

#[test]
fn the_process_baseline_is_learned_and_then_catches_a_new_process() {
    let test = "the_process_baseline";
    let pods = client_and_db(&[5432]);
    let mut lab = match Lab::start(&pods) {
        Ok(lab) => lab,
        Err(why) => return skip_or_fail(test, &why),
    };
    lab.serve_tcp("db", 5432).unwrap();
    let dir = std::env::temp_dir().join(format!("palisade-baseline-lab-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (policy, baseline) = (dir.join("shop.yaml"), dir.join("processes.yaml"));
    std::fs::write(&policy, manifests(&lab)).unwrap();
    let copy = dir.join("not-python");
    std::fs::copy("/usr/bin/python3", &copy).unwrap();

    let Some(learning) = start(&policy, &baseline, &dir.join("learning.jsonl"), true) else {
        return skip_or_fail(test, "the agent did not start");
    };
    connect_from(&mut lab, "/usr/bin/python3");
    std::thread::sleep(Duration::from_millis(400));
    stop(learning);
    let learned = std::fs::read_to_string(&baseline).expect("the baseline is saved");
    assert!(learned.contains("\"shop/client[Pod]\":"), "{learned}");
    assert!(learned.contains("python3"), "{learned}");
    assert!(
        rules(&dir.join("learning.jsonl")).is_empty(),
        "learning raises nothing"
    );

    let output = dir.join("watching.jsonl");
    let watching = start(&policy, &baseline, &output, false).expect("the agent starts");
    connect_from(&mut lab, "/usr/bin/python3");
    connect_from(&mut lab, &copy.to_string_lossy());
    connect_from(&mut lab, &copy.to_string_lossy());
    let deadline = Instant::now() + Duration::from_secs(3);
    while rules(&output).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    stop(watching);
    assert_eq!(
        rules(&output),
        ["\"RUN-005\"", "\"RUN-005\""],
        "the alert, and its update at SIGTERM"
    );
    let first: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(&output)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert!(
        first["process"]["executable"]
            .as_str()
            .unwrap()
            .ends_with("not-python")
    );
    let _ = std::fs::remove_dir_all(&dir);
}
