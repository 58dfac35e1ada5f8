//! `palisade serve`: the monitoring server, and `palisade token`, which
//! makes its bearer tokens.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use palisade_server::bus::NatsOptions;
use palisade_server::graph::Declared;
use palisade_server::{DEFAULT_MAX_BODY, Scope, ServeOptions, Tokens, new_token};
use palisade_sinks::{Route, SinksFile, Worker};
use palisade_store::{CommitterOptions, PostgresStore, Retention, SqliteStore, Store};

use crate::Outcome;

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Where to listen. Off loopback, --tokens is required.
    #[arg(long, default_value = "127.0.0.1:8470", value_name = "ADDR")]
    pub listen: SocketAddr,
    /// The store: `sqlite:PATH` (default: the user's state directory,
    /// `palisade/alerts.db`), or `postgres://USER:PASSWORD@HOST/DB` for
    /// several replicas sharing one store.
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
    /// Bearer tokens with their scopes (`palisade token` makes them).
    /// Without it, authentication is off, which only loopback allows.
    #[arg(long, value_name = "FILE")]
    pub tokens: Option<PathBuf>,
    /// Largest request body accepted, in bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_BODY, value_name = "BYTES")]
    pub max_body: usize,
    /// Serve HTTPS with this certificate chain (PEM, leaf first).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Require client certificates signed by these CAs (PEM): mutual TLS.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// Serve `/metrics` on this address instead (plain HTTP, without
    /// authentication: keep it to the scraper's network).
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
    /// Requests a second each client (bearer token) may make, with
    /// bursts of twice that; above it the answer is 429 with Retry-After.
    #[arg(long, value_name = "N")]
    pub rate_limit: Option<u32>,
    /// Seconds a request may take, its body included; slower ones are
    /// answered 408.
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    pub request_timeout: u64,
    /// Forget alerts first seen longer ago than this many days.
    #[arg(long, value_name = "DAYS")]
    pub retention_days: Option<u64>,
    /// Keep at most this many alerts (the newest).
    #[arg(long, value_name = "N")]
    pub retention_alerts: Option<u64>,
    /// Server configuration (YAML): `sinks:`, where alerts are delivered
    /// and which (docs/server.md).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Also take alerts from NATS JetStream (`nats://host:4222`): every
    /// replica given the same URL shares one durable consumer.
    #[arg(long, value_name = "URL")]
    pub nats: Option<String>,
    /// The durable consumer's name (replicas of one deployment share it).
    #[arg(long, default_value = "palisade-serve", value_name = "NAME")]
    pub nats_consumer: String,
    /// Seconds a fetched message may go unacknowledged before it is handed
    /// to another replica.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    pub nats_ack_wait: u64,
    /// Log rule files (docs/logs.md) over the built-in rules, for pushed
    /// audit events (`/api/v1/ingest/k8s-audit`) and Fluent Bit records
    /// (`/api/v1/ingest/fluent-bit`).
    #[arg(long = "log-rules", value_name = "FILE")]
    pub log_rules: Vec<PathBuf>,
    /// The cluster's manifests (files, directories, dumps): the dashboard
    /// shows what their policies allow beside what was observed.
    #[arg(long = "manifests", value_name = "PATH", conflicts_with = "kube")]
    pub manifests: Vec<PathBuf>,
    #[command(flatten)]
    pub kube: crate::live::KubeArgs,
}

/// `palisade up`: the server's options that make sense beside an agent
/// (the agent's own, such as `--config` and `--log-rules`, keep their
/// names).
#[derive(clap::Args, Debug)]
pub struct UpArgs {
    /// Where the server listens (the dashboard, the API).
    #[arg(long, default_value = "127.0.0.1:8470", value_name = "ADDR")]
    pub listen: SocketAddr,
    /// The store: `sqlite:PATH` (default: the state directory's
    /// `palisade/alerts.db`) or `postgres://...`.
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
    /// The server's configuration (YAML: `sinks:`).
    #[arg(long, value_name = "FILE")]
    pub server_config: Option<PathBuf>,
    /// Forget alerts first seen longer ago than this many days.
    #[arg(long, value_name = "DAYS")]
    pub retention_days: Option<u64>,
    #[command(flatten)]
    pub agent: crate::agent_cmd::AgentArgs,
}

impl UpArgs {
    fn serve(&self) -> ServeArgs {
        ServeArgs {
            listen: self.listen,
            store: self.store.clone(),
            tokens: None,
            max_body: DEFAULT_MAX_BODY,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            metrics_listen: None,
            rate_limit: None,
            request_timeout: 60,
            retention_days: self.retention_days,
            retention_alerts: None,
            config: self.server_config.clone(),
            nats: None,
            nats_consumer: "palisade-serve".into(),
            nats_ack_wait: 30,
            log_rules: Vec::new(),
            manifests: Vec::new(),
            kube: self.agent.kube.clone(),
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct TokenArgs {
    /// Who the token is for (an agent's node, a CI job): one word.
    pub name: String,
    /// What it may do: ingest, read, admin (comma-separated).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "ingest",
        value_name = "SCOPES"
    )]
    pub scopes: Vec<String>,
    /// The server's tokens file, to which the token's hash is appended.
    #[arg(long, value_name = "FILE")]
    pub tokens: PathBuf,
}

pub fn run(args: &ServeArgs, input: &crate::input::InputArgs) -> Result<Outcome> {
    let cluster = Cluster::load(
        &args.manifests,
        &args.kube,
        palisade_policy::Settings::default(),
        input,
    )?;
    serve_until(args, cluster, None, shutdown_signal())
}

/// What the server knows of the cluster from its manifests: what their
/// policies allow (the graph), and the state that pushed audit events are
/// replayed from, so that a change widening connectivity fires AUDIT-013.
#[derive(Default)]
pub struct Cluster {
    declared: Option<Declared>,
    seed: Option<palisade_logs::timeline::Timeline>,
    reload: Option<palisade_server::Reload>,
    watch_stats: Option<palisade_kube::WatchStats>,
}

impl Cluster {
    fn load(
        paths: &[PathBuf],
        kube: &crate::live::KubeArgs,
        settings: palisade_policy::Settings,
        input: &crate::input::InputArgs,
    ) -> Result<Cluster> {
        if let Some(live) = kube.connect("palisade serve")? {
            return Ok(Cluster::live(live, settings));
        }
        if paths.is_empty() {
            return Ok(Cluster::default());
        }
        let (inventory, version) = crate::input::load_versioned(paths, input)?;
        Ok(Cluster {
            declared: Some(Declared::new(&inventory, &settings, version)),
            seed: Some(crate::timeline_cmd::load_seed(
                paths,
                settings.clone(),
                input,
            )?),
            reload: Some(reload(paths.to_vec(), settings, input.verbose)),
            watch_stats: None,
        })
    }
}

impl Cluster {
    /// The cluster as the Kubernetes API shows it: the graph follows the
    /// watch, and the audit trail is replayed from the objects listed.
    fn live(live: crate::live::Live, settings: palisade_policy::Settings) -> Cluster {
        let crate::live::Live { mut watcher, first } = live;
        let watch_stats = Some(watcher.stats_handle());
        let (seed, _) =
            palisade_logs::timeline::Timeline::seed_objects(watcher.objects(), settings.clone());
        let declared = Declared::new(&first.inventory, &settings, first.version.clone());
        let reload: palisade_server::Reload = Box::new(move || {
            let snapshot = watcher.changed()?;
            eprintln!(
                "palisade serve: the cluster changed ({}): {}",
                snapshot.version,
                crate::live::describe(&snapshot)
            );
            Some(Declared::new(
                &snapshot.inventory,
                &settings,
                snapshot.version.clone(),
            ))
        });
        Cluster {
            declared: Some(declared),
            seed: Some(seed),
            reload: Some(reload),
            watch_stats,
        }
    }
}

/// Watches the manifests; a new version with any diagnostic is refused
/// and the last good one kept, as the agent does. (The audit timeline is
/// not reseeded: the audit events themselves carry it forward.)
fn reload(
    paths: Vec<PathBuf>,
    settings: palisade_policy::Settings,
    verbose: bool,
) -> palisade_server::Reload {
    let mut watch = palisade_agent::watch::PolicyWatch::new(paths.clone());
    let strict = crate::input::InputArgs {
        strict: true,
        verbose,
    };
    Box::new(move || {
        if !watch.changed() {
            return None;
        }
        match crate::input::load_versioned(&paths, &strict) {
            Ok((inventory, version)) => {
                eprintln!(
                    "palisade serve: the manifests changed ({version}); the graph follows them"
                );
                Some(Declared::new(&inventory, &settings, version))
            }
            Err(e) => {
                eprintln!(
                    "palisade serve: manifests update refused, the last good version stays: {e:#}"
                );
                None
            }
        }
    })
}

/// Serves until `shutdown`; the bound address goes to `ready` once the
/// server listens (for `palisade up`, whose agent sends to it).
pub fn serve_until(
    args: &ServeArgs,
    cluster: Cluster,
    ready: Option<std::sync::mpsc::Sender<SocketAddr>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<Outcome> {
    let store = open_store(args.store.as_deref())?;
    let tokens = match &args.tokens {
        Some(path) => Tokens::load(path)?,
        None => Tokens::default(),
    };
    let day_us = 86_400 * 1_000_000i64;
    let committer = CommitterOptions {
        retention: Retention {
            max_age_us: args.retention_days.map(|d| {
                i64::try_from(d)
                    .unwrap_or(i64::MAX / day_us)
                    .saturating_mul(day_us)
            }),
            max_alerts: args.retention_alerts,
        },
        prune_every: Duration::from_secs(60),
        ..CommitterOptions::default()
    };
    // The sinks' HTTP clients are made outside the async runtime, whose
    // threads must not own blocking clients.
    let sinks = sinks(args.config.as_deref())?;
    let mut scanner = crate::logs_cmd::scanner(&args.log_rules)?;
    if let Some(seed) = cluster.seed {
        scanner = scanner.with_seed(seed);
    }
    let auth = if tokens.is_empty() {
        "off: loopback only"
    } else {
        "bearer tokens"
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        let addr = listener.local_addr()?;
        let scheme = if args.tls_cert.is_some() { "https" } else { "http" };
        // Both listeners are bound before the server says it listens: a
        // client (or a test) told so may scrape at once.
        let metrics_listener = match args.metrics_listen {
            Some(at) => {
                let metrics = tokio::net::TcpListener::bind(at)
                    .await
                    .with_context(|| format!("metrics on {at}"))?;
                eprintln!(
                    "palisade serve: metrics on http://{}/metrics",
                    metrics.local_addr()?
                );
                Some(metrics)
            }
            None => None,
        };
        eprintln!("palisade serve: listening on {scheme}://{addr} (authentication {auth})");
        if let Some(ready) = ready {
            let _ = ready.send(addr);
        }
        let options = ServeOptions {
            store,
            tokens,
            max_body_bytes: args.max_body,
            request_timeout: Duration::from_secs(args.request_timeout.max(1)),
            committer,
            sinks,
            declared: cluster.declared,
            reload: cluster.reload,
            inventory_watch: cluster.watch_stats,
            metrics_listener,
            rate_limit: args.rate_limit,
            scanner,
            tls: match (&args.tls_cert, &args.tls_key) {
                (Some(cert), Some(key)) => Some(palisade_server::tls::TlsOptions {
                    cert: cert.clone(),
                    key: key.clone(),
                    client_ca: args.tls_client_ca.clone(),
                }),
                _ => None,
            },
            nats: args.nats.as_ref().map(|url| NatsOptions {
                url: url.clone(),
                consumer: args.nats_consumer.clone(),
                ack_wait: Duration::from_secs(args.nats_ack_wait.max(1)),
            }),
        };
        let counters = palisade_server::serve(listener, options, shutdown).await?;
        let n = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        eprintln!(
            "palisade serve: stopped; {} alerts accepted, {} refused as invalid, {} requests refused by authentication, {} answered busy",
            n(&counters.accepted),
            n(&counters.rejected),
            n(&counters.refused_auth),
            n(&counters.busy)
        );
        Ok(Outcome::Clean)
    })
}

fn sinks(config: Option<&std::path::Path>) -> Result<Vec<(Worker, Route)>> {
    let Some(path) = config else {
        return Ok(Vec::new());
    };
    let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
    let file: SinksFile = palisade_inventory::yaml::from_str(&text)
        .map_err(|e| anyhow!("{}: {e}", path.display()))?;
    let built =
        palisade_sinks::build(&file.sinks).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    Ok(built
        .into_iter()
        .zip(&file.sinks)
        .map(|(sink, config)| (Worker::new(sink, config.max_attempts()), config.route()))
        .collect())
}

fn open_store(url: Option<&str>) -> Result<Arc<dyn Store>> {
    let path = match url {
        None => {
            let dir = crate::send::state_dir();
            std::fs::create_dir_all(&dir).with_context(|| dir.display().to_string())?;
            dir.join("alerts.db")
        }
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            return Ok(Arc::new(PostgresStore::open(url, None)?));
        }
        Some(url) => match url.split_once(':') {
            Some(("sqlite", path)) if !path.is_empty() => PathBuf::from(path),
            _ => {
                return Err(anyhow!(
                    "--store {url}: expected sqlite:PATH or postgres://USER:PASSWORD@HOST/DB"
                ));
            }
        },
    };
    Ok(Arc::new(SqliteStore::open(&path)?))
}

/// SIGINT or SIGTERM: stop taking requests, commit what was taken.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the server still stops with its process.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
}

pub fn token(args: &TokenArgs) -> Result<Outcome> {
    let scopes = args
        .scopes
        .iter()
        .map(|s| {
            Scope::parse(s).ok_or_else(|| anyhow!("unknown scope {s:?} (ingest, read, admin)"))
        })
        .collect::<Result<Vec<_>>>()?;
    let (token, line) = new_token(&args.name, &scopes)?;
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&args.tokens)
        .with_context(|| args.tokens.display().to_string())?;
    writeln!(file, "{line}").with_context(|| args.tokens.display().to_string())?;
    println!("{token}");
    eprintln!(
        "the token above is shown once; {} now holds its hash for {}",
        args.tokens.display(),
        args.name
    );
    Ok(Outcome::Clean)
}

/// `palisade up`: the server and this node's agent in one process. The
/// agent sends to the server over loopback like any agent; when it stops
/// (SIGTERM, SIGINT), its forwarder delivers what is left, and only then
/// does the server stop.
pub fn up(args: UpArgs, input: &crate::input::InputArgs) -> Result<Outcome> {
    if args.agent.server.is_some() {
        return Err(anyhow!("`palisade up` runs its own server: drop --server"));
    }
    let (ready, listening) = std::sync::mpsc::channel();
    let (stop_server, stopped) = tokio::sync::oneshot::channel::<()>();
    let serve = args.serve();
    let cluster = Cluster::load(
        &args.agent.policy,
        &args.agent.kube,
        args.agent.semantics.settings(),
        input,
    )?;
    let server = std::thread::Builder::new()
        .name("server".into())
        .spawn(move || {
            serve_until(&serve, cluster, Some(ready), async {
                let _ = stopped.await;
            })
        })?;
    let Ok(addr) = listening.recv() else {
        // The server failed before it listened; its error says why.
        return match server.join() {
            Ok(result) => result,
            Err(_) => Err(anyhow!("the server panicked")),
        };
    };
    let mut agent = args.agent;
    agent.server = Some(format!("http://{addr}"));
    let watched = crate::agent_cmd::run(&agent, input);
    let _ = stop_server.send(());
    let served = server.join().map_err(|_| anyhow!("the server panicked"))?;
    watched?;
    served
}
