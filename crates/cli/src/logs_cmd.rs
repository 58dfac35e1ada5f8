//! `palisade logs`: Kubernetes audit logs and container logs through the
//! rules (built-in, and the user's).

use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use palisade_detect::Alert;
use palisade_inventory::severity::Severity;
use palisade_logs::{Scanner, source_of_path};

use serde_json::json;

use crate::Outcome;
use crate::audit_cmd::{sarif_level, sarif_log, security_severity};

#[derive(clap::Subcommand, Debug)]
pub enum LogsCommand {
    /// Scan audit logs and container logs with the rules: network policy
    /// tampering, bypass preparation, exec, refusal bursts, connection
    /// failures, proxy denials, DNS anomalies (docs/logs.md).
    Scan(ScanArgs),
    /// The rules: list those loaded, or test a rule file on sample logs.
    #[command(subcommand)]
    Rules(RulesCommand),
    /// Replay the audit trail over a seed snapshot: when each connection
    /// became possible or impossible, by which change, made by whom.
    Timeline(TimelineArgs),
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimelineFormat {
    Txt,
    Json,
}

#[derive(clap::Args, Debug)]
pub struct TimelineArgs {
    /// The cluster before the trail: manifests or a dump (files or
    /// directories); repeatable.
    #[arg(long, required = true, value_name = "PATH")]
    pub seed: Vec<PathBuf>,
    /// Audit logs, in the order they were written (`-` for stdin).
    #[arg(required = true, value_name = "AUDITLOG")]
    pub audit_logs: Vec<PathBuf>,
    /// Only connections from this workload (`ns/name` or `name`).
    #[arg(long, value_name = "WORKLOAD")]
    pub from: Option<String>,
    /// Only connections to this workload.
    #[arg(long, value_name = "WORKLOAD")]
    pub to: Option<String>,
    /// Only this port, optionally with its protocol: `5432`, `udp/53`.
    #[arg(long, value_parser = parse_port, value_name = "[PROTO/]PORT")]
    pub port: Option<(Option<palisade_inventory::Protocol>, u16)>,
    #[arg(short = 'o', long, value_enum, default_value_t = TimelineFormat::Txt)]
    pub output: TimelineFormat,
    #[command(flatten)]
    pub semantics: crate::SemanticsArgs,
}

fn parse_port(text: &str) -> Result<(Option<palisade_inventory::Protocol>, u16), String> {
    let (protocol, port) = match text.split_once('/') {
        Some((p, port)) => (Some(crate::parse_protocol(p)?), port),
        None => (None, text),
    };
    match port.parse::<u16>() {
        Ok(n) if n > 0 => Ok((protocol, n)),
        _ => Err(format!("{port:?} is not a port (1-65535)")),
    }
}

#[derive(clap::Subcommand, Debug)]
pub enum RulesCommand {
    /// Every rule loaded (built-in, then --rules files, later ids
    /// replacing earlier): id, severity, source, rate, name.
    List {
        /// More rules, as for `logs scan`; repeatable.
        #[arg(long = "rules", value_name = "FILE")]
        rules: Vec<PathBuf>,
    },
    /// For rule authors: scan sample logs with a rule file loaded over the
    /// built-in rules, and say how often each rule of the file fired. Fails
    /// when one of them never fires.
    Test {
        /// The rule file (Palisade's format or a Sigma rule).
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Sample audit logs or container logs, as for `logs scan`.
        #[arg(required = true, value_name = "SAMPLE")]
        samples: Vec<PathBuf>,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogsFormat {
    Table,
    Jsonl,
    Json,
    /// SARIF 2.1.0, for code scanning dashboards.
    Sarif,
}

#[derive(clap::Args, Debug)]
pub struct ScanArgs {
    /// Audit logs (JSON lines, webhook EventLists, AKS records), container
    /// log files (CRI, Docker json-file, Fluent Bit records), directories
    /// of them (/var/log/pods), or `-` for stdin.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// More rules (replacing built-in ones with the same id); repeatable.
    #[arg(long = "rules", value_name = "FILE")]
    pub rules: Vec<PathBuf>,
    #[arg(short = 'o', long, value_enum, default_value_t = LogsFormat::Table)]
    pub output: LogsFormat,
    /// Exit with code 2 when an alert has this severity or higher.
    #[arg(long, value_parser = crate::audit_cmd::parse_severity, value_name = "SEVERITY")]
    pub fail_on: Option<Severity>,
    /// The cluster before the audit logs (manifests or a dump): changes
    /// are replayed from it, and one that widens connectivity (a policy
    /// loosened or deleted, a pod or namespace relabelled into an allowed
    /// set) fires AUDIT-013, judged by the engine. Repeatable.
    #[arg(long, value_name = "PATH")]
    pub seed: Vec<PathBuf>,
    #[command(flatten)]
    pub semantics: crate::SemanticsArgs,
    /// Keep following the paths (directories such as /var/log/pods, or an
    /// audit log file): rotation and truncation handled, new lines scanned
    /// as they come. Only new lines: history is skipped.
    #[arg(long)]
    pub follow: bool,
    /// With --follow: where the place in each file is kept, so a restart
    /// resumes there (nothing lost, nothing read twice).
    #[arg(long, value_name = "FILE", requires = "follow")]
    pub state: Option<PathBuf>,
    /// With --follow: milliseconds between polls.
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    pub interval_ms: u64,
    #[command(flatten)]
    pub send: crate::send::SendArgs,
}

pub fn run(command: &LogsCommand, input: &crate::input::InputArgs) -> Result<Outcome> {
    match command {
        LogsCommand::Scan(args) => scan(args, input),
        LogsCommand::Rules(RulesCommand::List { rules }) => {
            print!("{}", list_rules(&scanner(rules)?));
            Ok(Outcome::Clean)
        }
        LogsCommand::Rules(RulesCommand::Test { file, samples }) => test_rules(file, samples),
        LogsCommand::Timeline(args) => crate::timeline_cmd::run(args, input),
    }
}

/// The built-in rules with `rule_files` over them.
pub fn scanner(rule_files: &[PathBuf]) -> Result<Scanner> {
    let texts: Vec<(String, String)> = rule_files
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).with_context(|| p.display().to_string())?;
            Ok((p.display().to_string(), text))
        })
        .collect::<Result<_>>()?;
    let files: Vec<(&str, &str)> = texts
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    Scanner::new(&files).map_err(|e| anyhow!("{e}"))
}

fn list_rules(scanner: &Scanner) -> String {
    let mut out = String::new();
    for rule in scanner.rules().rules() {
        let rate = rule
            .rate
            .as_ref()
            .map_or("-".to_string(), |r| format!("{}/{}s", r.count, r.within));
        let _ = writeln!(
            out,
            "{:<36} {:<8} {:<13} {:<7} {}",
            rule.id,
            palisade_logs::scan::severity(&rule.priority).as_str(),
            rule.source.as_deref().unwrap_or("any"),
            rate,
            rule.name
        );
    }
    out
}

fn test_rules(file: &Path, samples: &[PathBuf]) -> Result<Outcome> {
    let mut scanner = scanner(std::slice::from_ref(&file.to_path_buf()))?;
    let text = std::fs::read_to_string(file).with_context(|| file.display().to_string())?;
    let own = palisade_logs::rules::RuleSet::load(&[(&file.display().to_string(), &text)])
        .map_err(|e| anyhow!("{e}"))?;
    let mut alerts = Vec::new();
    for path in inputs(samples)? {
        scan_one(&mut scanner, &path, &mut alerts)?;
    }
    let mut silent = Vec::new();
    for rule in own.rules() {
        let fired = alerts.iter().filter(|a| a.rule == rule.id.as_str()).count();
        println!("{:<36} fired {fired:>5}  {}", rule.id, rule.name);
        if fired == 0 {
            silent.push(rule.id.as_str());
        }
    }
    if !silent.is_empty() {
        return Err(anyhow!(
            "{} rule(s) of {} never fired on the samples: {}",
            silent.len(),
            file.display(),
            silent.join(", ")
        ));
    }
    Ok(Outcome::Clean)
}

fn scan(args: &ScanArgs, input: &crate::input::InputArgs) -> Result<Outcome> {
    let mut scanner = scanner(&args.rules)?;
    if !args.seed.is_empty() {
        let seed = crate::timeline_cmd::load_seed(&args.seed, args.semantics.settings(), input)?;
        scanner = scanner.with_seed(seed);
    }
    if args.follow {
        return follow(scanner, args);
    }
    let mut alerts = Vec::new();
    for path in inputs(&args.paths)? {
        scan_one(&mut scanner, &path, &mut alerts)?;
    }
    print!("{}", render(&alerts, args.output, &scanner));
    crate::send::deliver(&args.send, &alerts)?;
    let failed = args
        .fail_on
        .is_some_and(|t| alerts.iter().any(|a| a.severity >= t));
    Ok(if failed {
        Outcome::Found
    } else {
        Outcome::Clean
    })
}

/// Files under the paths (directories walked, `.log`, `.json`, `.jsonl`
/// and rotated `.log.N` files), in order; `-` is stdin.
pub(crate) fn inputs(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for path in paths {
        if path.as_os_str() == "-" || !path.is_dir() {
            out.push(path.clone());
            continue;
        }
        let mut found = Vec::new();
        walk(path, &mut found).with_context(|| path.display().to_string())?;
        found.sort();
        out.extend(found);
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            walk(&path, out)?;
        } else {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.ends_with(".log")
                || name.contains(".log.")
                || name.ends_with(".json")
                || name.ends_with(".jsonl")
            {
                out.push(path);
            }
        }
    }
    Ok(())
}

fn scan_one(scanner: &mut Scanner, path: &Path, alerts: &mut Vec<Alert>) -> Result<()> {
    let name = if path.as_os_str() == "-" {
        "<stdin>".to_string()
    } else {
        path.display().to_string()
    };
    let reader: Box<dyn Read> = if path.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(File::open(path).with_context(|| name.clone())?)
    };
    let reader = BufReader::with_capacity(1 << 20, reader);
    let summary = scan_reader(scanner, &name, reader, alerts)?;
    eprintln!("{summary}");
    Ok(())
}

/// One input through the rules, its kind told from its first record; the
/// summary line (kind, records, skipped). Diagnostics go to stderr.
fn scan_reader(
    scanner: &mut Scanner,
    name: &str,
    mut reader: impl BufRead,
    alerts: &mut Vec<Alert>,
) -> Result<String> {
    let file: Arc<str> = Arc::from(name);
    let head = reader.fill_buf().with_context(|| name.to_string())?;
    let first = head
        .split(|&b| b == b'\n')
        .find(|l| !l.trim_ascii().is_empty());
    // Audit events are JSON with an audit ID (or lists of them, or AKS and
    // GKE wrappers).
    let is_audit = first.is_some_and(|l| {
        l.trim_ascii_start().starts_with(b"{")
            && (contains(l, b"\"auditID\"")
                || contains(l, b"EventList")
                || contains(l, b"kube-audit")
                || contains(l, b"\"protoPayload\""))
    });
    let sink = &mut |alert| alerts.push(alert);
    let (kind, records, skipped, diagnostics) = if is_audit {
        let stats = scanner.audit(reader, &file, sink);
        let skipped: u64 = stats.skipped.values().sum();
        // Lines the gate left unparsed are records read all the same.
        (
            "audit log",
            stats.events + stats.gated,
            skipped,
            stats.diagnostics,
        )
    } else {
        let source = source_of_path(name);
        let stats = scanner.container(reader, &file, source.as_ref(), sink);
        let skipped: u64 = stats.skipped.values().sum();
        ("container log", stats.lines, skipped, stats.diagnostics)
    };
    for (line, message) in diagnostics.iter().take(20) {
        eprintln!("{name}:{line}: {message}");
    }
    Ok(format!(
        "{name}: {kind}, {records} records, {skipped} skipped"
    ))
}

/// `--follow`: the inputs tailed for ever, each poll's new lines through
/// the rules and their alerts printed at once.
fn follow(scanner: Scanner, args: &ScanArgs) -> Result<Outcome> {
    let mut follower = LogFollower::new(scanner, args.paths.clone(), args.state.clone())?;
    let interval = std::time::Duration::from_millis(args.interval_ms);
    loop {
        let alerts = follower.poll()?;
        if !alerts.is_empty() {
            print!("{}", render(&alerts, args.output, &follower.scanner));
            std::io::Write::flush(&mut std::io::stdout())?;
        }
        follower.save()?;
        std::thread::sleep(interval);
    }
}

/// Log files followed through the rules: what `logs scan --follow` and the
/// node agent run. The place in each file is kept in `state`, saved after
/// the poll's alerts are out (so a crash rereads lines, never loses them).
pub struct LogFollower {
    pub scanner: Scanner,
    tailer: palisade_logs::tail::Tailer,
    state: Option<PathBuf>,
}

impl LogFollower {
    pub fn new(scanner: Scanner, paths: Vec<PathBuf>, state: Option<PathBuf>) -> Result<Self> {
        let saved = match &state {
            Some(path) if path.exists() => {
                Some(std::fs::read_to_string(path).with_context(|| path.display().to_string())?)
            }
            _ => None,
        };
        let tailer = palisade_logs::tail::Tailer::new(paths, saved.as_deref())
            .map_err(|e| anyhow!("{e}"))?;
        Ok(LogFollower {
            scanner,
            tailer,
            state,
        })
    }

    /// The alerts of the lines added since the last poll; unreadable files
    /// and cut lines are reported on stderr.
    pub fn poll(&mut self) -> Result<Vec<Alert>> {
        // Per file: the line number of the batch's first line, and the lines.
        let mut batches: std::collections::BTreeMap<PathBuf, (u64, Vec<u8>)> = Default::default();
        let stats = self.tailer.poll(&mut |path, number, line| {
            let batch = batches
                .entry(path.to_path_buf())
                .or_insert((number, Vec::new()));
            batch.1.extend_from_slice(line);
            batch.1.push(b'\n');
        });
        for (path, error) in &stats.errors {
            eprintln!("{}: {error}", path.display());
        }
        if stats.cut > 0 {
            eprintln!("{} lines longer than 1 MiB were cut", stats.cut);
        }
        let mut alerts = Vec::new();
        for (path, (first, batch)) in &batches {
            let mut found = Vec::new();
            let name = path.display().to_string();
            scan_reader(&mut self.scanner, &name, batch.as_slice(), &mut found)?;
            // The readers number a batch's lines from 1; alerts name the
            // line within the file.
            for alert in &mut found {
                for record in &mut alert.evidence.records {
                    record.record += first - 1;
                }
            }
            alerts.extend(found);
        }
        Ok(alerts)
    }

    pub fn save(&self) -> Result<()> {
        if let Some(path) = &self.state {
            self.tailer
                .save_to(path)
                .with_context(|| path.display().to_string())?;
        }
        Ok(())
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

pub(crate) fn render(alerts: &[Alert], format: LogsFormat, scanner: &Scanner) -> String {
    match format {
        LogsFormat::Sarif => {
            let rules = scanner.rules().rules().iter().map(sarif_rule).collect();
            let results = alerts.iter().map(sarif_result).collect();
            serde_json::to_string_pretty(&sarif_log(rules, results)).unwrap_or_default() + "\n"
        }
        LogsFormat::Jsonl => alerts
            .iter()
            .map(|a| serde_json::to_string(a).unwrap_or_default() + "\n")
            .collect(),
        LogsFormat::Json => serde_json::to_string_pretty(alerts).unwrap_or_default() + "\n",
        LogsFormat::Table => {
            let mut out = String::new();
            for a in alerts {
                let _ = writeln!(
                    out,
                    "{:<8} {:<9} {} {}",
                    a.severity.as_str().to_uppercase(),
                    a.rule,
                    a.time.as_deref().unwrap_or("-"),
                    a.summary
                );
            }
            let _ = writeln!(out, "\n{} alerts", alerts.len());
            out
        }
    }
}

fn sarif_rule(rule: &palisade_logs::rules::Rule) -> serde_json::Value {
    let severity = palisade_logs::scan::severity(&rule.priority);
    json!({
        "id": rule.id,
        "name": rule.name,
        "shortDescription": {"text": rule.name},
        "fullDescription": {"text": if rule.desc.is_empty() { &rule.name } else { &rule.desc }},
        "defaultConfiguration": {"level": sarif_level(severity)},
        "properties": {"tags": rule.tags, "security-severity": security_severity(severity)},
    })
}

/// A log alert points at its record (file and line) and at the object
/// changed or the pod that logged it.
fn sarif_result(alert: &Alert) -> serde_json::Value {
    let mut location = json!({});
    if let Some(record) = alert.evidence.records.first() {
        location["physicalLocation"] = json!({
            "artifactLocation": {"uri": record.file.to_string()},
            "region": {"startLine": record.record.max(1)},
        });
    }
    let logical = match (&alert.object, &alert.src.pod) {
        (Some(object), _) => Some((
            format!(
                "{}/{}/{}",
                object.kind,
                object.namespace.as_deref().unwrap_or("-"),
                object.name.as_deref().unwrap_or("-")
            ),
            "resource",
        )),
        (None, Some(pod)) => Some((
            format!(
                "pods/{}/{pod}",
                alert.src.namespace.as_deref().unwrap_or("-")
            ),
            "resource",
        )),
        _ => None,
    };
    if let Some((name, kind)) = logical {
        location["logicalLocations"] = json!([{"fullyQualifiedName": name, "kind": kind}]);
    }
    let mut properties = json!({"severity": alert.severity.as_str()});
    if let Some(actor) = &alert.actor {
        properties["actor"] = json!(actor);
    }
    json!({
        "ruleId": alert.rule,
        "level": sarif_level(alert.severity),
        "message": {"text": alert.summary},
        "locations": [location],
        "properties": properties,
    })
}
