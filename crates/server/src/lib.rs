//! `palisade serve`: receives alerts over HTTP, acknowledges them once the
//! store has committed them, and serves them back through a read API.
//!
//! Endpoints (all JSON):
//! - `POST /api/v1/ingest/alerts` (scope `ingest`): a JSON array or JSON
//!   lines of alerts, each with its `id` and `origin`. 200 when every item
//!   was committed; 422 when some were refused (the others are committed;
//!   the body lists each refused index and why); 400 when the body is not
//!   a batch; 413 when it is too large; 503 with `Retry-After` when the
//!   store is behind or failing.
//! - `GET /api/v1/alerts` (scope `read`): filters `since`, `until`
//!   (RFC 3339), `namespace`, `workload`, `rule`, `severity` (and above),
//!   `class`, `origin`, `limit`.
//! - `GET /healthz`: no authentication.
//!
//! On a loopback listener authentication may be off (no tokens); any other
//! listener refuses to start without tokens.

mod api;
pub mod auth;
pub mod bus;
mod dashboard;
pub mod graph;
pub mod ingest;
mod limit;
mod logs;
mod metrics;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use palisade_sinks::{Bell, Route, SinkStats, Worker};
use palisade_store::{CommitHandle, Committer, CommitterOptions, Store, StoreError};

pub use auth::{Scope, Tokens, new_token};

/// Bodies larger than this are refused with 413 unless configured.
pub const DEFAULT_MAX_BODY: usize = 16 << 20;

pub struct ServeOptions {
    pub store: Arc<dyn Store>,
    pub tokens: Tokens,
    pub max_body_bytes: usize,
    /// A request not answered within this (a client trickling its body,
    /// a store far behind) is answered 408.
    pub request_timeout: std::time::Duration,
    pub committer: CommitterOptions,
    /// Deliveries: each sink's worker and its route.
    pub sinks: Vec<(Worker, Route)>,
    /// What the declared policies allow, for the dashboard's graph.
    pub declared: Option<graph::Declared>,
    /// Asked every two seconds for a new version of it (the manifests
    /// changed); `None` when nothing changed or the new version is refused.
    pub reload: Option<Reload>,
    /// Also consume alerts from NATS JetStream.
    pub nats: Option<bus::NatsOptions>,
    /// The log rules for pushed audit events and container logs.
    pub scanner: palisade_logs::Scanner,
    /// Serve HTTPS (and require client certificates, for mTLS).
    pub tls: Option<tls::TlsOptions>,
    /// The live inventory's counters, when it watches the Kubernetes API.
    pub inventory_watch: Option<palisade_kube::WatchStats>,
    /// Serve `/metrics` here (without authentication) instead of on the
    /// main listener.
    pub metrics_listener: Option<tokio::net::TcpListener>,
    /// Requests a second each client (token) may make; bursts of twice
    /// that. Above it: 429 with `Retry-After`.
    pub rate_limit: Option<u32>,
}

/// How the server learns that the cluster's manifests changed.
pub type Reload = Box<dyn FnMut() -> Option<graph::Declared> + Send>;

/// A sink as the server sees it: where alerts go and how that goes.
pub(crate) struct SinkEntry {
    pub name: String,
    pub route: Route,
    pub stats: Arc<SinkStats>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "{0} is not a loopback address: refusing to listen there without authentication (give --tokens)"
    )]
    NeedsAuthentication(SocketAddr),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("TLS: {0}")]
    Tls(String),
}

/// What the server counts, for its summary and (next) its metrics.
#[derive(Debug, Default)]
pub struct IngestCounters {
    pub requests: AtomicU64,
    pub accepted: AtomicU64,
    pub rejected: AtomicU64,
    pub refused_auth: AtomicU64,
    pub busy: AtomicU64,
    /// Requests refused for going over the client's rate limit.
    pub rate_limited: AtomicU64,
    /// Messages fetched from NATS, and failures of the bus connection.
    pub bus_received: AtomicU64,
    pub bus_errors: AtomicU64,
    /// New versions of the manifests taken without a restart.
    pub reloads: AtomicU64,
    /// Connections whose TLS handshake failed or timed out.
    pub tls_refused: Arc<AtomicU64>,
    /// Committed alerts by (rule, severity): bounded by the rules loaded.
    pub by_rule: std::sync::Mutex<std::collections::BTreeMap<(String, String), u64>>,
}

pub(crate) struct AppState {
    tokens: Tokens,
    commit: CommitHandle,
    store: Arc<dyn Store>,
    counters: Arc<IngestCounters>,
    sinks: Vec<SinkEntry>,
    bell: Arc<Bell>,
    declared: std::sync::RwLock<Option<Arc<graph::Declared>>>,
    /// Each committed alert's document, for the dashboard's live view.
    live: tokio::sync::broadcast::Sender<Arc<str>>,
    /// Turns true when the server stops: live streams end then, or a
    /// graceful shutdown would wait for them forever.
    closing: tokio::sync::watch::Receiver<bool>,
    scanner: Arc<std::sync::Mutex<palisade_logs::Scanner>>,
    inventory_watch: Option<palisade_kube::WatchStats>,
    limiter: Option<limit::RateLimiter>,
}

/// Serves on `listener` until `shutdown` resolves, then lets the store
/// commit what it was given before returning.
pub async fn serve(
    listener: tokio::net::TcpListener,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Arc<IngestCounters>, ServeError> {
    let addr = listener.local_addr()?;
    if options.tokens.is_empty() && !addr.ip().is_loopback() {
        return Err(ServeError::NeedsAuthentication(addr));
    }
    // Store clients may block (PostgreSQL's runs its own runtime), so
    // they are made, and finally dropped, off the async threads.
    let store = options.store.clone();
    let writers = tokio::task::spawn_blocking(move || {
        (0..store.concurrent_writers().max(1))
            .map(|_| store.writer())
            .collect::<Result<Vec<_>, _>>()
    })
    .await
    .map_err(|e| ServeError::Io(std::io::Error::other(e)))??;
    let (commit, committer) = Committer::spawn_many(writers, options.committer, now_us);
    let keep_store = options.store.clone();
    let counters = Arc::new(IngestCounters::default());
    let bell = Arc::new(Bell::default());
    let stop_sinks = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut sinks = Vec::new();
    let mut workers = Vec::new();
    for (worker, route) in options.sinks {
        sinks.push(SinkEntry {
            name: worker.sink.name().to_string(),
            route,
            stats: worker.stats.clone(),
        });
        let store = options.store.clone();
        let handle = worker.spawn(
            store,
            commit.clone(),
            bell.clone(),
            stop_sinks.clone(),
            now_us,
        )?;
        workers.push(handle);
    }
    let (closing, closing_rx) = tokio::sync::watch::channel(false);
    let options_declared = options.declared.map(Arc::new);
    let state = Arc::new(AppState {
        tokens: options.tokens,
        commit,
        store: options.store,
        counters: counters.clone(),
        sinks,
        bell: bell.clone(),
        declared: std::sync::RwLock::new(options_declared.clone()),
        live: tokio::sync::broadcast::channel(1024).0,
        closing: closing_rx,
        scanner: Arc::new(std::sync::Mutex::new(options.scanner)),
        inventory_watch: options.inventory_watch,
        limiter: options.rate_limit.map(limit::RateLimiter::new),
    });
    if let Some(declared) = options_declared.as_deref() {
        keep_snapshot(&state, declared);
    }
    if let Some(reload) = options.reload {
        workers.push(watch_manifests(state.clone(), reload, stop_sinks.clone())?);
    }
    let bus = options
        .nats
        .map(|nats| tokio::spawn(bus::consume(state.clone(), nats, state.closing.clone())));
    let metrics_server = options.metrics_listener.map(|listener| {
        let mut closing = state.closing.clone();
        let app = api::metrics_router(state.clone());
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = closing.wait_for(|closed| *closed).await;
                })
                .await
        })
    });
    let app = api::router(
        state,
        options.max_body_bytes,
        options.request_timeout,
        metrics_server.is_none(),
    );
    let shutdown = async move {
        shutdown.await;
        let _ = closing.send(true);
    };
    match options.tls {
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await?
        }
        Some(tls) => {
            let config = tls::server_config(&tls).map_err(ServeError::Tls)?;
            let listener = tls::TlsListener::new(listener, config, counters.tls_refused.clone())?;
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await?
        }
    }
    if let Some(metrics_server) = metrics_server {
        let _ = metrics_server.await;
    }
    if let Some(bus) = bus {
        // It finishes the batch in hand: committed, then acknowledged.
        let _ = bus.await;
    }
    stop_sinks.store(true, Ordering::Relaxed);
    bell.ring();
    finish(workers, committer, keep_store).await;
    Ok(counters)
}

/// Has the store keep the snapshot of an inventory version that verdicts
/// are judged against from now on (a version kept before stays as it was).
fn keep_snapshot(state: &AppState, declared: &graph::Declared) {
    let version = declared.version.clone();
    let reply: palisade_store::Reply = Box::new(move |outcome| {
        if let Err(why) = outcome {
            eprintln!("palisade serve: the snapshot {version} was not kept: {why}");
        }
    });
    if let Err(why) = state
        .commit
        .commit_snapshot(declared.snapshot(now_us()), reply)
    {
        eprintln!(
            "palisade serve: the snapshot {} was not kept: {why}",
            declared.version
        );
    }
}

/// Replaces the declared graph when the manifests change, without a
/// restart; a refused version leaves the last good one.
fn watch_manifests(
    state: Arc<AppState>,
    mut reload: Reload,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("manifests".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Some(declared) = reload() {
                    keep_snapshot(&state, &declared);
                    let mut current = state.declared.write().unwrap_or_else(|e| e.into_inner());
                    *current = Some(Arc::new(declared));
                    count(&state.counters.reloads, 1);
                }
                for _ in 0..20 {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
            }
        })
}

/// The workers finish the batch in hand; the committer ends once the last
/// handle (the workers' and the router's state) is gone and its queue is
/// drained.
async fn finish(workers: Vec<JoinHandle<()>>, committer: JoinHandle<()>, store: Arc<dyn Store>) {
    let _ = tokio::task::spawn_blocking(move || {
        for worker in workers {
            let _ = worker.join();
        }
        let _ = committer.join();
        drop(store);
    })
    .await;
}

pub(crate) fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

pub(crate) fn count(counter: &AtomicU64, n: usize) {
    counter.fetch_add(n as u64, Ordering::Relaxed);
}
