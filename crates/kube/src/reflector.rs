//! One collection's list-then-watch loop.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::sync::atomic::Ordering;

use palisade_inventory::{DecodedObject, Inventory};
use palisade_send::Backoff;
use serde::Deserialize;
use serde_json::Value;

use crate::api::{Api, ApiError, Status};
use crate::{Resource, Shared};

/// How long watches last and how lists are paged.
#[derive(Clone, Debug)]
pub struct Timing {
    /// The `timeoutSeconds` asked of each watch: the server ends it then,
    /// and it is resumed from the last version.
    pub watch_seconds: u64,
    /// Items per page of a list (`limit`).
    pub page: usize,
}

impl Default for Timing {
    /// Five minutes, as client-go's minimum, and its page of 500.
    fn default() -> Timing {
        Timing {
            watch_seconds: 300,
            page: 500,
        }
    }
}

/// How a watch ended.
enum WatchEnd {
    /// The server closed it (its timeout) or the connection broke: resume
    /// from the last version seen.
    Ended,
    /// The version is too old (410): list again.
    Expired,
    /// An unreadable answer or another refusal: list again after a wait.
    Failed(String),
}

#[derive(Deserialize)]
struct ListMeta {
    #[serde(default, rename = "resourceVersion")]
    resource_version: String,
    #[serde(default, rename = "continue")]
    next: Option<String>,
}

#[derive(Deserialize)]
struct List {
    metadata: ListMeta,
    #[serde(default)]
    items: Vec<Value>,
}

#[derive(Deserialize)]
struct Event {
    #[serde(rename = "type")]
    kind: String,
    object: Value,
}

pub(crate) fn run(api: &Api, index: usize, resource: &Resource, shared: &Shared, timing: &Timing) {
    let stats = &shared.stats[index];
    let mut backoff = Backoff::new();
    while !shared.stop.load(Ordering::Relaxed) {
        let mut version = match list(api, index, resource, shared, timing.page) {
            Ok(version) => version,
            Err(e) => {
                shared.failed(index, e.to_string());
                std::thread::sleep(backoff.wait());
                continue;
            }
        };
        stats.lists.fetch_add(1, Ordering::Relaxed);
        backoff.reset();
        loop {
            if shared.stop.load(Ordering::Relaxed) {
                return;
            }
            match watch(api, index, resource, shared, timing, &mut version) {
                WatchEnd::Ended => {
                    stats.rewatches.fetch_add(1, Ordering::Relaxed);
                }
                WatchEnd::Expired => {
                    stats.expired.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                WatchEnd::Failed(why) => {
                    shared.failed(index, why);
                    std::thread::sleep(backoff.wait());
                    break;
                }
            }
        }
    }
}

/// Lists the whole collection, page by page, and replaces what is held of
/// it only once the last page came; gives the list's resourceVersion. A
/// continue token that expired mid-way (410) starts the list again, as
/// the API documents.
fn list(
    api: &Api,
    index: usize,
    resource: &Resource,
    shared: &Shared,
    page: usize,
) -> Result<String, ApiError> {
    'again: loop {
        let mut objects = BTreeMap::new();
        let mut next: Option<String> = None;
        loop {
            let mut query = format!("{}?limit={page}", resource.path);
            if let Some(token) = &next {
                query.push_str("&continue=");
                query.push_str(&encode(token));
            }
            let body = match api.get(&query) {
                Ok(body) => body,
                Err(ApiError::Gone(_)) if next.is_some() => continue 'again,
                Err(e) => return Err(e),
            };
            let list: List = serde_json::from_reader(body).map_err(|e| {
                ApiError::Failed(format!("{}: unreadable list: {e}", resource.name))
            })?;
            for item in list.items {
                if let Some((key, version, object)) = decode(resource, item) {
                    objects.insert(key, (version, object));
                }
            }
            next = list.metadata.next.filter(|t| !t.is_empty());
            if next.is_none() {
                shared.replace(index, objects);
                return Ok(list.metadata.resource_version);
            }
        }
    }
}

/// Follows the collection from `version` until the watch ends; every
/// change and bookmark moves `version` on.
fn watch(
    api: &Api,
    index: usize,
    resource: &Resource,
    shared: &Shared,
    timing: &Timing,
    version: &mut String,
) -> WatchEnd {
    let query = format!(
        "{}?watch=1&allowWatchBookmarks=true&resourceVersion={}&timeoutSeconds={}",
        resource.path,
        encode(version),
        timing.watch_seconds
    );
    let body = match api.get(&query) {
        Ok(body) => body,
        Err(ApiError::Gone(_)) => return WatchEnd::Expired,
        Err(ApiError::Failed(why)) => return WatchEnd::Failed(why),
    };
    let stats = &shared.stats[index];
    let mut lines = BufReader::new(body);
    let mut line = String::new();
    loop {
        line.clear();
        match lines.read_line(&mut line) {
            Ok(0) | Err(_) => return WatchEnd::Ended,
            Ok(_) => {}
        }
        if line.trim().is_empty() {
            continue;
        }
        let event: Event = match serde_json::from_str(&line) {
            Ok(event) => event,
            Err(e) => {
                return WatchEnd::Failed(format!("{}: unreadable watch event: {e}", resource.name));
            }
        };
        let object_version = event.object["metadata"]["resourceVersion"]
            .as_str()
            .map(str::to_string);
        match event.kind.as_str() {
            "ADDED" | "MODIFIED" => {
                if let Some((key, v, object)) = decode(resource, event.object) {
                    shared.upsert(index, key, v, object);
                }
                stats.events.fetch_add(1, Ordering::Relaxed);
            }
            "DELETED" => {
                if let Some(key) = object_key(&event.object) {
                    shared.remove(index, &key);
                }
                stats.events.fetch_add(1, Ordering::Relaxed);
            }
            "BOOKMARK" => {
                stats.bookmarks.fetch_add(1, Ordering::Relaxed);
            }
            "ERROR" => {
                let status: Status = serde_json::from_value(event.object).unwrap_or_default();
                if status.code == 410 {
                    return WatchEnd::Expired;
                }
                return WatchEnd::Failed(format!(
                    "{}: watch error {} {}: {}",
                    resource.name, status.code, status.reason, status.message
                ));
            }
            other => {
                return WatchEnd::Failed(format!(
                    "{}: unknown watch event type `{other}`",
                    resource.name
                ));
            }
        }
        if let Some(v) = object_version {
            *version = v;
        }
        if shared.stop.load(Ordering::Relaxed) {
            return WatchEnd::Ended;
        }
    }
}

/// `namespace/name` (just `name` for cluster-scoped objects).
fn object_key(object: &Value) -> Option<String> {
    let meta = &object["metadata"];
    let name = meta["name"].as_str()?;
    Some(match meta["namespace"].as_str() {
        Some(ns) if !ns.is_empty() => format!("{ns}/{name}"),
        _ => name.to_string(),
    })
}

/// The object decoded as the inventory reads manifests, under its key and
/// version. List items lack `apiVersion` and `kind`: they are the list's.
fn decode(resource: &Resource, mut object: Value) -> Option<(String, String, DecodedObject)> {
    let key = object_key(&object)?;
    let version = object["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if let Value::Object(map) = &mut object {
        map.entry("apiVersion")
            .or_insert_with(|| resource.api_version.into());
        map.entry("kind").or_insert_with(|| resource.kind.into());
    }
    let label = format!("{} {key}", resource.name);
    let (mut decoded, _) = Inventory::decode_text(&label, &object.to_string());
    decoded.pop().map(|object| (key, version, object))
}

/// Percent-encodes a query value (continue tokens are base64 with `=`).
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_namespaced_and_cluster_scoped_objects() {
        let pod = serde_json::json!({"metadata": {"name": "a", "namespace": "shop"}});
        let node = serde_json::json!({"metadata": {"name": "n1"}});
        assert_eq!(object_key(&pod).as_deref(), Some("shop/a"));
        assert_eq!(object_key(&node).as_deref(), Some("n1"));
        assert_eq!(object_key(&serde_json::json!({"metadata": {}})), None);
    }

    #[test]
    fn continue_tokens_are_percent_encoded() {
        assert_eq!(encode("eyJ2Ij0=/+"), "eyJ2Ij0%3D%2F%2B");
        assert_eq!(encode("123"), "123");
    }

    #[test]
    fn list_items_take_the_lists_kind() {
        let item = serde_json::json!({"metadata": {"name": "db", "namespace": "shop", "resourceVersion": "7"}, "spec": {"podSelector": {}}});
        let policies = &crate::RESOURCES[4];
        let (key, version, object) = decode(policies, item).unwrap();
        assert_eq!((key.as_str(), version.as_str()), ("shop/db", "7"));
        assert_eq!(object.key(), Some(("NetworkPolicy", "shop", "db")));
    }
}
