//! `palisade serve --kube URL` against a stand-in API server that replays
//! the Kubernetes list/watch protocol: the dashboard's graph is what the
//! listed objects allow, follows a NetworkPolicy created on the watch
//! without a restart, and the reflectors' counters are on /metrics.

#[path = "../../kube/tests/replay/mod.rs"]
mod replay;
mod support;

use std::time::{Duration, Instant};

use replay::*;
use serde_json::json;
use support::{Server, declared_edges, scratch};

#[test]
fn the_graph_follows_the_kubernetes_api_without_a_restart() {
    let dir = scratch("kube-watch");
    let api = Replay::start();
    api.apply(NAMESPACES, "ADDED", namespace("shop", json!({})));
    api.apply(
        PODS,
        "ADDED",
        pod("shop", "web-1", json!({"app": "web"}), "10.0.0.1"),
    );
    api.apply(
        PODS,
        "ADDED",
        pod("shop", "db-1", json!({"app": "db"}), "10.0.0.2"),
    );
    let server = Server::start(&dir.join("alerts.db"), &["--kube", &api.url]);
    let open = declared_edges(&server);
    assert!(open > 0, "two pods and no policy: they reach each other");

    api.apply(POLICIES, "ADDED", deny_all_ingress("shop", "deny-all"));
    let deadline = Instant::now() + Duration::from_secs(15);
    while declared_edges(&server) == open && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let denied = declared_edges(&server);
    assert!(denied < open, "{open} edges, then {denied}");

    let metrics = support::get(format!("{}/metrics", server.url))
        .unwrap()
        .text()
        .unwrap();
    for line in [
        "palisade_inventory_lists_total{resource=\"pods\"} 1",
        "palisade_inventory_objects{resource=\"pods\"} 2",
        "palisade_inventory_objects{resource=\"networkpolicies\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
    server.stop();
}

#[test]
fn the_kubernetes_api_and_manifest_files_are_one_or_the_other() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(["serve", "--listen", "127.0.0.1:0", "--kube", "http://kube"])
        .args(["--manifests", "x"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("--kube") && said.contains("--manifests"),
        "{said}"
    );
}
