//! `palisade explain`: the verdict for one connection and the rules behind it.

use std::fmt::Write;
use std::path::PathBuf;

use anyhow::{Result, anyhow};
use palisade_inventory::Protocol;
use palisade_policy::endpoint::{decide, resolve};
use palisade_policy::reference::{Decision, SideDecision};
use serde::Serialize;

use crate::input::{self, InputArgs};
use crate::{Outcome, SemanticsArgs};

#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ExplainFormat {
    #[default]
    Txt,
    Json,
}

#[derive(clap::Args, Debug)]
pub struct ExplainArgs {
    /// Manifest files or directories (recursive), or `-` for stdin.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Source: `ns/workload`, `ns/pod`, `workload` or an IP address.
    #[arg(long)]
    pub from: String,
    /// Destination: `ns/workload`, `ns/pod`, `workload` or an IP address.
    #[arg(long)]
    pub to: String,
    /// `[PROTO/]PORT`, e.g. `8080`, `udp/53`, `SCTP/3868` (TCP by default).
    #[arg(long, value_parser = parse_port_spec)]
    pub port: (Protocol, u16),
    #[arg(long, short, value_enum, default_value_t)]
    pub output: ExplainFormat,
    #[command(flatten)]
    pub semantics: SemanticsArgs,
}

pub fn parse_port_spec(s: &str) -> Result<(Protocol, u16), String> {
    let (protocol, port) = match s.split_once('/') {
        Some((p, port)) => (crate::parse_protocol(p)?, port),
        None => (Protocol::Tcp, s),
    };
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("{port:?} is not a port number (1-65535)"))?;
    Ok((protocol, port))
}

#[derive(Serialize)]
pub struct Report<'a> {
    pub from: String,
    pub to: String,
    pub protocol: &'static str,
    pub port: u16,
    #[serde(flatten)]
    pub decision: &'a Decision,
}

pub fn run(args: &ExplainArgs, input_args: &InputArgs) -> Result<Outcome> {
    let inventory = input::load(&args.paths, input_args)?;
    let src = resolve(&inventory, &args.from).map_err(|e| anyhow!("--from: {e}"))?;
    let dst = resolve(&inventory, &args.to).map_err(|e| anyhow!("--to: {e}"))?;
    let (protocol, port) = args.port;
    let settings = args.semantics.settings();
    let decision = decide(&inventory, &settings, &src, &dst, protocol, port);
    let report = Report {
        from: src.display(&inventory),
        to: dst.display(&inventory),
        protocol: protocol.as_str(),
        port,
        decision: &decision,
    };
    match args.output {
        ExplainFormat::Json => print!("{}", crate::render::json(&report)),
        ExplainFormat::Txt => print!("{}", text(&report)),
    }
    Ok(if decision.allowed {
        Outcome::Clean
    } else {
        Outcome::Found
    })
}

pub fn text(r: &Report<'_>) -> String {
    let verdict = if r.decision.allowed {
        "ALLOWED"
    } else {
        "DENIED"
    };
    let mut out = format!(
        "{} => {} : {} {}\nverdict: {verdict}\n",
        r.from, r.to, r.protocol, r.port
    );
    side(
        &mut out,
        &format!("egress of {}", r.from),
        &r.decision.egress,
    );
    side(
        &mut out,
        &format!("ingress of {}", r.to),
        &r.decision.ingress,
    );
    out
}

fn side(out: &mut String, title: &str, d: &SideDecision) {
    let verdict = if d.allowed { "allows" } else { "denies" };
    let _ = writeln!(out, "\n{title}: {verdict}");
    if let Some(note) = &d.note {
        let _ = writeln!(out, "  {note}");
        return;
    }
    if !d.isolated {
        let _ = writeln!(
            out,
            "  not isolated: no NetworkPolicy selects it for {}",
            d.direction
        );
        return;
    }
    let _ = writeln!(out, "  isolated by: {}", d.selected_by.join(", "));
    if d.allowed_by.is_empty() {
        let _ = writeln!(
            out,
            "  no {} rule of these policies matches this peer and port",
            d.direction
        );
    }
    for m in &d.allowed_by {
        let _ = writeln!(
            out,
            "  allowed by {} {} rule {}: peer {}, port {}",
            m.policy, m.direction, m.rule_index, m.peer, m.port
        );
    }
}
