//! `palisade logs timeline`: the audit trail replayed over a seed
//! snapshot, as the connections each change opened or closed.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use palisade_inventory::collect_manifest_files;
use palisade_logs::audit::{AuditStats, read_audit_log};
use palisade_logs::timeline::{Step, Timeline};
use palisade_policy::{DiffEntry, MapFilter, Settings};
use serde_json::json;

use crate::Outcome;
use crate::input::InputArgs;
use crate::logs_cmd::{TimelineArgs, TimelineFormat, inputs};

/// The seed snapshot from manifest files or directories; its problems are
/// shown as every command shows a manifest's, and `--strict` refuses them.
pub fn load_seed(paths: &[PathBuf], settings: Settings, input: &InputArgs) -> Result<Timeline> {
    let (files, errors) = collect_manifest_files(paths);
    if let Some(error) = errors.first() {
        return Err(anyhow!("seed: {error}"));
    }
    let texts = files
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f).with_context(|| f.display().to_string())?;
            Ok((f.display().to_string(), text))
        })
        .collect::<Result<Vec<_>>>()?;
    let (timeline, diagnostics) = Timeline::seed(&texts, settings);
    crate::input::report_diagnostics(&diagnostics, input.verbose);
    let problems = diagnostics.problems().count();
    if input.strict && problems > 0 {
        bail!("seed: {problems} diagnostics and --strict is set");
    }
    Ok(timeline)
}

pub fn run(args: &TimelineArgs, input: &InputArgs) -> Result<Outcome> {
    let mut timeline = load_seed(&args.seed, args.semantics.settings(), input)?;
    timeline.only_pairs(args.from.clone(), args.to.clone());
    let (protocol, port) = args.port.map_or((None, None), |(p, n)| (p, Some(n)));
    let filter = MapFilter {
        protocol,
        port,
        ..MapFilter::default()
    };
    let wanted = |e: &DiffEntry| wanted(e, args.from.as_deref(), args.to.as_deref());
    // Steps are written on a thread of their own: a long timeline's text
    // costs as much as a fair share of its judging.
    let (mut out, events) = std::thread::scope(|scope| -> Result<(StepWriter, u64)> {
        let (steps, received) = std::sync::mpsc::sync_channel::<(Arc<str>, Step)>(64);
        let writer = scope.spawn(move || -> std::io::Result<StepWriter> {
            let mut out = StepWriter::new(args.output);
            for (name, step) in received {
                out.write(&name, &step)?;
            }
            Ok(out)
        });
        let mut events = 0u64;
        for path in inputs(&args.audit_logs)? {
            let name: Arc<str> = path.display().to_string().into();
            let reader: Box<dyn Read> = if &*name == "-" {
                Box::new(std::io::stdin().lock())
            } else {
                Box::new(File::open(&path).with_context(|| name.to_string())?)
            };
            let reader = BufReader::with_capacity(1 << 20, reader);
            let stats = replay(&mut timeline, reader, &filter, &wanted, &mut |step| {
                // A writer that failed has said why: its error comes below.
                let _ = steps.send((name.clone(), step));
            });
            events += stats.events;
            for (line, message) in stats.diagnostics.iter().take(20) {
                eprintln!("{name}:{line}: {message}");
            }
        }
        drop(steps);
        let out = writer
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            .context("writing the timeline")?;
        Ok((out, events))
    })?;
    out.finish().context("writing the timeline")?;
    let unchanged = match (&args.from, &args.to) {
        (None, None) => "changed no connection",
        _ => "changed none of the connections asked about",
    };
    let mut summary = format!(
        "{events} audit events, {} changes shown, {} changes that {unchanged}",
        out.steps, timeline.quiet
    );
    for (reason, count) in &timeline.unapplied {
        let _ = write!(summary, "; {count} not applied: {reason}");
    }
    eprintln!("{summary}");
    Ok(Outcome::Clean)
}

/// Steps written as they come (a long trail's timeline is never held in
/// memory): text lines, or the elements of one JSON array.
struct StepWriter {
    format: TimelineFormat,
    out: std::io::BufWriter<std::io::Stdout>,
    steps: usize,
}

impl StepWriter {
    fn new(format: TimelineFormat) -> StepWriter {
        StepWriter {
            format,
            out: std::io::BufWriter::with_capacity(1 << 20, std::io::stdout()),
            steps: 0,
        }
    }

    fn write(&mut self, file: &str, step: &Step) -> std::io::Result<()> {
        use std::io::Write as _;
        match self.format {
            TimelineFormat::Txt => self.out.write_all(text_of(file, step).as_bytes())?,
            TimelineFormat::Json => {
                let separator = if self.steps == 0 { "[\n" } else { ",\n" };
                let item = serde_json::to_string_pretty(&step_json(file, step)).unwrap_or_default();
                write!(self.out, "{separator}{item}")?;
            }
        }
        self.steps += 1;
        Ok(())
    }

    fn finish(&mut self) -> std::io::Result<()> {
        use std::io::Write as _;
        if self.format == TimelineFormat::Json {
            let close = if self.steps == 0 { "[]\n" } else { "\n]\n" };
            self.out.write_all(close.as_bytes())?;
        }
        self.out.flush()
    }
}

/// Replays one audit log, handing `sink` the steps with connections
/// `wanted` (only those connections kept).
pub fn replay(
    timeline: &mut Timeline,
    reader: impl BufRead,
    filter: &MapFilter,
    wanted: &dyn Fn(&DiffEntry) -> bool,
    sink: &mut dyn FnMut(Step),
) -> AuditStats {
    read_audit_log(reader, &mut |event| {
        if let Some(mut step) = timeline.apply(&event, filter) {
            step.entries.retain(|e| wanted(e));
            if !step.entries.is_empty() {
                sink(step);
            }
        }
    })
}

/// `--from` and `--to`, when given, match the source and destination.
pub fn wanted(entry: &DiffEntry, from: Option<&str>, to: Option<&str>) -> bool {
    from.is_none_or(|f| entry.src.matches_focus(f)) && to.is_none_or(|t| entry.dst.matches_focus(t))
}

fn who(step: &Step) -> String {
    let mut who = step.user.clone();
    if !step.groups.is_empty() {
        let _ = write!(who, " ({})", step.groups.join(","));
    }
    if let Some(ip) = &step.source_ip {
        let _ = write!(who, " from {ip}");
    }
    if let Some(agent) = &step.user_agent {
        let _ = write!(who, " [{agent}]");
    }
    who
}

fn object(step: &Step) -> String {
    match step.namespace.as_str() {
        "" => format!("{} {}", step.kind, step.name),
        ns => format!("{} {ns}/{}", step.kind, step.name),
    }
}

/// One line per connection gained (`+`) or lost (`-`).
/// One step as text: a line per connection gained or lost.
pub fn text_of(file: &str, step: &Step) -> String {
    let mut out = String::new();
    let time = step.time.as_deref().unwrap_or("-");
    // The same for every connection of the step: written once.
    let why = format!(
        "by {}: {} {} ({file}:{})",
        who(step),
        step.verb,
        object(step),
        step.line
    );
    for entry in &step.entries {
        for (sign, conns) in [("+", entry.gained()), ("-", entry.lost())] {
            if conns.is_empty() {
                continue;
            }
            let _ = writeln!(
                out,
                "{time} {sign} {} -> {} {conns}  {why}",
                entry.src, entry.dst
            );
        }
    }
    out
}

fn step_json(file: &str, step: &Step) -> serde_json::Value {
    let connections: Vec<serde_json::Value> = step
        .entries
        .iter()
        .map(|e| {
            json!({
                "change": e.change.as_str(),
                "src": e.src.to_string(),
                "dst": e.dst.to_string(),
                "gained": e.gained().to_string(),
                "lost": e.lost().to_string(),
            })
        })
        .collect();
    json!({
        "time": step.time,
        "file": file,
        "line": step.line,
        "actor": {
            "user": step.user, "groups": step.groups,
            "source_ip": step.source_ip, "user_agent": step.user_agent,
        },
        "verb": step.verb,
        "object": {"kind": step.kind, "namespace": step.namespace, "name": step.name},
        "connections": connections,
    })
}
