//! Splitting input text into Kubernetes objects: multi-document YAML, JSON,
//! and `List` kinds (`kind: List`, `PodList`, ...) flattened into their items,
//! each object tagged with the line where it starts.

use std::sync::Arc;

use serde_json::Value;
use serde_saphyr::Spanned;

use crate::diagnostics::{Diagnostic, Diagnostics};
use crate::model::Source;

/// One object of the input, not yet interpreted.
#[derive(Debug)]
pub struct RawObject {
    pub kind: String,
    pub value: Value,
    pub source: Source,
}

/// Input format of one text. JSON is also YAML, but `serde_json` is faster
/// and reports JSON errors in JSON terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextFormat {
    Yaml,
    Json,
}

impl TextFormat {
    /// By content: a document starting with `{` or `[` is JSON.
    pub fn sniff(text: &str) -> TextFormat {
        match text.trim_start().as_bytes().first() {
            Some(b'{') | Some(b'[') => TextFormat::Json,
            _ => TextFormat::Yaml,
        }
    }
}

/// Reads every object of `text`; what cannot be read becomes a diagnostic and
/// the rest is still returned.
pub fn read_objects(file: &Arc<str>, text: &str, diags: &mut Diagnostics) -> Vec<RawObject> {
    let mut objects = Vec::new();
    match TextFormat::sniff(text) {
        TextFormat::Json => read_json(file, text, diags, &mut objects),
        TextFormat::Yaml => {
            let pieces: Vec<Piece<'_>> = split_yaml_documents(text)
                .into_iter()
                .flat_map(|(first_line, chunk)| {
                    list_pieces(first_line, chunk)
                        .unwrap_or_else(|| vec![Piece::whole(first_line, chunk)])
                })
                .collect();
            read_yaml_pieces(file, pieces, diags, &mut objects);
        }
    }
    objects
}

/// Splits on `---` document markers at the start of a line, as kubectl's
/// YAML reader does, so that a syntax error in one document does not hide
/// the others. Returns each chunk with the 1-based line it starts on.
pub fn split_yaml_documents(text: &str) -> Vec<(usize, &str)> {
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut start_line = 1;
    let mut offset = 0;
    for (line_no, line) in (1..).zip(text.split_inclusive('\n')) {
        let body = line.trim_end_matches(['\n', '\r']);
        let is_marker = body == "---"
            || body.starts_with("--- ")
            || body.starts_with("---\t")
            || body == "..."
            || body.starts_with("... ");
        if is_marker {
            chunks.push((start_line, &text[start..offset]));
            // Content after `--- ` on the marker line belongs to the next
            // document (`--- !tag` or `--- {a: 1}`), so keep the line.
            let after = body.get(3..).unwrap_or("").trim();
            if body.starts_with("---") && !after.is_empty() {
                start = offset + 3;
                start_line = line_no;
            } else {
                start = offset + line.len();
                start_line = line_no + 1;
            }
        }
        offset += line.len();
    }
    chunks.push((start_line, &text[start..]));
    chunks.retain(|(_, chunk)| !is_blank_yaml(chunk));
    chunks
}

/// A document is reported at its first line of content, not at the blank
/// lines or comments before it.
fn first_content_line(first_line: usize, chunk: &str) -> usize {
    first_line
        + chunk
            .lines()
            .take_while(|l| {
                let t = l.trim();
                t.is_empty() || t.starts_with('#')
            })
            .count()
}

fn is_blank_yaml(chunk: &str) -> bool {
    chunk.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#') || t.starts_with('%')
    })
}

/// Parser limits for a document of `len` bytes. The alias and anchor limits
/// keep their defaults: they are what stops a "billion laughs" input. The
/// node and event limits grow with the input (without aliases a node needs
/// input bytes), because the defaults (250,000 nodes) reject a whole-cluster
/// `kubectl get -o yaml` dump, which is one document.
fn yaml_options(len: usize) -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_nodes = budget.max_nodes.max(len);
    budget.max_events = budget.max_events.max(len.saturating_mul(2));
    budget.max_total_scalar_bytes = budget.max_total_scalar_bytes.max(len);
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options
}

/// A unit of YAML parsing: a whole document, or a slice of the items of a
/// large List document.
#[derive(Clone, Debug)]
struct Piece<'a> {
    /// Line of the piece's first line in the file. For item slices this is
    /// the line before the first item, which the synthetic `items:` stands in.
    first_line: usize,
    text: std::borrow::Cow<'a, str>,
    /// Kind for items that carry none (items of a typed `PodList` from the
    /// raw API have no `kind`).
    item_kind: Option<String>,
}

impl<'a> Piece<'a> {
    fn whole(first_line: usize, text: &'a str) -> Piece<'a> {
        Piece {
            first_line,
            text: std::borrow::Cow::Borrowed(text),
            item_kind: None,
        }
    }
}

/// Items per slice when a List is split; small enough to balance the
/// threads, large enough that per-document overhead does not matter.
const ITEMS_PER_PIECE: usize = 64;
/// Lists with fewer items are parsed whole.
const MIN_ITEMS_TO_SPLIT: usize = 4 * ITEMS_PER_PIECE;

/// Splits a `kubectl get -o yaml` dump (one List document, items as
/// `- ` entries at column 0 under a column-0 `items:`) into slices of items
/// that parse independently. Returns None for anything else; the document
/// is then parsed whole, so an unusual layout costs speed, never results.
fn list_pieces(first_line: usize, chunk: &str) -> Option<Vec<Piece<'_>>> {
    let lines: Vec<&str> = chunk.split_inclusive('\n').collect();
    let items_at = lines.iter().position(|l| l.trim_end() == "items:")?;
    let mut starts = Vec::new();
    let mut end = lines.len();
    for (i, line) in lines.iter().enumerate().skip(items_at + 1) {
        if line.starts_with("- ") || line.trim_end() == "-" {
            starts.push(i);
        } else if !(line.starts_with(' ') || line.starts_with('#') || line.trim().is_empty()) {
            end = i;
            break;
        }
    }
    if starts.len() < MIN_ITEMS_TO_SPLIT || starts[0] != items_at + 1 {
        return None;
    }
    let list_kind = lines
        .iter()
        .filter(|l| !(l.starts_with(' ') || l.starts_with('-')))
        .find_map(|l| l.trim_end().strip_prefix("kind: "))
        .map(|k| k.trim_matches(['"', '\''].as_ref()).to_string());
    if list_kind.as_deref().is_some_and(|k| !k.ends_with("List")) {
        return None;
    }
    let item_kind = list_kind
        .as_deref()
        .and_then(|k| k.strip_suffix("List"))
        .filter(|k| !k.is_empty())
        .map(str::to_string);
    let pieces = starts
        .chunks(ITEMS_PER_PIECE)
        .enumerate()
        .map(|(n, group)| {
            let from = group[0];
            let to = starts
                .get((n + 1) * ITEMS_PER_PIECE)
                .copied()
                .unwrap_or(end);
            let mut text = String::from("items:\n");
            lines[from..to].iter().for_each(|l| text.push_str(l));
            Piece {
                first_line: first_line + from - 1,
                text: std::borrow::Cow::Owned(text),
                item_kind: item_kind.clone(),
            }
        })
        .collect();
    Some(pieces)
}

/// Pieces are independent, so large inputs are parsed on all cores.
fn read_yaml_pieces(
    file: &Arc<str>,
    pieces: Vec<Piece<'_>>,
    diags: &mut Diagnostics,
    out: &mut Vec<RawObject>,
) {
    // A piece is one document or ITEMS_PER_PIECE list items: worth a thread
    // from a handful on.
    let parts = crate::parallel::map_in_order(pieces, 8, |piece| {
        let mut objects = Vec::new();
        let mut part_diags = Diagnostics::default();
        read_yaml_document(
            file,
            piece.first_line,
            &piece.text,
            piece.item_kind.as_deref(),
            &mut part_diags,
            &mut objects,
        );
        (objects, part_diags)
    });
    for (objects, part_diags) in parts {
        out.extend(objects);
        diags.extend(part_diags);
    }
}

fn read_yaml_document(
    file: &Arc<str>,
    first_line: usize,
    chunk: &str,
    item_kind: Option<&str>,
    diags: &mut Diagnostics,
    out: &mut Vec<RawObject>,
) {
    let doc_source = Source {
        file: file.clone(),
        line: first_content_line(first_line, chunk),
        column: 1,
    };
    let doc: YamlDocument =
        match serde_saphyr::from_str_with_options(chunk, yaml_options(chunk.len())) {
            Ok(v) => v,
            Err(e) => {
                diags.push(yaml_error(file, first_line, &e, "YAML syntax error"));
                return;
            }
        };
    let item_lines: Vec<usize> = doc
        .item_lines
        .iter()
        .map(|l| first_line + l.saturating_sub(1))
        .collect();
    if !doc.value.is_null() {
        flatten(doc.value, doc_source, &item_lines, item_kind, diags, out);
    }
}

/// A YAML document as a JSON value, plus the line of each element of a
/// top-level `items` sequence, read in the same pass: `kubectl get -o
/// yaml` dumps are one big List, and their items need their own lines.
struct YamlDocument {
    value: Value,
    item_lines: Vec<usize>,
}

impl<'de> serde::Deserialize<'de> for YamlDocument {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DocVisitor;
        impl<'de> serde::de::Visitor<'de> for DocVisitor {
            type Value = YamlDocument;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a YAML document")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<YamlDocument, A::Error> {
                let mut object = serde_json::Map::new();
                let mut item_lines = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    let value = if key == "items" {
                        let items: Option<Vec<Spanned<Value>>> = map.next_value()?;
                        match items {
                            Some(items) => {
                                item_lines =
                                    items.iter().map(|s| s.referenced.line() as usize).collect();
                                Value::Array(items.into_iter().map(|s| s.value).collect())
                            }
                            None => Value::Null,
                        }
                    } else {
                        map.next_value()?
                    };
                    object.insert(key, value);
                }
                Ok(YamlDocument {
                    value: Value::Object(object),
                    item_lines,
                })
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                seq: A,
            ) -> Result<YamlDocument, A::Error> {
                let value = serde::de::Visitor::visit_seq(ValueVisitor, seq)?;
                Ok(YamlDocument {
                    value,
                    item_lines: Vec::new(),
                })
            }
            fn visit_unit<E>(self) -> Result<YamlDocument, E> {
                Ok(YamlDocument {
                    value: Value::Null,
                    item_lines: Vec::new(),
                })
            }
            fn visit_none<E>(self) -> Result<YamlDocument, E> {
                Ok(YamlDocument {
                    value: Value::Null,
                    item_lines: Vec::new(),
                })
            }
            fn visit_bool<E>(self, v: bool) -> Result<YamlDocument, E> {
                Ok(YamlDocument {
                    value: Value::Bool(v),
                    item_lines: Vec::new(),
                })
            }
            fn visit_i64<E>(self, v: i64) -> Result<YamlDocument, E> {
                Ok(YamlDocument {
                    value: Value::from(v),
                    item_lines: Vec::new(),
                })
            }
            fn visit_u64<E>(self, v: u64) -> Result<YamlDocument, E> {
                Ok(YamlDocument {
                    value: Value::from(v),
                    item_lines: Vec::new(),
                })
            }
            fn visit_f64<E>(self, v: f64) -> Result<YamlDocument, E> {
                Ok(YamlDocument {
                    value: Value::from(v),
                    item_lines: Vec::new(),
                })
            }
            fn visit_str<E>(self, v: &str) -> Result<YamlDocument, E> {
                Ok(YamlDocument {
                    value: Value::from(v),
                    item_lines: Vec::new(),
                })
            }
        }
        deserializer.deserialize_any(DocVisitor)
    }
}

/// Borrows serde_json's own visitor for non-mapping documents.
struct ValueVisitor;

impl<'de> serde::de::Visitor<'de> for ValueVisitor {
    type Value = Value;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a sequence")
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(v) = seq.next_element::<Value>()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }
}

fn yaml_error(
    file: &Arc<str>,
    first_line: usize,
    e: &serde_saphyr::Error,
    what: &str,
) -> Diagnostic {
    let (line, column) = e
        .location()
        .filter(|l| l.line() > 0)
        .map(|l| (first_line + l.line() as usize - 1, l.column() as usize))
        .unwrap_or((first_line, 1));
    let source = Source {
        file: file.clone(),
        line,
        column,
    };
    // The error's Display may include a rendered snippet; the first line is
    // the reason.
    let text = e.to_string();
    let reason = text.lines().next().unwrap_or("unknown error").trim();
    Diagnostic::error(source, format!("{what}: {reason}"))
}

/// `kind: List`, `PodList`, ... or a kind-less object that only has `items`.
fn is_list_map(map: &serde_json::Map<String, Value>) -> bool {
    map.get("items").is_some_and(Value::is_array)
        && map
            .get("kind")
            .and_then(Value::as_str)
            .is_none_or(|k| k.ends_with("List"))
}

fn read_json(file: &Arc<str>, text: &str, diags: &mut Diagnostics, out: &mut Vec<RawObject>) {
    // A file may hold several JSON values one after another (JSON lines or
    // concatenated `kubectl -o json` outputs).
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    loop {
        let start = stream.byte_offset();
        match stream.next() {
            None => break,
            Some(Ok(value)) => {
                let line = line_of_offset(text, start + leading_ws(&text[start..]));
                let source = Source {
                    file: file.clone(),
                    line,
                    column: 1,
                };
                flatten(value, source, &[], None, diags, out);
            }
            Some(Err(e)) => {
                let source = Source {
                    file: file.clone(),
                    line: e.line(),
                    column: e.column(),
                };
                diags.push(Diagnostic::error(source, format!("JSON syntax error: {e}")));
                // serde_json cannot resynchronise inside a broken value.
                break;
            }
        }
    }
}

fn leading_ws(s: &str) -> usize {
    s.len() - s.trim_start().len()
}

fn line_of_offset(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// Turns a document into objects: a List into its items (recursively), a
/// JSON array into its elements, anything else into one object.
/// `item_kind` is the kind implied by an enclosing typed list (`PodList`
/// → `Pod`) for objects that carry none.
fn flatten(
    value: Value,
    source: Source,
    item_lines: &[usize],
    item_kind: Option<&str>,
    diags: &mut Diagnostics,
    out: &mut Vec<RawObject>,
) {
    match value {
        Value::Array(values) => {
            for v in values {
                flatten(v, source.clone(), &[], item_kind, diags, out);
            }
        }
        Value::Object(mut map) if is_list_map(&map) => {
            let Some(Value::Array(items)) = map.remove("items") else {
                return;
            };
            let list_kind = map.get("kind").and_then(Value::as_str).unwrap_or("");
            let implied = match list_kind.strip_suffix("List") {
                Some(k) if !k.is_empty() => Some(k),
                _ => item_kind,
            };
            for (i, item) in items.into_iter().enumerate() {
                let line = item_lines.get(i).copied().unwrap_or(source.line);
                let item_source = Source {
                    line,
                    ..source.clone()
                };
                flatten(item, item_source, &[], implied, diags, out);
            }
        }
        Value::Object(mut map) if !map.contains_key("kind") && item_kind.is_some() => {
            let kind = item_kind.unwrap_or_default();
            map.insert("kind".into(), Value::String(kind.to_string()));
            flatten(Value::Object(map), source, &[], None, diags, out);
        }
        Value::Object(map) => match map.get("kind").and_then(Value::as_str) {
            Some(kind) if !kind.is_empty() => out.push(RawObject {
                kind: kind.to_string(),
                value: Value::Object(map),
                source,
            }),
            _ => diags.push(Diagnostic::error(
                source,
                "not a Kubernetes object: no `kind` field".to_string(),
            )),
        },
        other => diags.push(Diagnostic::error(
            source,
            format!("not a Kubernetes object: a {} value", json_type(&other)),
        )),
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "sequence",
        Value::Object(_) => "mapping",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> (Vec<RawObject>, Diagnostics) {
        let mut diags = Diagnostics::default();
        let objects = read_objects(&Arc::from("t.yaml"), text, &mut diags);
        (objects, diags)
    }

    #[test]
    fn splits_multi_document_yaml_with_lines() {
        let text =
            "kind: Namespace\nmetadata: {name: a}\n---\n# c\nkind: Pod\nmetadata: {name: p}\n---\n";
        let (objects, diags) = read(text);
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(objects.len(), 2);
        assert_eq!(objects[0].source.line, 1);
        assert_eq!(objects[1].kind, "Pod");
        assert_eq!(objects[1].source.line, 5);
    }

    #[test]
    fn bad_document_does_not_hide_the_others() {
        let text = "kind: Pod\nmetadata: {name: a}\n---\nkind: [unclosed\n---\nkind: Pod\nmetadata: {name: b}\n";
        let (objects, diags) = read(text);
        assert_eq!(objects.len(), 2);
        assert_eq!(diags.len(), 1);
        let d = &diags.items()[0];
        assert_eq!(d.source.line, 4, "{d}");
        assert!(d.message.contains("YAML syntax error"), "{d}");
    }

    #[test]
    fn lists_are_flattened_with_item_lines() {
        let text = "apiVersion: v1\nkind: List\nitems:\n- kind: Pod\n  metadata: {name: a}\n- kind: PodList\n  items:\n  - kind: Pod\n    metadata: {name: b}\n";
        let (objects, diags) = read(text);
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(objects.len(), 2);
        assert_eq!(objects[0].source.line, 4);
        assert_eq!(objects[1].kind, "Pod");
    }

    #[test]
    fn json_values_and_arrays() {
        let text = "{\"kind\":\"Pod\",\"metadata\":{\"name\":\"a\"}}\n\n{\"kind\":\"List\",\"items\":[{\"kind\":\"Service\"}]}";
        let mut diags = Diagnostics::default();
        let objects = read_objects(&Arc::from("t.json"), text, &mut diags);
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(objects.len(), 2);
        assert_eq!(objects[1].source.line, 3);
    }

    #[test]
    fn objects_without_kind_are_reported() {
        let (objects, diags) = read("metadata: {name: x}\n---\n42\n");
        assert!(objects.is_empty());
        assert_eq!(diags.len(), 2);
        assert_eq!(diags.items()[1].source.line, 3);
    }

    fn dump(items: usize, list_kind: &str, with_kind: bool) -> String {
        let mut text = String::from("apiVersion: v1\nitems:\n");
        for i in 0..items {
            if with_kind {
                text.push_str(&format!("- kind: Pod\n  metadata:\n    name: p{i}\n"));
            } else {
                text.push_str(&format!("- metadata:\n    name: p{i}\n"));
            }
        }
        text.push_str(&format!(
            "kind: {list_kind}\nmetadata:\n  resourceVersion: \"\"\n"
        ));
        text
    }

    #[test]
    fn large_list_dumps_are_split_with_exact_item_lines() {
        let text = dump(1000, "List", true);
        let pieces = list_pieces(1, &text).expect("a kubectl dump splits");
        assert_eq!(pieces.len(), 1000usize.div_ceil(ITEMS_PER_PIECE));
        let (objects, diags) = read(&text);
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(objects.len(), 1000);
        // Item i starts on line 3 + 3i.
        for (i, o) in objects.iter().enumerate() {
            assert_eq!(o.source.line, 3 + 3 * i, "item {i}");
            assert_eq!(o.value["metadata"]["name"], format!("p{i}"));
        }
    }

    #[test]
    fn typed_list_items_take_the_lists_kind() {
        for items in [3, 1000] {
            let (objects, diags) = read(&dump(items, "PodList", false));
            assert!(diags.is_empty(), "{diags:?}");
            assert_eq!(objects.len(), items);
            assert!(objects.iter().all(|o| o.kind == "Pod"));
        }
    }

    #[test]
    fn marker_with_inline_content() {
        let chunks = split_yaml_documents("--- {kind: Pod}\n--- \nkind: Service\n");
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[0], (1, " {kind: Pod}\n"));
        assert_eq!(chunks[1].0, 3);
    }
}
