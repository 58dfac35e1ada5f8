//! End-to-end behaviour of the built binary on the bundled example, checked
//! against golden files. `UPDATE_GOLDEN=1 cargo test -p palisade` rewrites
//! them; review the diff before committing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("utf-8 output")
}

fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).expect("utf-8 output")
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

fn golden(name: &str, args: &[&str], expected_code: i32) {
    let out = palisade(args);
    assert_eq!(
        out.status.code(),
        Some(expected_code),
        "{args:?}: {}",
        stderr(&out)
    );
    check_golden(name, &stdout(&out));
}

#[test]
fn reach_in_every_format() {
    for (format, file) in [
        ("txt", "reach.txt"),
        ("json", "reach.json"),
        ("csv", "reach.csv"),
        ("md", "reach.md"),
        ("dot", "reach.dot"),
    ] {
        golden(file, &["reach", "examples/shop", "--output", format], 0);
    }
}

#[test]
fn reach_filters() {
    golden(
        "reach-focus.txt",
        &[
            "reach",
            "examples/shop",
            "--focus-workload",
            "backend/checkout",
        ],
        0,
    );
    golden(
        "reach-udp.txt",
        &["reach", "examples/shop", "--protocol", "udp"],
        0,
    );
    golden(
        "reach-ipblock-cut.txt",
        &["reach", "crates/cli/tests/data/ipblock-cut.yaml"],
        0,
    );
    // The shorter form: neighbouring ranges with equal connections merged.
    golden(
        "reach-merged.txt",
        &["reach", "examples/shop", "--merge-ranges"],
        0,
    );
    let by_name = stdout(&palisade(&[
        "reach",
        "examples/shop",
        "--focus-workload",
        "checkout",
    ]));
    assert_eq!(
        by_name,
        stdout(&palisade(&[
            "reach",
            "examples/shop",
            "--focus-workload",
            "backend/checkout"
        ]))
    );
}

#[test]
fn reach_lines_are_sorted_and_leave_out_self_connections() {
    let text = stdout(&palisade(&["reach", "examples/shop"]));
    let lines: Vec<&str> = text.lines().collect();
    let mut sorted = lines.clone();
    sorted.sort();
    assert_eq!(lines, sorted);
    for line in lines {
        let (pair, _) = line.split_once(" : ").unwrap();
        let (src, dst) = pair.split_once(" => ").unwrap();
        assert_ne!(src, dst, "{line}");
    }
}

#[test]
fn explain_denied_and_allowed() {
    golden(
        "explain-denied.txt",
        &[
            "explain",
            "examples/shop",
            "--from",
            "frontend/webapp",
            "--to",
            "database/postgres",
            "--port",
            "5432",
        ],
        2,
    );
    golden(
        "explain-allowed.json",
        &[
            "explain",
            "examples/shop",
            "--from",
            "backend/checkout",
            "--to",
            "database/postgres",
            "--port",
            "tcp/5432",
            "-o",
            "json",
        ],
        0,
    );
    golden(
        "explain-metadata.txt",
        &[
            "explain",
            "examples/shop",
            "--from",
            "backend/catalog",
            "--to",
            "169.254.169.254",
            "--port",
            "80",
        ],
        0,
    );
}

#[test]
fn diff_of_a_policy_change() {
    let args = |format| {
        vec![
            "diff",
            "--base",
            "examples/shop/namespaces.yaml",
            "--base",
            "examples/shop/workloads.yaml",
            "examples/shop/policies.yaml",
            "examples/shop-pr/policies.yaml",
            "--output",
            format,
        ]
    };
    golden("diff.txt", &args("txt"), 2);
    golden("diff.json", &args("json"), 2);
    golden("diff.csv", &args("csv"), 2);
    let same = palisade(&["diff", "examples/shop", "examples/shop"]);
    assert_eq!(same.status.code(), Some(0));
    assert!(stdout(&same).is_empty());
}

#[test]
fn demo_shows_the_planted_weaknesses() {
    let out = palisade(&["demo"]);
    assert_eq!(out.status.code(), Some(0));
    check_golden("demo.txt", &stdout(&out));
    let text = stdout(&out);
    let planted = text
        .split("== The planted weaknesses, found ==")
        .nth(1)
        .unwrap();
    for expected in [
        "POL-001 Namespace/legacy",
        "POL-009 Deployment/backend/catalog: backend/catalog[Deployment] can reach 169.254.169.254",
        "POL-012 NetworkPolicy/database/postgres",
        "BYP-001 DaemonSet/monitoring/node-exporter",
    ] {
        assert!(
            planted.contains(expected),
            "{expected} missing from the demo"
        );
    }
    let trail = text.split("== The audit trail").nth(1).unwrap();
    assert!(trail.contains("AUDIT-013 2026-11-30T10:04:00.010000Z mallory patch Namespace other"));
    assert!(trail.contains("+ other/intruder[Pod] -> shop/db[Pod] TCP 5432  by mallory"));
}

#[test]
fn bad_input_is_reported_and_the_rest_analysed() {
    let out = palisade(&["reach", "crates/cli/tests/data/broken.yaml"]);
    assert_eq!(out.status.code(), Some(0));
    let err = stderr(&out);
    assert!(
        err.contains("crates/cli/tests/data/broken.yaml:6:"),
        "{err}"
    );
    assert!(err.contains("YAML syntax error"), "{err}");
    assert!(
        err.contains(
            "crates/cli/tests/data/broken.yaml:8:1: error: NetworkPolicy x/bad is invalid"
        ),
        "{err}"
    );
    assert!(err.contains("port 70000 is out of range"), "{err}");
    // Both good pods are still there, unisolated.
    assert_eq!(
        stdout(&out)
            .lines()
            .filter(|l| l.starts_with("x/good[Pod] => x/other[Pod]"))
            .count(),
        1
    );
    let strict = palisade(&["reach", "--strict", "crates/cli/tests/data/broken.yaml"]);
    assert_eq!(strict.status.code(), Some(1));
    assert!(stderr(&strict).contains("--strict"));
}

#[test]
fn usage_and_missing_input_exit_1() {
    assert_eq!(palisade(&["reach"]).status.code(), Some(1));
    assert_eq!(palisade(&["reach", "no/such/path"]).status.code(), Some(1));
    assert_eq!(
        palisade(&[
            "explain",
            "examples/shop",
            "--from",
            "nobody",
            "--to",
            "x",
            "--port",
            "1"
        ])
        .status
        .code(),
        Some(1)
    );
    assert_eq!(
        palisade(&[
            "explain",
            "examples/shop",
            "--from",
            "a",
            "--to",
            "b",
            "--port",
            "tcp/0"
        ])
        .status
        .code(),
        Some(1)
    );
    let help = palisade(&["--help"]);
    assert_eq!(help.status.code(), Some(0));
    assert!(stdout(&help).contains("Exit codes:"));
}

#[test]
fn skipped_kinds_are_counted_and_listed_with_verbose() {
    let out = palisade(&["reach", "examples/shop"]);
    assert!(stderr(&out).contains("skipped 1 object(s)"));
    let verbose = palisade(&["reach", "-v", "examples/shop"]);
    assert!(stderr(&verbose).contains("skipped 1 object(s) of kind ConfigMap"));
}

#[test]
fn reads_stdin_and_json_dumps() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(["reach", "-", "--output", "json"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let dump = r#"{"apiVersion":"v1","kind":"List","items":[
      {"kind":"Pod","metadata":{"name":"a","namespace":"n","labels":{"app":"a"}}},
      {"kind":"Pod","metadata":{"name":"b","namespace":"n","labels":{"app":"b"}}},
      {"kind":"NetworkPolicy","metadata":{"name":"p","namespace":"n"},"spec":{"podSelector":{"matchLabels":{"app":"b"}},"ingress":[{"ports":[{"port":80}]}]}}]}"#;
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(dump.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let pair = json
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["src"] == "n/a[Pod]" && e["dst"] == "n/b[Pod]")
        .unwrap();
    assert_eq!(pair["conn"], "TCP 80");
}

#[test]
fn audit_in_every_format() {
    for (format, file) in [
        ("table", "audit.txt"),
        ("json", "audit.json"),
        ("sarif", "audit.sarif"),
        ("junit", "audit.junit.xml"),
        ("md", "audit.md"),
    ] {
        golden(file, &["audit", "examples/shop", "--output", format], 0);
    }
}

#[test]
fn audit_finds_the_planted_weaknesses_and_gates_ci() {
    let out = palisade(&["audit", "examples/shop", "-o", "json", "--fail-on", "high"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let found = |check: &str, name: &str| {
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["check"] == check && f["resource"]["name"] == name)
    };
    assert!(found("POL-001", "legacy"), "namespace without policy");
    assert!(
        found("POL-009", "catalog"),
        "egress to the metadata address"
    );
    assert!(
        found("POL-012", "postgres"),
        "named port that resolves nowhere"
    );
    assert!(found("BYP-001", "node-exporter"), "hostNetwork DaemonSet");
    // Nothing critical in the shop: --fail-on critical passes.
    assert_eq!(
        palisade(&["audit", "examples/shop", "--fail-on", "critical"])
            .status
            .code(),
        Some(0)
    );
    assert_eq!(
        palisade(&["audit", "examples/shop", "--skip", "NOPE-1"])
            .status
            .code(),
        Some(1)
    );
}

#[test]
fn audit_sarif_has_rules_results_and_regions() {
    let out = palisade(&["audit", "examples/shop", "-o", "sarif", "--skip", "BYP-005"]);
    let sarif: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sarif["version"], "2.1.0");
    let run = &sarif["runs"][0];
    let rules: Vec<&str> = run["tool"]["driver"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    for result in run["results"].as_array().unwrap() {
        assert!(rules.contains(&result["ruleId"].as_str().unwrap()));
        let region = &result["locations"][0]["physicalLocation"]["region"];
        assert!(region["startLine"].as_u64().unwrap() >= 1, "{result}");
        if result["ruleId"] == "BYP-005" {
            assert_eq!(result["suppressions"][0]["kind"], "external");
        }
    }
}

#[test]
fn host_network_pods_as_node_or_as_pod() {
    let focus = [
        "reach",
        "examples/shop",
        "--focus-workload",
        "monitoring/node-exporter",
    ];
    // Default `node`: the hostNetwork DaemonSet is its node's traffic, never
    // isolated, so everything may reach it.
    let as_node = stdout(&palisade(&focus));
    assert!(as_node.contains(
        "monitoring/prometheus[Deployment] => monitoring/node-exporter[DaemonSet] : All Connections"
    ));
    let explicit = stdout(&palisade(
        &[&focus[..], &["--host-network-pods", "node"]].concat(),
    ));
    assert_eq!(as_node, explicit);
    // `pod`: monitoring's default-deny-ingress isolates it like any pod,
    // and kube-system's DNS policy now admits it by its namespace.
    let as_pod = stdout(&palisade(
        &[&focus[..], &["--host-network-pods", "pod"]].concat(),
    ));
    assert!(
        !as_pod.contains("=> monitoring/node-exporter[DaemonSet]"),
        "{as_pod}"
    );
    assert!(as_pod.contains(
        "monitoring/node-exporter[DaemonSet] => kube-system/coredns[Deployment] : TCP 53,UDP 53"
    ));
    assert!(!as_node.contains("monitoring/node-exporter[DaemonSet] => kube-system/coredns"));
    // Every command that judges connectivity takes the setting.
    for command in [
        &[
            "explain",
            "examples/shop",
            "--from",
            "monitoring/prometheus",
            "--to",
            "monitoring/node-exporter",
            "--port",
            "9100",
            "--host-network-pods",
            "pod",
        ][..],
        &["audit", "examples/shop", "--host-network-pods", "pod"][..],
        &[
            "diff",
            "examples/shop",
            "examples/shop",
            "--host-network-pods",
            "pod",
        ][..],
    ] {
        let out = palisade(command);
        assert_ne!(out.status.code(), Some(1), "{command:?}: {}", stderr(&out));
    }
}

/// roxctl's workloads-diff-info: both new workloads of a line named once
/// each, in one phrase; an external range is never named.
#[test]
fn diff_names_added_and_removed_workloads_as_roxctl_does() {
    let dir = std::env::temp_dir().join(format!("palisade-diff-info-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let old = dir.join("old.yaml");
    let new = dir.join("new.yaml");
    let pod = |name: &str| {
        format!(
            "kind: Pod\nmetadata: {{name: {name}, namespace: ns, labels: {{app: {name}}}}}\n---\n"
        )
    };
    std::fs::write(&old, pod("kept")).unwrap();
    std::fs::write(&new, format!("{}{}{}", pod("kept"), pod("a"), pod("b"))).unwrap();
    let out = palisade(&["diff", old.to_str().unwrap(), new.to_str().unwrap()]);
    std::fs::write(&new, pod("kept")).unwrap();
    let text = stdout(&out);
    let line = |src: &str, dst: &str| {
        text.lines()
            .find(|l| l.contains(&format!("source: {src}, destination: {dst},")))
            .unwrap_or_else(|| panic!("no line {src} -> {dst} in {text}"))
            .to_string()
    };
    assert!(
        line("ns/a[Pod]", "ns/b[Pod]")
            .ends_with(", workloads-diff-info: workload ns/a[Pod] and ns/b[Pod] added")
    );
    assert!(
        line("ns/kept[Pod]", "ns/a[Pod]")
            .ends_with(", workloads-diff-info: workload ns/a[Pod] added")
    );
    assert!(line("ns/a[Pod]", "0.0.0.0-255.255.255.255[External]")
        .ends_with(", dir1: No Connections, dir2: All Connections, workloads-diff-info: workload ns/a[Pod] added"));
    assert!(
        line("0.0.0.0-255.255.255.255[External]", "ns/b[Pod]")
            .ends_with(", workloads-diff-info: workload ns/b[Pod] added")
    );
    // The reverse change removes them, in the same words.
    std::fs::write(&old, format!("{}{}{}", pod("kept"), pod("a"), pod("b"))).unwrap();
    let out = palisade(&["diff", old.to_str().unwrap(), new.to_str().unwrap()]);
    assert!(stdout(&out).contains(
        "diff-type: removed, source: ns/a[Pod], destination: ns/b[Pod], dir1: All Connections, dir2: No Connections, workloads-diff-info: workload ns/a[Pod] and ns/b[Pod] removed"
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}
