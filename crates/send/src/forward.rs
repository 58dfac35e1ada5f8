//! The agent's way to the server: alerts are handed over as they are
//! raised and a thread sends them in batches, so the agent never waits on
//! the network. Every batch goes to the spool before its first attempt,
//! so an outage of the server, or a restart of the agent, loses nothing;
//! the spool is sent first when the server is back.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

use palisade_detect::Alert;

use crate::{SendError, SendOptions, Sender, wire_line};

/// How long the thread gathers alerts into one request at most.
const GATHER: Duration = Duration::from_millis(200);
const MAX_BATCH: usize = 1000;

/// Counts for the agent's metrics and its last words.
#[derive(Debug, Default)]
pub struct ForwardStats {
    pub delivered: AtomicU64,
    pub rejected: AtomicU64,
    /// Alerts in the spool, waiting for the server.
    pub pending: AtomicU64,
    /// Rounds that ended with the server out of reach.
    pub outages: AtomicU64,
}

/// Hands alerts to the forwarding thread; cheap to clone.
#[derive(Clone)]
pub struct ForwardHandle {
    lines: mpsc::Sender<String>,
    origin: Arc<str>,
}

impl ForwardHandle {
    pub fn forward(&self, alert: &Alert) {
        // The thread only goes away after `Forwarder::stop`; an alert
        // raised after that is still in the output the agent wrote.
        let _ = self.lines.send(wire_line(alert, &self.origin));
    }
}

pub struct Forwarder {
    handle: ForwardHandle,
    thread: JoinHandle<Result<(), SendError>>,
    stats: Arc<ForwardStats>,
}

impl Forwarder {
    /// Opens the spool (and sends what an earlier run left there) and
    /// starts the thread. `options.patience` bounds one round of retries,
    /// after which new alerts are spooled and retrying goes on.
    pub fn start(options: SendOptions, origin: &str) -> Result<Forwarder, SendError> {
        let mut sender = Sender::new(options, origin)?;
        let (lines, queue) = mpsc::channel();
        let stats = Arc::new(ForwardStats::default());
        let thread_stats = stats.clone();
        stats
            .pending
            .store(sender.pending() as u64, Ordering::Relaxed);
        let thread = std::thread::Builder::new()
            .name("forward".into())
            .spawn(move || run(&mut sender, &queue, &thread_stats))
            .map_err(|e| SendError::Client(e.to_string()))?;
        Ok(Forwarder {
            handle: ForwardHandle {
                lines,
                origin: Arc::from(origin),
            },
            thread,
            stats,
        })
    }

    pub fn handle(&self) -> ForwardHandle {
        self.handle.clone()
    }

    pub fn stats(&self) -> Arc<ForwardStats> {
        self.stats.clone()
    }

    /// Sends what is queued (one last round of retries) and stops; what
    /// could not be sent stays in the spool.
    pub fn stop(self) -> Result<Arc<ForwardStats>, SendError> {
        let Forwarder {
            handle,
            thread,
            stats,
        } = self;
        drop(handle);
        match thread.join() {
            Ok(result) => result.map(|()| stats),
            Err(_) => Err(SendError::Client("the forwarding thread panicked".into())),
        }
    }
}

fn run(
    sender: &mut Sender,
    queue: &mpsc::Receiver<String>,
    stats: &ForwardStats,
) -> Result<(), SendError> {
    loop {
        let (batch, closed) = gather(queue);
        if !batch.is_empty() || sender.pending() > 0 {
            let report = sender.send(&batch)?;
            stats
                .delivered
                .fetch_add(report.delivered as u64, Ordering::Relaxed);
            stats
                .rejected
                .fetch_add(report.rejected.len() as u64, Ordering::Relaxed);
            stats
                .pending
                .store(report.spooled as u64, Ordering::Relaxed);
            if report.stopped.is_some() {
                stats.outages.fetch_add(1, Ordering::Relaxed);
                if !closed {
                    // The server is away: wait a little before the next
                    // round rather than spin on connection refusals.
                    std::thread::sleep(GATHER);
                }
            }
        }
        if closed {
            return Ok(());
        }
    }
}

/// Waits up to [`GATHER`] for the first alert, then takes whatever else
/// is queued; `true` once every handle is gone.
fn gather(queue: &mpsc::Receiver<String>) -> (Vec<String>, bool) {
    let mut batch = Vec::new();
    match queue.recv_timeout(GATHER) {
        Ok(line) => batch.push(line),
        Err(RecvTimeoutError::Timeout) => return (batch, false),
        Err(RecvTimeoutError::Disconnected) => return (batch, true),
    }
    while batch.len() < MAX_BATCH {
        match queue.try_recv() {
            Ok(line) => batch.push(line),
            Err(mpsc::TryRecvError::Empty) => return (batch, false),
            Err(mpsc::TryRecvError::Disconnected) => return (batch, true),
        }
    }
    (batch, false)
}
