//! Printers for connectivity maps and diffs. They only format; what to print
//! is decided by the commands.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;

use palisade_policy::{ConnSet, ConnectivityMap, DiffEntry, Node};
use serde::Serialize;

#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MapFormat {
    #[default]
    Txt,
    Json,
    Csv,
    Md,
    Dot,
}

#[derive(Serialize)]
struct JsonEntry {
    src: String,
    dst: String,
    conn: String,
}

pub fn map(m: &ConnectivityMap, format: MapFormat) -> String {
    match format {
        MapFormat::Txt => map_txt(m),
        MapFormat::Json => {
            let entries: Vec<JsonEntry> = map_rows(m)
                .into_iter()
                .map(|[src, dst, conn]| JsonEntry { src, dst, conn })
                .collect();
            json(&entries)
        }
        MapFormat::Csv => table_csv(&["src", "dst", "conn"], &map_rows(m)),
        MapFormat::Md => table_md(&["src", "dst", "conn"], &map_rows(m)),
        MapFormat::Dot => dot(m),
    }
}

/// The common case, and the large one: written without per-row allocations.
fn map_txt(m: &ConnectivityMap) -> String {
    let mut out = String::with_capacity(m.len() * 96);
    let mut conn_text: HashMap<*const ConnSet, String> = HashMap::new();
    for e in m.entries() {
        let conn = conn_text
            .entry(e.conn as *const ConnSet)
            .or_insert_with(|| e.conn.to_string());
        let _ = writeln!(out, "{} => {} : {conn}", e.src_name, e.dst_name);
    }
    out
}

fn map_rows(m: &ConnectivityMap) -> Vec<[String; 3]> {
    m.entries()
        .map(|e| {
            [
                e.src_name.to_string(),
                e.dst_name.to_string(),
                e.conn.to_string(),
            ]
        })
        .collect()
}

pub fn json<T: Serialize>(value: &T) -> String {
    // Serialising plain data structures cannot fail.
    let mut s = serde_json::to_string_pretty(value).unwrap_or_default();
    s.push('\n');
    s
}

/// RFC 4180 quoting: connection strings contain commas.
fn csv_field(field: &str) -> String {
    if field.contains([',', '"', '\n']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

pub fn table_csv<const N: usize>(header: &[&str; N], rows: &[[String; N]]) -> String {
    let mut out = header.join(",");
    out.push('\n');
    for row in rows {
        let fields: Vec<String> = row.iter().map(|f| csv_field(f)).collect();
        out.push_str(&fields.join(","));
        out.push('\n');
    }
    out
}

/// A Markdown table; the separator row has one dash per header character
/// and two more, as roxctl writes it (`|-----|-----|------|`).
pub fn table_md<const N: usize>(header: &[&str; N], rows: &[[String; N]]) -> String {
    let mut out = format!("| {} |\n", header.join(" | "));
    let dashes: Vec<String> = header.iter().map(|h| "-".repeat(h.len() + 2)).collect();
    let _ = writeln!(out, "|{}|", dashes.join("|"));
    for row in rows {
        let cells: Vec<String> = row.iter().map(|c| c.replace('|', "\\|")).collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    out
}

fn dot_id(node: &Node) -> String {
    format!("\"{}\"", node.to_string().replace('"', "\\\""))
}

/// A Graphviz digraph, one cluster per namespace, external ranges as boxes.
fn dot(m: &ConnectivityMap) -> String {
    let mut namespaces: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut externals = Vec::new();
    for node in m.entries().flat_map(|e| [e.src, e.dst]) {
        match node {
            Node::Workload { namespace, .. } => namespaces
                .entry(namespace.clone())
                .or_default()
                .push(dot_id(node)),
            Node::External(_) => externals.push(dot_id(node)),
        }
    }
    let mut out =
        String::from("digraph palisade {\n  rankdir=LR;\n  node [shape=ellipse, fontsize=10];\n");
    for (i, (ns, mut nodes)) in namespaces.into_iter().enumerate() {
        nodes.sort();
        nodes.dedup();
        let _ = writeln!(out, "  subgraph cluster_{i} {{\n    label=\"{ns}\";");
        for n in nodes {
            let _ = writeln!(out, "    {n};");
        }
        out.push_str("  }\n");
    }
    externals.sort();
    externals.dedup();
    for n in externals {
        let _ = writeln!(out, "  {n} [shape=box, style=dashed];");
    }
    for e in m.entries() {
        let _ = writeln!(
            out,
            "  {} -> {} [label=\"{}\"];",
            dot_id(e.src),
            dot_id(e.dst),
            e.conn
        );
    }
    out.push_str("}\n");
    out
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DiffFormat {
    #[default]
    Txt,
    Json,
    Csv,
    Md,
}

#[derive(Serialize)]
struct JsonDiff {
    #[serde(rename = "diff-type")]
    diff_type: &'static str,
    source: String,
    destination: String,
    ref1: String,
    ref2: String,
    /// Connections the new inventory allows and the old did not.
    added: String,
    /// Connections the old inventory allowed and the new does not.
    removed: String,
    #[serde(rename = "workloads-diff-info")]
    workloads_diff_info: String,
}

fn diff_row(e: &DiffEntry) -> JsonDiff {
    let text = |c: ConnSet| {
        if c.is_empty() {
            String::new()
        } else {
            c.to_string()
        }
    };
    JsonDiff {
        diff_type: e.change.as_str(),
        source: e.src.to_string(),
        destination: e.dst.to_string(),
        ref1: e.old.to_string(),
        ref2: e.new.to_string(),
        added: text(e.gained()),
        removed: text(e.lost()),
        workloads_diff_info: e.note.clone().unwrap_or_default(),
    }
}

/// The diff in `roxctl netpol diff`'s formats (txt, csv, md), or as JSON
/// with the gained and lost connections spelled out.
pub fn diff(entries: &[DiffEntry], format: DiffFormat) -> String {
    let rows: Vec<JsonDiff> = entries.iter().map(diff_row).collect();
    match format {
        DiffFormat::Json => json(&rows),
        DiffFormat::Txt => {
            let mut out = String::from("Connectivity diff:\n");
            for r in &rows {
                let _ = write!(
                    out,
                    "diff-type: {}, source: {}, destination: {}, dir1: {}, dir2: {}",
                    r.diff_type, r.source, r.destination, r.ref1, r.ref2
                );
                if !r.workloads_diff_info.is_empty() {
                    let _ = write!(out, ", workloads-diff-info: {}", r.workloads_diff_info);
                }
                out.push('\n');
            }
            out
        }
        DiffFormat::Csv | DiffFormat::Md => {
            let header = [
                "diff-type",
                "source",
                "destination",
                "dir1",
                "dir2",
                "workloads-diff-info",
            ];
            let table: Vec<[String; 6]> = rows
                .into_iter()
                .map(|r| {
                    [
                        r.diff_type.to_string(),
                        r.source,
                        r.destination,
                        r.ref1,
                        r.ref2,
                        r.workloads_diff_info,
                    ]
                })
                .collect();
            if format == DiffFormat::Csv {
                table_csv(&header, &table)
            } else {
                table_md(&header, &table)
            }
        }
    }
}
