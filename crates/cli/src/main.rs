//! `palisade`: do your Kubernetes network policies actually hold?

/// mimalloc: the timeline replay and the flow readers allocate and free
/// small objects at a high rate, across threads; against glibc's malloc it
/// takes the 10,000-change replay from 74 s to 50 s and 1 M Hubble flows
/// from 1.66 s to 1.47 s (BENCHMARKS.md, 2026-12-03).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod agent_cmd;
mod audit_cmd;
mod bench;
mod demo;
#[cfg(test)]
mod demo_traffic;
mod diff_cmd;
mod explain;
mod flows_cmd;
mod flows_render;
mod gen_flows;
mod input;
mod live;
mod logs_cmd;
mod probe_cmd;
mod reach;
mod render;
mod send;
mod serve_cmd;
mod timeline_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use palisade_inventory::Protocol;
use palisade_policy::{HostNetworkPods, MapFilter, Settings};

const EXIT_CODES: &str = "\
Exit codes:
  0  success, and nothing was found (diff: no difference; explain: allowed)
  1  usage error, unreadable input, or a diagnostic under --strict
  2  something was found (diff: connectivity differs; explain: denied;
     audit, flows verify: a finding or alert at or above --fail-on;
     flows advise: the proof of the generated policies fails)";

#[derive(Parser, Debug)]
#[command(name = "palisade", version, about = "Do your Kubernetes network policies actually hold?", after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    input: input::InputArgs,
}

/// Semantics settings that differ between network plugins.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct SemanticsArgs {
    /// ipBlocks also match in-cluster pod addresses (Calico-like data
    /// planes). Default: they do not (Cilium, and the upstream analysers).
    #[arg(long)]
    pub ipblock_matches_pods: bool,
    /// How hostNetwork pods take part in NetworkPolicy, which the API leaves
    /// undefined: `node` (their traffic is the node's: never selected, never
    /// isolated; most plugins) or `pod` (policies apply to them like to any
    /// pod; roxctl netpol).
    #[arg(long, value_enum, default_value_t = HostNetworkArg::Node, value_name = "READING")]
    pub host_network_pods: HostNetworkArg,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HostNetworkArg {
    #[default]
    Node,
    Pod,
}

impl SemanticsArgs {
    pub fn settings(&self) -> Settings {
        Settings {
            ipblock_matches_pods: self.ipblock_matches_pods,
            host_network_pods: match self.host_network_pods {
                HostNetworkArg::Node => HostNetworkPods::Node,
                HostNetworkArg::Pod => HostNetworkPods::Pod,
            },
        }
    }
}

/// Restrictions of a connectivity map.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct FilterArgs {
    /// Only connections to or from this workload (`ns/name` or `name`);
    /// repeatable.
    #[arg(long = "focus-workload", value_name = "NAME")]
    pub focus_workloads: Vec<String>,
    /// Only this protocol (TCP, UDP or SCTP).
    #[arg(long, value_parser = parse_protocol)]
    pub protocol: Option<Protocol>,
    /// Only this port.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,
    /// Show IPv6 external ranges even when no policy mentions IPv6.
    #[arg(long)]
    pub include_ipv6: bool,
}

impl FilterArgs {
    pub fn filter(&self) -> MapFilter {
        MapFilter {
            focus_workloads: self.focus_workloads.clone(),
            protocol: self.protocol,
            port: self.port,
            include_ipv6: self.include_ipv6,
            merge_ranges: false,
        }
    }
}

pub fn parse_protocol(s: &str) -> Result<Protocol, String> {
    Protocol::parse_k8s(&s.to_ascii_uppercase())
        .ok_or_else(|| format!("unknown protocol {s:?} (TCP, UDP or SCTP)"))
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Connectivity map: which workloads and external ranges may talk, on
    /// which ports.
    Reach(reach::ReachArgs),
    /// Verdict for one connection, with the policies and rules behind it.
    Explain(explain::ExplainArgs),
    /// Semantic difference of two inventories' connectivity (policy review).
    Diff(diff_cmd::DiffArgs),
    /// Posture audit: bypass vectors and weak policies, for people and CI.
    Audit(audit_cmd::AuditArgs),
    /// Observed traffic (captures, flow logs, conntrack) against the
    /// declared policies: bypasses, scans, baselines, policy advice.
    #[command(subcommand)]
    Flows(flows_cmd::FlowsCommand),
    /// Logs: Kubernetes audit logs and container logs through the rules.
    #[command(subcommand)]
    Logs(logs_cmd::LogsCommand),
    /// The node agent: every connection, drop, execution and raw socket on
    /// this node, attributed to its pod and judged against the policy as it
    /// happens (root; eBPF). Alerts as JSON lines.
    Agent(agent_cmd::AgentArgs),
    /// Verify enforcement by trying connections from the pods on this
    /// node: reached but denied is a bypass, blocked but allowed an
    /// unexpected drop (root; enters pods' network namespaces).
    Probe(probe_cmd::ProbeArgs),
    /// Run inside a pod's network namespace by `probe` (internal).
    #[command(name = "__probe-attempts", hide = true)]
    ProbeAttempts { timeout_ms: u64, interval_ms: u64 },
    /// The monitoring server: receives alerts (`--send`, agents), keeps
    /// them in its store and serves them back (`/api/v1/alerts`).
    Serve(serve_cmd::ServeArgs),
    /// The server and this node's agent in one process, on SQLite: alerts
    /// go to the store and the read API on http://127.0.0.1:8470 (root).
    Up(Box<serve_cmd::UpArgs>),
    /// Make a bearer token for the server: prints it once and appends its
    /// hash to the tokens file.
    Token(serve_cmd::TokenArgs),
    /// Run the main job on the bundled example cluster.
    Demo,
    /// Write a synthetic cluster (seeded, deterministic) as YAML to stdout.
    Gen(bench::GenArgs),
    /// Measure loading, connectivity map and single verdicts on synthetic
    /// clusters.
    Bench(bench::BenchArgs),
}

/// What a command concluded, mapped to the exit code.
pub enum Outcome {
    Clean,
    Found,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let result = match cli.command {
        Command::Reach(args) => reach::run(&args, &cli.input),
        Command::Explain(args) => explain::run(&args, &cli.input),
        Command::Diff(args) => diff_cmd::run(&args, &cli.input),
        Command::Audit(args) => audit_cmd::run(&args, &cli.input),
        Command::Flows(command) => flows_cmd::run(&command, &cli.input),
        Command::Agent(args) => agent_cmd::run(&args, &cli.input),
        Command::Logs(command) => logs_cmd::run(&command, &cli.input),
        Command::Probe(args) => probe_cmd::run(&args, &cli.input),
        Command::ProbeAttempts {
            timeout_ms,
            interval_ms,
        } => probe_cmd::attempts(timeout_ms, interval_ms),
        Command::Serve(args) => serve_cmd::run(&args, &cli.input),
        Command::Token(args) => serve_cmd::token(&args),
        Command::Up(args) => serve_cmd::up(*args, &cli.input),
        Command::Demo => demo::run(),
        Command::Gen(args) => bench::generate_cluster(&args),
        Command::Bench(args) => bench::run(&args),
    };
    match result {
        Ok(Outcome::Clean) => ExitCode::SUCCESS,
        Ok(Outcome::Found) => ExitCode::from(2),
        Err(e) => {
            eprintln!("palisade: error: {e:#}");
            ExitCode::from(1)
        }
    }
}
