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

pub fn table_md<const N: usize>(header: &[&str; N], rows: &[[String; N]]) -> String {
    let mut out = format!("| {} |\n", header.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(N));
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
    change: &'static str,
    src: String,
    dst: String,
    old: String,
    new: String,
    added: String,
    removed: String,
    note: Option<String>,
}

fn diff_row(e: &DiffEntry) -> JsonDiff {
    let added = e.gained();
    let removed = e.lost();
    JsonDiff {
        change: e.change.as_str(),
        src: e.src.to_string(),
        dst: e.dst.to_string(),
        old: e.old.to_string(),
        new: e.new.to_string(),
        added: if added.is_empty() {
            String::new()
        } else {
            added.to_string()
        },
        removed: if removed.is_empty() {
            String::new()
        } else {
            removed.to_string()
        },
        note: e.note.clone(),
    }
}

pub fn diff(entries: &[DiffEntry], format: DiffFormat) -> String {
    let rows: Vec<JsonDiff> = entries.iter().map(diff_row).collect();
    match format {
        DiffFormat::Json => json(&rows),
        DiffFormat::Txt => rows.iter().map(diff_line).collect(),
        DiffFormat::Csv | DiffFormat::Md => {
            let header = ["change", "src", "dst", "old", "new", "note"];
            let table: Vec<[String; 6]> = rows
                .into_iter()
                .map(|r| {
                    [
                        r.change.to_string(),
                        r.src,
                        r.dst,
                        r.old,
                        r.new,
                        r.note.unwrap_or_default(),
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

/// `added a => b : TCP 443`, `removed a => b : TCP 80`, or
/// `changed a => b : TCP 80 -> TCP 80,443 (+TCP 443)`.
fn diff_line(r: &JsonDiff) -> String {
    let mut line = match r.change {
        "added" => format!("added   {} => {} : {}", r.src, r.dst, r.new),
        "removed" => format!("removed {} => {} : {}", r.src, r.dst, r.old),
        _ => {
            let mut delta = Vec::new();
            if !r.added.is_empty() {
                delta.push(format!("+{}", r.added));
            }
            if !r.removed.is_empty() {
                delta.push(format!("-{}", r.removed));
            }
            format!(
                "changed {} => {} : {} -> {} ({})",
                r.src,
                r.dst,
                r.old,
                r.new,
                delta.join(" ")
            )
        }
    };
    if let Some(note) = &r.note {
        let _ = write!(line, " [{note}]");
    }
    line.push('\n');
    line
}
