//! A stand-in for the Kubernetes API server (none can run here) that
//! speaks its list/watch protocol as documented in
//! <https://kubernetes.io/docs/reference/using-api/api-concepts/>:
//!
//! - a list answers every object of the collection with the
//!   `resourceVersion` it was taken at, in pages of `limit` with a
//!   `continue` token; a token from before a compaction is refused 410;
//! - a watch (`watch=1`) streams, with chunked encoding, one JSON event per
//!   line (`ADDED`, `MODIFIED`, `DELETED`, `BOOKMARK` when asked for with
//!   `allowWatchBookmarks`) for every change after its `resourceVersion`,
//!   and ends after `timeoutSeconds`;
//! - a watch from a version older than the last compaction gets one
//!   `ERROR` event with a 410 `Expired` Status, as the watch cache sends;
//! - resourceVersions are one cluster-wide counter, as etcd's revision.
//!
//! The test drives it: changes, compactions, broken connections, refusals.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[derive(Default)]
struct State {
    revision: u64,
    /// Collection path → key → object.
    objects: BTreeMap<String, BTreeMap<String, Value>>,
    /// (revision, collection path, event type, object).
    events: Vec<(u64, String, &'static str, Value)>,
    /// Watches from a version below this are expired.
    compacted: u64,
    /// Bumped to break every open watch connection.
    breaks: u64,
    /// Collection path → answers still to refuse with this status.
    refusals: BTreeMap<String, (usize, u16)>,
    /// Every request line (path and query) and its Authorization header.
    requests: Vec<(String, Option<String>)>,
    bookmark_every: Option<Duration>,
    /// Collection paths whose next watch sends a line that is not JSON.
    garbage: std::collections::BTreeSet<String>,
}

#[derive(Clone)]
pub struct Replay {
    pub url: String,
    shared: Arc<(Mutex<State>, Condvar)>,
}

impl Replay {
    pub fn start() -> Replay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let shared: Arc<(Mutex<State>, Condvar)> = Arc::default();
        shared.0.lock().unwrap().revision = 100;
        let replay = Replay { url, shared };
        let server = replay.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let server = server.clone();
                std::thread::spawn(move || server.connection(stream));
            }
        });
        replay
    }

    /// Creates, changes or deletes (`ADDED`, `MODIFIED`, `DELETED`) an
    /// object of the collection at `path`; gives its new resourceVersion.
    pub fn apply(&self, path: &str, kind: &'static str, object: Value) -> u64 {
        let (lock, wake) = &*self.shared;
        let revision = apply(&mut lock.lock().unwrap(), path, kind, object);
        wake.notify_all();
        revision
    }

    /// In one step: every watch connection breaks, the object is deleted
    /// and the history compacted, so that only a new list can tell.
    pub fn delete_while_disconnected(&self, path: &str, object: Value) {
        let (lock, wake) = &*self.shared;
        let mut state = lock.lock().unwrap();
        state.breaks += 1;
        apply(&mut state, path, "DELETED", object);
        state.compacted = state.revision;
        state.events.clear();
        wake.notify_all();
    }

    /// Forgets the history: watches from any version before now expire.
    pub fn compact(&self) {
        let mut state = self.shared.0.lock().unwrap();
        state.compacted = state.revision;
        state.events.clear();
    }

    /// Breaks every open watch connection (no final chunk), as a restart
    /// of the API server or a load balancer would.
    pub fn break_watches(&self) {
        let (lock, wake) = &*self.shared;
        lock.lock().unwrap().breaks += 1;
        wake.notify_all();
    }

    /// Refuses the next `times` requests for the collection with `status`.
    pub fn refuse(&self, path: &str, times: usize, status: u16) {
        let mut state = self.shared.0.lock().unwrap();
        state.refusals.insert(path.to_string(), (times, status));
    }

    /// The next watch of the collection starts with a line that is not an
    /// event.
    pub fn garble_next_watch(&self, path: &str) {
        self.shared
            .0
            .lock()
            .unwrap()
            .garbage
            .insert(path.to_string());
    }

    pub fn bookmarks_every(&self, every: Duration) {
        self.shared.0.lock().unwrap().bookmark_every = Some(every);
    }

    pub fn revision(&self) -> u64 {
        self.shared.0.lock().unwrap().revision
    }

    /// The requests so far: path with query, and the Authorization header.
    pub fn requests(&self) -> Vec<(String, Option<String>)> {
        self.shared.0.lock().unwrap().requests.clone()
    }

    fn connection(&self, stream: TcpStream) {
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut out = stream;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let target = line.split_whitespace().nth(1).unwrap_or("/").to_string();
            let mut authorization = None;
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) == 0 {
                    return;
                }
                let header = header.trim_end();
                if header.is_empty() {
                    break;
                }
                if let Some((name, value)) = header.split_once(':')
                    && name.eq_ignore_ascii_case("authorization")
                {
                    authorization = Some(value.trim().to_string());
                }
            }
            let (path, query) = target.split_once('?').unwrap_or((&target, ""));
            let query: BTreeMap<&str, String> = query
                .split('&')
                .filter_map(|p| p.split_once('='))
                .map(|(k, v)| (k, decode(v)))
                .collect();
            let refused = {
                let mut state = self.shared.0.lock().unwrap();
                state.requests.push((target.clone(), authorization));
                match state.refusals.get_mut(path) {
                    Some((times, status)) if *times > 0 => {
                        *times -= 1;
                        Some(*status)
                    }
                    _ => None,
                }
            };
            let kept = if let Some(status) = refused {
                let body = status_json(status, "Forbidden", "refused by the test");
                respond(&mut out, status, &body)
            } else if query.get("watch").is_some_and(|w| w == "1" || w == "true") {
                self.watch(&mut out, path, &query)
            } else {
                self.list(&mut out, path, &query)
            };
            if !kept {
                return;
            }
        }
    }

    fn list(&self, out: &mut TcpStream, path: &str, query: &BTreeMap<&str, String>) -> bool {
        let state = self.shared.0.lock().unwrap();
        let limit: usize = query
            .get("limit")
            .and_then(|l| l.parse().ok())
            .unwrap_or(usize::MAX);
        let (taken_at, offset) = match query.get("continue") {
            None => (state.revision, 0),
            Some(token) => {
                let (at, offset) = token.split_once(',').unwrap();
                (at.parse::<u64>().unwrap(), offset.parse::<usize>().unwrap())
            }
        };
        if taken_at < state.compacted {
            let body = status_json(
                410,
                "Expired",
                "The provided continue parameter is too old to display a consistent list result.",
            );
            drop(state);
            return respond(out, 410, &body);
        }
        let items: Vec<Value> = state
            .objects
            .get(path)
            .map(|c| c.values().cloned().collect())
            .unwrap_or_default();
        let page: Vec<Value> = items
            .iter()
            .skip(offset)
            .take(limit)
            .map(|item| {
                // List items carry neither apiVersion nor kind.
                let mut item = item.clone();
                if let Value::Object(map) = &mut item {
                    map.remove("apiVersion");
                    map.remove("kind");
                }
                item
            })
            .collect();
        let mut metadata = json!({"resourceVersion": taken_at.to_string()});
        if offset + page.len() < items.len() {
            metadata["continue"] = json!(format!("{taken_at},{}", offset + page.len()));
        }
        let body = json!({"kind": "List", "apiVersion": "v1", "metadata": metadata, "items": page});
        drop(state);
        respond(out, 200, &body.to_string())
    }

    /// Streams the events after the asked version until the timeout (a
    /// clean end) or a break (the connection dropped).
    fn watch(&self, out: &mut TcpStream, path: &str, query: &BTreeMap<&str, String>) -> bool {
        let from: u64 = query
            .get("resourceVersion")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let timeout = Duration::from_secs(
            query
                .get("timeoutSeconds")
                .and_then(|t| t.parse().ok())
                .unwrap_or(300),
        );
        let bookmarks = query
            .get("allowWatchBookmarks")
            .is_some_and(|b| b == "true");
        let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
        if out.write_all(head.as_bytes()).is_err() {
            return false;
        }
        let (lock, wake) = &*self.shared;
        let mut state = lock.lock().unwrap();
        if from < state.compacted {
            let status: Value = serde_json::from_str(&status_json(
                410,
                "Expired",
                &format!("too old resource version: {from} ({})", state.compacted),
            ))
            .unwrap();
            drop(state);
            let event = json!({"type": "ERROR", "object": status});
            return chunk(out, &event.to_string()) && chunk(out, "");
        }
        if state.garbage.remove(path) {
            drop(state);
            return chunk(out, "{\"type\": \"ADDED\", \"object\": [tru") && chunk(out, "");
        }
        let breaks = state.breaks;
        let ends = Instant::now() + timeout;
        let mut sent = from;
        let mut last_bookmark = Instant::now();
        loop {
            // A break first: what changed while broken must not be sent.
            if state.breaks != breaks {
                // A broken connection: no final chunk.
                let _ = out.shutdown(std::net::Shutdown::Both);
                return false;
            }
            let now = Instant::now();
            if now >= ends {
                drop(state);
                return chunk(out, "");
            }
            let pending: Vec<(u64, Value)> = state
                .events
                .iter()
                .filter(|(rev, p, _, _)| *rev > sent && p == path)
                .map(|(rev, _, kind, object)| (*rev, json!({"type": kind, "object": object})))
                .collect();
            let bookmark_every = state.bookmark_every;
            let revision = state.revision;
            drop(state);
            for (rev, event) in pending {
                if !chunk(out, &event.to_string()) {
                    return false;
                }
                sent = rev;
            }
            if let Some(every) = bookmark_every.filter(|_| bookmarks)
                && last_bookmark.elapsed() >= every
            {
                let event = json!({"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": revision.to_string()}}});
                if !chunk(out, &event.to_string()) {
                    return false;
                }
                sent = sent.max(revision);
                last_bookmark = Instant::now();
            }
            state = lock.lock().unwrap();
            let wait = ends
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(50));
            state = wake.wait_timeout(state, wait).unwrap().0;
        }
    }
}

fn apply(state: &mut State, path: &str, kind: &'static str, mut object: Value) -> u64 {
    state.revision += 1;
    let revision = state.revision;
    object["metadata"]["resourceVersion"] = json!(revision.to_string());
    let meta = &object["metadata"];
    let key = format!(
        "{}/{}",
        meta["namespace"].as_str().unwrap_or(""),
        meta["name"].as_str().unwrap()
    );
    let collection = state.objects.entry(path.to_string()).or_default();
    if kind == "DELETED" {
        collection.remove(&key);
    } else {
        collection.insert(key, object.clone());
    }
    state
        .events
        .push((revision, path.to_string(), kind, object));
    revision
}

fn status_json(code: u16, reason: &str, message: &str) -> String {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code})
    .to_string()
}

fn respond(out: &mut TcpStream, status: u16, body: &str) -> bool {
    let head = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    out.write_all(head.as_bytes())
        .and_then(|()| out.write_all(body.as_bytes()))
        .is_ok()
}

/// One chunk holding `line` and its newline; an empty `line` is the last
/// chunk.
fn chunk(out: &mut TcpStream, line: &str) -> bool {
    let frame = if line.is_empty() {
        "0\r\n\r\n".to_string()
    } else {
        format!("{:x}\r\n{line}\n\r\n", line.len() + 1)
    };
    out.write_all(frame.as_bytes())
        .and_then(|()| out.flush())
        .is_ok()
}

fn decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&value[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Objects of each kind, as the API gives them.
pub fn namespace(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "uid": format!("ns-{name}"), "labels": labels}})
}

pub fn pod(namespace: &str, name: &str, labels: Value, ip: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "uid": format!("uid-{name}"), "labels": labels},
        "spec": {"nodeName": "node-1", "containers": [{"name": "app", "image": "app:1", "ports": [{"containerPort": 8080}]}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}})
}

pub fn deny_all_ingress(namespace: &str, name: &str) -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}})
}

pub const PODS: &str = "/api/v1/pods";
pub const NAMESPACES: &str = "/api/v1/namespaces";
pub const POLICIES: &str = "/apis/networking.k8s.io/v1/networkpolicies";
pub const NODES: &str = "/api/v1/nodes";
