//! Where alerts are kept once a sender has been told they are safe.
//!
//! The [`Store`] interface has one writer and any number of readers. A
//! writer commits whole batches: either every record of a batch is durable
//! or none is, and the caller acknowledges its senders only after
//! [`AlertWriter::commit`] returned. [`Committer`] puts one writer behind a
//! channel and commits whatever has queued up in one transaction (group
//! commit), which is what makes `synchronous=FULL` affordable.
//!
//! Alerts are upserted by id: a sender's update of an alert it already sent
//! (a higher repeat count, a later last-seen time) replaces the stored
//! figures, and a redelivery of the same alert changes nothing.

mod committer;
mod postgres;
mod query;
mod sqlite;

pub use committer::{
    CommitHandle, CommitStats, Committer, CommitterClosed, CommitterOptions, Reply, SubmitError,
};
pub use postgres::PostgresStore;
pub use query::{AlertQuery, MAX_LIMIT, Retention};
pub use sqlite::SqliteStore;

use palisade_inventory::severity::Severity;

/// One alert as the store keeps it: the fields queries filter on, and the
/// whole document as the sender wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertRecord {
    /// Stable across redeliveries and updates (`Alert::id`).
    pub id: String,
    /// Who sent it: a node name, or the host and command of an offline run.
    pub origin: String,
    /// When the alert was first seen, microseconds since the epoch.
    pub time_us: i64,
    pub rule: String,
    pub severity: Severity,
    /// `bypass`, `blocked-attempt`, ... for verdict rules.
    pub class: Option<String>,
    pub src_namespace: Option<String>,
    pub src_workload: Option<String>,
    pub dst_namespace: Option<String>,
    pub dst_workload: Option<String>,
    pub protocol: String,
    pub port: Option<u16>,
    /// Connections the alert stands for; updates only ever raise it.
    pub connections: u64,
    pub last_seen_us: Option<i64>,
    pub summary: String,
    /// The alert as JSON, exactly as received.
    pub doc: String,
}

/// An alert read back, with what the store added.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredAlert {
    pub record: AlertRecord,
    /// When the store first committed it, microseconds since the epoch.
    pub received_us: i64,
    /// How many times a sender delivered it (redeliveries and updates).
    pub deliveries: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("postgres: {0}")]
    Postgres(String),
    /// PostgreSQL rolled the transaction back to break a deadlock.
    #[error("postgres: {0}")]
    Deadlock(String),
    #[error("store {path}: {reason}")]
    Open { path: String, reason: String },
    #[error("stored record {id}: {reason}")]
    Corrupt { id: String, reason: String },
}

/// One `palisade audit` run as sent: its findings, scores and summary in
/// one JSON document (the audit's JSON report with `run` added).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRun {
    /// Unique per run (a resend of the same run replaces it).
    pub id: String,
    pub origin: String,
    pub time_us: i64,
    /// Unsuppressed findings.
    pub findings: u64,
    pub doc: String,
}

/// A version of the inventory that verdicts were judged against: the
/// version alerts name in `evidence.snapshot`, when it was first seen, and
/// a JSON document of what it held and what its policies allowed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub version: String,
    pub taken_us: i64,
    pub doc: String,
}

/// An alert a sink is to receive. Deliveries are created in the same
/// transaction as the alert's first commit, so an acknowledged alert is
/// always delivered (or dead-lettered); an update or redelivery of the
/// alert creates none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub alert_id: String,
    pub sink: String,
}

/// What became of one attempt to deliver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The sink took it: the delivery is done and forgotten.
    Delivered,
    /// Try again at this time.
    Retry { next_at_us: i64, error: String },
    /// Given up (refused for good, or too many attempts): kept as a dead
    /// letter with its reason.
    Dead { error: String },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settlement {
    pub sink: String,
    pub alert_id: String,
    pub outcome: Outcome,
}

/// A delivery that is due, with its alert.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Due {
    pub alert: StoredAlert,
    /// Attempts made before this one.
    pub attempts: u32,
    /// When the delivery was created (its alert first committed).
    pub created_us: i64,
}

/// Deliveries waiting and dead, per sink.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutboxDepth {
    pub sink: String,
    pub pending: u64,
    pub dead: u64,
}

/// PostgreSQL's error says "db error" and keeps the server's message
/// inside; this is what a user needs to read.
impl From<::postgres::Error> for StoreError {
    fn from(e: ::postgres::Error) -> StoreError {
        let text = match e.as_db_error() {
            Some(db) => format!("{} ({})", db.message(), db.code().code()),
            None => match std::error::Error::source(&e) {
                Some(cause) => format!("{e}: {cause}"),
                None => e.to_string(),
            },
        };
        if e.code() == Some(&::postgres::error::SqlState::T_R_DEADLOCK_DETECTED) {
            return StoreError::Deadlock(text);
        }
        StoreError::Postgres(text)
    }
}

/// A writer of a store (one, or `Store::concurrent_writers`).
pub trait AlertWriter: Send {
    /// Commits every record of `batch`, and the deliveries of those first
    /// seen, or nothing; durable when it returns Ok.
    fn commit(
        &mut self,
        batch: &[AlertRecord],
        deliveries: &[Delivery],
        now_us: i64,
    ) -> Result<(), StoreError>;
    /// Records the outcomes of delivery attempts.
    fn settle(&mut self, settled: &[Settlement]) -> Result<(), StoreError>;
    /// Keeps an audit run (replacing one with the same id).
    fn commit_run(&mut self, run: &AuditRun) -> Result<(), StoreError>;
    /// Keeps an inventory snapshot; a version already kept stays as it was
    /// first taken.
    fn commit_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StoreError>;
    /// Deletes what the retention no longer keeps (alerts, and snapshots
    /// older than the age kept but the newest); returns how many alerts.
    fn prune(&mut self, retention: &Retention, now_us: i64) -> Result<u64, StoreError>;
}

/// A reader; readers never block the writer.
pub trait AlertReader: Send {
    fn alerts(&mut self, query: &AlertQuery) -> Result<Vec<StoredAlert>, StoreError>;
    fn count(&mut self) -> Result<u64, StoreError>;
    /// Which of `ids` the store does not hold (the durability checks).
    fn missing(&mut self, ids: &[String]) -> Result<Vec<String>, StoreError>;
    /// Deliveries to `sink` due by `now_us`, the longest waiting first.
    fn due(&mut self, sink: &str, now_us: i64, limit: usize) -> Result<Vec<Due>, StoreError>;
    /// Deliveries waiting and dead-lettered, per sink.
    fn outbox(&mut self) -> Result<Vec<OutboxDepth>, StoreError>;
    /// The latest audit run of each origin (or of `origin`), newest first.
    fn latest_runs(&mut self, origin: Option<&str>) -> Result<Vec<AuditRun>, StoreError>;
    /// The snapshot of `version`, if kept.
    fn snapshot(&mut self, version: &str) -> Result<Option<Snapshot>, StoreError>;
    /// The versions kept and when each was taken, newest first.
    fn snapshot_versions(&mut self, limit: usize) -> Result<Vec<(String, i64)>, StoreError>;
}

/// A store: hands out its writer once and readers on demand.
pub trait Store: Send + Sync {
    fn writer(&self) -> Result<Box<dyn AlertWriter>, StoreError>;
    fn reader(&self) -> Result<Box<dyn AlertReader>, StoreError>;
    /// Writers that may commit side by side (SQLite has one writer).
    fn concurrent_writers(&self) -> usize {
        1
    }
}
