//! What the server's tests share: a `palisade serve` child process and
//! scratch directories.

#![allow(dead_code)] // each test file uses part of it

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub mod browser;
pub mod pki;
pub mod receiver;

pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("palisade-serve-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Whether every one of `paths` (programs a test runs) is installed; in
/// CI (privileged tests required) a missing one is a failure, elsewhere a
/// loud skip.
pub fn have(paths: &[&str], test: &str) -> bool {
    let missing: Vec<&&str> = paths.iter().filter(|p| !Path::new(p).exists()).collect();
    if missing.is_empty() {
        return true;
    }
    let required = std::env::var("PALISADE_PRIVILEGED_TESTS").is_ok_and(|v| v == "require");
    assert!(
        !required,
        "{test}: {missing:?} missing (`.ci/run` installs them)"
    );
    eprintln!("SKIPPED {test}: {missing:?} missing");
    false
}

/// Posts `body` to the server's ingest; it must be taken whole.
pub fn post_alerts(server: &Server, body: &str) {
    let response = palisade_send::http::client()
        .post(format!("{}/api/v1/ingest/alerts", server.url))
        .body(body.to_string())
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
}

/// `GET /api/v1/alerts?QUERY`, and the rule of each alert listed.
pub fn list_alerts(server: &Server, query: &str) -> (serde_json::Value, Vec<String>) {
    let text = get(format!("{}/api/v1/alerts?{query}", server.url))
        .and_then(|r| r.text())
        .unwrap();
    let listed: serde_json::Value = serde_json::from_str(&text).unwrap();
    let rules = listed["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["alert"]["rule"].as_str().unwrap_or("").to_string())
        .collect();
    (listed, rules)
}

/// GET `url` with Palisade's own HTTP client (reqwest alone has no TLS
/// provider in this build).
pub fn get(url: impl reqwest::IntoUrl) -> reqwest::Result<reqwest::blocking::Response> {
    palisade_send::http::client().get(url).send()
}

/// GET `url` and its JSON answer; `Null` when there is none (not yet
/// listening, not JSON), for the callers that wait for one.
pub fn get_json(url: &str) -> serde_json::Value {
    get(url)
        .and_then(|r| r.text())
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// The alerts Alertmanager at `url` holds, once it holds any (or what it
/// answered last when `within` passed without).
pub fn alertmanager_alerts(url: &str, within: Duration) -> serde_json::Value {
    let listed = format!("{url}/api/v2/alerts");
    let mut held = serde_json::Value::Null;
    wait_until(within, || {
        held = get_json(&listed);
        held.as_array().is_some_and(|a| !a.is_empty())
    });
    held
}

/// How many edges of the server's graph the declared policies allow.
pub fn declared_edges(server: &Server) -> usize {
    let text = get(format!("{}/api/v1/graph", server.url))
        .unwrap()
        .text()
        .unwrap();
    let graph: serde_json::Value = serde_json::from_str(&text).unwrap();
    graph["edges"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["class"] == "declared")
        .count()
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    probe.local_addr().unwrap().port()
}

pub struct Server {
    pub child: Child,
    pub url: String,
}

impl Server {
    /// Starts the server and waits for the line that gives its address.
    pub fn start(db: &Path, extra: &[&str]) -> Server {
        Server::on_store(&format!("sqlite:{}", db.display()), extra)
    }

    /// A server on any store URL (`postgres://...`).
    pub fn on_store(store: &str, extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_palisade"))
            .args(["serve", "--listen", "127.0.0.1:0", "--store", store])
            .args(extra)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut said = Vec::new();
        let url = loop {
            let mut line = String::new();
            if stderr.read_line(&mut line).unwrap_or(0) == 0 {
                let _ = child.kill();
                panic!("the server stopped before it listened: {said:?}");
            }
            if let Some(url) = line
                .split_whitespace()
                .find(|w| w.starts_with("http://") || w.starts_with("https://"))
                .filter(|_| line.contains("listening on"))
            {
                break url.to_string();
            }
            said.push(line);
        };
        // Keep draining stderr so the server never blocks on it.
        std::thread::spawn(move || for _ in stderr.lines() {});
        Server { child, url }
    }

    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    pub fn stop(mut self) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(self.child.wait().unwrap().success());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A program a test started, killed when the test ends.
pub struct Daemon(pub Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether `ready` holds within `within`, asked every 50 ms.
pub fn wait_until(within: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if ready() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    ready()
}

/// Debian's Alertmanager on loopback, with a route that delivers nowhere;
/// its URL.
pub fn alertmanager(dir: &Path) -> (Daemon, String) {
    let port = free_port();
    std::fs::write(
        dir.join("am.yml"),
        "route:\n  receiver: none\nreceivers:\n- name: none\n",
    )
    .unwrap();
    let child = Command::new("/usr/bin/prometheus-alertmanager")
        .arg(format!("--config.file={}", dir.join("am.yml").display()))
        .arg(format!("--storage.path={}", dir.join("am-data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let status = format!("{url}/api/v2/status");
    assert!(
        wait_until(Duration::from_secs(10), || get(&status).is_ok()),
        "alertmanager did not start"
    );
    (Daemon(child), url)
}
