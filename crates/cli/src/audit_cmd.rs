//! `palisade audit`: posture findings, as a table or for CI systems (JSON,
//! SARIF 2.1.0 for code scanning, JUnit).

use std::fmt::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, anyhow};
use palisade_audit::checks::{self, Check};
use palisade_audit::{
    AuditOptions, Finding, PssLevel, PssVersion, Report, Severity, Suppressions, audit,
};
use palisade_policy::Engine;
use serde_json::json;

use crate::input::{self, InputArgs};
use crate::render::{self, table_md};
use crate::{Outcome, SemanticsArgs};

#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AuditFormat {
    #[default]
    Table,
    Json,
    Sarif,
    Junit,
    Md,
}

#[derive(clap::Args, Debug)]
pub struct AuditArgs {
    /// Manifest files or directories (recursive), or `-` for stdin.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    #[command(flatten)]
    pub send: crate::send::SendArgs,
    #[arg(long, short, value_enum, default_value_t)]
    pub output: AuditFormat,
    /// Exit with code 2 when an unsuppressed finding has this severity or
    /// higher (critical, high, medium, low, info).
    #[arg(long, value_parser = parse_severity, value_name = "SEVERITY")]
    pub fail_on: Option<Severity>,
    /// Suppress a check for this run (repeatable); suppressed findings are
    /// still counted.
    #[arg(long, value_name = "CHECK-ID")]
    pub skip: Vec<String>,
    /// Suppressions file: `skip: [IDS]` and `ignore: [{check, namespace,
    /// name, reason}]`.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Pod Security Standards level: `baseline` checks only baseline;
    /// `restricted` both at full severity. Default: both, with
    /// restricted-only findings at low severity.
    #[arg(long, value_enum)]
    pub pss: Option<PssArg>,
    /// The Pod Security policy version to decide as (`latest` or `v1.N`,
    /// as in the namespace label pod-security.kubernetes.io/enforce-version):
    /// safe sysctls, SELinux types, the user-namespace and Windows
    /// exemptions and several controls differ between versions.
    #[arg(long, value_parser = parse_pss_version, default_value = "latest", value_name = "VERSION")]
    pub pss_version: PssVersion,
    /// The cluster's pod CIDR (repeatable), when Node objects do not say.
    #[arg(long, value_name = "CIDR")]
    pub pod_cidr: Vec<palisade_inventory::Cidr>,
    /// The cluster's service CIDR (repeatable).
    #[arg(long, value_name = "CIDR")]
    pub service_cidr: Vec<palisade_inventory::Cidr>,
    #[command(flatten)]
    pub semantics: SemanticsArgs,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PssArg {
    Baseline,
    Restricted,
}

fn parse_pss_version(s: &str) -> Result<PssVersion, String> {
    PssVersion::parse(s)
        .ok_or_else(|| format!("unknown Pod Security version {s:?} (latest or v1.N)"))
}

pub(crate) fn parse_severity(s: &str) -> Result<Severity, String> {
    Severity::parse(s)
        .ok_or_else(|| format!("unknown severity {s:?} (critical, high, medium, low, info)"))
}

pub fn run(args: &AuditArgs, input_args: &InputArgs) -> Result<Outcome> {
    for id in &args.skip {
        checks::by_id(id).ok_or_else(|| anyhow!("--skip: unknown check id {id:?}"))?;
    }
    let mut suppressions = match &args.config {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|e| anyhow!("{}: {e}", path.display()))?;
            Suppressions::from_yaml(&text).map_err(|e| anyhow!("{}: {e}", path.display()))?
        }
        None => Suppressions::default(),
    };
    suppressions.skip.extend(args.skip.iter().cloned());
    let inventory = input::load(&args.paths, input_args)?;
    let engine = Engine::new(&inventory, &args.semantics.settings());
    let options = AuditOptions {
        suppressions,
        pss: match args.pss {
            None => PssLevel::Both,
            Some(PssArg::Baseline) => PssLevel::Baseline,
            Some(PssArg::Restricted) => PssLevel::Restricted,
        },
        pss_version: args.pss_version,
        pod_cidrs: args.pod_cidr.clone(),
        service_cidrs: args.service_cidr.clone(),
        settings: args.semantics.settings(),
    };
    let report = audit(&inventory, &engine, &options);
    for note in &report.notes {
        eprintln!("note: {note}");
    }
    print!("{}", render(&report, args.output));
    if args.send.send.is_some() {
        let doc = serde_json::to_value(&report).context("encoding the report")?;
        crate::send::deliver_audit(&args.send, &doc)?;
    }
    let failed = args.fail_on.is_some_and(|t| report.fails(t));
    Ok(if failed {
        Outcome::Found
    } else {
        Outcome::Clean
    })
}

pub fn render(report: &Report, format: AuditFormat) -> String {
    match format {
        AuditFormat::Table => table(report),
        AuditFormat::Json => render::json(report),
        AuditFormat::Sarif => render::json(&sarif(report)),
        AuditFormat::Junit => junit(report),
        AuditFormat::Md => md(report),
    }
}

fn summary_line(report: &Report) -> String {
    let s = &report.summary;
    let counts: Vec<String> = [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
        Severity::Info,
    ]
    .iter()
    .map(|sev| format!("{} {sev}", s.by_severity.get(sev).copied().unwrap_or(0)))
    .collect();
    format!(
        "{} findings: {}; {} suppressed",
        report.active().count(),
        counts.join(", "),
        s.suppressed
    )
}

fn table(report: &Report) -> String {
    let mut out = String::new();
    for f in report.active() {
        let _ = writeln!(
            out,
            "{:<8} {:<7} {}  {}",
            f.severity.as_str().to_uppercase(),
            f.check,
            f.resource,
            f.field
        );
        let _ = writeln!(out, "         {}", f.message);
    }
    let _ = writeln!(out, "\n{}", summary_line(report));
    let scores: Vec<String> = report
        .summary
        .namespace_scores
        .iter()
        .map(|(ns, score)| format!("{ns} {score}"))
        .collect();
    let _ = writeln!(
        out,
        "namespace scores (100 = no findings): {}",
        scores.join(", ")
    );
    out
}

/// One line per check that fired: severity, id, title, how many
/// resources, and the first of them.
pub fn by_check(report: &Report) -> String {
    let mut groups: Vec<(&Finding, usize)> = Vec::new();
    for f in report.active() {
        match groups
            .iter_mut()
            .find(|(g, _)| g.check == f.check && g.severity == f.severity)
        {
            Some((_, n)) => *n += 1,
            None => groups.push((f, 1)),
        }
    }
    let mut out = String::new();
    for (f, n) in groups {
        let title = checks::by_id(f.check).map_or("", |c| c.title);
        let more = if n > 1 {
            format!(" and {} more", n - 1)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "{:<8} {:<7} {title}: {}{more}",
            f.severity.as_str().to_uppercase(),
            f.check,
            f.resource
        );
    }
    let _ = writeln!(out, "{}", summary_line(report));
    out
}

fn md(report: &Report) -> String {
    let rows: Vec<[String; 5]> = report
        .active()
        .map(|f| {
            [
                f.severity.to_string(),
                f.check.to_string(),
                f.resource.to_string(),
                f.field.clone(),
                f.message.clone(),
            ]
        })
        .collect();
    let mut out = format!("## Palisade audit\n\n{}\n\n", summary_line(report));
    out.push_str(&table_md(
        &["severity", "check", "resource", "field", "message"],
        &rows,
    ));
    out
}

pub fn sarif_level(s: Severity) -> &'static str {
    match s {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low | Severity::Info => "note",
    }
}

/// GitHub code scanning ranks security results by this property (0-10).
pub fn security_severity(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "9.5",
        Severity::High => "8.0",
        Severity::Medium => "5.5",
        Severity::Low => "3.0",
        Severity::Info => "0.0",
    }
}

fn sarif_rule(c: &Check) -> serde_json::Value {
    json!({
        "id": c.id,
        "name": c.title,
        "shortDescription": {"text": c.title},
        "fullDescription": {"text": c.risk},
        "help": {"text": c.remediation},
        "defaultConfiguration": {"level": sarif_level(c.severity)},
        "properties": {"tags": c.tags, "security-severity": security_severity(c.severity)},
    })
}

fn sarif_result(f: &Finding) -> serde_json::Value {
    let mut location = json!({
        "logicalLocations": [{"fullyQualifiedName": f.resource.to_string(), "kind": "resource"}],
    });
    if let Some(src) = &f.source {
        location["physicalLocation"] = json!({
            "artifactLocation": {"uri": src.file.to_string()},
            "region": {"startLine": src.line, "startColumn": src.column},
        });
    }
    let mut result = json!({
        "ruleId": f.check,
        "level": sarif_level(f.severity),
        "message": {"text": format!("{} ({}). Risk: {} Fix: {}", f.message, f.field, f.risk, f.remediation)},
        "locations": [location],
        "properties": {"field": f.field, "severity": f.severity.as_str()},
    });
    if let Some(reason) = &f.suppressed {
        result["suppressions"] = json!([{"kind": "external", "justification": reason}]);
    }
    result
}

fn sarif(report: &Report) -> serde_json::Value {
    let rules: Vec<serde_json::Value> = checks::ALL.iter().map(|c| sarif_rule(c)).collect();
    let results: Vec<serde_json::Value> = report.findings.iter().map(sarif_result).collect();
    sarif_log(rules, results)
}

/// A SARIF 2.1.0 log of one run of Palisade with these rules and results.
pub fn sarif_log(
    rules: Vec<serde_json::Value>,
    results: Vec<serde_json::Value>,
) -> serde_json::Value {
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "palisade",
                "version": env!("CARGO_PKG_VERSION"),
                "informationUri": "https://github.com/palisade/palisade",
                "rules": rules,
            }},
            "results": results,
        }],
    })
}

pub(crate) fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// One test case per finding: failures for active findings, skipped for
/// suppressed ones, so CI dashboards show both.
fn junit(report: &Report) -> String {
    let failures = report.active().count();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"palisade audit\" tests=\"{}\" failures=\"{failures}\" skipped=\"{}\">",
        report.findings.len(),
        report.summary.suppressed
    );
    let _ = writeln!(
        out,
        "  <testsuite name=\"palisade audit\" tests=\"{}\" failures=\"{failures}\" skipped=\"{}\">",
        report.findings.len(),
        report.summary.suppressed
    );
    for f in &report.findings {
        let _ = writeln!(
            out,
            "    <testcase classname=\"{}\" name=\"{}\">",
            xml(f.check),
            xml(&format!("{} {}", f.resource, f.field))
        );
        match &f.suppressed {
            Some(reason) => {
                let _ = writeln!(out, "      <skipped message=\"{}\"/>", xml(reason));
            }
            None => {
                let _ = writeln!(
                    out,
                    "      <failure type=\"{}\" message=\"{}\">{}</failure>",
                    f.severity,
                    xml(&f.message),
                    xml(&format!("Risk: {}\nFix: {}", f.risk, f.remediation))
                );
            }
        }
        out.push_str("    </testcase>\n");
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}
