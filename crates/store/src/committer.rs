//! Group commit: one thread owns the writer; callers hand it batches with
//! a reply, and it commits everything that queued up while the previous
//! transaction was being made durable in one transaction. A fsync per
//! request would cap ingest at a few hundred requests a second
//! (`synchronous=FULL` on this machine's disk); a fsync per group keeps it
//! at disk bandwidth, and no reply says "committed" before it is.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::{AlertRecord, AlertWriter, AuditRun, Delivery, Retention, Settlement, Snapshot};

/// Called once per submitted batch, from the committer's thread, with the
/// outcome of the transaction that held it.
pub type Reply = Box<dyn FnOnce(Result<(), String>) + Send>;

struct Job {
    work: Work,
    reply: Reply,
}

enum Work {
    Alerts {
        batch: Vec<AlertRecord>,
        deliveries: Vec<Delivery>,
    },
    Settle(Vec<Settlement>),
    Run(Box<AuditRun>),
    Snapshot(Box<Snapshot>),
}

impl Work {
    fn size(&self) -> usize {
        match self {
            Work::Alerts { batch, .. } => batch.len(),
            Work::Settle(settled) => settled.len(),
            Work::Run(_) | Work::Snapshot(_) => 1,
        }
    }
}

/// The committer has stopped (its writer failed to start or it was shut
/// down); nothing submitted now can be committed.
#[derive(Debug, thiserror::Error)]
#[error("the store's committer has stopped")]
pub struct CommitterClosed;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SubmitError {
    #[error("the store's queue is full")]
    Full,
    #[error("the store's committer has stopped")]
    Closed,
}

/// Figures for metrics, updated by the committer's thread.
#[derive(Debug, Default)]
pub struct CommitStats {
    pub transactions: AtomicU64,
    pub records: AtomicU64,
    pub failures: AtomicU64,
    /// Total time spent committing, microseconds.
    pub commit_micros: AtomicU64,
    pub pruned: AtomicU64,
    /// Batches waiting for the committer (the queue's depth).
    pub queued: AtomicU64,
}

/// A cheap handle to submit batches to the committer.
#[derive(Clone)]
pub struct CommitHandle {
    jobs: SyncSender<Job>,
    stats: Arc<CommitStats>,
}

impl CommitHandle {
    /// Queues `batch`; `reply` gets the outcome once its transaction ended.
    /// Blocks while the queue is full, which is how back-pressure reaches
    /// the senders.
    pub fn submit(
        &self,
        batch: Vec<AlertRecord>,
        deliveries: Vec<Delivery>,
        reply: Reply,
    ) -> Result<(), CommitterClosed> {
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        let work = Work::Alerts { batch, deliveries };
        let job = Job { work, reply };
        let sent = match self.jobs.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(job)) => self.jobs.send(job).map_err(|_| CommitterClosed),
            Err(TrySendError::Disconnected(_)) => Err(CommitterClosed),
        };
        if sent.is_err() {
            self.stats.queued.fetch_sub(1, Ordering::Relaxed);
        }
        sent
    }

    /// Queues `batch` unless the queue is full; an async caller answers
    /// "try later" then rather than block its runtime.
    pub fn try_submit(
        &self,
        batch: Vec<AlertRecord>,
        deliveries: Vec<Delivery>,
        reply: Reply,
    ) -> Result<(), SubmitError> {
        let work = Work::Alerts { batch, deliveries };
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        let sent = self
            .jobs
            .try_send(Job { work, reply })
            .map_err(|e| match e {
                TrySendError::Full(_) => SubmitError::Full,
                TrySendError::Disconnected(_) => SubmitError::Closed,
            });
        if sent.is_err() {
            self.stats.queued.fetch_sub(1, Ordering::Relaxed);
        }
        sent
    }

    /// Queues an audit run; `reply` gets the outcome of its commit.
    pub fn commit_run(&self, run: AuditRun, reply: Reply) -> Result<(), SubmitError> {
        self.try_submit_one(Work::Run(Box::new(run)), reply)
    }

    /// Queues an inventory snapshot; `reply` gets the outcome of its commit.
    pub fn commit_snapshot(&self, snapshot: Snapshot, reply: Reply) -> Result<(), SubmitError> {
        self.try_submit_one(Work::Snapshot(Box::new(snapshot)), reply)
    }

    fn try_submit_one(&self, work: Work, reply: Reply) -> Result<(), SubmitError> {
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        self.jobs.try_send(Job { work, reply }).map_err(|e| {
            self.stats.queued.fetch_sub(1, Ordering::Relaxed);
            match e {
                TrySendError::Full(_) => SubmitError::Full,
                TrySendError::Disconnected(_) => SubmitError::Closed,
            }
        })
    }

    /// Queues the outcomes of delivery attempts (the sinks' side).
    pub fn settle(&self, settled: Vec<Settlement>, reply: Reply) -> Result<(), CommitterClosed> {
        let job = Job {
            work: Work::Settle(settled),
            reply,
        };
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        self.jobs.send(job).map_err(|_| {
            self.stats.queued.fetch_sub(1, Ordering::Relaxed);
            CommitterClosed
        })
    }

    pub fn stats(&self) -> &Arc<CommitStats> {
        &self.stats
    }
}

/// How the committer groups and prunes.
#[derive(Clone, Copy, Debug)]
pub struct CommitterOptions {
    /// A transaction takes no more records than this (more queued batches
    /// wait for the next one); a single larger batch still goes whole.
    pub max_records: usize,
    /// Batches that may wait before `submit` blocks.
    pub queue: usize,
    pub retention: Retention,
    /// How often retention runs, when it keeps anything from growing.
    pub prune_every: Duration,
}

impl Default for CommitterOptions {
    fn default() -> Self {
        CommitterOptions {
            max_records: 20_000,
            queue: 1024,
            retention: Retention::default(),
            prune_every: Duration::from_secs(60),
        }
    }
}

pub struct Committer;

impl Committer {
    /// Starts the committer's thread; it ends when every handle is dropped
    /// and the queue is drained.
    pub fn spawn(
        writer: Box<dyn AlertWriter>,
        options: CommitterOptions,
        clock: fn() -> i64,
    ) -> (CommitHandle, JoinHandle<()>) {
        Committer::spawn_many(vec![writer], options, clock)
    }

    /// One committing thread per writer, taking groups from one queue: a
    /// store that runs transactions side by side (PostgreSQL) commits
    /// while another group is in flight. Only the first prunes. The
    /// handle's thread ends when all of them did.
    pub fn spawn_many(
        writers: Vec<Box<dyn AlertWriter>>,
        options: CommitterOptions,
        clock: fn() -> i64,
    ) -> (CommitHandle, JoinHandle<()>) {
        let (jobs, queue) = mpsc::sync_channel::<Job>(options.queue.max(1));
        let stats = Arc::new(CommitStats::default());
        let handle = CommitHandle {
            jobs,
            stats: stats.clone(),
        };
        let queue = Mutex::new(queue);
        let thread = std::thread::Builder::new()
            .name("store-commit".into())
            .spawn(move || {
                std::thread::scope(|scope| {
                    for (n, writer) in writers.into_iter().enumerate() {
                        let (queue, stats) = (&queue, &stats);
                        scope.spawn(move || run(writer, queue, options, clock, stats, n == 0));
                    }
                });
            })
            // Spawning fails only when the OS is out of threads; the server
            // cannot run without its committer.
            .expect("the store's committer thread starts");
        (handle, thread)
    }
}

fn run(
    mut writer: Box<dyn AlertWriter>,
    queue: &Mutex<mpsc::Receiver<Job>>,
    options: CommitterOptions,
    clock: fn() -> i64,
    stats: &CommitStats,
    pruner: bool,
) {
    let prunes = pruner && options.retention != Retention::default();
    let mut next_prune = Instant::now();
    loop {
        if prunes && Instant::now() >= next_prune {
            match writer.prune(&options.retention, clock()) {
                Ok(n) => stats.pruned.fetch_add(n, Ordering::Relaxed),
                Err(_) => stats.failures.fetch_add(1, Ordering::Relaxed),
            };
            next_prune = Instant::now() + options.prune_every;
        }
        let group = {
            // The group is taken under the lock, committed outside it.
            let queue = queue.lock().unwrap_or_else(|e| e.into_inner());
            let first = match queue.recv_timeout(options.prune_every) {
                Ok(job) => job,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            let mut group = vec![first];
            let mut records: usize = group[0].work.size();
            while records < options.max_records {
                match queue.try_recv() {
                    Ok(job) => {
                        records += job.work.size();
                        group.push(job);
                    }
                    Err(_) => break,
                }
            }
            group
        };
        commit_group(writer.as_mut(), group, clock, stats);
    }
}

/// The alerts of the whole group in one transaction, and its settlements
/// in another.
fn commit_group(
    writer: &mut dyn AlertWriter,
    group: Vec<Job>,
    clock: fn() -> i64,
    stats: &CommitStats,
) {
    let mut all = Vec::with_capacity(group.iter().map(|j| j.work.size()).sum());
    let mut all_deliveries = Vec::new();
    let mut settled = Vec::new();
    let mut replies = Vec::with_capacity(group.len());
    let mut settle_replies = Vec::new();
    for job in group {
        match job.work {
            Work::Alerts { batch, deliveries } => {
                all.extend(batch);
                all_deliveries.extend(deliveries);
                replies.push(job.reply);
            }
            Work::Settle(s) => {
                settled.extend(s);
                settle_replies.push(job.reply);
            }
            Work::Run(run) => {
                let outcome = writer.commit_run(&run).map_err(|e| e.to_string());
                answer(vec![job.reply], &outcome, stats);
            }
            Work::Snapshot(snapshot) => {
                let outcome = writer.commit_snapshot(&snapshot).map_err(|e| e.to_string());
                answer(vec![job.reply], &outcome, stats);
            }
        }
    }
    if !settle_replies.is_empty() {
        let outcome = writer.settle(&settled).map_err(|e| e.to_string());
        answer(settle_replies, &outcome, stats);
    }
    if replies.is_empty() {
        return;
    }
    let started = Instant::now();
    let outcome = writer
        .commit(&all, &all_deliveries, clock())
        .map_err(|e| e.to_string());
    let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    stats.commit_micros.fetch_add(micros, Ordering::Relaxed);
    if outcome.is_ok() {
        stats.transactions.fetch_add(1, Ordering::Relaxed);
        stats.records.fetch_add(all.len() as u64, Ordering::Relaxed);
    }
    answer(replies, &outcome, stats);
}

fn answer(replies: Vec<Reply>, outcome: &Result<(), String>, stats: &CommitStats) {
    if outcome.is_err() {
        stats.failures.fetch_add(1, Ordering::Relaxed);
    }
    stats
        .queued
        .fetch_sub(replies.len() as u64, Ordering::Relaxed);
    for reply in replies {
        reply(outcome.clone());
    }
}
