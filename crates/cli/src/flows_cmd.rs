//! `palisade flows`: observed traffic against the declared policy.
//! `verify` judges every connection and raises alerts; `baseline learn`
//! records the communication graph; `advise` turns a baseline into
//! least-privilege policies and proves them with the engine.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use palisade_detect::{
    Alert, Baseline, Detectors, DeviationOptions, Findings, Learner, Resolver, ScanOptions,
    Summary, Verifier, apply_endpoints,
};
use palisade_flow::pcap::CaptureOptions;
use palisade_flow::{Flow, Format, ReadStats, read_flows_prepared, sniff_format};
use palisade_inventory::severity::Severity;
use palisade_inventory::{Cidr, Inventory};
use palisade_policy::Engine;
use serde::Serialize;

use crate::input::{self, InputArgs};
use crate::{Outcome, SemanticsArgs, flows_render};

#[derive(clap::Subcommand, Debug)]
pub enum FlowsCommand {
    /// Judge observed connections against the declared policies and raise
    /// alerts: bypasses, blocked attempts, unexpected drops, unresolved
    /// endpoints, scans and (with --baseline) deviations.
    Verify(Box<VerifyArgs>),
    /// Learn a baseline (the observed communication graph) from traffic.
    #[command(subcommand)]
    Baseline(BaselineCommand),
    /// Least-privilege NetworkPolicies from a baseline, proven with the
    /// engine: they allow every observed connection and nothing else.
    Advise(AdviseArgs),
}

#[derive(clap::Subcommand, Debug)]
pub enum BaselineCommand {
    /// Build a baseline from flow files; YAML on stdout or in --write.
    Learn(LearnArgs),
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FlowsFormat {
    #[default]
    Table,
    Json,
    Jsonl,
    Sarif,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputFormat {
    Pcap,
    Pcapng,
    Hubble,
    Calico,
    Conntrack,
    Jsonl,
    Csv,
    /// Data-plane drop logs: netfilter LOG lines (Calico's `calico-packet`),
    /// `cilium monitor --type drop`, OVN-Kubernetes ACL audit lines.
    DropLog,
}

impl InputFormat {
    fn format(self) -> Format {
        match self {
            InputFormat::Pcap => Format::Pcap,
            InputFormat::Pcapng => Format::Pcapng,
            InputFormat::Hubble => Format::Hubble,
            InputFormat::Calico => Format::Calico,
            InputFormat::Conntrack => Format::Conntrack,
            InputFormat::Jsonl => Format::Jsonl,
            InputFormat::Csv => Format::Csv,
            InputFormat::DropLog => Format::DropLog,
        }
    }
}

/// What every flows command needs: the inventory and the traffic.
#[derive(clap::Args, Debug)]
pub struct TrafficArgs {
    /// Manifests (files or directories) holding the cluster's workloads,
    /// services and NetworkPolicies; repeatable.
    #[arg(long = "policy", value_name = "PATH", required = true)]
    pub policy: Vec<PathBuf>,
    /// Flow files (pcap, pcapng, Hubble JSON, Calico flow logs, conntrack
    /// -E text, JSON lines, CSV), or `-` for stdin.
    #[arg(required = true, value_name = "FLOWFILE")]
    pub flows: Vec<PathBuf>,
    /// The input format, when auto-detection should not decide.
    #[arg(long, value_enum)]
    pub format: Option<InputFormat>,
    /// `ADDRESS NAMESPACE/POD` lines, for manifests without pod addresses.
    #[arg(long, value_name = "FILE")]
    pub endpoints: Option<PathBuf>,
    /// The cluster's pod CIDR (repeatable): unknown addresses inside it are
    /// unresolved, not the outside world. Nodes' podCIDRs count too.
    #[arg(long, value_name = "CIDR")]
    pub pod_cidr: Vec<Cidr>,
    /// The cluster's service CIDR (repeatable).
    #[arg(long, value_name = "CIDR")]
    pub service_cidr: Vec<Cidr>,
    #[command(flatten)]
    pub semantics: SemanticsArgs,
}

#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub traffic: TrafficArgs,
    #[arg(long, short, value_enum, default_value_t)]
    pub output: FlowsFormat,
    /// Exit with code 2 when an alert has this severity or higher
    /// (critical, high, medium, low, info).
    #[arg(long, value_parser = parse_severity, value_name = "SEVERITY")]
    pub fail_on: Option<Severity>,
    /// A baseline from `flows baseline learn`: deviations become alerts.
    #[arg(long, value_name = "FILE")]
    pub baseline: Option<PathBuf>,
    /// Detector thresholds (YAML: `scan:` with window_seconds,
    /// vertical_ports, horizontal_hosts, blocked_attempts, fan_out_peers;
    /// `baseline:` with volume_factor, volume_min_bytes).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub send: crate::send::SendArgs,
}

#[derive(clap::Args, Debug)]
pub struct LearnArgs {
    #[command(flatten)]
    pub traffic: TrafficArgs,
    /// Write the baseline here instead of stdout.
    #[arg(long, short, value_name = "FILE")]
    pub write: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct AdviseArgs {
    /// Manifests holding the cluster's workloads (their policies are
    /// replaced by the advice for the proof).
    #[arg(long = "policy", value_name = "PATH", required = true)]
    pub policy: Vec<PathBuf>,
    /// The baseline to turn into policies.
    #[arg(long, value_name = "FILE")]
    pub baseline: PathBuf,
    #[command(flatten)]
    pub semantics: SemanticsArgs,
}

/// Thresholds from `--config`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct DetectorConfig {
    scan: ScanOptions,
    baseline: DeviationOptions,
}

fn parse_severity(s: &str) -> Result<Severity, String> {
    Severity::parse(s)
        .ok_or_else(|| format!("unknown severity {s:?} (critical, high, medium, low, info)"))
}

pub fn run(command: &FlowsCommand, input_args: &InputArgs) -> Result<Outcome> {
    match command {
        FlowsCommand::Verify(args) => verify(args, input_args),
        FlowsCommand::Baseline(BaselineCommand::Learn(args)) => learn(args, input_args),
        FlowsCommand::Advise(args) => advise(args, input_args),
    }
}

/// The inventory, with `--endpoints` applied.
fn inventory(traffic: &TrafficArgs, input_args: &InputArgs) -> Result<Inventory> {
    versioned_inventory(traffic, input_args).map(|(inventory, _)| inventory)
}

/// The same, with its version (the endpoints file counts in it).
fn versioned_inventory(
    traffic: &TrafficArgs,
    input_args: &InputArgs,
) -> Result<(Inventory, String)> {
    let (mut inventory, mut version) = input::load_versioned(&traffic.policy, input_args)?;
    if let Some(path) = &traffic.endpoints {
        let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
        version = input::version_of([version.as_bytes(), text.as_bytes()]);
        let problems = apply_endpoints(&mut inventory, &path.display().to_string(), &text);
        for p in &problems {
            eprintln!("warning: {p}");
        }
        if input_args.strict && !problems.is_empty() {
            bail!(
                "{} endpoint line(s) not applied and --strict is set",
                problems.len()
            );
        }
    }
    Ok((inventory, version))
}

fn cluster_cidrs(traffic: &TrafficArgs) -> Vec<Cidr> {
    traffic
        .pod_cidr
        .iter()
        .chain(&traffic.service_cidr)
        .copied()
        .collect()
}

/// An input's account, for the report.
#[derive(Serialize)]
pub struct InputReport {
    pub file: String,
    pub format: Format,
    #[serde(flatten)]
    pub stats: ReadStats,
}

/// Streams every flow file through `prepare`, which runs where the flows
/// are parsed (on every core for the line formats), and `sink`, which gets
/// the results in input order; prints each input's diagnostics and skip
/// counts on stderr.
fn read_all<T: Send>(
    traffic: &TrafficArgs,
    input_args: &InputArgs,
    prepare: &(dyn Fn(Flow) -> T + Sync),
    sink: &mut dyn FnMut(T),
) -> Result<Vec<InputReport>> {
    let mut reports = Vec::new();
    for path in &traffic.flows {
        // Send: the line formats are read on a thread of their own.
        let (name, reader): (String, Box<dyn Read + Send>) = if path.as_os_str() == "-" {
            ("<stdin>".to_string(), Box::new(std::io::stdin()))
        } else {
            let file = File::open(path).with_context(|| format!("{}", path.display()))?;
            (path.display().to_string(), Box::new(file))
        };
        let mut reader = BufReader::with_capacity(1 << 20, reader);
        let format = match traffic.format {
            Some(f) => f.format(),
            None => detect(&mut reader, &name)?,
        };
        let stats = read_flows_prepared(
            format,
            &mut reader,
            Arc::from(name.as_str()),
            &CaptureOptions::default(),
            prepare,
            sink,
        );
        report_stats(&name, format, &stats, input_args.verbose);
        reports.push(InputReport {
            file: name,
            format,
            stats,
        });
    }
    let problems: usize = reports.iter().map(|r| r.stats.diagnostics.len()).sum();
    if input_args.strict && (problems > 0 || reports.iter().any(|r| r.stats.truncated)) {
        bail!("the flow inputs had {problems} diagnostic(s) and --strict is set");
    }
    Ok(reports)
}

fn detect(reader: &mut BufReader<Box<dyn Read + Send>>, name: &str) -> Result<Format> {
    let head = reader.fill_buf().with_context(|| name.to_string())?;
    sniff_format(head).ok_or_else(|| {
        anyhow!("{name}: format not recognised (pcap, pcapng, hubble, calico, conntrack, jsonl, csv, drop-log); use --format")
    })
}

fn report_stats(name: &str, format: Format, stats: &ReadStats, verbose: bool) {
    let shown = if verbose { usize::MAX } else { 20 };
    for d in stats.diagnostics.iter().take(shown) {
        eprintln!("{d}");
    }
    let more = stats.diagnostics.len().saturating_sub(shown) as u64 + stats.diagnostics_dropped;
    if more > 0 {
        eprintln!("... and {more} more diagnostics for {name}");
    }
    if stats.truncated {
        eprintln!("{name}: the input ends in the middle of a record (truncated); read up to there");
    }
    let skipped = stats.skipped_total();
    let mut line = format!(
        "{name}: {format}, {} records, {} flows",
        stats.records, stats.flows
    );
    if skipped > 0 {
        let reasons: Vec<String> = stats
            .skipped
            .iter()
            .map(|(reason, n)| format!("{n} {reason}"))
            .collect();
        line.push_str(&format!(", {skipped} skipped ({})", reasons.join(", ")));
    }
    eprintln!("{line}");
}

/// The verification's result, as `--output json` prints it.
#[derive(Serialize)]
pub struct VerifyReport {
    pub inputs: Vec<InputReport>,
    pub summary: Summary,
    /// Flows the scan detectors could not place (no address).
    pub scan_not_applicable: u64,
    pub alerts: Vec<Alert>,
}

impl VerifyReport {
    pub fn new(inputs: Vec<InputReport>, findings: Findings) -> VerifyReport {
        VerifyReport {
            inputs,
            summary: findings.summary,
            scan_not_applicable: findings.scan_not_applicable,
            alerts: findings.alerts,
        }
    }
}

fn verify(args: &VerifyArgs, input_args: &InputArgs) -> Result<Outcome> {
    let config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
            palisade_inventory::yaml::from_str::<DetectorConfig>(&text)
                .map_err(|e| anyhow!("{}: {e}", path.display()))?
        }
        None => DetectorConfig::default(),
    };
    let baseline = match &args.baseline {
        Some(path) => Some(read_baseline(path)?),
        None => None,
    };
    let (inventory, version) = versioned_inventory(&args.traffic, input_args)?;
    let mut report = verify_inventory(&inventory, args, input_args, &config, baseline.as_ref())?;
    for alert in &mut report.alerts {
        alert.evidence.snapshot = Some(version.clone());
    }
    print!("{}", flows_render::render(&report, args.output));
    crate::send::deliver(&args.send, &report.alerts)?;
    let failed = args
        .fail_on
        .is_some_and(|t| report.alerts.iter().any(|a| a.severity >= t));
    Ok(if failed {
        Outcome::Found
    } else {
        Outcome::Clean
    })
}

fn verify_inventory(
    inventory: &Inventory,
    args: &VerifyArgs,
    input_args: &InputArgs,
    config: &DetectorConfig,
    baseline: Option<&Baseline>,
) -> Result<VerifyReport> {
    let settings = args.traffic.semantics.settings();
    let engine = Engine::new(inventory, &settings);
    let resolver = Resolver::new(inventory, &cluster_cidrs(&args.traffic));
    let mut detectors = Detectors::new(
        Verifier::new(&engine, resolver, settings),
        config.scan.clone(),
        baseline.map(|b| (b, config.baseline.clone())),
    );
    let (judge, mut recorder) = detectors.split();
    let inputs = read_all(
        &args.traffic,
        input_args,
        &|flow| {
            let judged = judge.judge(&flow);
            (flow, judged)
        },
        &mut |(flow, judged)| recorder.record(&flow, &judged),
    )?;
    Ok(VerifyReport::new(inputs, detectors.finish()))
}

fn read_baseline(path: &Path) -> Result<Baseline> {
    let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
    Baseline::from_yaml(&text).map_err(|e| anyhow!("{}: {e}", path.display()))
}

fn learn(args: &LearnArgs, input_args: &InputArgs) -> Result<Outcome> {
    let inventory = inventory(&args.traffic, input_args)?;
    let settings = args.traffic.semantics.settings();
    let engine = Engine::new(&inventory, &settings);
    let resolver = Resolver::new(&inventory, &cluster_cidrs(&args.traffic));
    let verifier = Verifier::new(&engine, resolver, settings);
    let mut learner = Learner::default();
    read_all(
        &args.traffic,
        input_args,
        &|flow| {
            let judged = verifier.judge(&flow);
            (flow, judged)
        },
        &mut |(flow, judged)| learner.observe(&inventory, &flow, &judged),
    )?;
    let baseline = learner.finish();
    eprintln!(
        "baseline: {} edges from {} connections; {} flows left out (did not get through, or an endpoint unknown to the inventory)",
        baseline.edges.len(),
        baseline.learned_connections,
        baseline.skipped_flows
    );
    let yaml = baseline.to_yaml();
    match &args.write {
        Some(path) => std::fs::write(path, yaml).with_context(|| path.display().to_string())?,
        None => print!("{yaml}"),
    }
    Ok(Outcome::Clean)
}

fn advise(args: &AdviseArgs, input_args: &InputArgs) -> Result<Outcome> {
    let inventory = input::load(&args.policy, input_args)?;
    let baseline = read_baseline(&args.baseline)?;
    let advice = palisade_detect::advise(&inventory, &baseline, &args.semantics.settings());
    print!("{}", advice.yaml);
    eprint!("{}", flows_render::proof_text(&advice));
    Ok(if advice.proof.holds() {
        Outcome::Clean
    } else {
        Outcome::Found
    })
}
