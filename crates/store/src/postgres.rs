//! The store at scale: PostgreSQL, shared by any number of server
//! replicas. The schema and the upsert mirror SQLite's; a commit returns
//! once PostgreSQL has flushed its WAL (`synchronous_commit` on, the
//! default), so an acknowledged alert survives a crash of either side.
//!
//! Readers come from a small pool of connections, so a query or a sink's
//! look at the outbox does not pay for a new connection.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use postgres::types::ToSql;
use postgres::{Client, NoTls, Row};

use crate::query::{Param, severity_of_rank, severity_rank};
use crate::{
    AlertQuery, AlertReader, AlertRecord, AlertWriter, Delivery, Due, OutboxDepth, Outcome,
    Retention, Settlement, Store, StoreError, StoredAlert,
};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS alerts (
    id TEXT PRIMARY KEY,
    origin TEXT NOT NULL,
    time_us BIGINT NOT NULL,
    received_us BIGINT NOT NULL,
    rule TEXT NOT NULL,
    severity BIGINT NOT NULL,
    class TEXT,
    src_namespace TEXT,
    src_workload TEXT,
    dst_namespace TEXT,
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
    sink TEXT NOT NULL,
    alert_id TEXT NOT NULL,
    state BIGINT NOT NULL,
    attempts BIGINT NOT NULL,
    next_at_us BIGINT NOT NULL,
    created_us BIGINT NOT NULL,
    last_error TEXT,
    PRIMARY KEY (sink, alert_id)
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (sink, state, next_at_us);
";

const PENDING: i64 = 0;
const DEAD: i64 = 1;

/// As SQLite's: a redelivery only counts, an update raises the count and
/// replaces the document; GREATEST ignores NULLs, which is what last-seen
/// wants. In an UPDATE every right-hand side reads the old row.
const UPSERT: &str = "
INSERT INTO alerts (id, origin, time_us, received_us, rule, severity, class,
    src_namespace, src_workload, dst_namespace, dst_workload, protocol, port,
    connections, last_seen_us, summary, doc, deliveries)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, 1)
ON CONFLICT (id) DO UPDATE SET
    deliveries = alerts.deliveries + 1,
    connections = GREATEST(alerts.connections, EXCLUDED.connections),
    last_seen_us = GREATEST(alerts.last_seen_us, EXCLUDED.last_seen_us),
    summary = CASE WHEN EXCLUDED.connections > alerts.connections
        THEN EXCLUDED.summary ELSE alerts.summary END,
    doc = CASE WHEN EXCLUDED.connections > alerts.connections
        THEN EXCLUDED.doc ELSE alerts.doc END
RETURNING deliveries
";

const ENQUEUE: &str = "INSERT INTO outbox
    (sink, alert_id, state, attempts, next_at_us, created_us) VALUES ($1, $2, 0, 0, $3, $3)
    ON CONFLICT DO NOTHING";

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

impl AlertWriter for PostgresWriter {
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
        let mut tx = self.client.transaction()?;
        let upsert = tx.prepare(UPSERT)?;
        let enqueue = tx.prepare(ENQUEUE)?;
        for a in batch {
            let severity = severity_rank(a.severity);
            let port = a.port.map(i64::from);
            let connections = i64::try_from(a.connections).unwrap_or(i64::MAX);
            let row = tx.query_one(
                &upsert,
                &[
                    &a.id,
                    &a.origin,
                    &a.time_us,
                    &now_us,
                    &a.rule,
                    &severity,
                    &a.class,
                    &a.src_namespace,
                    &a.src_workload,
                    &a.dst_namespace,
                    &a.dst_workload,
                    &a.protocol,
                    &port,
                    &connections,
                    &a.last_seen_us,
                    &a.summary,
                    &a.doc,
                ],
            )?;
            let deliveries: i64 = row.get(0);
            if deliveries == 1 {
                for sink in sinks_of.get(a.id.as_str()).into_iter().flatten() {
                    tx.execute(&enqueue, &[sink, &a.id, &now_us])?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn settle(&mut self, settled: &[Settlement]) -> Result<(), StoreError> {
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

    fn prune(&mut self, retention: &Retention, now_us: i64) -> Result<u64, StoreError> {
        let mut tx = self.client.transaction()?;
        let mut pruned = 0;
        if let Some(age) = retention.max_age_us {
            let cutoff = now_us.saturating_sub(age);
            pruned += tx.execute("DELETE FROM alerts WHERE time_us < $1", &[&cutoff])?;
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
