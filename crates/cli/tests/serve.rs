//! `palisade serve` and `--send`, through the built binary: alerts of an
//! offline run arrive in the store once, a run while the server is down
//! waits in the spool, every refusal has its status and reason, and
//! nothing acknowledged is lost when the server is killed with SIGKILL.

mod support;

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use palisade_store::{AlertQuery, PostgresStore, SqliteStore, Store};
use support::pki::Pki;
use support::receiver::Receiver;
use support::{Server, free_port, list_alerts, scratch};

fn verify_and_send(url: &str, spool: &Path, extra: &[&str]) -> String {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/shop");
    let out = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .current_dir(root)
        .args([
            "flows",
            "verify",
            "--policy",
            ".",
            "--endpoints",
            "endpoints.txt",
        ])
        .args(["traffic.pcap", "-o", "json", "--send", url, "--spool"])
        .arg(spool)
        .args(["--origin", "ci-runner"])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A new token with these scopes, its hash appended to `tokens`.
fn make_token(tokens: &Path, name: &str, scopes: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(["token", name, "--scopes", scopes, "--tokens"])
        .arg(tokens)
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn stored(db: &Path) -> Vec<palisade_store::StoredAlert> {
    let store = SqliteStore::open(db).unwrap();
    let query = AlertQuery {
        limit: Some(100_000),
        ..AlertQuery::default()
    };
    store.reader().unwrap().alerts(&query).unwrap()
}

#[test]
fn an_offline_run_lands_once_and_a_rerun_changes_nothing() {
    let dir = scratch("once");
    let db = dir.join("alerts.db");
    let server = Server::start(&db, &[]);
    let said = verify_and_send(&server.url, &dir.join("spool"), &[]);
    assert!(
        said.contains("5 delivered (0 from earlier runs), 0 refused, 0 left"),
        "{said}"
    );
    verify_and_send(&server.url, &dir.join("spool"), &[]);
    let client = palisade_send::http::client();
    let listed = client
        .get(format!(
            "{}/api/v1/alerts?severity=critical&namespace=database",
            server.url
        ))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed["count"], 1, "{listed}");
    let bypass = &listed["alerts"][0];
    assert_eq!(bypass["alert"]["rule"], "FLOW-001");
    assert_eq!(bypass["alert"]["origin"], "ci-runner");
    assert_eq!(bypass["deliveries"], 2, "the rerun redelivered it");
    let snapshot = bypass["alert"]["evidence"]["snapshot"].as_str().unwrap();
    assert!(
        snapshot.starts_with("files:") && snapshot.len() == "files:".len() + 16,
        "the store keeps which manifests judged it: {snapshot}"
    );
    server.stop();
    let all = stored(&db);
    assert_eq!(all.len(), 5, "the rerun added nothing");
}

#[test]
fn alerts_wait_in_the_spool_while_the_server_is_down() {
    let dir = scratch("spool");
    let db = dir.join("alerts.db");
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let said = verify_and_send(
        &format!("http://127.0.0.1:{port}"),
        &dir.join("spool"),
        &["--send-patience", "1"],
    );
    assert!(said.contains("0 delivered"), "{said}");
    assert!(said.contains("5 left in the spool"), "{said}");
    assert!(said.contains("Connection refused"), "{said}");
    let server = Server::start(&db, &[]);
    let said = verify_and_send(&server.url, &dir.join("spool"), &[]);
    assert!(
        said.contains("10 delivered (5 from earlier runs)"),
        "{said}"
    );
    assert!(said.contains("0 left in the spool"), "{said}");
    server.stop();
    assert_eq!(
        stored(&db).len(),
        5,
        "the spooled copies were the same alerts"
    );
}

const ALERT: &str = r#"{"id":"ID","origin":"o","rule":"FLOW-001","severity":"critical","summary":"s","protocol":"TCP","first_seen":"2026-12-02T10:00:00Z"}"#;

fn alert(id: &str) -> String {
    ALERT.replace("ID", id)
}

#[test]
fn every_refusal_has_its_status_and_reason() {
    let dir = scratch("refusals");
    let tokens = dir.join("tokens");
    let token = |name: &str, scopes: &str| make_token(&tokens, name, scopes);
    let ingest = token("node-a", "ingest");
    let read = token("grafana", "read");
    let tokens_arg = tokens.display().to_string();
    let server = Server::start(
        &dir.join("alerts.db"),
        &["--tokens", &tokens_arg, "--max-body", "2000"],
    );
    let client = palisade_send::http::client();
    let post = |token: Option<&str>, body: String| {
        let mut request = client
            .post(format!("{}/api/v1/ingest/alerts", server.url))
            .body(body);
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        let response = request.send().unwrap();
        let status = response.status().as_u16();
        (status, response.text().unwrap())
    };
    let (status, _) = post(None, alert("a"));
    assert_eq!(status, 401, "no token");
    let (status, _) = post(Some("pal_guess"), alert("a"));
    assert_eq!(status, 401, "unknown token");
    let (status, body) = post(Some(&read), alert("a"));
    assert_eq!(status, 403, "a read token cannot ingest");
    assert!(body.contains("`ingest` scope"), "{body}");
    let (status, body) = post(Some(&ingest), "[{\"id\":".into());
    assert_eq!(status, 400, "malformed JSON");
    assert!(body.contains("not a JSON array"), "{body}");
    let (status, _) = post(Some(&ingest), format!("{}\n", alert("x")).repeat(40));
    assert_eq!(status, 413, "larger than --max-body");
    let (status, body) = post(
        Some(&ingest),
        format!("{}\n{{\"id\":\"bad\"}}\n{}\n", alert("a"), alert("b")),
    );
    assert_eq!(status, 422, "one bad item: {body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["accepted"], 2, "the good ones are committed: {body}");
    assert_eq!(answer["rejected"][0]["index"], 1);
    let listed = |token: &str| {
        client
            .get(format!("{}/api/v1/alerts", server.url))
            .bearer_auth(token)
            .send()
            .unwrap()
    };
    assert_eq!(
        listed(&ingest).status().as_u16(),
        403,
        "an ingest token cannot read"
    );
    let body: serde_json::Value = serde_json::from_str(&listed(&read).text().unwrap()).unwrap();
    assert_eq!(body["count"], 2);
    let bad_filter = client
        .get(format!("{}/api/v1/alerts?since=yesterday", server.url))
        .bearer_auth(&read)
        .send()
        .unwrap();
    assert_eq!(bad_filter.status().as_u16(), 400);
    server.stop();
}

#[test]
fn a_public_listener_without_tokens_is_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(["serve", "--listen", "0.0.0.0:0", "--store"])
        .arg(format!(
            "sqlite:{}",
            scratch("public").join("a.db").display()
        ))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("without authentication"), "{said}");
}

/// Senders post batches of new alerts as fast as the server answers and
/// note every id it acknowledged; the server is killed with SIGKILL at a
/// random moment, restarted, killed again. Every acknowledged id must be
/// in the store at the end.
#[test]
fn nothing_acknowledged_is_lost_when_the_server_is_killed() {
    let db = scratch("kill").join("alerts.db");
    let acked = acknowledged_across_kills(&format!("sqlite:{}", db.display()));
    let store = SqliteStore::open(&db).unwrap();
    assert_none_lost(&store, &acked);
}

/// The same on PostgreSQL (the database `.ci/run` starts).
#[test]
fn nothing_acknowledged_is_lost_when_a_postgres_backed_server_is_killed() {
    let Ok(url) = std::env::var("PALISADE_TEST_POSTGRES") else {
        let required = std::env::var("PALISADE_PRIVILEGED_TESTS").is_ok_and(|v| v == "require");
        assert!(!required, "PALISADE_TEST_POSTGRES is not set");
        return eprintln!("SKIPPED: set PALISADE_TEST_POSTGRES to a PostgreSQL URL");
    };
    let acked = acknowledged_across_kills(&url);
    let store = PostgresStore::open(&url, None).unwrap();
    assert_none_lost(&store, &acked);
}

fn acknowledged_across_kills(store: &str) -> Vec<String> {
    // Ids unique to this run: a database outlives test runs.
    let run = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    );
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    for round in 0..4u64 {
        let server = Server::on_store(store, &[]);
        let stop_at = Instant::now() + Duration::from_millis(300 + (round * 211) % 500);
        let senders: Vec<_> = (0..4u64)
            .map(|t| {
                let url = format!("{}/api/v1/ingest/alerts", server.url);
                let (acked, prefix) = (acked.clone(), format!("k{run}-{round}-{t}-"));
                std::thread::spawn(move || send_until_refused(&url, &prefix, &acked))
            })
            .collect();
        std::thread::sleep(stop_at.saturating_duration_since(Instant::now()));
        server.kill();
        for s in senders {
            s.join().unwrap();
        }
    }
    let acked = acked.lock().unwrap().clone();
    eprintln!("{} alerts acknowledged across four kills", acked.len());
    assert!(
        acked.len() > 1000,
        "the senders got through: {}",
        acked.len()
    );
    acked
}

fn assert_none_lost(store: &dyn Store, acked: &[String]) {
    let lost = store.reader().unwrap().missing(acked).unwrap();
    assert!(
        lost.is_empty(),
        "{} acknowledged alerts lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(3)]
    );
}

fn send_until_refused(url: &str, prefix: &str, acked: &Mutex<Vec<String>>) {
    let client = palisade_send::http::client();
    let mut id = 0u64;
    loop {
        let ids: Vec<String> = (id..id + 100).map(|i| format!("{prefix}{i}")).collect();
        id += 100;
        let body: String = ids.iter().map(|i| alert(i) + "\n").collect();
        match client.post(url).body(body).send() {
            Ok(r) if r.status().as_u16() == 200 => acked.lock().unwrap().extend(ids),
            Ok(_) => continue,
            Err(_) => return,
        }
    }
}

/// The audit webhook backend's `EventList` and Fluent Bit's `json_lines`
/// go through the log rules; their alerts are stored.
#[test]
fn pushed_audit_events_and_fluent_bit_records_raise_stored_alerts() {
    let dir = scratch("pushed-logs");
    let server = Server::start(&dir.join("alerts.db"), &[]);
    let client = palisade_send::http::client();
    let event_list = r#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"9c1f","stage":"ResponseComplete","verb":"delete","user":{"username":"mallory","groups":["system:authenticated"]},"sourceIPs":["192.0.2.7"],"objectRef":{"resource":"networkpolicies","namespace":"shop","name":"db-ingress","apiGroup":"networking.k8s.io","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2026-12-02T10:00:00.000000Z","stageTimestamp":"2026-12-02T10:00:00.010000Z"}]}"#;
    let posted = client
        .post(format!("{}/api/v1/ingest/k8s-audit", server.url))
        .body(event_list)
        .send()
        .unwrap();
    assert_eq!(posted.status().as_u16(), 200);
    let answer: serde_json::Value = serde_json::from_str(&posted.text().unwrap()).unwrap();
    assert_eq!(answer["alerts"], 1, "{answer}");
    let failures: String = (10..40)
        .map(|s| format!("{{\"date\":17962056{s}.25,\"log\":\"dial tcp 10.0.0.9:5432: connect: connection refused\",\"kubernetes\":{{\"pod_name\":\"web-1\",\"namespace_name\":\"shop\",\"container_name\":\"app\"}}}}\n"))
        .collect();
    let posted = client
        .post(format!("{}/api/v1/ingest/fluent-bit", server.url))
        .body(failures)
        .send()
        .unwrap();
    assert_eq!(posted.status().as_u16(), 200);
    let answer: serde_json::Value = serde_json::from_str(&posted.text().unwrap()).unwrap();
    assert_eq!(
        (answer["records"].as_u64(), answer["alerts"].as_u64()),
        (Some(30), Some(1)),
        "{answer}"
    );
    let bad = client
        .post(format!("{}/api/v1/ingest/k8s-audit", server.url))
        .body("{not json\n")
        .send()
        .unwrap();
    assert_eq!(bad.status().as_u16(), 400, "a body with nothing readable");
    // Fluent Bit's records: nothing readable is refused with the reason; a
    // bad record beside a good one is counted and the good one read.
    let fluent = |body: &str| {
        let r = client
            .post(format!("{}/api/v1/ingest/fluent-bit", server.url))
            .body(body.to_string())
            .send()
            .unwrap();
        let status = r.status().as_u16();
        (
            status,
            serde_json::from_str::<serde_json::Value>(&r.text().unwrap()).unwrap(),
        )
    };
    let (status, refused) = fluent("{not json\n[1,2\n");
    assert_eq!(status, 400, "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|e| e.contains("no record could be read")),
        "{refused}"
    );
    let good = r#"{"date":1796205700.25,"log":"GET / 200","kubernetes":{"pod_name":"web-1","namespace_name":"shop","container_name":"app"}}"#;
    let (status, mixed) = fluent(&format!("{{not json\n{good}\n"));
    assert_eq!(status, 200, "{mixed}");
    assert_eq!(
        (mixed["records"].as_u64(), mixed["skipped"].as_u64()),
        (Some(1), Some(1)),
        "{mixed}"
    );
    let (listed, rules) = list_alerts(&server, "namespace=shop");
    assert!(rules.iter().any(|r| r == "AUDIT-001"), "{listed}");
    assert!(rules.iter().any(|r| r == "LOG-001"), "{listed}");
    let deleted = listed["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["alert"]["rule"] == "AUDIT-001")
        .unwrap();
    assert_eq!(deleted["alert"]["actor"]["user"], "mallory");
    assert_eq!(deleted["alert"]["origin"], "k8s-audit");
    server.stop();
}

#[test]
fn every_server_command_parses_its_arguments() {
    for command in [["serve", "--help"], ["up", "--help"], ["token", "--help"]] {
        let out = Command::new(env!("CARGO_BIN_EXE_palisade"))
            .args(command)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{command:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A client that sends its headers and then trickles (or stops sending)
/// its body gets 408 once the request timeout passes; the server goes on
/// serving others.
#[test]
fn a_slow_client_is_answered_408() {
    use std::io::{Read, Write};
    let dir = scratch("slow");
    let server = Server::start(&dir.join("alerts.db"), &["--request-timeout", "1"]);
    let address = server.url.trim_start_matches("http://").to_string();
    let mut slow = std::net::TcpStream::connect(&address).unwrap();
    slow.write_all(
        b"POST /api/v1/ingest/alerts HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"id\":",
    )
    .unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let started = Instant::now();
    let mut answer = [0u8; 64];
    let n = slow.read(&mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(5));
    let healthy = support::get(format!("{}/healthz", server.url)).unwrap();
    assert_eq!(healthy.status().as_u16(), 200);
    server.stop();
}

/// `audit --send URL --spool FILE --origin ORIGIN`, with more arguments.
fn audit_send(url: &str, spool: &Path, origin: &str, extra: &[&str]) -> std::process::Output {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/shop");
    Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args([
            "audit", root, "-o", "json", "--send", url, "--origin", origin,
        ])
        .arg("--spool")
        .arg(spool)
        .args(extra)
        .output()
        .unwrap()
}

/// An audit run made while the server is away waits in its spool, and the
/// next run delivers both, oldest first; then the spool is empty.
#[test]
fn an_audit_run_made_while_the_server_is_away_is_delivered_by_the_next_run() {
    let dir = scratch("findings-spool");
    let spool = dir.join("spool.jsonl");
    let away = format!("http://127.0.0.1:{}", free_port());
    let out = audit_send(&away, &spool, "away", &["--send-patience", "1"]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("1 audit run(s) wait in"), "{said}");
    let waiting = dir.join("spool.jsonl.audit-runs");
    assert_eq!(
        std::fs::read_to_string(&waiting).unwrap().lines().count(),
        1
    );

    let server = Server::start(&dir.join("alerts.db"), &[]);
    let out = audit_send(&server.url, &spool, "away", &[]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(said.matches("sent to").count(), 2, "{said}");
    assert!(!said.contains("wait in"), "{said}");
    assert_eq!(
        std::fs::read_to_string(&waiting).unwrap(),
        "",
        "the spool is empty"
    );
    let text = support::get(format!("{}/api/v1/findings?origin=away", server.url))
        .unwrap()
        .text()
        .unwrap();
    let listed: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(listed["runs"][0]["run"]["origin"], "away", "{listed}");
    server.stop();
}

/// `audit --send`: the run's findings and scores are kept, and the latest
/// run is listed, filtered by namespace and severity.
#[test]
fn an_audit_run_is_kept_and_listed_with_its_scores() {
    let dir = scratch("findings");
    let server = Server::start(&dir.join("alerts.db"), &[]);
    let out = audit_send(&server.url, &dir.join("spool.jsonl"), "ci", &[]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("sent to"), "{said}");
    let get = |query: &str| -> serde_json::Value {
        let text = support::get(format!("{}/api/v1/findings{query}", server.url))
            .unwrap()
            .text()
            .unwrap();
        serde_json::from_str(&text).unwrap()
    };
    let all = get("");
    let run = &all["runs"][0];
    assert_eq!(run["run"]["origin"], "ci");
    let findings = run["findings"].as_array().unwrap();
    assert!(!findings.is_empty(), "the shop's planted weaknesses");
    assert!(run["summary"]["namespace_scores"].is_object(), "{run}");
    let high = get("?severity=high");
    let high = high["runs"][0]["findings"].as_array().unwrap();
    assert!(high.len() < findings.len());
    assert!(
        high.iter()
            .all(|f| f["severity"] == "high" || f["severity"] == "critical")
    );
    for (body, reason) in [
        ("not json", "not an audit run"),
        (r#"{"findings":[],"summary":{}}"#, "not an audit run"),
        (
            r#"{"run":{"id":"","origin":"x"},"findings":[],"summary":{}}"#,
            "required",
        ),
        (
            r#"{"run":{"id":"r","origin":"x","time":"later"},"findings":[],"summary":{}}"#,
            "`run.time`",
        ),
    ] {
        let answer = palisade_send::http::client()
            .post(format!("{}/api/v1/ingest/findings", server.url))
            .body(body)
            .send()
            .unwrap();
        assert_eq!(answer.status().as_u16(), 400, "{body}");
        let text = answer.text().unwrap();
        assert!(text.contains(reason), "{body}: {text}");
    }
    let legacy = get("?namespace=legacy");
    assert!(
        legacy["runs"][0]["findings"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["resource"]["namespace"] == "legacy")
    );
    server.stop();
}

/// With `--manifests`, pushed audit events are replayed from the cluster
/// they describe: deleting monitoring's default-deny widens connectivity (AUDIT-013),
/// judged by the engine, beside the deletion itself (AUDIT-001).
#[test]
fn a_pushed_deletion_that_widens_connectivity_is_judged_from_the_manifests() {
    let dir = scratch("widening");
    let shop = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/shop");
    let server = Server::start(&dir.join("alerts.db"), &["--manifests", shop]);
    let event_list = r#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"w1","stage":"ResponseComplete","verb":"delete","user":{"username":"mallory"},"sourceIPs":["192.0.2.7"],"objectRef":{"resource":"networkpolicies","namespace":"monitoring","name":"default-deny-ingress","apiGroup":"networking.k8s.io","apiVersion":"v1"},"responseStatus":{"code":200},"stageTimestamp":"2026-12-02T10:00:00Z"}]}"#;
    let posted = palisade_send::http::client()
        .post(format!("{}/api/v1/ingest/k8s-audit", server.url))
        .body(event_list)
        .send()
        .unwrap();
    assert_eq!(posted.status().as_u16(), 200);
    let (_, rules) = list_alerts(&server, "");
    assert!(
        rules.iter().any(|r| r == "AUDIT-001") && rules.iter().any(|r| r == "AUDIT-013"),
        "{rules:?}"
    );
    server.stop();
}

/// `--manifests` is watched: a policy change shows in the graph without a
/// restart, and a broken version is refused, keeping the last good one.
/// The store keeps a snapshot of each version taken (what alerts judged
/// against it name in `evidence.snapshot`).
#[test]
fn the_graph_follows_the_manifests_without_a_restart() {
    let dir = scratch("reload");
    let cluster = dir.join("cluster");
    std::fs::create_dir_all(&cluster).unwrap();
    let shop = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/shop");
    for file in ["namespaces.yaml", "workloads.yaml", "policies.yaml"] {
        std::fs::copy(shop.join(file), cluster.join(file)).unwrap();
    }
    let cluster_arg = cluster.display().to_string();
    let server = Server::start(&dir.join("alerts.db"), &["--manifests", &cluster_arg]);
    let declared = || support::declared_edges(&server);
    let before = declared();
    assert!(before > 0);
    // Without its policies the shop allows everything: more edges.
    std::fs::remove_file(cluster.join("policies.yaml")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while declared() == before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let open = declared();
    assert!(open > before, "{before} edges, then {open}");
    std::fs::write(
        cluster.join("broken.yaml"),
        "kind: NetworkPolicy\nspec: [unclosed\n",
    )
    .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(declared(), open, "a broken version is refused");

    let read = |path: &str| -> (u16, serde_json::Value) {
        let response = support::get(format!("{}{path}", server.url)).unwrap();
        let status = response.status().as_u16();
        (
            status,
            serde_json::from_str(&response.text().unwrap()).unwrap(),
        )
    };
    let (_, listed) = read("/api/v1/snapshots");
    let versions: Vec<&str> = listed["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["version"].as_str().unwrap())
        .collect();
    assert_eq!(
        versions.len(),
        2,
        "the first and the open version: {listed}"
    );
    assert!(versions.iter().all(|v| v.starts_with("files:")), "{listed}");
    let (status, newest) = read(&format!("/api/v1/snapshots/{}", versions[0]));
    assert_eq!(status, 200);
    assert_eq!(newest["version"], versions[0]);
    assert_eq!(
        newest["summary"]["policies"], 0,
        "the open version: {newest}"
    );
    let (_, first) = read(&format!("/api/v1/snapshots/{}", versions[1]));
    assert!(
        first["summary"]["policies"].as_u64().unwrap() > 0,
        "{first}"
    );
    let edges = |s: &serde_json::Value| {
        s["graph"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["class"] == "declared")
            .count()
    };
    assert_eq!((edges(&first), edges(&newest)), (before, open));
    let (status, missing) = read("/api/v1/snapshots/files:0000");
    assert_eq!(status, 404, "{missing}");
    server.stop();
}

/// `--tls-cert/--tls-key` serve HTTPS, and `--tls-client-ca` requires a
/// client certificate (mTLS). Certificates are made with openssl(1), the
/// client is curl(1).
#[test]
fn https_and_mutual_tls_admit_only_the_clients_they_should() {
    let dir = scratch("tls");
    let pki = Pki::make(&dir);
    let path = |f: &str| pki.path(f);
    let curl = |url: &str, extra: &[&str]| -> (bool, String) {
        let out = Command::new("curl")
            .args(["-s", "-S", "--max-time", "10", "--cacert", &path("ca.pem")])
            .args(extra)
            .arg(url)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let tls = [
        "--tls-cert",
        &path("server.pem"),
        "--tls-key",
        &path("server.key"),
    ];
    let server = Server::start(&dir.join("a.db"), &tls);
    assert!(server.url.starts_with("https://"), "{}", server.url);
    assert_eq!(
        curl(&format!("{}/healthz", server.url), &[]),
        (true, "ok\n".into())
    );
    let plain = server.url.replace("https://", "http://");
    assert!(
        !curl(&format!("{plain}/healthz"), &[]).0,
        "plain HTTP is not spoken"
    );
    server.stop();

    let ca = path("ca.pem");
    let mtls = [&tls[..], &["--tls-client-ca", &ca]].concat();
    let server = Server::start(&dir.join("b.db"), &mtls);
    let healthz = format!("{}/healthz", server.url);
    assert!(
        !curl(&healthz, &[]).0,
        "no client certificate, no connection"
    );
    let with_cert = ["--cert", &path("client.pem"), "--key", &path("client.key")];
    assert_eq!(curl(&healthz, &with_cert), (true, "ok\n".into()));
    let metrics = curl(&format!("{}/metrics", server.url), &with_cert).1;
    assert!(
        metrics.contains("palisade_tls_handshake_failures_total 1"),
        "{metrics}"
    );
    server.stop();
}

/// Palisade's own clients speak https: `--send` to a server that requires
/// a client certificate delivers with `--server-ca` and `--client-cert`,
/// and is refused (the alerts wait in the spool) without either; an
/// https webhook sink with its `ca_file` delivers, and one without it
/// does not trust the receiver.
#[test]
fn senders_and_sinks_speak_https_with_a_named_ca_and_a_client_certificate() {
    let dir = scratch("tls-clients");
    let pki = Pki::make(&dir);
    let receiver = Receiver::https(
        Path::new(&pki.path("server.pem")),
        Path::new(&pki.path("server.key")),
        |_, _| (200, vec![], "ok".into()),
    );
    let config = dir.join("server.yaml");
    std::fs::write(
        &config,
        format!(
            "sinks:\n- name: trusted\n  type: webhook\n  url: {url}/hook\n  ca_file: {ca}\n- name: untrusted\n  type: webhook\n  url: {url}/other\n  max_attempts: 1\n",
            url = receiver.url,
            ca = pki.path("ca.pem")
        ),
    )
    .unwrap();
    let server = Server::start(
        &dir.join("alerts.db"),
        &[
            "--tls-cert",
            &pki.path("server.pem"),
            "--tls-key",
            &pki.path("server.key"),
            "--tls-client-ca",
            &pki.path("ca.pem"),
            "--config",
            &config.display().to_string(),
        ],
    );
    let spool = dir.join("spool.jsonl");
    let (ca, cert, key) = (
        pki.path("ca.pem"),
        pki.path("client.pem"),
        pki.path("client.key"),
    );
    let without_ca = verify_and_send(&server.url, &spool, &["--send-patience", "1"]);
    assert!(without_ca.contains(" 0 delivered"), "{without_ca}");
    let without_cert = verify_and_send(
        &server.url,
        &spool,
        &["--send-patience", "1", "--server-ca", &ca],
    );
    assert!(without_cert.contains(" 0 delivered"), "{without_cert}");
    let said = verify_and_send(
        &server.url,
        &spool,
        &[
            "--server-ca",
            &ca,
            "--client-cert",
            &cert,
            "--client-key",
            &key,
        ],
    );
    assert!(
        said.contains("left in the spool") && !said.contains(" 0 delivered"),
        "{said}"
    );
    assert!(said.contains(", 0 left in the spool"), "{said}");
    assert!(!stored(&dir.join("alerts.db")).is_empty());

    let hooks = receiver.wait_for(1, Duration::from_secs(20));
    assert!(hooks.iter().all(|r| r.path == "/hook"), "{hooks:?}");
    assert!(!hooks.is_empty(), "the trusted sink delivered over https");
    let status = |name: &str| -> serde_json::Value {
        let out = Command::new("curl")
            .args(["-s", "--cacert", &ca, "--cert", &cert, "--key", &key])
            .arg(format!("{}/api/v1/sinks", server.url))
            .output()
            .unwrap();
        let all: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        all["sinks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .cloned()
            .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while status("untrusted")["dead"] == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_ne!(status("untrusted")["dead"], 0, "{}", status("untrusted"));
    assert_eq!(status("trusted")["dead"], 0);
    server.stop();
}

/// `--metrics-listen` moves `/metrics` to its own listener, where the
/// scraper needs no token; the main listener no longer serves it.
#[test]
fn metrics_move_to_their_own_listener() {
    let dir = scratch("metrics-listen");
    let tokens = dir.join("tokens");
    let read = make_token(&tokens, "reader", "read");
    let metrics_at = format!("127.0.0.1:{}", support::free_port());
    let server = Server::start(
        &dir.join("alerts.db"),
        &[
            "--tokens",
            &tokens.display().to_string(),
            "--metrics-listen",
            &metrics_at,
        ],
    );
    let client = palisade_send::http::client();
    let scrape = client
        .get(format!("http://{metrics_at}/metrics"))
        .send()
        .unwrap();
    assert_eq!(scrape.status(), 200);
    assert!(scrape.text().unwrap().contains("palisade_build_info"));
    let main = client
        .get(format!("{}/metrics", server.url))
        .bearer_auth(&read)
        .send()
        .unwrap();
    assert_eq!(main.status(), 404, "moved away from the main listener");
    let alerts = client
        .get(format!("{}/api/v1/alerts", server.url))
        .send()
        .unwrap();
    assert_eq!(
        alerts.status(),
        401,
        "the main listener still asks for a token"
    );
    server.stop();
}

/// `--rate-limit N`: each token gets N requests a second (bursts of 2N);
/// over it the answer is 429 with `Retry-After`, and other clients are not
/// slowed.
#[test]
fn a_client_over_its_rate_limit_is_told_when_to_come_back() {
    let dir = scratch("rate-limit");
    let tokens = dir.join("tokens");
    let token = |name: &str| make_token(&tokens, name, "read");
    let (greedy, other) = (token("greedy"), token("other"));
    let server = Server::start(
        &dir.join("alerts.db"),
        &[
            "--tokens",
            &tokens.display().to_string(),
            "--rate-limit",
            "5",
        ],
    );
    let client = palisade_send::http::client();
    let get = |token: &str| {
        client
            .get(format!("{}/api/v1/sinks", server.url))
            .bearer_auth(token)
            .send()
            .unwrap()
    };
    let answers: Vec<_> = (0..30).map(|_| get(&greedy)).collect();
    let limited: Vec<_> = answers.iter().filter(|a| a.status() == 429).collect();
    assert!(
        !limited.is_empty() && limited.len() < 30,
        "{} of 30 limited",
        limited.len()
    );
    assert!(
        limited
            .iter()
            .all(|a| a.headers().contains_key("retry-after"))
    );
    assert_eq!(
        get(&other).status(),
        200,
        "another client keeps its own rate"
    );
    let metrics = client
        .get(format!("{}/metrics", server.url))
        .bearer_auth(&other)
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains(&format!(
            "palisade_ingest_requests_total{{outcome=\"rate_limited\"}} {}",
            limited.len()
        )),
        "{metrics}"
    );
    server.stop();
}
