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
mod query;
mod sqlite;

pub use committer::{
    CommitHandle, CommitStats, Committer, CommitterClosed, CommitterOptions, Reply, SubmitError,
};
pub use query::{AlertQuery, Retention};
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
    #[error("store {path}: {reason}")]
    Open { path: String, reason: String },
    #[error("stored record {id}: {reason}")]
    Corrupt { id: String, reason: String },
}

/// The one writer of a store.
pub trait AlertWriter: Send {
    /// Commits every record of `batch` or none; durable when it returns Ok.
    fn commit(&mut self, batch: &[AlertRecord], now_us: i64) -> Result<(), StoreError>;
    /// Deletes what the retention no longer keeps; returns how many alerts.
    fn prune(&mut self, retention: &Retention, now_us: i64) -> Result<u64, StoreError>;
}

/// A reader; readers never block the writer.
pub trait AlertReader: Send {
    fn alerts(&mut self, query: &AlertQuery) -> Result<Vec<StoredAlert>, StoreError>;
    fn count(&mut self) -> Result<u64, StoreError>;
    /// Which of `ids` the store does not hold (the durability checks).
    fn missing(&mut self, ids: &[String]) -> Result<Vec<String>, StoreError>;
}

/// A store: hands out its writer once and readers on demand.
pub trait Store: Send + Sync {
    fn writer(&self) -> Result<Box<dyn AlertWriter>, StoreError>;
    fn reader(&self) -> Result<Box<dyn AlertReader>, StoreError>;
}
