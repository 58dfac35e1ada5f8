//! The store at scale: PostgreSQL, shared by any number of server
//! replicas. The schema and the upsert mirror SQLite's; a commit returns
//! once PostgreSQL has flushed its WAL (`synchronous_commit` on, the
//! default), so an acknowledged alert survives a crash of either side.
//!
//! As in SQLite, a redelivery only counts, an update raises the count and
//! replaces the document; GREATEST ignores NULLs, which is what last-seen
//! wants, and in an UPDATE every right-hand side reads the old row.
//!
//! Readers come from a small pool of connections, so a query or a sink's
//! look at the outbox does not pay for a new connection.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use postgres::types::ToSql;
use postgres::{Client, NoTls, Row};

use crate::query::{Param, severity_of_rank, severity_rank};
use crate::{
    AlertQuery, AlertReader, AlertRecord, AlertWriter, Delivery, Due, OutboxDepth, Outcome,
    Retention, Settlement, Store, StoreError, StoredAlert,
};
use crate::{AuditRun, Snapshot};

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS alerts (
    id TEXT COLLATE "C" PRIMARY KEY,
    origin TEXT NOT NULL,
    time_us BIGINT NOT NULL,
    received_us BIGINT NOT NULL,
    rule TEXT COLLATE "C" NOT NULL,
    severity BIGINT NOT NULL,
    class TEXT,
    src_namespace TEXT COLLATE "C",
    src_workload TEXT,
    dst_namespace TEXT COLLATE "C",
    dst_workload TEXT,
    protocol TEXT NOT NULL,
    port BIGINT,
    connections BIGINT NOT NULL,
    last_seen_us BIGINT,
    summary TEXT NOT NULL,
    doc TEXT NOT NULL,
    deliveries BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_by_time ON alerts (time_us);
CREATE INDEX IF NOT EXISTS alerts_by_rule ON alerts (rule, time_us);
CREATE INDEX IF NOT EXISTS alerts_by_src_namespace ON alerts (src_namespace, time_us);
CREATE INDEX IF NOT EXISTS alerts_by_dst_namespace ON alerts (dst_namespace, time_us);
CREATE TABLE IF NOT EXISTS outbox (
    sink TEXT COLLATE "C" NOT NULL,
    alert_id TEXT COLLATE "C" NOT NULL,
    state BIGINT NOT NULL,
    attempts BIGINT NOT NULL,
    next_at_us BIGINT NOT NULL,
    created_us BIGINT NOT NULL,
    last_error TEXT,
    PRIMARY KEY (sink, alert_id)
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (sink, state, next_at_us);
CREATE TABLE IF NOT EXISTS audit_runs (
    id TEXT PRIMARY KEY,
    origin TEXT NOT NULL,
    time_us BIGINT NOT NULL,
    findings BIGINT NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_runs_by_origin ON audit_runs (origin, time_us);
CREATE TABLE IF NOT EXISTS snapshots (
    version TEXT COLLATE "C" PRIMARY KEY,
    taken_us BIGINT NOT NULL,
    doc TEXT NOT NULL
);
"#;

const PENDING: i64 = 0;
const DEAD: i64 = 1;

const ENQUEUE_MANY: &str = "INSERT INTO outbox
    (sink, alert_id, state, attempts, next_at_us, created_us)
    SELECT sink, alert_id, 0, 0, $3, $3 FROM unnest($1::text[], $2::text[]) AS d (sink, alert_id)
    ON CONFLICT DO NOTHING";

/// One statement per batch (a round trip per alert was the cost): the
/// batch as column arrays. `xmax = 0` tells a row this statement inserted
/// from one it updated.
const UPSERT_MANY: &str = "
INSERT INTO alerts (id, origin, time_us, received_us, rule, severity, class,
    src_namespace, src_workload, dst_namespace, dst_workload, protocol, port,
    connections, last_seen_us, summary, doc, deliveries)
SELECT id, origin, time_us, $4, rule, severity, class, src_namespace, src_workload,
    dst_namespace, dst_workload, protocol, port, connections, last_seen_us, summary, doc, repeats
FROM unnest($1::text[], $2::text[], $3::bigint[], $5::text[], $6::bigint[], $7::text[],
    $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::bigint[],
    $14::bigint[], $15::bigint[], $16::text[], $17::text[], $18::bigint[])
    AS b (id, origin, time_us, rule, severity, class, src_namespace, src_workload,
          dst_namespace, dst_workload, protocol, port, connections, last_seen_us,
          summary, doc, repeats)
ON CONFLICT (id) DO UPDATE SET
    deliveries = alerts.deliveries + EXCLUDED.deliveries,
    connections = GREATEST(alerts.connections, EXCLUDED.connections),
    last_seen_us = GREATEST(alerts.last_seen_us, EXCLUDED.last_seen_us),
    summary = CASE WHEN EXCLUDED.connections > alerts.connections
        THEN EXCLUDED.summary ELSE alerts.summary END,
    doc = CASE WHEN EXCLUDED.connections > alerts.connections
        THEN EXCLUDED.doc ELSE alerts.doc END
RETURNING id, xmax = 0
";

/// One statement cannot touch a row twice, so repeats of an id within a
/// batch become one record: the one with the most connections (the
/// first of equals), its last-seen the latest, and how many there were.
fn merge_repeats(batch: &[AlertRecord]) -> Vec<(AlertRecord, i64)> {
    let mut at: HashMap<&str, usize> = HashMap::new();
    let mut merged: Vec<(AlertRecord, i64)> = Vec::with_capacity(batch.len());
    for a in batch {
        match at.get(a.id.as_str()) {
            Some(&i) => {
                let (kept, repeats) = &mut merged[i];
                *repeats += 1;
                let last_seen = kept.last_seen_us.max(a.last_seen_us);
                if a.connections > kept.connections {
                    *kept = a.clone();
                }
                kept.last_seen_us = last_seen;
            }
            None => {
                at.insert(&a.id, merged.len());
                merged.push((a.clone(), 1));
            }
        }
    }
    // Every transaction locks rows in id order: two writers cannot deadlock.
    merged.sort_unstable_by(|a, b| a.0.id.cmp(&b.0.id));
    merged
}

/// A batch as one array per column.
#[derive(Default)]
struct Columns {
    id: Vec<String>,
    origin: Vec<String>,
    time_us: Vec<i64>,
    rule: Vec<String>,
    severity: Vec<i64>,
    class: Vec<Option<String>>,
    src_namespace: Vec<Option<String>>,
    src_workload: Vec<Option<String>>,
    dst_namespace: Vec<Option<String>>,
    dst_workload: Vec<Option<String>>,
    protocol: Vec<String>,
    port: Vec<Option<i64>>,
    connections: Vec<i64>,
    last_seen_us: Vec<Option<i64>>,
    summary: Vec<String>,
    doc: Vec<String>,
    repeats: Vec<i64>,
}

impl Columns {
    fn of(merged: &[(AlertRecord, i64)]) -> Columns {
        let mut c = Columns::default();
        for (a, repeats) in merged {
            c.id.push(a.id.clone());
            c.origin.push(a.origin.clone());
            c.time_us.push(a.time_us);
            c.rule.push(a.rule.clone());
            c.severity.push(severity_rank(a.severity));
            c.class.push(a.class.clone());
            c.src_namespace.push(a.src_namespace.clone());
            c.src_workload.push(a.src_workload.clone());
            c.dst_namespace.push(a.dst_namespace.clone());
            c.dst_workload.push(a.dst_workload.clone());
            c.protocol.push(a.protocol.clone());
            c.port.push(a.port.map(i64::from));
            c.connections
                .push(i64::try_from(a.connections).unwrap_or(i64::MAX));
            c.last_seen_us.push(a.last_seen_us);
            c.summary.push(a.summary.clone());
            c.doc.push(a.doc.clone());
            c.repeats.push(*repeats);
        }
        c
    }
}

const COLUMNS: &str = "id, origin, time_us, rule, severity, class, src_namespace, src_workload,
    dst_namespace, dst_workload, protocol, port, connections, last_seen_us, summary, doc,
    received_us, deliveries";

pub struct PostgresStore {
    url: String,
    /// Tables live in this schema (created when absent); `public` unless
    /// given (tests give each their own).
    schema: Option<String>,
    pool: Arc<Mutex<Vec<Client>>>,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user:password@host/db`) and creates
    /// the schema when absent.
    pub fn open(url: &str, schema: Option<&str>) -> Result<PostgresStore, StoreError> {
        if let Some(s) = schema
            && !s
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(StoreError::Open {
                path: url.to_string(),
                reason: format!("schema `{s}`: only a-z, 0-9 and _"),
            });
        }
        let store = PostgresStore {
            url: url.to_string(),
            schema: schema.map(str::to_string),
            pool: Arc::default(),
        };
        let mut client = store.connect()?;
        client.batch_execute(SCHEMA)?;
        store.give_back(client);
        Ok(store)
    }

    fn connect(&self) -> Result<Client, StoreError> {
        let mut client = Client::connect(&self.url, NoTls).map_err(|e| StoreError::Open {
            path: redact(&self.url),
            reason: e.to_string(),
        })?;
        if let Some(schema) = &self.schema {
            client.batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS {schema}; SET search_path TO {schema}"
            ))?;
        }
        Ok(client)
    }

    fn take(&self) -> Result<Client, StoreError> {
        let pooled = self.pool.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match pooled {
            Some(client) if !client.is_closed() => Ok(client),
            _ => self.connect(),
        }
    }

    fn give_back(&self, client: Client) {
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        if pool.len() < 8 && !client.is_closed() {
            pool.push(client);
        }
    }
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

impl Store for PostgresStore {
    /// Two: while one transaction waits for its commit's flush or holds a
    /// core, the other runs (measured: a single backend was the limit of
    /// ingest, with a core idle). Groups lock their rows in id order, so
    /// two writers cannot deadlock on upserts; a deadlock with retention's
    /// delete is retried.
    fn concurrent_writers(&self) -> usize {
        2
    }

    fn writer(&self) -> Result<Box<dyn AlertWriter>, StoreError> {
        Ok(Box::new(PostgresWriter {
            client: self.connect()?,
        }))
    }

    fn reader(&self) -> Result<Box<dyn AlertReader>, StoreError> {
        Ok(Box::new(PostgresReader {
            client: Some(self.take()?),
            store: PostgresStore {
                url: self.url.clone(),
                schema: self.schema.clone(),
                pool: self.pool.clone(),
            },
        }))
    }
}

struct PostgresWriter {
    client: Client,
}

impl PostgresWriter {
    fn commit_once(
        &mut self,
        columns: &Columns,
        deliveries: &[&Delivery],
        now_us: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.client.transaction()?;

        let rows = tx.query(
            UPSERT_MANY,
            &[
                &columns.id,
                &columns.origin,
                &columns.time_us,
                &now_us,
                &columns.rule,
                &columns.severity,
                &columns.class,
                &columns.src_namespace,
                &columns.src_workload,
                &columns.dst_namespace,
                &columns.dst_workload,
                &columns.protocol,
                &columns.port,
                &columns.connections,
                &columns.last_seen_us,
                &columns.summary,
                &columns.doc,
                &columns.repeats,
            ],
        )?;
        // Only an alert's first commit enqueues its deliveries.
        let inserted: HashSet<String> = rows
            .iter()
            .filter(|r| r.get::<_, bool>(1))
            .map(|r| r.get(0))
            .collect();
        let (sinks, ids): (Vec<&str>, Vec<&str>) = deliveries
            .iter()
            .filter(|d| inserted.contains(&d.alert_id))
            .map(|d| (d.sink.as_str(), d.alert_id.as_str()))
            .unzip();
        if !sinks.is_empty() {
            tx.execute(ENQUEUE_MANY, &[&sinks, &ids, &now_us])?;
        }
        tx.commit()?;
        Ok(())
    }

    fn settle_once(&mut self, settled: &[&Settlement]) -> Result<(), StoreError> {
        let mut tx = self.client.transaction()?;
        for s in settled {
            match &s.outcome {
                Outcome::Delivered => tx.execute(
                    "DELETE FROM outbox WHERE sink = $1 AND alert_id = $2",
                    &[&s.sink, &s.alert_id],
                )?,
                Outcome::Retry { next_at_us, error } => tx.execute(
                    "UPDATE outbox SET attempts = attempts + 1, next_at_us = $3, last_error = $4
                     WHERE sink = $1 AND alert_id = $2",
                    &[&s.sink, &s.alert_id, next_at_us, error],
                )?,
                Outcome::Dead { error } => tx.execute(
                    "UPDATE outbox SET attempts = attempts + 1, state = $3, last_error = $4
                     WHERE sink = $1 AND alert_id = $2",
                    &[&s.sink, &s.alert_id, &DEAD, error],
                )?,
            };
        }
        tx.commit()?;
        Ok(())
    }
}

/// Runs a transaction again when PostgreSQL chose it as a deadlock's
/// victim (a group against retention's delete): nothing of it committed.
fn retry_deadlock(
    mut transaction: impl FnMut() -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut tries = 0;
    loop {
        match transaction() {
            Err(StoreError::Deadlock(_)) if tries < 3 => tries += 1,
            outcome => return outcome,
        }
    }
}

impl AlertWriter for PostgresWriter {
    fn commit(
        &mut self,
        batch: &[AlertRecord],
        deliveries: &[Delivery],
        now_us: i64,
    ) -> Result<(), StoreError> {
        let merged = merge_repeats(batch);
        let columns = Columns::of(&merged);
        let mut deliveries: Vec<&Delivery> = deliveries.iter().collect();
        deliveries.sort_unstable_by(|a, b| (&a.alert_id, &a.sink).cmp(&(&b.alert_id, &b.sink)));
        retry_deadlock(|| self.commit_once(&columns, &deliveries, now_us))
    }

    fn settle(&mut self, settled: &[Settlement]) -> Result<(), StoreError> {
        let mut settled: Vec<&Settlement> = settled.iter().collect();
        settled.sort_unstable_by(|a, b| (&a.alert_id, &a.sink).cmp(&(&b.alert_id, &b.sink)));
        retry_deadlock(|| self.settle_once(&settled))
    }
    fn commit_run(&mut self, run: &AuditRun) -> Result<(), StoreError> {
        let findings = i64::try_from(run.findings).unwrap_or(i64::MAX);
        self.client.execute(
            "INSERT INTO audit_runs (id, origin, time_us, findings, doc) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (id) DO UPDATE SET origin = EXCLUDED.origin, time_us = EXCLUDED.time_us,
                 findings = EXCLUDED.findings, doc = EXCLUDED.doc",
            &[&run.id, &run.origin, &run.time_us, &findings, &run.doc],
        )?;
        Ok(())
    }

    fn commit_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StoreError> {
        self.client.execute(
            "INSERT INTO snapshots (version, taken_us, doc) VALUES ($1, $2, $3)
             ON CONFLICT (version) DO NOTHING",
            &[&snapshot.version, &snapshot.taken_us, &snapshot.doc],
        )?;
        Ok(())
    }

    fn prune(&mut self, retention: &Retention, now_us: i64) -> Result<u64, StoreError> {
        let mut tx = self.client.transaction()?;
        let mut pruned = 0;
        if let Some(age) = retention.max_age_us {
            let cutoff = now_us.saturating_sub(age);
            pruned += tx.execute("DELETE FROM alerts WHERE time_us < $1", &[&cutoff])?;
            tx.execute(
                "DELETE FROM snapshots WHERE taken_us < $1
                 AND taken_us < (SELECT max(taken_us) FROM snapshots)",
                &[&cutoff],
            )?;
        }
        if let Some(keep) = retention.max_alerts {
            let keep = i64::try_from(keep).unwrap_or(i64::MAX);
            pruned += tx.execute(
                "DELETE FROM alerts WHERE id IN (SELECT id FROM alerts
                 ORDER BY time_us DESC, id DESC OFFSET $1)",
                &[&keep],
            )?;
        }
        if pruned > 0 {
            tx.execute(
                "DELETE FROM outbox o WHERE NOT EXISTS (SELECT 1 FROM alerts a WHERE a.id = o.alert_id)",
                &[],
            )?;
        }
        tx.commit()?;
        Ok(pruned)
    }
}

struct PostgresReader {
    client: Option<Client>,
    store: PostgresStore,
}

impl Drop for PostgresReader {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            self.store.give_back(client);
        }
    }
}

impl PostgresReader {
    fn client(&mut self) -> Result<&mut Client, StoreError> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.client = Some(self.store.connect()?);
        }
        // Just set when absent.
        Ok(self.client.as_mut().expect("a connection"))
    }
}

impl AlertReader for PostgresReader {
    fn alerts(&mut self, query: &AlertQuery) -> Result<Vec<StoredAlert>, StoreError> {
        let (filter, params) = query.where_clause(|n| format!("${n}"));
        let sql = format!(
            "SELECT {COLUMNS} FROM alerts {filter} ORDER BY time_us DESC, id DESC LIMIT {}",
            query.limit()
        );
        let values: Vec<Box<dyn ToSql + Sync>> = params
            .into_iter()
            .map(|p| -> Box<dyn ToSql + Sync> {
                match p {
                    Param::Int(i) => Box::new(i),
                    Param::Text(t) => Box::new(t),
                }
            })
            .collect();
        let refs: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| v.as_ref()).collect();
        let rows = self.client()?.query(&sql, &refs)?;
        rows.iter().map(read_row).collect()
    }

    fn count(&mut self) -> Result<u64, StoreError> {
        let n: i64 = self
            .client()?
            .query_one("SELECT count(*) FROM alerts", &[])?
            .get(0);
        Ok(n as u64)
    }

    fn missing(&mut self, ids: &[String]) -> Result<Vec<String>, StoreError> {
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let rows = self.client()?.query(
            "SELECT x FROM unnest($1::text[]) AS x WHERE NOT EXISTS (SELECT 1 FROM alerts WHERE id = x)",
            &[&ids],
        )?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    fn due(&mut self, sink: &str, now_us: i64, limit: usize) -> Result<Vec<Due>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS}, attempts, created_us FROM outbox JOIN alerts ON id = alert_id
             WHERE sink = $1 AND state = {PENDING} AND next_at_us <= $2
             ORDER BY next_at_us LIMIT $3"
        );
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.client()?.query(&sql, &[&sink, &now_us, &limit])?;
        rows.iter()
            .map(|row| {
                let attempts: i64 = row.get(18);
                Ok(Due {
                    alert: read_row(row)?,
                    attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                    created_us: row.get(19),
                })
            })
            .collect()
    }

    fn latest_runs(&mut self, origin: Option<&str>) -> Result<Vec<AuditRun>, StoreError> {
        let rows = self.client()?.query(
            "SELECT id, origin, time_us, findings, doc FROM audit_runs r
             WHERE ($1::text IS NULL OR origin = $1) AND time_us =
                 (SELECT max(time_us) FROM audit_runs WHERE origin = r.origin)
             ORDER BY time_us DESC",
            &[&origin],
        )?;
        Ok(rows
            .iter()
            .map(|r| {
                let findings: i64 = r.get(3);
                AuditRun {
                    id: r.get(0),
                    origin: r.get(1),
                    time_us: r.get(2),
                    findings: findings as u64,
                    doc: r.get(4),
                }
            })
            .collect())
    }

    fn snapshot(&mut self, version: &str) -> Result<Option<Snapshot>, StoreError> {
        let row = self.client()?.query_opt(
            "SELECT version, taken_us, doc FROM snapshots WHERE version = $1",
            &[&version],
        )?;
        Ok(row.map(|r| Snapshot {
            version: r.get(0),
            taken_us: r.get(1),
            doc: r.get(2),
        }))
    }

    fn snapshot_versions(&mut self, limit: usize) -> Result<Vec<(String, i64)>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.client()?.query(
            "SELECT version, taken_us FROM snapshots ORDER BY taken_us DESC, version LIMIT $1",
            &[&limit],
        )?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    fn outbox(&mut self) -> Result<Vec<OutboxDepth>, StoreError> {
        let rows = self.client()?.query(
            &format!(
                "SELECT sink, count(*) FILTER (WHERE state = {PENDING}), count(*) FILTER (WHERE state = {DEAD})
                 FROM outbox GROUP BY sink ORDER BY sink"
            ),
            &[],
        )?;
        Ok(rows
            .iter()
            .map(|r| {
                let (pending, dead): (i64, i64) = (r.get(1), r.get(2));
                OutboxDepth {
                    sink: r.get(0),
                    pending: pending as u64,
                    dead: dead as u64,
                }
            })
            .collect())
    }
}

fn read_row(row: &Row) -> Result<StoredAlert, StoreError> {
    let id: String = row.get(0);
    let rank: i64 = row.get(4);
    let Some(severity) = severity_of_rank(rank) else {
        return Err(StoreError::Corrupt {
            id,
            reason: format!("severity rank {rank}"),
        });
    };
    let port: Option<i64> = row.get(11);
    let connections: i64 = row.get(12);
    let deliveries: i64 = row.get(17);
    Ok(StoredAlert {
        record: AlertRecord {
            id,
            origin: row.get(1),
            time_us: row.get(2),
            rule: row.get(3),
            severity,
            class: row.get(5),
            src_namespace: row.get(6),
            src_workload: row.get(7),
            dst_namespace: row.get(8),
            dst_workload: row.get(9),
            protocol: row.get(10),
            port: port.and_then(|p| u16::try_from(p).ok()),
            connections: u64::try_from(connections).unwrap_or(0),
            last_seen_us: row.get(13),
            summary: row.get(14),
            doc: row.get(15),
        },
        received_us: row.get(16),
        deliveries: u64::try_from(deliveries).unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(
            super::redact("postgres://palisade:s3cret@db:5432/alerts"),
            "postgres://palisade:***@db:5432/alerts"
        );
        assert_eq!(super::redact("host=db user=x"), "host=db user=x");
    }
}
