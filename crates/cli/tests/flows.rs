//! `palisade flows` end to end through the built binary: real captures and
//! flow logs (the samples' lab), the bundled shop capture, every output
//! format, exit codes, and the baseline → advise round trip.
//! `UPDATE_GOLDEN=1 cargo test -p palisade` rewrites the golden files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn palisade(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("the binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("utf-8 output")
}

fn check_golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).expect("golden file written");
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("missing golden file {}", path.display()));
    assert_eq!(actual, expected, "output differs from {}", path.display());
}

const LAB_PCAP: &str = "crates/flow/tests/data/lab-bridge.pcap";
const LAB_CONNTRACK: &str = "crates/flow/tests/data/conntrack-lab-events-timestamp.txt";
const SHOP: [&str; 6] = [
    "--policy",
    "examples/shop",
    "--endpoints",
    "examples/shop/endpoints.txt",
    "--pod-cidr",
    "10.244.0.0/16",
];

fn verify(extra: &[&str]) -> Output {
    let mut args = vec!["flows", "verify"];
    args.extend_from_slice(extra);
    palisade(&args)
}

fn rules(out: &Output) -> Vec<String> {
    text(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| v["rule"].as_str().unwrap_or("").to_string())
        .collect()
}

/// The lab capture against a policy stricter than the lab's firewall: one
/// bypass, one blocked attempt, one unexpected drop, nothing else.
#[test]
fn lab_capture_gives_exactly_the_known_alerts() {
    let out = verify(&[
        "--policy",
        "examples/lab",
        "--pod-cidr",
        "10.77.0.0/24",
        LAB_PCAP,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    check_golden("flows-lab.txt", &text(&out.stdout));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("56 records, 5 flows, 36 skipped"),
        "{stderr}"
    );
    assert!(stderr.contains("10 ARP frame"), "{stderr}");
}

#[test]
fn lab_conntrack_agrees_with_the_capture_where_conntrack_saw_anything() {
    let out = verify(&["--policy", "examples/lab", "-o", "jsonl", LAB_CONNTRACK]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let mut rules = rules(&out);
    rules.sort();
    // The firewall-dropped SYNs never reach conntrack (no blocked attempt);
    // the bridge's IGMP report from 10.77.0.1 is an unknown endpoint.
    assert_eq!(rules, ["FLOW-001", "FLOW-002", "FLOW-004"]);
}

#[test]
fn shop_capture_in_every_format() {
    for (format, file) in [
        ("table", "flows-shop.txt"),
        ("json", "flows-shop.json"),
        ("jsonl", "flows-shop.jsonl"),
        ("sarif", "flows-shop.sarif"),
    ] {
        let mut args = SHOP.to_vec();
        args.extend(["-o", format, "examples/shop/traffic.pcap"]);
        let out = verify(&args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{format}: {}",
            text(&out.stderr)
        );
        check_golden(file, &text(&out.stdout));
    }
}

#[test]
fn jsonl_alerts_follow_the_one_schema() {
    let mut args = SHOP.to_vec();
    args.extend(["-o", "jsonl", "examples/shop/traffic.pcap"]);
    let out = verify(&args);
    for line in text(&out.stdout).lines() {
        let alert: serde_json::Value =
            serde_json::from_str(line).expect("one JSON object per line");
        for field in [
            "time", "rule", "severity", "summary", "src", "dst", "protocol", "evidence",
        ] {
            assert!(alert.get(field).is_some(), "{field} missing in {line}");
        }
        assert!(alert["src"]["kind"].is_string());
    }
    assert_eq!(
        rules(&out),
        [
            "FLOW-001", "FLOW-201", "FLOW-002", "FLOW-203", "FLOW-003", "FLOW-004"
        ]
    );
}

#[test]
fn fail_on_turns_alerts_into_exit_code_2() {
    let mut args = SHOP.to_vec();
    args.extend(["--fail-on", "critical", "examples/shop/traffic.pcap"]);
    assert_eq!(verify(&args).status.code(), Some(2));
    let out = verify(&[
        "--policy",
        "examples/lab",
        "--fail-on",
        "critical",
        "crates/flow/tests/data/single_syn.pcap",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn every_sample_format_is_recognised() {
    for (file, format) in [
        (LAB_PCAP, "pcap"),
        (LAB_CONNTRACK, "conntrack"),
        (
            "crates/flow/tests/data/conntrack-lab-events.txt",
            "conntrack",
        ),
        (
            "crates/flow/tests/data/hubble-basic-sample-10-flows.json",
            "hubble",
        ),
        ("crates/flow/tests/data/calico-flows.log", "calico"),
        ("crates/flow/tests/data/lab-drops.log", "drop-log"),
    ] {
        let out = verify(&["--policy", "examples/lab", file]);
        assert_eq!(out.status.code(), Some(0), "{file}: {}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains(&format!(": {format}, ")),
            "{file}: {}",
            text(&out.stderr)
        );
    }
}

/// Data planes' drop logs are flow records with the data plane's verdict:
/// a drop of what the policy denies is a blocked attempt, of what it allows
/// an unexpected drop; other lines are counted, not read as flows.
#[test]
fn drop_logs_of_three_data_planes_are_judged_against_the_policy() {
    let out = verify(&[
        "--policy",
        "examples/lab",
        "crates/flow/tests/data/lab-drops.log",
    ]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(
        stderr.contains("drop-log, 5 records, 3 flows, 2 skipped (2 log line recording no drop)"),
        "{stderr}"
    );
    // netfilter (calico-packet) pod1 -> pod3 TCP 9090 and OVN pod1 -> pod3
    // UDP 5353 are denied; Cilium's pod2 -> pod3 UDP 5353 is allowed.
    assert!(
        stdout.contains("0 allowed, 0 bypass, 2 blocked-attempt, 1 unexpected-drop, 0 unresolved"),
        "{stdout}"
    );
    // Each alert keeps the data plane's own reason.
    let json = text(
        &verify(&[
            "--policy",
            "examples/lab",
            "-o",
            "jsonl",
            "crates/flow/tests/data/lab-drops.log",
        ])
        .stdout,
    );
    for reason in [
        "cilium: Policy denied",
        "netfilter log: calico-packet:",
        "ovn acl: lab_pod3-ingress",
    ] {
        assert!(
            json.contains(&format!("\"drop_reason\":\"{reason}\"")),
            "{reason}: {json}"
        );
    }
}

#[test]
fn endpoints_unknown_to_the_inventory_are_counted_not_dropped() {
    // The Hubble sample is from a bookinfo cluster the lab inventory lacks.
    let out = verify(&[
        "--policy",
        "examples/lab",
        "crates/flow/tests/data/hubble-basic-sample-10-flows.json",
    ]);
    let stdout = text(&out.stdout);
    assert!(stdout.contains("10 flow records"), "{stdout}");
    assert!(
        stdout.contains("0 allowed, 0 bypass, 0 blocked-attempt, 0 unexpected-drop, 10 unresolved"),
        "{stdout}"
    );
}

#[test]
fn stdin_and_explicit_format() {
    let data = std::fs::read(root().join(LAB_PCAP)).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args([
            "flows",
            "verify",
            "--policy",
            "examples/lab",
            "--format",
            "pcap",
            "-o",
            "jsonl",
            "-",
        ])
        .current_dir(root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&data).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(rules(&out).len(), 3);
}

#[test]
fn unrecognised_input_is_an_error_naming_the_file() {
    let out = verify(&["--policy", "examples/lab", "examples/lab/cluster.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("examples/lab/cluster.yaml: format not recognised"));
}

#[test]
fn truncated_capture_is_read_as_far_as_it_goes_and_strict_fails() {
    let dir = std::env::temp_dir().join(format!("palisade-trunc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let data = std::fs::read(root().join(LAB_PCAP)).unwrap();
    let cut = dir.join("cut.pcap");
    std::fs::write(&cut, &data[..data.len() - 10]).unwrap();
    let cut = cut.to_str().unwrap();
    let out = verify(&["--policy", "examples/lab", "-o", "jsonl", cut]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("truncated"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        rules(&out).len(),
        3,
        "connections before the cut are still judged"
    );
    let strict = palisade(&[
        "--strict",
        "flows",
        "verify",
        "--policy",
        "examples/lab",
        cut,
    ]);
    assert_eq!(strict.status.code(), Some(1));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn baseline_learn_then_advise_round_trips() {
    let dir = std::env::temp_dir().join(format!("palisade-advise-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let baseline = dir.join("baseline.yaml");
    let baseline = baseline.to_str().unwrap();
    let mut args = vec!["flows", "baseline", "learn"];
    args.extend(SHOP);
    args.extend(["--write", baseline, "examples/shop/traffic.pcap"]);
    let out = palisade(&args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let learned = std::fs::read_to_string(baseline).unwrap();
    check_golden("flows-baseline.yaml", &learned);

    let out = palisade(&[
        "flows",
        "advise",
        "--policy",
        "examples/shop",
        "--baseline",
        baseline,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    check_golden("flows-advice.yaml", &text(&out.stdout));
    assert!(
        text(&out.stderr).contains("proof HOLDS"),
        "{}",
        text(&out.stderr)
    );

    // With the baseline as the new normal, the same capture deviates from
    // nothing; the bypass is still a bypass of the declared policy.
    let mut args = SHOP.to_vec();
    args.extend([
        "--baseline",
        baseline,
        "-o",
        "jsonl",
        "examples/shop/traffic.pcap",
    ]);
    let out = verify(&args);
    assert!(
        rules(&out).iter().all(|r| !r.starts_with("FLOW-10")),
        "{}",
        text(&out.stdout)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_changed_baseline_version_is_refused() {
    let dir = std::env::temp_dir().join(format!("palisade-version-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("b.yaml");
    std::fs::write(
        &path,
        "version: 2\nlearned_connections: 0\nskipped_flows: 0\nedges: []\n",
    )
    .unwrap();
    let out = palisade(&[
        "flows",
        "advise",
        "--policy",
        "examples/shop",
        "--baseline",
        path.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("version 2 is not supported"),
        "{}",
        text(&out.stderr)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn hubble_sample_probes_from_the_pods_own_node_are_allowed() {
    // In the samples' Hubble flows the node (`reserved:host`) connects to
    // a kube-dns pod local to it on 10054: a health probe. The shop's DNS
    // policy does not admit the node's address, but a pod's own node is
    // always allowed, so this is no bypass.
    let out = verify(&[
        "--policy",
        "examples/shop",
        "-o",
        "json",
        "crates/flow/tests/data/hubble-basic-sample-10-flows.json",
    ]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(report["summary"]["by_class"]["allowed"], 2);
    assert_eq!(
        report["summary"]["by_namespace"]["kube-system"]["allowed"],
        2
    );
    let alerts = report["alerts"].as_array().expect("alerts");
    assert!(alerts.iter().all(|a| a["rule"] == "FLOW-004"), "{alerts:?}");
}

#[test]
fn hubble_endpoints_on_other_nodes_resolve_by_their_labels() {
    // In the samples' 400 Hubble flows, productpage talks to reviews from
    // another node, so Hubble names the source only by its identity's
    // labels (no namespace or pod name). It must still resolve to
    // productpage-v1: allowed where reviews admits productpage, a bypass
    // where it admits only details.
    const DIR: &str = "crates/cli/tests/data/bookinfo";
    const SAMPLE: &str = "crates/flow/tests/data/hubble-basic-sample-400-tcp-flows.json";
    let run = |policy: &str| {
        let workloads = format!("{DIR}/workloads.yaml");
        let policy = format!("{DIR}/{policy}");
        let out = verify(&[
            "--policy", &workloads, "--policy", &policy, "-o", "json", SAMPLE,
        ]);
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
        report["summary"]["by_class"].clone()
    };
    let admitted = run("reviews-from-productpage.yaml");
    assert_eq!(admitted["bypass"], serde_json::Value::Null, "{admitted}");
    assert_eq!(admitted["allowed"], 387);
    // The 13 flows of jaeger and the collectors, which the manifests lack.
    assert_eq!(admitted["unresolved"], 13);
    let refused = run("reviews-from-details.yaml");
    // The productpage-reviews records that show the path into reviews: 27
    // replies, 2 records made at reviews and 18 that name no direction. The
    // other 51, requests recorded at productpage, only show that its
    // egress let them out, which its (absent) egress policy allows.
    assert_eq!(refused["bypass"], 47, "{refused}");
    assert_eq!(refused["allowed"], 340, "{refused}");
}

#[test]
fn generated_hubble_traffic_resolves_on_its_generated_cluster() {
    // `gen --hubble` feeds the Hubble benchmark: every endpoint must resolve
    // by identity on the cluster of the same seed, and most traffic must be
    // what the policies allow.
    let dir = std::env::temp_dir().join(format!("palisade-gen-hubble-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let cluster = dir.join("cluster.yaml");
    let flows = dir.join("hubble.json");
    let write = |path: &Path, args: &[&str]| {
        let out = palisade(args);
        assert!(out.status.success(), "{}", text(&out.stderr));
        std::fs::write(path, &out.stdout).expect("written");
    };
    write(&cluster, &["gen", "--pods", "200"]);
    write(&flows, &["gen", "--pods", "200", "--hubble", "400"]);
    assert_eq!(
        text(&std::fs::read(&flows).expect("read")).lines().count(),
        400
    );
    let (cluster, flows) = (cluster.to_string_lossy(), flows.to_string_lossy());
    let out = verify(&["--policy", &cluster, "-o", "json", &flows]);
    std::fs::remove_dir_all(&dir).ok();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    let summary = &report["summary"];
    assert_eq!(summary["flows"], 400);
    assert_eq!(summary["by_class"]["unresolved"], serde_json::Value::Null);
    let allowed = summary["by_class"]["allowed"].as_u64().unwrap_or(0);
    assert!(allowed >= 300, "{summary}");
}
