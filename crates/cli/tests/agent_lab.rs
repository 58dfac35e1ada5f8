//! `palisade agent`, the built binary, against the lab (see
//! `crates/sense/tests/lab`): two pods, a NetworkPolicy, and an nftables
//! enforcement of it with one deliberate gap (db's 6379 and 6380 are open
//! although the policy allows only 5432 and 8080) and one deliberate
//! excess (8080 is dropped although the policy allows it).
//!
//! The agent must raise, live and with the right pod, process and verdict:
//! the bypass (6379), the unexpected drop (8080), the blocked attempt
//! (9000), the raw socket and the shell executed in the client, and
//! nothing else; survive a malformed policy update, keeping the last good
//! policy (a later bypass on 6380 is still caught); serve its metrics; and
//! flush and exit 0 on SIGTERM. Root and BPF only.

#[path = "../../sense/tests/lab/mod.rs"]
mod lab;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use lab::{KillOnDrop, Lab, PodSpec, client_and_db, shop_manifests, skip_or_fail};
use serde_json::Value;

/// An agent sees the whole node: two labs at once would see each other.
static ONE_LAB: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn pods() -> Vec<PodSpec> {
    client_and_db(&[5432, 6379, 6380])
}

const RAW_SOCKET: &str =
    "import socket\nsocket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP).close()\n";

/// Lines the agent writes on stderr, as they come.
fn stderr_lines(child: &mut Child) -> Receiver<String> {
    let (tx, rx) = channel();
    let stderr = child.stderr.take().expect("piped stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    rx
}

/// The agent on `policy`, writing alerts to `output`, once it says it is
/// watching; with its stderr lines (and those said so far).
fn start_agent(
    policy: &std::path::Path,
    output: &std::path::Path,
    extra: &[&str],
) -> Result<(KillOnDrop, Receiver<String>, Vec<String>), String> {
    let mut agent = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_palisade"))
            .args(["agent", "--policy"])
            .arg(policy)
            .arg("--output")
            .arg(output)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("the palisade binary: {e}"))?,
    );
    let lines = stderr_lines(&mut agent);
    let mut said = Vec::new();
    if !wait_for(&lines, "watching this node", &mut said) {
        return Err(format!("the agent did not start: {said:?}"));
    }
    Ok((agent, lines, said))
}

fn wait_for(lines: &Receiver<String>, text: &str, seen: &mut Vec<String>) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(line) => {
                let found = line.contains(text);
                seen.push(line);
                if found {
                    return true;
                }
            }
            Err(_) => return false,
        }
    }
    false
}

fn alerts(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("each alert line is JSON"))
        .collect()
}

/// (rule, port) of each alert.
fn keys(alerts: &[Value]) -> BTreeSet<(String, Option<u64>)> {
    alerts
        .iter()
        .map(|a| (a["rule"].as_str().unwrap().to_string(), a["port"].as_u64()))
        .collect()
}

fn find<'a>(alerts: &'a [Value], rule: &str, port: Option<u64>) -> &'a Value {
    alerts
        .iter()
        .find(|a| a["rule"] == rule && a["port"].as_u64() == port)
        .unwrap_or_else(|| panic!("no {rule} alert on {port:?} in {alerts:#?}"))
}

fn scrape(addr: &str) -> String {
    let mut stream = TcpStream::connect(addr).expect("metrics endpoint");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: lab\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    text
}

#[test]
fn the_agent_raises_the_labs_bypass_drops_raw_socket_and_exec_live() {
    let test = "the_agent_raises_the_labs_alerts";
    let _one = ONE_LAB.lock().unwrap_or_else(|e| e.into_inner());
    let mut lab = match Lab::start(&pods()) {
        Ok(lab) => lab,
        Err(why) => return skip_or_fail(test, &why),
    };
    let dir = std::env::temp_dir().join(format!("palisade-agent-lab-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let policy = dir.join("shop.yaml");
    std::fs::write(&policy, shop_manifests(&lab, &[5432, 8080])).unwrap();
    let output = dir.join("alerts.jsonl");
    let metrics_addr = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().to_string()
    };
    let extra = ["--metrics-addr", metrics_addr.as_str()];
    let (mut agent, lines, mut said) = match start_agent(&policy, &output, &extra) {
        Ok(started) => started,
        Err(why) => return skip_or_fail(test, &why),
    };

    for port in [5432, 6379, 6380, 8080, 9000] {
        lab.serve_tcp("db", port).expect("db serves");
    }
    let short = Duration::from_millis(700);
    assert!(lab.connect_tcp("client", "db", 5432, short), "allowed");
    assert!(lab.connect_tcp("client", "db", 6379, short), "the gap");
    assert!(!lab.connect_tcp("client", "db", 8080, short), "the excess");
    assert!(!lab.connect_tcp("client", "db", 9000, short), "denied");
    lab.spawn_in("client", &["/usr/bin/python3", "-c", RAW_SOCKET])
        .unwrap();
    lab.spawn_in("client", &["/bin/sh", "-c", "exit 0"])
        .unwrap();

    // Live: each alert is out within about a second of its event.
    let expected: BTreeSet<(String, Option<u64>)> = [
        ("FLOW-001", Some(6379)),
        ("FLOW-002", Some(8080)),
        ("FLOW-003", Some(9000)),
        ("RUN-001", None),
        ("RUN-003", None),
    ]
    .iter()
    .map(|(r, p)| (r.to_string(), *p))
    .collect();
    let deadline = Instant::now() + Duration::from_secs(3);
    while keys(&alerts(&output)) != expected && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let live = alerts(&output);
    assert_eq!(keys(&live), expected, "{live:#?}");

    let (client, db) = (lab.pod("client"), lab.pod("db"));
    let bypass = find(&live, "FLOW-001", Some(6379));
    assert_eq!(bypass["severity"], "critical");
    assert_eq!(bypass["src"]["pod"], "client");
    assert_eq!(bypass["dst"]["pod"], "db");
    assert_eq!(bypass["process"]["comm"], "python3");
    assert_eq!(bypass["process"]["pod_uid"], client.uid.as_str());
    assert_eq!(
        bypass["process"]["container_id"],
        client.container_id.as_str()
    );
    assert!(bypass["process"]["pid"].as_u64().unwrap() > 0);
    let drop = find(&live, "FLOW-002", Some(8080));
    assert_eq!(drop["dst"]["ip"], db.ip.as_str());
    let raw = find(&live, "RUN-001", None);
    assert_eq!(raw["src"]["pod"], "client");
    assert_eq!(raw["process"]["comm"], "python3");
    let exec = find(&live, "RUN-003", None);
    assert_eq!(exec["process"]["executable"], "/bin/sh");
    assert_eq!(exec["src"]["pod"], "client");

    // A malformed policy update is refused; the last good policy stays.
    std::fs::write(&policy, "kind: NetworkPolicy\nspec: [unclosed\n").unwrap();
    assert!(
        wait_for(&lines, "policy update rejected", &mut said),
        "{said:?}"
    );
    assert!(lab.connect_tcp("client", "db", 6380, short));
    let deadline = Instant::now() + Duration::from_secs(3);
    while !keys(&alerts(&output)).contains(&("FLOW-001".to_string(), Some(6380)))
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    find(&alerts(&output), "FLOW-001", Some(6380));

    let metrics = scrape(&metrics_addr);
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    assert!(metrics.contains("palisade_agent_alerts_total{rule=\"FLOW-001\"} 2"));
    assert!(metrics.contains("palisade_agent_inventory_reloads_total{result=\"rejected\"} 1"));
    assert!(metrics.contains("palisade_agent_events_lost_total 0"));

    // SIGTERM: pending updates are flushed and the agent exits 0.
    let status = Command::new("kill")
        .args(["-TERM", &agent.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exited = agent.wait().expect("the agent exits");
    assert!(exited.success(), "exit status {exited}");
    assert!(wait_for(&lines, "stopped", &mut said), "{said:?}");
    let all = alerts(&output);
    let mut final_keys = expected.clone();
    final_keys.insert(("FLOW-001".to_string(), Some(6380)));
    assert_eq!(keys(&all), final_keys, "nothing else, updates included");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The same lab with `--sensor conntrack`: connections only, by address,
/// so the bypass, the unexpected drop and the blocked attempt, and none of
/// the process rules. The client needs a process for its namespace to be
/// found by (a pause container's, in a cluster).
#[test]
fn the_conntrack_sensor_raises_the_labs_connection_alerts() {
    let test = "the_conntrack_sensor_raises_the_labs_alerts";
    let _one = ONE_LAB.lock().unwrap_or_else(|e| e.into_inner());
    let mut lab = match Lab::start(&pods()) {
        Ok(lab) => lab,
        Err(why) => return skip_or_fail(test, &why),
    };
    for port in [5432, 6379, 8080, 9000] {
        lab.serve_tcp("db", port).expect("db serves");
    }
    lab.keep_alive("client");
    let dir = std::env::temp_dir().join(format!("palisade-agent-ct-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let policy = dir.join("shop.yaml");
    std::fs::write(&policy, shop_manifests(&lab, &[5432, 8080])).unwrap();
    let output = dir.join("alerts.jsonl");
    let (mut agent, _lines, _) = match start_agent(&policy, &output, &["--sensor", "conntrack"]) {
        Ok(started) => started,
        Err(why) => return skip_or_fail(test, &why),
    };
    let short = Duration::from_millis(700);
    assert!(lab.connect_tcp("client", "db", 5432, short));
    assert!(lab.connect_tcp("client", "db", 6379, short));
    assert!(!lab.connect_tcp("client", "db", 8080, short));
    assert!(!lab.connect_tcp("client", "db", 9000, short));
    let expected: BTreeSet<(String, Option<u64>)> = [
        ("FLOW-001", Some(6379)),
        ("FLOW-002", Some(8080)),
        ("FLOW-003", Some(9000)),
    ]
    .iter()
    .map(|(r, p)| (r.to_string(), *p))
    .collect();
    // Unanswered entries are judged after three seconds without a reply.
    let deadline = Instant::now() + Duration::from_secs(8);
    while keys(&alerts(&output)) != expected && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let got = alerts(&output);
    assert_eq!(keys(&got), expected, "{got:#?}");
    let bypass = find(&got, "FLOW-001", Some(6379));
    assert_eq!(bypass["src"]["pod"], "client");
    assert_eq!(bypass["dst"]["pod"], "db");
    let _ = Command::new("kill")
        .args(["-TERM", &agent.id().to_string()])
        .status();
    assert!(agent.wait().unwrap().success());
    let _ = std::fs::remove_dir_all(&dir);
}
