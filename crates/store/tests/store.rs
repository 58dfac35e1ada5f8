//! One suite for every store implementation: each test takes a fresh
//! store and checks what the interface promises.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc;

use palisade_inventory::severity::Severity;
use palisade_store::{
    AlertQuery, AlertRecord, AuditRun, Committer, CommitterOptions, Delivery, OutboxDepth, Outcome,
    PostgresStore, Retention, Settlement, Snapshot, SqliteStore, Store,
};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("palisade-store-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("alerts.db")
}

fn sqlite(name: &str) -> Box<dyn Store> {
    Box::new(SqliteStore::open(&scratch(name)).unwrap())
}

fn record(id: &str, time_us: i64, src_ns: &str, dst_ns: &str, severity: Severity) -> AlertRecord {
    AlertRecord {
        id: id.into(),
        origin: "node-a".into(),
        time_us,
        rule: if severity == Severity::Critical {
            "FLOW-001"
        } else {
            "FLOW-003"
        }
        .into(),
        severity,
        class: Some(
            if severity == Severity::Critical {
                "bypass"
            } else {
                "blocked-attempt"
            }
            .into(),
        ),
        src_namespace: Some(src_ns.into()),
        src_workload: Some(format!("{src_ns}/client[Deployment]")),
        dst_namespace: Some(dst_ns.into()),
        dst_workload: Some(format!("{dst_ns}/db[StatefulSet]")),
        protocol: "tcp".into(),
        port: Some(5432),
        connections: 1,
        last_seen_us: Some(time_us),
        summary: format!("alert {id}"),
        doc: format!("{{\"id\":\"{id}\",\"connections\":1}}"),
    }
}

fn ids(store: &dyn Store, query: &AlertQuery) -> Vec<String> {
    let mut reader = store.reader().unwrap();
    reader
        .alerts(query)
        .unwrap()
        .into_iter()
        .map(|a| a.record.id)
        .collect()
}

fn filters_select_by_time_namespace_severity_rule_and_class(store: &dyn Store) {
    let mut writer = store.writer().unwrap();
    writer
        .commit(
            &[
                record("a", 100, "shop", "db", Severity::Critical),
                record("b", 200, "web", "shop", Severity::Low),
                record("c", 300, "web", "db", Severity::Low),
            ],
            &[],
            1_000,
        )
        .unwrap();
    let all = AlertQuery::default();
    assert_eq!(ids(store, &all), ["c", "b", "a"], "newest first");
    let shop = AlertQuery {
        namespace: Some("shop".into()),
        ..AlertQuery::default()
    };
    assert_eq!(
        ids(store, &shop),
        ["b", "a"],
        "either side of the connection"
    );
    let critical = AlertQuery {
        min_severity: Some(Severity::High),
        ..AlertQuery::default()
    };
    assert_eq!(ids(store, &critical), ["a"]);
    let window = AlertQuery {
        since_us: Some(200),
        until_us: Some(300),
        ..AlertQuery::default()
    };
    assert_eq!(
        ids(store, &window),
        ["b"],
        "since is inclusive, until is not"
    );
    let blocked = AlertQuery {
        class: Some("blocked-attempt".into()),
        rule: Some("FLOW-003".into()),
        limit: Some(1),
        ..AlertQuery::default()
    };
    assert_eq!(ids(store, &blocked), ["c"]);
    let workload = AlertQuery {
        workload: Some("shop/db[StatefulSet]".into()),
        ..AlertQuery::default()
    };
    assert_eq!(ids(store, &workload), ["b"]);
    let stored = store.reader().unwrap().alerts(&all).unwrap();
    assert_eq!(
        stored[2].record,
        record("a", 100, "shop", "db", Severity::Critical)
    );
    assert_eq!(stored[2].received_us, 1_000);
}

fn an_update_raises_the_count_and_a_redelivery_changes_nothing(store: &dyn Store) {
    let mut writer = store.writer().unwrap();
    let first = record("x", 100, "shop", "db", Severity::Critical);
    writer.commit(std::slice::from_ref(&first), &[], 1).unwrap();
    let mut update = first.clone();
    update.connections = 7;
    update.last_seen_us = Some(900);
    update.summary = "seven".into();
    update.doc = "{\"connections\":7}".into();
    writer.commit(&[update.clone()], &[], 2).unwrap();
    // The original arriving late (a retry that crossed the update) must
    // not undo it.
    writer.commit(&[first], &[], 3).unwrap();
    let stored = store
        .reader()
        .unwrap()
        .alerts(&AlertQuery::default())
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].record, update);
    assert_eq!(stored[0].deliveries, 3);
    assert_eq!(stored[0].received_us, 1, "first committed at 1");
}

fn repeats_within_one_batch_are_one_alert(store: &dyn Store) {
    let mut writer = store.writer().unwrap();
    let first = record("r", 100, "shop", "db", Severity::Critical);
    let mut update = first.clone();
    update.connections = 5;
    update.last_seen_us = Some(700);
    let to = Delivery {
        alert_id: "r".into(),
        sink: "hook".into(),
    };
    // A group commit can hold an alert, its redelivery and its update.
    writer
        .commit(
            &[first.clone(), update.clone(), first],
            &[to.clone(), to.clone(), to],
            1,
        )
        .unwrap();
    let stored = store
        .reader()
        .unwrap()
        .alerts(&AlertQuery::default())
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].record, update);
    assert_eq!(stored[0].deliveries, 3);
    let due = store.reader().unwrap().due("hook", 1, 10).unwrap();
    assert_eq!(due.len(), 1, "one delivery");
}

fn the_latest_audit_run_of_each_origin_is_kept_and_read(store: &dyn Store) {
    let mut writer = store.writer().unwrap();
    let run = |id: &str, origin: &str, time_us: i64| AuditRun {
        id: id.into(),
        origin: origin.into(),
        time_us,
        findings: 3,
        doc: format!("{{\"run\":\"{id}\"}}"),
    };
    for r in [
        run("a1", "ci", 1),
        run("a2", "ci", 5),
        run("b1", "laptop", 3),
    ] {
        writer.commit_run(&r).unwrap();
    }
    // A resend of a run replaces it.
    writer.commit_run(&run("b1", "laptop", 4)).unwrap();
    let mut reader = store.reader().unwrap();
    let latest: Vec<(String, i64)> = reader
        .latest_runs(None)
        .unwrap()
        .into_iter()
        .map(|r| (r.id, r.time_us))
        .collect();
    assert_eq!(latest, [("a2".to_string(), 5), ("b1".to_string(), 4)]);
    let laptop = reader.latest_runs(Some("laptop")).unwrap();
    assert_eq!(laptop.len(), 1);
    assert_eq!(laptop[0].doc, "{\"run\":\"b1\"}");
}

fn snapshots_are_kept_once_per_version_and_aged_out_but_the_newest(store: &dyn Store) {
    let mut writer = store.writer().unwrap();
    let snapshot = |version: &str, taken_us: i64| Snapshot {
        version: version.into(),
        taken_us,
        doc: format!("{{\"taken\":{taken_us}}}"),
    };
    for s in [snapshot("files:a", 100), snapshot("files:b", 200)] {
        writer.commit_snapshot(&s).unwrap();
    }
    // The same version seen again (a restart) keeps its first record.
    writer.commit_snapshot(&snapshot("files:a", 300)).unwrap();
    let mut reader = store.reader().unwrap();
    let kept = reader.snapshot("files:a").unwrap().unwrap();
    assert_eq!((kept.taken_us, kept.doc.as_str()), (100, "{\"taken\":100}"));
    assert_eq!(reader.snapshot("files:none").unwrap(), None);
    let versions = reader.snapshot_versions(10).unwrap();
    assert_eq!(
        versions,
        [("files:b".to_string(), 200), ("files:a".to_string(), 100)]
    );
    assert_eq!(reader.snapshot_versions(1).unwrap().len(), 1);
    // Both are older than the age kept; the newest stays all the same.
    let by_age = Retention {
        max_age_us: Some(10),
        max_alerts: None,
    };
    writer.prune(&by_age, 1_000).unwrap();
    let versions = store.reader().unwrap().snapshot_versions(10).unwrap();
    assert_eq!(versions, [("files:b".to_string(), 200)]);
}

fn retention_drops_the_old_and_keeps_the_newest(store: &dyn Store) {
    let mut writer = store.writer().unwrap();
    let batch: Vec<AlertRecord> = (0..10)
        .map(|i| record(&format!("r{i}"), i * 100, "shop", "db", Severity::Low))
        .collect();
    writer.commit(&batch, &[], 0).unwrap();
    let by_age = Retention {
        max_age_us: Some(500),
        max_alerts: None,
    };
    assert_eq!(
        writer.prune(&by_age, 1_000).unwrap(),
        5,
        "0..=400 are older than 500"
    );
    let by_count = Retention {
        max_age_us: None,
        max_alerts: Some(2),
    };
    assert_eq!(writer.prune(&by_count, 1_000).unwrap(), 3);
    assert_eq!(ids(store, &AlertQuery::default()), ["r9", "r8"]);
    assert_eq!(store.reader().unwrap().count().unwrap(), 2);
    let asked = ["r9".to_string(), "r0".to_string()];
    assert_eq!(store.reader().unwrap().missing(&asked).unwrap(), ["r0"]);
}

fn group_commit_answers_every_batch_once_its_transaction_ended(store: &dyn Store) {
    let (handle, thread) =
        Committer::spawn(store.writer().unwrap(), CommitterOptions::default(), || 42);
    let (done, replies) = mpsc::channel();
    let senders: Vec<_> = (0..4)
        .map(|t| {
            let handle = handle.clone();
            let done = done.clone();
            std::thread::spawn(move || {
                for b in 0..50 {
                    let batch = (0..20)
                        .map(|i| record(&format!("{t}-{b}-{i}"), i, "shop", "db", Severity::Low))
                        .collect();
                    let done = done.clone();
                    handle
                        .submit(batch, Vec::new(), Box::new(move |r| done.send(r).unwrap()))
                        .unwrap();
                }
            })
        })
        .collect();
    drop(done);
    for s in senders {
        s.join().unwrap();
    }
    let stats = Arc::clone(handle.stats());
    drop(handle);
    let outcomes: Vec<_> = replies.iter().collect();
    thread.join().unwrap();
    assert_eq!(outcomes.len(), 200);
    assert!(outcomes.iter().all(Result::is_ok));
    assert_eq!(store.reader().unwrap().count().unwrap(), 4 * 50 * 20);
    let transactions = stats
        .transactions
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        (1..=200).contains(&transactions),
        "{transactions} transactions"
    );
}

fn deliveries_are_made_once_retried_when_due_and_dead_lettered(store: &dyn Store) {
    let mut writer = store.writer().unwrap();
    let to = |id: &str, sink: &str| Delivery {
        alert_id: id.into(),
        sink: sink.into(),
    };
    let a = record("a", 100, "shop", "db", Severity::Critical);
    let b = record("b", 200, "shop", "db", Severity::Low);
    writer
        .commit(
            &[a.clone(), b.clone()],
            &[to("a", "hook"), to("a", "am"), to("b", "hook")],
            1_000,
        )
        .unwrap();
    // A redelivery or update of a committed alert makes no new delivery.
    writer
        .commit(std::slice::from_ref(&a), &[to("a", "hook")], 2_000)
        .unwrap();
    let mut reader = store.reader().unwrap();
    let due = reader.due("hook", 1_000, 10).unwrap();
    let ids: Vec<&str> = due.iter().map(|d| d.alert.record.id.as_str()).collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&"a") && ids.contains(&"b"));
    assert!(due.iter().all(|d| d.attempts == 0 && d.created_us == 1_000));
    assert_eq!(
        reader.due("hook", 999, 10).unwrap().len(),
        0,
        "not due before it was made"
    );
    writer
        .settle(&[
            Settlement {
                sink: "hook".into(),
                alert_id: "a".into(),
                outcome: Outcome::Delivered,
            },
            Settlement {
                sink: "hook".into(),
                alert_id: "b".into(),
                outcome: Outcome::Retry {
                    next_at_us: 5_000,
                    error: "503".into(),
                },
            },
            Settlement {
                sink: "am".into(),
                alert_id: "a".into(),
                outcome: Outcome::Dead {
                    error: "400 bad labels".into(),
                },
            },
        ])
        .unwrap();
    assert!(
        reader.due("hook", 4_999, 10).unwrap().is_empty(),
        "waits for its time"
    );
    let retry = reader.due("hook", 5_000, 10).unwrap();
    assert_eq!(retry.len(), 1);
    assert_eq!(
        (retry[0].alert.record.id.as_str(), retry[0].attempts),
        ("b", 1)
    );
    assert!(
        reader.due("am", i64::MAX, 10).unwrap().is_empty(),
        "dead is not due"
    );
    let depth = reader.outbox().unwrap();
    assert_eq!(
        depth,
        vec![
            OutboxDepth {
                sink: "am".into(),
                pending: 0,
                dead: 1
            },
            OutboxDepth {
                sink: "hook".into(),
                pending: 1,
                dead: 0
            },
        ]
    );
    // Retention takes an alert's deliveries with it.
    let keep_none = Retention {
        max_age_us: None,
        max_alerts: Some(0),
    };
    writer.prune(&keep_none, 0).unwrap();
    assert!(reader.outbox().unwrap().is_empty());
}

/// Writers committing side by side (PostgreSQL's two) take the same rows
/// in opposite orders: no deadlock reaches the caller, every delivery of
/// every alert is counted, and each alert's sink delivery is enqueued once.
fn concurrent_writers_lose_nothing_and_never_deadlock(store: &dyn Store) {
    let writers = store.concurrent_writers().max(2);
    let rounds = 20;
    let batch: Vec<AlertRecord> = (0..200)
        .map(|n| {
            record(
                &format!("c{n:03}"),
                1_000 + n,
                "web",
                "shop",
                Severity::Critical,
            )
        })
        .collect();
    std::thread::scope(|scope| {
        for w in 0..writers {
            let mut writer = store.writer().unwrap();
            let mut mine = batch.clone();
            if w % 2 == 1 {
                mine.reverse();
            }
            let deliveries: Vec<Delivery> = mine
                .iter()
                .map(|a| Delivery {
                    sink: "hook".into(),
                    alert_id: a.id.clone(),
                })
                .collect();
            scope.spawn(move || {
                for _ in 0..rounds {
                    writer.commit(&mine, &deliveries, 5).unwrap();
                }
            });
        }
    });
    let mut reader = store.reader().unwrap();
    let all = reader
        .alerts(&AlertQuery {
            limit: Some(1000),
            ..AlertQuery::default()
        })
        .unwrap();
    assert_eq!(all.len(), 200);
    let expected = (writers * rounds) as u64;
    assert!(
        all.iter().all(|a| a.deliveries == expected),
        "{expected} each"
    );
    let depth = reader.outbox().unwrap();
    assert_eq!(depth.len(), 1);
    assert_eq!((depth[0].pending, depth[0].dead), (200, 0));
}

macro_rules! suite {
    ($make:ident, $($test:ident),*) => {
        $(
            #[test]
            fn $test() {
                let store = $make(stringify!($test));
                super::$test(store.as_ref());
            }
        )*
    };
}

/// A store in its own schema of the test database that `.ci/run` starts
/// (`PALISADE_TEST_POSTGRES`); `None` when there is none (a loud skip, or
/// a failure when privileged tests are required, as in CI).
fn postgres(test: &str) -> Option<Box<dyn Store>> {
    let Ok(url) = std::env::var("PALISADE_TEST_POSTGRES") else {
        let required = std::env::var("PALISADE_PRIVILEGED_TESTS").is_ok_and(|v| v == "require");
        assert!(!required, "{test}: PALISADE_TEST_POSTGRES is not set");
        eprintln!("SKIPPED {test}: set PALISADE_TEST_POSTGRES to a PostgreSQL URL");
        return None;
    };
    let schema = format!("test_{}_{test}", std::process::id());
    let mut admin = ::postgres::Client::connect(&url, ::postgres::NoTls).unwrap();
    admin
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .unwrap();
    Some(Box::new(PostgresStore::open(&url, Some(&schema)).unwrap()))
}

mod postgres {
    macro_rules! pg_suite {
        ($($test:ident),*) => {
            $(
                #[test]
                fn $test() {
                    if let Some(store) = super::postgres(stringify!($test)) {
                        super::$test(store.as_ref());
                    }
                }
            )*
        };
    }
    pg_suite!(
        filters_select_by_time_namespace_severity_rule_and_class,
        an_update_raises_the_count_and_a_redelivery_changes_nothing,
        retention_drops_the_old_and_keeps_the_newest,
        group_commit_answers_every_batch_once_its_transaction_ended,
        deliveries_are_made_once_retried_when_due_and_dead_lettered,
        repeats_within_one_batch_are_one_alert,
        the_latest_audit_run_of_each_origin_is_kept_and_read,
        snapshots_are_kept_once_per_version_and_aged_out_but_the_newest,
        concurrent_writers_lose_nothing_and_never_deadlock
    );
}

mod sqlite {
    use super::sqlite;
    suite!(
        sqlite,
        filters_select_by_time_namespace_severity_rule_and_class,
        an_update_raises_the_count_and_a_redelivery_changes_nothing,
        retention_drops_the_old_and_keeps_the_newest,
        group_commit_answers_every_batch_once_its_transaction_ended,
        deliveries_are_made_once_retried_when_due_and_dead_lettered,
        repeats_within_one_batch_are_one_alert,
        the_latest_audit_run_of_each_origin_is_kept_and_read,
        snapshots_are_kept_once_per_version_and_aged_out_but_the_newest,
        concurrent_writers_lose_nothing_and_never_deadlock
    );
}

#[test]
fn a_sqlite_store_keeps_its_alerts_across_a_reopen() {
    let path = scratch("reopen");
    {
        let store = SqliteStore::open(&path).unwrap();
        store
            .writer()
            .unwrap()
            .commit(&[record("kept", 1, "a", "b", Severity::Info)], &[], 1)
            .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(ids(&store, &AlertQuery::default()), ["kept"]);
}
