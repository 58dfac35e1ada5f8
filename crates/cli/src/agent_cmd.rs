//! `palisade agent`: the node agent. Loads the eBPF sensor, judges every
//! connection, drop, execution and raw socket on this node against the
//! policy, and prints alerts as JSON lines as they happen.

use std::fs::OpenOptions;
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use palisade_agent::baseline::ProcessBaseline;
use palisade_agent::metrics::serve;
use palisade_agent::runtime::RuntimeOptions;
use palisade_agent::watch::PolicyWatch;
use palisade_agent::{Agent, AgentOptions, EventSource, Reload, say};
use palisade_send::{ForwardHandle, Forwarder};
use palisade_sense::cgroup_mounts;
use palisade_sense::conntrack::ConntrackSensor;
use palisade_sense::ebpf::Sensor;

use crate::input::{self, InputArgs};
use crate::logs_cmd::LogFollower;
use crate::{Outcome, SemanticsArgs};

/// Where the agent's events come from.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SensorArg {
    /// eBPF: connections with their process, drops, executions, sockets.
    Ebpf,
    /// Connection tracking (ctnetlink), for nodes where BPF is not
    /// allowed: connections by address only.
    Conntrack,
}

#[derive(clap::Args, Debug)]
pub struct AgentArgs {
    /// Manifests (files or directories): the policies, and the pods by
    /// `metadata.uid` and address. Reloaded when they change; a new
    /// version with any diagnostic is refused and the last good one kept.
    #[arg(
        long = "policy",
        required_unless_present = "kube",
        conflicts_with = "kube",
        value_name = "PATH"
    )]
    pub policy: Vec<PathBuf>,
    #[command(flatten)]
    pub kube: crate::live::KubeArgs,
    /// The sensor.
    #[arg(long, value_enum, default_value_t = SensorArg::Ebpf)]
    pub sensor: SensorArg,
    /// With `--sensor conntrack`: also hear the packets an enforcer logs
    /// to this NFLOG group as it drops them (repeatable; kube-router logs
    /// policy drops to 100).
    #[arg(long = "nflog-group", value_name = "N")]
    pub nflog_groups: Vec<u16>,
    /// Append alerts (JSON lines) to this file instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Serve Prometheus metrics on this address (`GET /metrics`).
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Repeats of an alert within this many seconds update its count
    /// instead of raising it again.
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    pub window: u64,
    /// The process baseline (docs/runtime.md, RUN-005): the executables
    /// that open connections in each workload. Alerts on new ones, or
    /// with --learn-processes adds them; saved every few seconds and at exit.
    #[arg(long, value_name = "FILE")]
    pub process_baseline: Option<PathBuf>,
    /// Learn the process baseline instead of alerting on it.
    #[arg(long, requires = "process_baseline")]
    pub learn_processes: bool,
    /// YAML with `exec_watchlist` and `metadata_addresses` replacing the
    /// runtime rules' defaults (docs/runtime.md).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Follow the container logs under this directory (the node's
    /// `/var/log/pods`) through the log rules (docs/logs.md); repeatable.
    #[arg(long = "pod-logs", value_name = "DIR")]
    pub pod_logs: Vec<PathBuf>,
    /// Follow this Kubernetes API audit log through the audit rules;
    /// changes that widen connectivity are judged from the --policy
    /// manifests forward. Repeatable.
    #[arg(long = "audit-log", value_name = "FILE")]
    pub audit_logs: Vec<PathBuf>,
    /// Log rule files (docs/logs.md) over the built-in rules.
    #[arg(long = "log-rules", value_name = "FILE")]
    pub log_rules: Vec<PathBuf>,
    /// Where the place reached in each followed log is kept, so that a
    /// restart resumes there (without it, a restart starts at the end).
    #[arg(long, value_name = "FILE")]
    pub log_state: Option<PathBuf>,
    /// Deliver alerts to a palisade server (`http://host:port`), or to
    /// NATS JetStream (`nats://host:4222`, subject
    /// `palisade.alerts.<node>`), besides the output; while it is away
    /// they wait in the spool.
    #[arg(long, visible_alias = "nats", value_name = "URL")]
    pub server: Option<String>,
    /// The bearer token for --server, read from this file.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Where alerts wait for the server (default: the user's state
    /// directory, `palisade/agent-spool.jsonl`).
    #[arg(long, value_name = "FILE")]
    pub spool: Option<PathBuf>,
    /// This node's name, the origin of its alerts (default: the host name).
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    #[command(flatten)]
    pub server_tls: crate::send::ClientTlsArgs,
    #[command(flatten)]
    pub semantics: SemanticsArgs,
}

/// One output for the agent's two writers, the kernel events' loop and
/// the log follower: each hands over whole lines under the lock, so alert
/// lines never interleave.
struct SharedOutput {
    target: Arc<Mutex<Box<dyn Write + Send>>>,
    pending: Vec<u8>,
}

impl SharedOutput {
    fn new(target: Arc<Mutex<Box<dyn Write + Send>>>) -> SharedOutput {
        SharedOutput {
            target,
            pending: Vec::new(),
        }
    }

    fn hand_over(&mut self, upto: usize) -> std::io::Result<()> {
        let mut target = self
            .target
            .lock()
            .map_err(|_| std::io::Error::other("the other writer panicked"))?;
        target.write_all(&self.pending[..upto])?;
        target.flush()?;
        self.pending.drain(..upto);
        Ok(())
    }
}

impl Write for SharedOutput {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.pending.extend_from_slice(buf);
        if let Some(end) = self.pending.iter().rposition(|&b| b == b'\n') {
            self.hand_over(end + 1)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.hand_over(self.pending.len())
    }
}

/// The log follower's loop: polls twice a second until `stop`, writes each
/// alert as a JSON line, and keeps its place after every poll.
fn follow_logs(
    mut follower: LogFollower,
    mut out: SharedOutput,
    forward: Option<ForwardHandle>,
    stop: &AtomicBool,
) -> Result<()> {
    while !stop.load(Ordering::Relaxed) {
        for alert in follower.poll()? {
            let line = serde_json::to_string(&alert).context("encoding an alert")?;
            writeln!(out, "{line}").context("writing alerts")?;
            if let Some(forward) = &forward {
                forward.forward(&alert);
            }
        }
        follower.save()?;
        std::thread::sleep(Duration::from_millis(500));
    }
    Ok(())
}

/// Copies the forwarder's counts into the agent's metrics once a second.
fn publish_forwarding(
    stats: Arc<palisade_send::ForwardStats>,
    metrics: palisade_agent::metrics::Metrics,
    stop: Arc<AtomicBool>,
) {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let n = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed) as f64;
            metrics.set(
                "palisade_agent_forwarded_total",
                "outcome=\"delivered\"",
                n(&stats.delivered),
            );
            metrics.set(
                "palisade_agent_forwarded_total",
                "outcome=\"rejected\"",
                n(&stats.rejected),
            );
            metrics.set("palisade_agent_spool_pending", "", n(&stats.pending));
            metrics.set(
                "palisade_agent_forward_outages_total",
                "",
                n(&stats.outages),
            );
            std::thread::sleep(Duration::from_secs(1));
        }
    });
}

/// The server's forwarder, when the agent is given --server.
fn forwarder(args: &AgentArgs) -> Result<Option<Forwarder>> {
    let Some(server) = &args.server else {
        if args.spool.is_some() || args.token_file.is_some() {
            return Err(anyhow!("--spool and --token-file go with --server"));
        }
        return Ok(None);
    };
    let spool = args
        .spool
        .clone()
        .unwrap_or_else(|| crate::send::state_dir().join("agent-spool.jsonl"));
    let options = crate::send::options(
        server,
        args.token_file.as_deref(),
        spool,
        2,
        args.server_tls.client_tls(),
    )?;
    let origin = args.node.clone().unwrap_or_else(crate::send::host_name);
    Ok(Some(Forwarder::start(options, &origin)?))
}

/// Where new versions of the inventory come from: the Kubernetes API's
/// watch (taken as they come: the API validated every object), or the
/// manifest files (a version with any diagnostic is refused).
fn reloader<'a>(
    args: &'a AgentArgs,
    input_args: &InputArgs,
    live: Option<crate::live::Live>,
) -> Box<dyn FnMut() -> Reload + 'a> {
    if let Some(mut live) = live {
        return Box::new(move || match live.watcher.changed() {
            None => Reload::Unchanged,
            Some(snapshot) => {
                say(&format!(
                    "the cluster changed: {}",
                    crate::live::describe(&snapshot)
                ));
                Reload::Loaded(snapshot.inventory, Some(snapshot.version))
            }
        });
    }
    let mut watch = PolicyWatch::new(args.policy.clone());
    let strict = InputArgs {
        strict: true,
        verbose: input_args.verbose,
    };
    Box::new(move || {
        if !watch.changed() {
            return Reload::Unchanged;
        }
        match input::load_versioned(&args.policy, &strict) {
            Ok((inventory, version)) => Reload::Loaded(inventory, Some(version)),
            Err(e) => Reload::Rejected(format!("{e:#}")),
        }
    })
}

/// The log follower, when the agent is asked to follow logs.
fn log_follower(args: &AgentArgs, input_args: &InputArgs) -> Result<Option<LogFollower>> {
    if args.pod_logs.is_empty() && args.audit_logs.is_empty() {
        return Ok(None);
    }
    let mut scanner = crate::logs_cmd::scanner(&args.log_rules)?;
    if !args.audit_logs.is_empty() {
        let settings = args.semantics.settings();
        scanner = scanner.with_seed(crate::timeline_cmd::load_seed(
            &args.policy,
            settings,
            input_args,
        )?);
    }
    let paths = args
        .pod_logs
        .iter()
        .chain(&args.audit_logs)
        .cloned()
        .collect();
    Ok(Some(LogFollower::new(
        scanner,
        paths,
        args.log_state.clone(),
    )?))
}

pub fn run(args: &AgentArgs, input_args: &InputArgs) -> Result<Outcome> {
    let mut live = args.kube.connect("palisade agent")?;
    let (inventory, version) = match &mut live {
        Some(live) => (
            std::mem::take(&mut live.first.inventory),
            live.first.version.clone(),
        ),
        None => input::load_versioned(&args.policy, input_args)?,
    };
    let mountinfo =
        std::fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    let cgroup_root = cgroup_mounts(&mountinfo)
        .unified
        .ok_or_else(|| anyhow!("no cgroup2 hierarchy is mounted: the agent needs one"))?;
    let mut options = AgentOptions::new(cgroup_root.clone());
    options.settings = args.semantics.settings();
    options.window = Duration::from_secs(args.window.max(1));
    if let Some(path) = &args.config {
        let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
        options.runtime = palisade_inventory::yaml::from_str::<RuntimeOptions>(&text)
            .map_err(|e| anyhow!("{}: {e}", path.display()))?;
    }
    if let Some(path) = &args.process_baseline {
        let baseline =
            ProcessBaseline::open(path, args.learn_processes).map_err(|e| anyhow!("{e}"))?;
        options.process_baseline = Some(baseline);
    }
    let mut sensor: Box<dyn EventSource> = match args.sensor {
        SensorArg::Ebpf => {
            Box::new(Sensor::start(&cgroup_root).context("starting the eBPF sensor")?)
        }
        SensorArg::Conntrack => Box::new(
            ConntrackSensor::start(&cgroup_root, &args.nflog_groups)
                .map_err(|e| anyhow!("starting the conntrack sensor: {e}"))?,
        ),
    };
    let forwarder = forwarder(args)?;
    if let Some(forwarder) = &forwarder {
        let handle = forwarder.handle();
        options.forward = Some(Box::new(move |alert| handle.forward(alert)));
    }
    let mut agent = Agent::new(options);
    if let Some(addr) = args.metrics_addr {
        let listener = TcpListener::bind(addr).with_context(|| format!("metrics on {addr}"))?;
        serve(listener, agent.metrics.clone());
    }
    let stop = Arc::new(AtomicBool::new(false));
    if let Some(forwarder) = &forwarder {
        publish_forwarding(forwarder.stats(), agent.metrics.clone(), Arc::clone(&stop));
    }
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&stop)).context("handling signals")?;
    }
    let target: Box<dyn Write + Send> = match &args.output {
        Some(path) => Box::new(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| path.display().to_string())?,
        ),
        None => Box::new(std::io::stdout()),
    };
    let target = Arc::new(Mutex::new(target));
    let mut out = SharedOutput::new(Arc::clone(&target));
    let logs = log_follower(args, input_args)?.map(|follower| {
        let (out, stop) = (SharedOutput::new(Arc::clone(&target)), Arc::clone(&stop));
        let forward = forwarder.as_ref().map(Forwarder::handle);
        std::thread::spawn(move || {
            let followed = follow_logs(follower, out, forward, &stop);
            if let Err(e) = &followed {
                // The agent stops rather than run on half blind.
                say(&format!("following logs failed: {e:#}"));
                stop.store(true, Ordering::Relaxed);
            }
            followed
        })
    });
    let mut reload = reloader(args, input_args, live);
    agent.set_snapshot(Some(version));
    say(&format!(
        "watching this node (cgroup2 at {}); alerts to {}",
        cgroup_root.display(),
        args.output
            .as_ref()
            .map_or("stdout".to_string(), |p| p.display().to_string())
    ));
    let watched = agent
        .run(sensor.as_mut(), inventory, &mut reload, &mut out, &stop)
        .context("writing alerts");
    // The follower stops with the agent, and either's failure is the run's.
    stop.store(true, Ordering::Relaxed);
    if let Some(logs) = logs {
        logs.join()
            .map_err(|_| anyhow!("the log follower panicked"))?
            .context("following logs")?;
    }
    // The agent's own handle goes with it, so the forwarder sees the end
    // of its queue once the agent is dropped.
    let (alerts_sent, lost) = (agent.alerts_sent, sensor.lost());
    drop(agent);
    let forwarded = match forwarder {
        Some(forwarder) => {
            let stats = forwarder.stop()?;
            let n = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
            format!(
                "; {} delivered to the server, {} refused by it, {} waiting in the spool",
                n(&stats.delivered),
                n(&stats.rejected),
                n(&stats.pending)
            )
        }
        None => String::new(),
    };
    watched?;
    say(&format!(
        "stopped; {alerts_sent} alerts sent, {lost} events lost{forwarded}"
    ));
    Ok(Outcome::Clean)
}
