//! The live inventory against a stand-in API server that replays the
//! list/watch protocol: the first list, changes on the watch, paged lists,
//! a broken watch resumed from its last version, an expired version listed
//! again (with what changed meanwhile), bookmarks, refusals and tokens.

mod replay;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use palisade_kube::{Api, RESOURCES, Snapshot, Watcher, reflector::Timing};
use replay::*;
use serde_json::json;

fn api(replay: &Replay) -> Api {
    Api::new(
        &replay.url,
        None,
        &Default::default(),
        Duration::from_secs(10),
    )
    .unwrap()
}

fn quick() -> Timing {
    Timing {
        watch_seconds: 2,
        page: 500,
    }
}

fn stat(watcher: &Watcher, resource: &str, pick: fn(&palisade_kube::ResourceStats) -> u64) -> u64 {
    let index = RESOURCES.iter().position(|r| r.name == resource).unwrap();
    pick(&watcher.stats()[index])
}

/// Waits for a snapshot that satisfies `wanted`.
fn until(watcher: &mut Watcher, what: &str, wanted: impl Fn(&Snapshot) -> bool) -> Snapshot {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = None;
    while Instant::now() < deadline {
        if let Some(snapshot) = watcher.changed() {
            if wanted(&snapshot) {
                return snapshot;
            }
            last = Some(snapshot.version);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("no snapshot with {what} within 10 s (last {last:?})");
}

fn pods(snapshot: &Snapshot) -> Vec<String> {
    let mut names: Vec<String> = snapshot
        .inventory
        .workloads
        .iter()
        .flat_map(|w| {
            w.pods
                .iter()
                .map(move |p| format!("{}/{}", w.namespace, p.name))
        })
        .collect();
    names.sort();
    names
}

fn seeded() -> Replay {
    let replay = Replay::start();
    replay.apply(NAMESPACES, "ADDED", namespace("shop", json!({"team": "a"})));
    replay.apply(
        PODS,
        "ADDED",
        pod("shop", "web-1", json!({"app": "web"}), "10.0.0.1"),
    );
    replay.apply(
        PODS,
        "ADDED",
        pod("shop", "db-1", json!({"app": "db"}), "10.0.0.2"),
    );
    replay
}

#[test]
fn lists_every_collection_then_follows_changes_on_the_watch() {
    let replay = seeded();
    let mut watcher = Watcher::start_with(api(&replay), quick()).unwrap();
    watcher.wait_synced(Duration::from_secs(10)).unwrap();
    let first = watcher.changed().expect("a first snapshot once listed");
    assert_eq!(pods(&first), ["shop/db-1", "shop/web-1"]);
    assert!(first.inventory.policies.is_empty());
    assert!(first.version.starts_with("k8s:"), "{}", first.version);
    assert!(watcher.changed().is_none(), "nothing changed");

    replay.apply(POLICIES, "ADDED", deny_all_ingress("shop", "deny"));
    let with_policy = until(&mut watcher, "the policy", |s| {
        s.inventory.policies.len() == 1
    });
    assert_eq!(with_policy.inventory.policies[0].name, "deny");
    assert_ne!(with_policy.version, first.version);

    replay.apply(
        PODS,
        "DELETED",
        pod("shop", "db-1", json!({"app": "db"}), "10.0.0.2"),
    );
    let mut relabelled = pod(
        "shop",
        "web-1",
        json!({"app": "web", "tier": "front"}),
        "10.0.0.1",
    );
    relabelled["metadata"]["uid"] = json!("uid-web-1");
    replay.apply(PODS, "MODIFIED", relabelled);
    let after = until(&mut watcher, "the deletion and the relabel", |s| {
        pods(s) == ["shop/web-1"]
            && s.inventory.workloads[0].pods[0]
                .labels
                .get("tier")
                .map(String::as_str)
                == Some("front")
    });
    assert!(after.diagnostics.is_empty(), "{:?}", after.diagnostics);
    assert_eq!(
        stat(&watcher, "pods", |s| s.lists.load(Ordering::Relaxed)),
        1
    );
    assert!(stat(&watcher, "pods", |s| s.events.load(Ordering::Relaxed)) >= 2);
}

#[test]
fn a_large_collection_is_listed_in_pages() {
    let replay = Replay::start();
    replay.apply(NAMESPACES, "ADDED", namespace("big", json!({})));
    for n in 0..1203 {
        let ip = format!("10.1.{}.{}", n / 250, n % 250 + 1);
        replay.apply(
            PODS,
            "ADDED",
            pod(
                "big",
                &format!("p-{n:04}"),
                json!({"n": n.to_string()}),
                &ip,
            ),
        );
    }
    let timing = Timing {
        watch_seconds: 2,
        page: 500,
    };
    let mut watcher = Watcher::start_with(api(&replay), timing).unwrap();
    watcher.wait_synced(Duration::from_secs(10)).unwrap();
    assert_eq!(pods(&watcher.changed().unwrap()).len(), 1203);
    let pages: Vec<String> = replay
        .requests()
        .into_iter()
        .map(|(target, _)| target)
        .filter(|t| t.starts_with("/api/v1/pods?limit=500"))
        .collect();
    assert_eq!(pages.len(), 3, "{pages:?}");
    assert!(pages[1].contains("&continue=") && pages[2].contains("&continue="));
}

#[test]
fn a_broken_watch_resumes_from_its_last_version_without_listing_again() {
    let replay = seeded();
    let mut watcher = Watcher::start_with(api(&replay), quick()).unwrap();
    watcher.wait_synced(Duration::from_secs(10)).unwrap();
    watcher.changed().unwrap();
    let seen = replay.apply(
        PODS,
        "ADDED",
        pod("shop", "api-1", json!({"app": "api"}), "10.0.0.3"),
    );
    until(&mut watcher, "api-1", |s| {
        pods(s).contains(&"shop/api-1".to_string())
    });
    replay.break_watches();
    replay.apply(
        PODS,
        "ADDED",
        pod("shop", "api-2", json!({"app": "api"}), "10.0.0.4"),
    );
    until(&mut watcher, "api-2", |s| {
        pods(s).contains(&"shop/api-2".to_string())
    });
    assert_eq!(
        stat(&watcher, "pods", |s| s.lists.load(Ordering::Relaxed)),
        1
    );
    assert!(stat(&watcher, "pods", |s| s.rewatches.load(Ordering::Relaxed)) >= 1);
    let resumed = replay.requests().into_iter().any(|(t, _)| {
        t.starts_with("/api/v1/pods?watch=1") && t.contains(&format!("resourceVersion={seen}&"))
    });
    assert!(
        resumed,
        "the pods watch resumed from version {seen}: {:?}",
        replay.requests()
    );
}

#[test]
fn an_expired_version_lists_again_and_sees_what_changed_meanwhile() {
    let replay = seeded();
    let mut watcher = Watcher::start_with(api(&replay), quick()).unwrap();
    watcher.wait_synced(Duration::from_secs(10)).unwrap();
    watcher.changed().unwrap();
    // While the watch is broken the pod goes and history is compacted: only
    // a new list can tell that db-1 is gone.
    replay.delete_while_disconnected(PODS, pod("shop", "db-1", json!({}), "10.0.0.2"));
    let after = until(&mut watcher, "db-1 gone", |s| pods(s) == ["shop/web-1"]);
    assert!(after.diagnostics.is_empty());
    assert!(stat(&watcher, "pods", |s| s.expired.load(Ordering::Relaxed)) >= 1);
    assert!(stat(&watcher, "pods", |s| s.lists.load(Ordering::Relaxed)) >= 2);
}

#[test]
fn bookmarks_move_the_version_a_watch_resumes_from() {
    let replay = seeded();
    replay.bookmarks_every(Duration::from_millis(200));
    let watcher = Watcher::start_with(api(&replay), quick()).unwrap();
    watcher.wait_synced(Duration::from_secs(10)).unwrap();
    // Changes elsewhere move the cluster's revision; the pods watch hears
    // of them only through bookmarks.
    let later = replay.apply(NAMESPACES, "ADDED", namespace("other", json!({})));
    let deadline = Instant::now() + Duration::from_secs(10);
    let resumed_at = |replay: &Replay| {
        replay.requests().into_iter().any(|(t, _)| {
            t.starts_with("/api/v1/pods?watch=1")
                && t.contains(&format!("resourceVersion={later}&"))
        })
    };
    while !resumed_at(&replay) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(resumed_at(&replay), "{:?}", replay.requests());
    assert!(stat(&watcher, "pods", |s| s.bookmarks.load(Ordering::Relaxed)) >= 1);
    assert_eq!(
        stat(&watcher, "pods", |s| s.lists.load(Ordering::Relaxed)),
        1
    );
}

#[test]
fn a_refused_collection_is_named_until_it_is_listed() {
    let replay = seeded();
    replay.refuse(NODES, 3, 403);
    let mut watcher = Watcher::start_with(api(&replay), quick()).unwrap();
    let why = watcher.wait_synced(Duration::from_millis(100)).unwrap_err();
    assert!(why.contains("nodes: "), "{why}");
    assert!(watcher.changed().is_none(), "no snapshot before every list");
    watcher.wait_synced(Duration::from_secs(10)).unwrap();
    assert!(watcher.changed().is_some());
    assert!(stat(&watcher, "nodes", |s| s.errors.load(Ordering::Relaxed)) >= 3);
}

#[test]
fn the_token_file_is_read_again_for_each_request() {
    let replay = seeded();
    let dir = std::env::temp_dir().join(format!("palisade-kube-token-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let token = dir.join("token");
    std::fs::write(&token, "first\n").unwrap();
    let api = Api::new(
        &replay.url,
        Some(token.clone()),
        &Default::default(),
        Duration::from_secs(10),
    )
    .unwrap();
    let watcher = Watcher::start_with(api, quick()).unwrap();
    watcher.wait_synced(Duration::from_secs(10)).unwrap();
    std::fs::write(&token, "second\n").unwrap();
    replay.break_watches();
    let deadline = Instant::now() + Duration::from_secs(10);
    let rotated = |replay: &Replay| {
        replay
            .requests()
            .iter()
            .any(|(_, auth)| auth.as_deref() == Some("Bearer second"))
    };
    while !rotated(&replay) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(rotated(&replay));
    let requests = replay.requests();
    assert!(requests.iter().all(|(_, auth)| auth.is_some()));
    assert_eq!(requests[0].1.as_deref(), Some("Bearer first"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_url_that_is_not_http_is_refused() {
    let err = Api::new(
        "kube.local:6443",
        None,
        &Default::default(),
        Duration::from_secs(1),
    )
    .err()
    .unwrap();
    assert!(err.contains("http:// or https://"), "{err}");
}

#[test]
fn an_unreadable_watch_event_is_counted_and_the_collection_listed_again() {
    let replay = seeded();
    let mut watcher = Watcher::start_with(api(&replay), quick()).unwrap();
    watcher.wait_synced(Duration::from_secs(10)).unwrap();
    watcher.changed().unwrap();
    replay.garble_next_watch(PODS);
    replay.break_watches();
    replay.apply(PODS, "ADDED", pod("shop", "late-1", json!({}), "10.0.0.9"));
    until(&mut watcher, "late-1", |s| {
        pods(s).contains(&"shop/late-1".to_string())
    });
    assert!(stat(&watcher, "pods", |s| s.errors.load(Ordering::Relaxed)) >= 1);
    assert!(stat(&watcher, "pods", |s| s.lists.load(Ordering::Relaxed)) >= 2);
}
