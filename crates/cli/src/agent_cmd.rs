//! `palisade agent`: the node agent. Loads the eBPF sensor, judges every
//! connection, drop, execution and raw socket on this node against the
//! policy, and prints alerts as JSON lines as they happen.

use std::fs::OpenOptions;
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use palisade_agent::baseline::ProcessBaseline;
use palisade_agent::metrics::serve;
use palisade_agent::runtime::RuntimeOptions;
use palisade_agent::watch::PolicyWatch;
use palisade_agent::{Agent, AgentOptions, EventSource, Reload, say};
use palisade_sense::cgroup_mounts;
use palisade_sense::conntrack::ConntrackSensor;
use palisade_sense::ebpf::Sensor;

use crate::input::{self, InputArgs};
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
    #[arg(long = "policy", required = true, value_name = "PATH")]
    pub policy: Vec<PathBuf>,
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
    #[command(flatten)]
    pub semantics: SemanticsArgs,
}

pub fn run(args: &AgentArgs, input_args: &InputArgs) -> Result<Outcome> {
    let inventory = input::load(&args.policy, input_args)?;
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
    let mut agent = Agent::new(options);
    if let Some(addr) = args.metrics_addr {
        let listener = TcpListener::bind(addr).with_context(|| format!("metrics on {addr}"))?;
        serve(listener, agent.metrics.clone());
    }
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&stop)).context("handling signals")?;
    }
    let mut out: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| path.display().to_string())?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut watch = PolicyWatch::new(args.policy.clone());
    let strict = InputArgs {
        strict: true,
        verbose: input_args.verbose,
    };
    let mut reload = || {
        if !watch.changed() {
            return Reload::Unchanged;
        }
        match input::load(&args.policy, &strict) {
            Ok(inventory) => Reload::Loaded(inventory),
            Err(e) => Reload::Rejected(format!("{e:#}")),
        }
    };
    say(&format!(
        "watching this node (cgroup2 at {}); alerts to {}",
        cgroup_root.display(),
        args.output
            .as_ref()
            .map_or("stdout".to_string(), |p| p.display().to_string())
    ));
    agent
        .run(sensor.as_mut(), inventory, &mut reload, &mut out, &stop)
        .context("writing alerts")?;
    say(&format!(
        "stopped; {} alerts sent, {} events lost",
        agent.alerts_sent,
        sensor.lost()
    ));
    Ok(Outcome::Clean)
}
