//! The embedded store: one SQLite file in WAL mode with
//! `synchronous=FULL`, so a committed batch survives a crash of the
//! process and of the machine. Readers use their own connections, which
//! WAL lets read while the writer writes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, Row, params, params_from_iter};

use crate::query::{Param, severity_of_rank, severity_rank};
use crate::{
    AlertQuery, AlertReader, AlertRecord, AlertWriter, Delivery, Due, OutboxDepth, Outcome,
    Retention, Settlement, Store, StoreError, StoredAlert,
};
use crate::{AuditRun, Snapshot};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS alerts (
    id TEXT PRIMARY KEY,
    origin TEXT NOT NULL,
    time_us INTEGER NOT NULL,
    received_us INTEGER NOT NULL,
    rule TEXT NOT NULL,
    severity INTEGER NOT NULL,
    class TEXT,
    src_namespace TEXT,
    src_workload TEXT,
    dst_namespace TEXT,
    dst_workload TEXT,
    protocol TEXT NOT NULL,
    port INTEGER,
    connections INTEGER NOT NULL,
    last_seen_us INTEGER,
    summary TEXT NOT NULL,
    doc TEXT NOT NULL,
    deliveries INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_by_time ON alerts (time_us);
CREATE INDEX IF NOT EXISTS alerts_by_rule ON alerts (rule, time_us);
CREATE INDEX IF NOT EXISTS alerts_by_src_namespace ON alerts (src_namespace, time_us);
CREATE INDEX IF NOT EXISTS alerts_by_dst_namespace ON alerts (dst_namespace, time_us);
CREATE TABLE IF NOT EXISTS outbox (
    sink TEXT NOT NULL,
    alert_id TEXT NOT NULL,
    state INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    next_at_us INTEGER NOT NULL,
    created_us INTEGER NOT NULL,
    last_error TEXT,
    PRIMARY KEY (sink, alert_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (sink, state, next_at_us);
CREATE TABLE IF NOT EXISTS audit_runs (
    id TEXT PRIMARY KEY,
    origin TEXT NOT NULL,
    time_us INTEGER NOT NULL,
    findings INTEGER NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_runs_by_origin ON audit_runs (origin, time_us);
CREATE TABLE IF NOT EXISTS snapshots (
    version TEXT PRIMARY KEY,
    taken_us INTEGER NOT NULL,
    doc TEXT NOT NULL
);
";

/// Outbox states; a delivered row is deleted.
const PENDING: i64 = 0;
const DEAD: i64 = 1;

/// A redelivery changes nothing but the delivery count; an update raises
/// the count of connections and moves last-seen forward, and its document
/// (with the new figures) replaces the stored one. In an UPDATE every
/// right-hand side reads the row as it was, so the CASEs compare against
/// the old count.
const UPSERT: &str = "
INSERT INTO alerts (id, origin, time_us, received_us, rule, severity, class,
    src_namespace, src_workload, dst_namespace, dst_workload, protocol, port,
    connections, last_seen_us, summary, doc, deliveries)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, 1)
ON CONFLICT (id) DO UPDATE SET
    deliveries = deliveries + 1,
    connections = max(connections, excluded.connections),
    last_seen_us = max(coalesce(last_seen_us, excluded.last_seen_us),
                       coalesce(excluded.last_seen_us, last_seen_us)),
    summary = CASE WHEN excluded.connections > connections THEN excluded.summary ELSE summary END,
    doc = CASE WHEN excluded.connections > connections THEN excluded.doc ELSE doc END
RETURNING deliveries
";

const ENQUEUE: &str = "INSERT OR IGNORE INTO outbox
    (sink, alert_id, state, attempts, next_at_us, created_us) VALUES (?1, ?2, 0, 0, ?3, ?3)";

const COLUMNS: &str = "id, origin, time_us, rule, severity, class, src_namespace, src_workload,
    dst_namespace, dst_workload, protocol, port, connections, last_seen_us, summary, doc,
    received_us, deliveries";

pub struct SqliteStore {
    path: PathBuf,
}

impl SqliteStore {
    /// Opens (creating when absent) the store at `path`.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let conn = connect(path, OpenFlags::default())?;
        conn.execute_batch(SCHEMA)?;
        Ok(SqliteStore {
            path: path.to_path_buf(),
        })
    }
}

fn connect(path: &Path, flags: OpenFlags) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(path, flags).map_err(|e| StoreError::Open {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    // WAL: readers do not block the writer. FULL: the WAL is synced at
    // every commit, so "committed" also holds across power loss (NORMAL
    // would only survive a crash of the process).
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    // A rowid table (alert documents are too large for WITHOUT ROWID's
    // clustered pages), a 64 MiB page cache, and checkpoints every 16 MiB
    // of WAL rather than 4: measured, ingest goes from 32 k to the
    // figures in BENCHMARKS.md.
    conn.pragma_update(None, "cache_size", -65_536)?;
    conn.pragma_update(None, "wal_autocheckpoint", 4096)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    Ok(conn)
}

impl Store for SqliteStore {
    fn writer(&self) -> Result<Box<dyn AlertWriter>, StoreError> {
        Ok(Box::new(SqliteWriter {
            conn: connect(&self.path, OpenFlags::default())?,
        }))
    }

    fn reader(&self) -> Result<Box<dyn AlertReader>, StoreError> {
        let conn = connect(&self.path, OpenFlags::default())?;
        conn.pragma_update(None, "query_only", true)?;
        Ok(Box::new(SqliteReader { conn }))
    }
}

struct SqliteWriter {
    conn: Connection,
}

impl AlertWriter for SqliteWriter {
    fn commit(
        &mut self,
        batch: &[AlertRecord],
        deliveries: &[Delivery],
        now_us: i64,
    ) -> Result<(), StoreError> {
        let mut sinks_of: HashMap<&str, Vec<&str>> = HashMap::new();
        for d in deliveries {
            sinks_of.entry(&d.alert_id).or_default().push(&d.sink);
        }
        let tx = self.conn.transaction()?;
        {
            let mut upsert = tx.prepare_cached(UPSERT)?;
            let mut enqueue = tx.prepare_cached(ENQUEUE)?;
            for a in batch {
                let deliveries: i64 = upsert.query_row(
                    params![
                        a.id,
                        a.origin,
                        a.time_us,
                        now_us,
                        a.rule,
                        severity_rank(a.severity),
                        a.class,
                        a.src_namespace,
                        a.src_workload,
                        a.dst_namespace,
                        a.dst_workload,
                        a.protocol,
                        a.port,
                        i64::try_from(a.connections).unwrap_or(i64::MAX),
                        a.last_seen_us,
                        a.summary,
                        a.doc,
                    ],
                    |row| row.get(0),
                )?;
                // Only the first commit of an alert enqueues its deliveries.
                if deliveries == 1 {
                    for sink in sinks_of.get(a.id.as_str()).into_iter().flatten() {
                        enqueue.execute(params![sink, a.id, now_us])?;
                    }
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn settle(&mut self, settled: &[Settlement]) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        {
            let mut done =
                tx.prepare_cached("DELETE FROM outbox WHERE sink = ?1 AND alert_id = ?2")?;
            let mut later = tx.prepare_cached(
                "UPDATE outbox SET attempts = attempts + 1, next_at_us = ?3, last_error = ?4
                 WHERE sink = ?1 AND alert_id = ?2",
            )?;
            let mut dead = tx.prepare_cached(
                "UPDATE outbox SET attempts = attempts + 1, state = ?3, last_error = ?4
                 WHERE sink = ?1 AND alert_id = ?2",
            )?;
            for s in settled {
                match &s.outcome {
                    Outcome::Delivered => done.execute(params![s.sink, s.alert_id])?,
                    Outcome::Retry { next_at_us, error } => {
                        later.execute(params![s.sink, s.alert_id, next_at_us, error])?
                    }
                    Outcome::Dead { error } => {
                        dead.execute(params![s.sink, s.alert_id, DEAD, error])?
                    }
                };
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn commit_run(&mut self, run: &AuditRun) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT OR REPLACE INTO audit_runs (id, origin, time_us, findings, doc)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                run.id,
                run.origin,
                run.time_us,
                i64::try_from(run.findings).unwrap_or(i64::MAX),
                run.doc
            ],
        )?;
        Ok(())
    }

    fn commit_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT OR IGNORE INTO snapshots (version, taken_us, doc) VALUES (?1, ?2, ?3)",
            params![snapshot.version, snapshot.taken_us, snapshot.doc],
        )?;
        Ok(())
    }

    fn prune(&mut self, retention: &Retention, now_us: i64) -> Result<u64, StoreError> {
        let tx = self.conn.transaction()?;
        let mut pruned = 0;
        if let Some(age) = retention.max_age_us {
            let cutoff = now_us.saturating_sub(age);
            pruned += tx.execute("DELETE FROM alerts WHERE time_us < ?1", [cutoff])?;
            tx.execute(
                "DELETE FROM snapshots WHERE taken_us < ?1
                 AND taken_us < (SELECT max(taken_us) FROM snapshots)",
                [cutoff],
            )?;
        }
        if let Some(keep) = retention.max_alerts {
            pruned += tx.execute(
                "DELETE FROM alerts WHERE id IN (SELECT id FROM alerts
                 ORDER BY time_us DESC, id DESC LIMIT -1 OFFSET ?1)",
                [i64::try_from(keep).unwrap_or(i64::MAX)],
            )?;
        }
        if pruned > 0 {
            tx.execute(
                "DELETE FROM outbox WHERE alert_id NOT IN (SELECT id FROM alerts)",
                [],
            )?;
        }
        tx.commit()?;
        Ok(pruned as u64)
    }
}

struct SqliteReader {
    conn: Connection,
}

impl AlertReader for SqliteReader {
    fn alerts(&mut self, query: &AlertQuery) -> Result<Vec<StoredAlert>, StoreError> {
        let (filter, params) = query.where_clause(|n| format!("?{n}"));
        let sql = format!(
            "SELECT {COLUMNS} FROM alerts {filter} ORDER BY time_us DESC, id DESC LIMIT {}",
            query.limit()
        );
        let mut statement = self.conn.prepare_cached(&sql)?;
        let values = params.iter().map(|p| match p {
            Param::Int(i) => rusqlite::types::Value::Integer(*i),
            Param::Text(t) => rusqlite::types::Value::Text(t.clone()),
        });
        let rows = statement.query_map(params_from_iter(values), read_row)?;
        let mut alerts = Vec::new();
        for row in rows {
            alerts.push(row??);
        }
        Ok(alerts)
    }

    fn count(&mut self) -> Result<u64, StoreError> {
        let n: i64 = self
            .conn
            .query_row("SELECT count(*) FROM alerts", [], |r| r.get(0))?;
        Ok(n as u64)
    }

    fn missing(&mut self, ids: &[String]) -> Result<Vec<String>, StoreError> {
        let mut statement = self
            .conn
            .prepare_cached("SELECT 1 FROM alerts WHERE id = ?1")?;
        let mut missing = Vec::new();
        for id in ids {
            if !statement.exists([id])? {
                missing.push(id.clone());
            }
        }
        Ok(missing)
    }

    fn due(&mut self, sink: &str, now_us: i64, limit: usize) -> Result<Vec<Due>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS}, attempts, created_us FROM outbox JOIN alerts ON id = alert_id
             WHERE sink = ?1 AND state = {PENDING} AND next_at_us <= ?2
             ORDER BY next_at_us LIMIT ?3"
        );
        let mut statement = self.conn.prepare_cached(&sql)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = statement.query_map(params![sink, now_us, limit], |row| {
            let attempts: i64 = row.get(18)?;
            let created_us: i64 = row.get(19)?;
            Ok(read_row(row)?.map(|alert| Due {
                alert,
                attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                created_us,
            }))
        })?;
        let mut due = Vec::new();
        for row in rows {
            due.push(row??);
        }
        Ok(due)
    }

    fn latest_runs(&mut self, origin: Option<&str>) -> Result<Vec<AuditRun>, StoreError> {
        let mut statement = self.conn.prepare_cached(
            "SELECT id, origin, time_us, findings, doc FROM audit_runs r
             WHERE (?1 IS NULL OR origin = ?1) AND time_us =
                 (SELECT max(time_us) FROM audit_runs WHERE origin = r.origin)
             ORDER BY time_us DESC",
        )?;
        let rows = statement.query_map([origin], |row| {
            let findings: i64 = row.get(3)?;
            Ok(AuditRun {
                id: row.get(0)?,
                origin: row.get(1)?,
                time_us: row.get(2)?,
                findings: findings as u64,
                doc: row.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    fn snapshot(&mut self, version: &str) -> Result<Option<Snapshot>, StoreError> {
        let mut statement = self
            .conn
            .prepare_cached("SELECT version, taken_us, doc FROM snapshots WHERE version = ?1")?;
        let mut rows = statement.query_map([version], |row| {
            Ok(Snapshot {
                version: row.get(0)?,
                taken_us: row.get(1)?,
                doc: row.get(2)?,
            })
        })?;
        Ok(rows.next().transpose()?)
    }

    fn snapshot_versions(&mut self, limit: usize) -> Result<Vec<(String, i64)>, StoreError> {
        let mut statement = self.conn.prepare_cached(
            "SELECT version, taken_us FROM snapshots ORDER BY taken_us DESC, version LIMIT ?1",
        )?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = statement.query_map([limit], |row| Ok((row.get(0)?, row.get(1)?)))?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    fn outbox(&mut self) -> Result<Vec<OutboxDepth>, StoreError> {
        let mut statement = self.conn.prepare_cached(&format!(
            "SELECT sink, sum(state = {PENDING}), sum(state = {DEAD}) FROM outbox GROUP BY sink ORDER BY sink"
        ))?;
        let rows = statement.query_map([], |row| {
            let (pending, dead): (i64, i64) = (row.get(1)?, row.get(2)?);
            Ok(OutboxDepth {
                sink: row.get(0)?,
                pending: pending as u64,
                dead: dead as u64,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }
}

/// A row back into a record; a severity rank or count out of range (the
/// file was edited by hand) is reported, not guessed.
fn read_row(row: &Row) -> rusqlite::Result<Result<StoredAlert, StoreError>> {
    let id: String = row.get(0)?;
    let rank: i64 = row.get(4)?;
    let Some(severity) = severity_of_rank(rank) else {
        return Ok(Err(StoreError::Corrupt {
            id,
            reason: format!("severity rank {rank}"),
        }));
    };
    let port: Option<i64> = row.get(11)?;
    let connections: i64 = row.get(12)?;
    let deliveries: i64 = row.get(17)?;
    let record = AlertRecord {
        id,
        origin: row.get(1)?,
        time_us: row.get(2)?,
        rule: row.get(3)?,
        severity,
        class: row.get(5)?,
        src_namespace: row.get(6)?,
        src_workload: row.get(7)?,
        dst_namespace: row.get(8)?,
        dst_workload: row.get(9)?,
        protocol: row.get(10)?,
        port: port.and_then(|p| u16::try_from(p).ok()),
        connections: u64::try_from(connections).unwrap_or(0),
        last_seen_us: row.get(13)?,
        summary: row.get(14)?,
        doc: row.get(15)?,
    };
    Ok(Ok(StoredAlert {
        record,
        received_us: row.get(16)?,
        deliveries: u64::try_from(deliveries).unwrap_or(0),
    }))
}
