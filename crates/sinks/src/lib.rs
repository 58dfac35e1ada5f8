//! Deliveries: where alerts go once the store committed them. Sinks only
//! serialize and transport; which alerts a sink gets is decided by its
//! route when the alert is committed, and when to try again by the outbox
//! worker ([`worker`]), from the outcome a sink reports for each alert.

pub mod config;
pub mod format;
mod transport;
pub mod worker;

use std::time::Duration;

use palisade_store::StoredAlert;

pub use config::{Route, SinkConfig, SinksFile, build};
pub use worker::{Bell, SinkStats, Worker};

/// What became of one alert in one attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attempt {
    Delivered,
    /// Worth trying again (unreachable, 5xx, 408, 429), after `after` if
    /// the destination said so.
    Retry {
        after: Option<Duration>,
        error: String,
    },
    /// Refused for good (a 4xx other than 408 and 429, a malformed
    /// answer): no retry can succeed.
    Failed(String),
}

/// A destination.
pub trait Sink: Send {
    fn name(&self) -> &str;
    /// The most alerts one delivery takes.
    fn batch(&self) -> usize;
    /// Delivers `alerts` and says, for each in order, what became of it.
    fn deliver(&mut self, alerts: &[StoredAlert]) -> Vec<Attempt>;
}
