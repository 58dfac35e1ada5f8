//! Splitting input text into Kubernetes objects: multi-document YAML, JSON,
//! and `List` kinds (`kind: List`, `PodList`, ...) flattened into their items,
//! each object tagged with the line where it starts.
//!
//! A file is cut at its `---` markers first, as kubectl's YAML reader does,
//! and each document is read as JSON when it starts like JSON (serde_json is
//! much faster) or else as YAML, so a `.yaml` file may mix both.

use std::sync::Arc;

use crate::diagnostics::{Diagnostic, Diagnostics};
use crate::model::Source;
use crate::yaml::{self, Mark, Node, Value};

/// One object of the input, not yet interpreted.
#[derive(Debug)]
pub struct RawObject {
    pub kind: String,
    pub value: Node,
    pub source: Source,
    /// Added to the nodes' line numbers to get the file's: a node's line is
    /// counted from the start of the piece of text it was parsed from.
    pub line_offset: usize,
}

impl RawObject {
    /// Where `mark` (a node of this object) is in the file; the object's
    /// own position when the node has none (JSON input).
    pub fn source_at(&self, mark: Mark) -> Source {
        if !mark.is_known() {
            return self.source.clone();
        }
        Source {
            file: self.source.file.clone(),
            line: self.line_offset + mark.line as usize,
            column: mark.column as usize,
        }
    }
}

/// Reads every object of `text`; what cannot be read becomes a diagnostic and
/// the rest is still returned.
pub fn read_objects(file: &Arc<str>, text: &str, diags: &mut Diagnostics) -> Vec<RawObject> {
    let pieces: Vec<Piece<'_>> = split_yaml_documents(text)
        .into_iter()
        .flat_map(|(first_line, chunk)| {
            if looks_like_json(chunk) {
                return vec![Piece::whole(first_line, chunk)];
            }
            list_pieces(first_line, chunk).unwrap_or_else(|| vec![Piece::whole(first_line, chunk)])
        })
        .collect();
    let mut objects = Vec::new();
    read_pieces(file, pieces, diags, &mut objects);
    objects
}

/// A document starting with `{` or `[` (after comments) is JSON, or YAML's
/// flow style; JSON is tried first and YAML if that fails.
fn looks_like_json(chunk: &str) -> bool {
    chunk
        .lines()
        .map(str::trim)
        .find(|l| !(l.is_empty() || l.starts_with('#')))
        .is_some_and(|l| l.starts_with('{') || l.starts_with('['))
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

fn is_blank_yaml(chunk: &str) -> bool {
    chunk.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#') || t.starts_with('%')
    })
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
fn read_pieces(
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
        read_piece(file, &piece, &mut part_diags, &mut objects);
        (objects, part_diags)
    });
    for (objects, part_diags) in parts {
        out.extend(objects);
        diags.extend(part_diags);
    }
}

/// Reads one piece: JSON if it looks like JSON and parses as such, YAML
/// otherwise.
fn read_piece(
    file: &Arc<str>,
    piece: &Piece<'_>,
    diags: &mut Diagnostics,
    out: &mut Vec<RawObject>,
) {
    if looks_like_json(&piece.text) {
        match read_json(file, piece.first_line, &piece.text) {
            Ok(objects) => {
                for (source, node) in objects {
                    flatten(node, source, 0, piece.item_kind.as_deref(), diags, out);
                }
                return;
            }
            Err(json_error) => {
                // YAML's flow style (`{kind: Pod}`) is not JSON but is valid.
                let mut yaml_diags = Diagnostics::default();
                let mut yaml_objects = Vec::new();
                read_yaml(file, piece, &mut yaml_diags, &mut yaml_objects);
                if yaml_diags.errors() == 0 {
                    diags.extend(yaml_diags);
                    out.extend(yaml_objects);
                } else {
                    diags.push(json_error);
                }
                return;
            }
        }
    }
    read_yaml(file, piece, diags, out);
}

fn read_yaml(
    file: &Arc<str>,
    piece: &Piece<'_>,
    diags: &mut Diagnostics,
    out: &mut Vec<RawObject>,
) {
    let line_offset = piece.first_line - 1;
    let at = |mark: Mark| Source {
        file: file.clone(),
        line: line_offset + mark.line as usize,
        column: mark.column as usize,
    };
    let composed = yaml::compose_documents(&piece.text);
    for warning in composed.warnings {
        let message = match warning.context {
            Some((what, mark)) => format!("{} ({what} at line {})", warning.message, at(mark).line),
            None => warning.message,
        };
        diags.push(Diagnostic::warning(at(warning.mark), message));
    }
    for node in composed.documents {
        if node.is_null() {
            continue;
        }
        let source = at(node.mark);
        flatten(
            node,
            source,
            line_offset,
            piece.item_kind.as_deref(),
            diags,
            out,
        );
    }
    if let Some(error) = composed.error {
        // Point at the construct that went wrong (an unclosed flow sequence
        // begins there); libyaml notices at the end of it.
        let diagnostic = match error.context {
            Some((what, mark)) => Diagnostic::error(
                at(mark),
                format!(
                    "YAML syntax error: {} {what} begun here (noticed at line {})",
                    error.message,
                    at(error.mark).line
                ),
            ),
            None => Diagnostic::error(
                at(error.mark),
                format!("YAML syntax error: {}", error.message),
            ),
        };
        diags.push(diagnostic);
    }
}

/// A text may hold several JSON values one after another (JSON lines or
/// concatenated `kubectl -o json` outputs). Any error fails the whole text,
/// since serde_json cannot resynchronise inside a broken value.
fn read_json(
    file: &Arc<str>,
    first_line: usize,
    text: &str,
) -> Result<Vec<(Source, Node)>, Diagnostic> {
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<serde_json::Value>();
    let mut values = Vec::new();
    loop {
        let start = stream.byte_offset();
        match stream.next() {
            None => return Ok(values),
            Some(Ok(value)) => {
                let line =
                    first_line - 1 + line_of_offset(text, start + leading_ws(&text[start..]));
                let source = Source {
                    file: file.clone(),
                    line,
                    column: 1,
                };
                values.push((source, Node::from_json(value, Mark::UNKNOWN)));
            }
            Some(Err(e)) => {
                let source = Source {
                    file: file.clone(),
                    line: first_line - 1 + e.line(),
                    column: e.column(),
                };
                return Err(Diagnostic::error(source, format!("JSON syntax error: {e}")));
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

/// `kind: List`, `PodList`, ... or a kind-less object that only has `items`.
fn is_list(node: &Node) -> bool {
    matches!(node.get("items").map(|n| &n.value), Some(Value::Seq(_)))
        && node
            .get("kind")
            .and_then(Node::as_str)
            .is_none_or(|k| k.ends_with("List"))
}

/// Turns a document into objects: a List into its items (recursively), a
/// sequence into its elements, anything else into one object.
/// `item_kind` is the kind implied by an enclosing typed list (`PodList`
/// → `Pod`) for objects that carry none.
fn flatten(
    node: Node,
    source: Source,
    line_offset: usize,
    item_kind: Option<&str>,
    diags: &mut Diagnostics,
    out: &mut Vec<RawObject>,
) {
    let item_source = |mark: Mark| {
        if mark.is_known() {
            Source {
                file: source.file.clone(),
                line: line_offset + mark.line as usize,
                column: mark.column as usize,
            }
        } else {
            source.clone()
        }
    };
    if is_list(&node) {
        let list_kind = node.get("kind").and_then(Node::as_str).unwrap_or("");
        let implied = match list_kind.strip_suffix("List") {
            Some(k) if !k.is_empty() => Some(k.to_string()),
            _ => item_kind.map(str::to_string),
        };
        let Value::Map(entries) = node.value else {
            return;
        };
        for (key, value) in entries {
            if key.as_str() != Some("items") {
                continue;
            }
            let Value::Seq(items) = value.value else {
                continue;
            };
            for item in items {
                let s = item_source(item.mark);
                flatten(item, s, line_offset, implied.as_deref(), diags, out);
            }
        }
        return;
    }
    match &node.value {
        Value::Seq(_) => {
            let Value::Seq(items) = node.value else {
                return;
            };
            for item in items {
                let s = item_source(item.mark);
                flatten(item, s, line_offset, item_kind, diags, out);
            }
        }
        Value::Map(_) => {
            let kind = node
                .get("kind")
                .and_then(Node::as_str)
                .filter(|k| !k.is_empty())
                .or(item_kind)
                .map(str::to_string);
            match kind {
                Some(kind) => out.push(RawObject {
                    kind,
                    value: node,
                    source,
                    line_offset,
                }),
                None => diags.push(Diagnostic::error(
                    source,
                    "not a Kubernetes object: no `kind` field".to_string(),
                )),
            }
        }
        Value::Scalar(_) => diags.push(Diagnostic::error(
            source,
            format!("not a Kubernetes object: {}", node.describe()),
        )),
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
        // libyaml notices at the end of the broken document; the
        // diagnostic points at where the unclosed sequence began.
        assert_eq!(d.source.line, 4, "{d}");
        assert!(d.message.contains("YAML syntax error"), "{d}");
        assert!(
            d.message
                .contains("flow sequence begun here (noticed at line 5)"),
            "{d}"
        );
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
            let name = o
                .value
                .get("metadata")
                .and_then(|m| m.get("name"))
                .and_then(|n| n.as_str());
            assert_eq!(name, Some(format!("p{i}").as_str()));
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
