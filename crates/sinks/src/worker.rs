//! The outbox worker: one thread per sink takes the deliveries that are
//! due, hands them to its sink, and records each outcome through the
//! store's committer, so that a delivery survives a restart at every
//! step. Retries back off exponentially with jitter (or as the
//! destination's `Retry-After` says); after `max_attempts` a delivery is
//! dead-lettered and counted.
//!
//! Memory stays bounded whatever the destination does: a worker holds one
//! batch at a time, and everything else waits in the store.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use palisade_store::{CommitHandle, Due, Outcome, Settlement, Store};

use crate::{Attempt, Sink};

/// Rung after every commit of new alerts, so workers wake at once
/// instead of waiting for their next poll.
#[derive(Debug, Default)]
pub struct Bell {
    rung: Mutex<u64>,
    cond: Condvar,
}

impl Bell {
    pub fn ring(&self) {
        let mut rung = self.rung.lock().unwrap_or_else(|e| e.into_inner());
        *rung += 1;
        self.cond.notify_all();
    }

    /// Waits until rung after `seen` or `timeout` passed; returns the
    /// count to pass next time.
    pub fn wait(&self, seen: u64, timeout: Duration) -> u64 {
        let rung = self.rung.lock().unwrap_or_else(|e| e.into_inner());
        let (rung, _) = self
            .cond
            .wait_timeout_while(rung, timeout, |r| *r == seen)
            .unwrap_or_else(|e| e.into_inner());
        *rung
    }

    pub fn count(&self) -> u64 {
        *self.rung.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Upper bounds (seconds) of the ingest-to-delivery histogram.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0, 300.0,
];

/// A sink's figures, for metrics and the dashboard's status strip.
#[derive(Debug, Default)]
pub struct SinkStats {
    pub delivered: AtomicU64,
    pub retried: AtomicU64,
    pub dead: AtomicU64,
    /// Requests (or writes) made.
    pub attempts: AtomicU64,
    /// The last error a delivery met, for the status strip.
    pub last_error: Mutex<Option<String>>,
    /// Counts per bucket of [`LATENCY_BUCKETS`] (not cumulative), and
    /// beyond the last.
    pub latency: [AtomicU64; 13],
    pub latency_sum_micros: AtomicU64,
}

impl SinkStats {
    fn observe_latency(&self, micros: i64) {
        let seconds = micros.max(0) as f64 / 1e6;
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|b| seconds <= *b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.latency[bucket].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_micros
            .fetch_add(micros.max(0) as u64, Ordering::Relaxed);
    }
}

pub struct Worker {
    pub sink: Box<dyn Sink>,
    pub max_attempts: u32,
    pub stats: Arc<SinkStats>,
}

/// Deliveries one round takes at least.
const ROUND: usize = 100;

/// How often an idle worker looks at the outbox without being rung
/// (retries that came due).
const IDLE_POLL: Duration = Duration::from_millis(500);

impl Worker {
    pub fn new(sink: Box<dyn Sink>, max_attempts: u32) -> Worker {
        Worker {
            sink,
            max_attempts: max_attempts.max(1),
            stats: Arc::default(),
        }
    }

    /// Runs until `stop` is set (it finishes the batch in hand first).
    pub fn spawn(
        mut self,
        store: Arc<dyn Store>,
        commit: CommitHandle,
        bell: Arc<Bell>,
        stop: Arc<AtomicBool>,
        clock: fn() -> i64,
    ) -> std::io::Result<JoinHandle<()>> {
        std::thread::Builder::new()
            .name(format!("sink-{}", self.sink.name()))
            .spawn(move || {
                let mut seen = bell.count();
                while !stop.load(Ordering::Relaxed) {
                    let worked = self.round(store.as_ref(), &commit, clock);
                    if worked == 0 {
                        seen = bell.wait(seen, IDLE_POLL);
                    }
                }
            })
    }

    /// Delivers one batch of what is due; returns how many were tried.
    fn round(&mut self, store: &dyn Store, commit: &CommitHandle, clock: fn() -> i64) -> usize {
        let now = clock();
        // Sinks that take one alert per request still get a round of
        // many, settled in one transaction: one commit per alert would make
        // the outbox, not the destination, the limit.
        let take = self.sink.batch().max(ROUND);
        let due = match store
            .reader()
            .and_then(|mut r| r.due(self.sink.name(), now, take))
        {
            Ok(due) => due,
            Err(e) => {
                self.note_error(format!("reading the outbox: {e}"));
                return 0;
            }
        };
        if due.is_empty() {
            return 0;
        }
        let alerts: Vec<_> = due.iter().map(|d| d.alert.clone()).collect();
        let mut attempts = Vec::with_capacity(alerts.len());
        for chunk in alerts.chunks(self.sink.batch().max(1)) {
            // A destination that is away for one chunk is away for the
            // rest of the round: they wait with it instead of each paying
            // a timeout.
            if let Some(Attempt::Retry { error, .. }) = attempts.last()
                && attempts.iter().all(|a| matches!(a, Attempt::Retry { .. }))
            {
                let waiting = Attempt::Retry {
                    after: None,
                    error: error.clone(),
                };
                attempts.extend(std::iter::repeat_n(waiting, chunk.len()));
                continue;
            }
            self.stats.attempts.fetch_add(1, Ordering::Relaxed);
            attempts.extend(self.sink.deliver(chunk));
        }
        let after = clock();
        let settled: Vec<Settlement> = due
            .iter()
            .zip(attempts)
            .map(|(d, attempt)| self.settlement(d, attempt, after))
            .collect();
        let (done, outcome) = mpsc::channel();
        let reply = Box::new(move |r| {
            let _ = done.send(r);
        });
        let recorded = commit
            .settle(settled, reply)
            .map_err(|e| e.to_string())
            .and_then(|()| outcome.recv().map_err(|e| e.to_string()))
            .and_then(|r| r);
        if let Err(e) = recorded {
            // The outcomes are lost, not the deliveries: they are tried again.
            self.note_error(format!("recording deliveries: {e}"));
        }
        due.len()
    }

    fn settlement(&self, due: &Due, attempt: Attempt, now: i64) -> Settlement {
        let outcome = match attempt {
            Attempt::Delivered => {
                self.stats.delivered.fetch_add(1, Ordering::Relaxed);
                self.stats.observe_latency(now - due.created_us);
                Outcome::Delivered
            }
            Attempt::Failed(error) => {
                self.stats.dead.fetch_add(1, Ordering::Relaxed);
                self.note_error(error.clone());
                Outcome::Dead { error }
            }
            Attempt::Retry { error, .. } if due.attempts + 1 >= self.max_attempts => {
                self.stats.dead.fetch_add(1, Ordering::Relaxed);
                self.note_error(error.clone());
                Outcome::Dead {
                    error: format!("gave up after {} attempts: {error}", due.attempts + 1),
                }
            }
            Attempt::Retry { after, error } => {
                self.stats.retried.fetch_add(1, Ordering::Relaxed);
                self.note_error(error.clone());
                let wait = after.unwrap_or_else(|| backoff(due.attempts, now));
                let wait_us = i64::try_from(wait.as_micros()).unwrap_or(i64::MAX);
                Outcome::Retry {
                    next_at_us: now.saturating_add(wait_us),
                    error,
                }
            }
        };
        Settlement {
            sink: self.sink.name().to_string(),
            alert_id: due.alert.record.id.clone(),
            outcome,
        }
    }

    fn note_error(&self, error: String) {
        *self
            .stats
            .last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(error);
    }
}

/// 1 s, 2 s, 4 s ... up to 5 minutes, each between half and all of that
/// (the clock's microseconds as the jitter: enough to spread retries).
fn backoff(attempts: u32, now: i64) -> Duration {
    let ceiling_ms = 1000u64.saturating_mul(1 << attempts.min(9)).min(300_000);
    let jitter = (now.rem_euclid(1_000_000) as u64) % (ceiling_ms / 2 + 1);
    Duration::from_millis(ceiling_ms / 2 + jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_five_minutes_and_keeps_at_least_half() {
        assert!((500..=1000).contains(&backoff(0, 123_456).as_millis()));
        assert!((1000..=2000).contains(&backoff(1, 999_999).as_millis()));
        assert!((150_000..=300_000).contains(&backoff(30, 7).as_millis()));
    }

    #[test]
    fn a_rung_bell_wakes_a_waiter_and_a_silent_one_times_out() {
        let bell = Arc::new(Bell::default());
        let seen = bell.count();
        let ringer = bell.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            ringer.ring();
        });
        let started = std::time::Instant::now();
        assert_eq!(bell.wait(seen, Duration::from_secs(5)), seen + 1);
        assert!(started.elapsed() < Duration::from_secs(4));
        t.join().unwrap();
        assert_eq!(bell.wait(seen + 1, Duration::from_millis(10)), seen + 1);
    }
}
