//! `palisade probe`: enforcement verified by trying connections from the
//! pods on this node (see `palisade_agent::probe`).

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use palisade_agent::attribute::PodRef;
use palisade_agent::probe::{
    self, Attempt, Finding, LocalPod, Observed, Probe, Selection, finding, local_pods,
};
use palisade_inventory::{Inventory, Protocol};
use palisade_policy::Engine;
use palisade_sense::{CgroupIndex, cgroup_mounts};
use serde::Serialize;

use crate::audit_cmd::xml;
use crate::input::{self, InputArgs};
use crate::{Outcome, SemanticsArgs};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeFormat {
    Table,
    Json,
    Junit,
}

#[derive(clap::Args, Debug)]
pub struct ProbeArgs {
    /// Manifests (files or directories): the policies, and the pods by
    /// `metadata.uid` and address.
    #[arg(long = "policy", required = true, value_name = "PATH")]
    pub policy: Vec<PathBuf>,
    /// Only pairs with a pod of this namespace (repeatable).
    #[arg(long = "namespace", value_name = "NS")]
    pub namespaces: Vec<String>,
    /// Only from this pod (`ns/pod` or a unique pod name).
    #[arg(long, value_name = "POD")]
    pub from: Option<String>,
    /// Only to this pod.
    #[arg(long, value_name = "POD")]
    pub to: Option<String>,
    /// Only this port, `[PROTO/]PORT` (default: each port the destination
    /// declares, and one it does not).
    #[arg(long, value_parser = crate::explain::parse_port_spec, value_name = "[PROTO/]PORT")]
    pub port: Option<(Protocol, u16)>,
    /// At most this many pod pairs, spread over all of them.
    #[arg(long, value_name = "N")]
    pub sample: Option<usize>,
    /// Probes per second from each source pod.
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub rate: u32,
    /// How long a probe waits for an answer.
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    pub timeout_ms: u64,
    /// Probes at most; the rest are counted and not made.
    #[arg(long, default_value_t = 500, value_name = "N")]
    pub max_probes: usize,
    #[arg(short = 'o', long, value_enum, default_value_t = ProbeFormat::Table)]
    pub output: ProbeFormat,
    #[command(flatten)]
    pub semantics: SemanticsArgs,
}

/// One probe's line of the report.
#[derive(Serialize)]
struct ProbeLine {
    from: String,
    to: String,
    protocol: &'static str,
    port: u16,
    /// The destination declares the port.
    declared: bool,
    policy: &'static str,
    observed: Observed,
    how: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    finding: Option<Finding>,
}

#[derive(Serialize)]
struct ProbeReport {
    probes: Vec<ProbeLine>,
    bypasses: usize,
    unexpected_drops: usize,
    inconclusive: usize,
    /// Probes planned but not made (--max-probes).
    not_made: usize,
    /// Sources whose probes could not run, with why.
    failed_sources: Vec<String>,
}

pub fn run(args: &ProbeArgs, input_args: &InputArgs) -> Result<Outcome> {
    let inventory = input::load(&args.policy, input_args)?;
    let mountinfo =
        std::fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    let root = cgroup_mounts(&mountinfo)
        .unified
        .ok_or_else(|| anyhow!("no cgroup2 hierarchy is mounted"))?;
    let index = CgroupIndex::new(root, Duration::ZERO);
    let local = local_pods(&inventory, &index);
    if local.is_empty() {
        bail!(
            "no pod of the inventory runs on this node (no container cgroup names one of its pod UIDs)"
        );
    }
    let selection = Selection {
        namespaces: args.namespaces.clone(),
        from: args
            .from
            .as_deref()
            .map(|p| pod(&inventory, p))
            .transpose()?,
        to: args.to.as_deref().map(|p| pod(&inventory, p)).transpose()?,
        port: args.port,
        sample: args.sample,
    };
    let settings = args.semantics.settings();
    let engine = Engine::new(&inventory, &settings);
    let mut probes = probe::plan(&inventory, &engine, &local, &selection);
    let not_made = probes.len().saturating_sub(args.max_probes);
    probes.truncate(args.max_probes);
    let report = execute(&inventory, &local, &probes, args, not_made)?;
    print!("{}", render(&report, args.output));
    if report.not_made > 0 {
        eprintln!(
            "{} probes not made (--max-probes {})",
            report.not_made, args.max_probes
        );
    }
    for failure in &report.failed_sources {
        eprintln!("warning: {failure}");
    }
    Ok(if report.bypasses + report.unexpected_drops > 0 {
        Outcome::Found
    } else {
        Outcome::Clean
    })
}

/// `ns/pod` or a pod name found once in the inventory.
fn pod(inventory: &Inventory, name: &str) -> Result<PodRef> {
    let (namespace, pod) = match name.split_once('/') {
        Some((ns, pod)) => (Some(ns), pod),
        None => (None, name),
    };
    let found: Vec<PodRef> = inventory
        .workloads
        .iter()
        .enumerate()
        .filter(|(_, w)| namespace.is_none_or(|ns| ns == w.namespace))
        .flat_map(|(w, workload)| {
            workload
                .pods
                .iter()
                .enumerate()
                .filter(|(_, p)| p.name == pod)
                .map(move |(p, _)| (w, p))
        })
        .collect();
    match found.as_slice() {
        [one] => Ok(*one),
        [] => bail!("no pod {name} in the inventory"),
        _ => bail!("pod name {name} is in several namespaces: give ns/{pod}"),
    }
}

fn execute(
    inventory: &Inventory,
    local: &[LocalPod],
    probes: &[Probe],
    args: &ProbeArgs,
    not_made: usize,
) -> Result<ProbeReport> {
    let helper = std::env::current_exe().context("finding palisade's own executable")?;
    let timeout = Duration::from_millis(args.timeout_ms.max(1));
    let interval = Duration::from_secs(1) / args.rate.max(1);
    let mut report = ProbeReport {
        probes: Vec::new(),
        bypasses: 0,
        unexpected_drops: 0,
        inconclusive: 0,
        not_made,
        failed_sources: Vec::new(),
    };
    for source in local {
        let batch: Vec<&Probe> = probes.iter().filter(|p| p.from == source.pod).collect();
        if batch.is_empty() {
            continue;
        }
        let answers = match probe::run_from(source, &batch, &helper, timeout, interval) {
            Ok(answers) => answers,
            Err(why) => {
                let name = pod_name(inventory, source.pod);
                report
                    .failed_sources
                    .push(format!("probes from {name}: {why}"));
                continue;
            }
        };
        for (probe, attempt) in batch.iter().zip(answers) {
            report.add(inventory, probe, attempt);
        }
    }
    Ok(report)
}

impl ProbeReport {
    fn add(&mut self, inventory: &Inventory, probe: &Probe, attempt: Attempt) {
        let found = finding(probe.allowed, &attempt.observed);
        match found {
            Some(Finding::Bypass) => self.bypasses += 1,
            Some(Finding::UnexpectedDrop) => self.unexpected_drops += 1,
            None => {}
        }
        if attempt.observed == Observed::Inconclusive {
            self.inconclusive += 1;
        }
        self.probes.push(ProbeLine {
            from: pod_name(inventory, probe.from),
            to: pod_name(inventory, probe.to),
            protocol: probe.protocol.as_str(),
            port: probe.port,
            declared: probe.declared,
            policy: if probe.allowed { "allow" } else { "deny" },
            observed: attempt.observed,
            how: attempt.how,
            finding: found,
        });
    }
}

fn pod_name(inventory: &Inventory, (w, p): PodRef) -> String {
    let workload = &inventory.workloads[w];
    format!("{}/{}", workload.namespace, workload.pods[p].name)
}

fn render(report: &ProbeReport, format: ProbeFormat) -> String {
    match format {
        ProbeFormat::Json => serde_json::to_string_pretty(report).unwrap_or_default() + "\n",
        ProbeFormat::Junit => junit(report),
        ProbeFormat::Table => table(report),
    }
}

fn observed(o: &Observed) -> &'static str {
    match o {
        Observed::Reached => "reached",
        Observed::Blocked => "blocked",
        Observed::Inconclusive => "inconclusive",
    }
}

fn finding_name(f: Option<Finding>) -> &'static str {
    match f {
        Some(Finding::Bypass) => "BYPASS",
        Some(Finding::UnexpectedDrop) => "UNEXPECTED DROP",
        None => "",
    }
}

fn table(report: &ProbeReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<28} {:<28} {:<10} {:<6} {:<13} FINDING",
        "FROM", "TO", "PORT", "POLICY", "OBSERVED"
    );
    for p in &report.probes {
        let port = format!("{}/{}", p.protocol, p.port);
        let _ = writeln!(
            out,
            "{:<28} {:<28} {:<10} {:<6} {:<13} {}",
            p.from,
            p.to,
            port,
            p.policy,
            observed(&p.observed),
            finding_name(p.finding)
        );
    }
    let _ = writeln!(
        out,
        "\n{} probes: {} bypasses, {} unexpected drops, {} inconclusive",
        report.probes.len(),
        report.bypasses,
        report.unexpected_drops,
        report.inconclusive
    );
    out
}

/// A test case per probe; findings are failures, inconclusive probes are
/// skipped.
fn junit(report: &ProbeReport) -> String {
    let failures = report.bypasses + report.unexpected_drops;
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuite name=\"palisade probe\" tests=\"{}\" failures=\"{failures}\" skipped=\"{}\">",
        report.probes.len(),
        report.inconclusive
    );
    for p in &report.probes {
        let _ = writeln!(
            out,
            "  <testcase classname=\"{}\" name=\"{}\">",
            xml(&p.from),
            xml(&format!("{} {}/{}", p.to, p.protocol, p.port))
        );
        if let Some(found) = p.finding {
            let _ = writeln!(
                out,
                "    <failure type=\"{}\" message=\"{}\"/>",
                finding_name(Some(found)),
                xml(&format!(
                    "policy {}s it, and it was {} ({})",
                    p.policy,
                    observed(&p.observed),
                    p.how
                ))
            );
        } else if p.observed == Observed::Inconclusive {
            let _ = writeln!(out, "    <skipped message=\"{}\"/>", xml(&p.how));
        }
        out.push_str("  </testcase>\n");
    }
    out.push_str("</testsuite>\n");
    out
}

/// The hidden helper `palisade __probe-attempts TIMEOUT_MS INTERVAL_MS`,
/// run by `probe` inside a pod's network namespace.
pub fn attempts(timeout_ms: u64, interval_ms: u64) -> Result<Outcome> {
    let stdin = std::io::stdin().lock();
    let mut stdout = std::io::stdout().lock();
    probe::serve_attempts(
        stdin,
        &mut stdout,
        Duration::from_millis(timeout_ms),
        Duration::from_millis(interval_ms),
    )?;
    stdout.flush()?;
    Ok(Outcome::Clean)
}
