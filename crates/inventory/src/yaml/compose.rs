//! Events → [`Node`] trees, one per document: anchors and aliases, merge
//! keys (`<<`), and repeated keys (the last one wins, with a warning, as
//! `kubectl apply` does with its field-validation warning).

use std::collections::{HashMap, HashSet};

use libyaml_safer::{EventData, Parser, ScalarStyle};

use super::{Mark, Node, Scalar, Style, Value};

/// A position and what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub mark: Mark,
    pub message: String,
    /// Where the construct the problem is in began (libyaml's context:
    /// "while parsing a flow sequence" at ...).
    pub context: Option<(&'static str, Mark)>,
}

/// What one text composed into.
#[derive(Debug, Default)]
pub struct Composed {
    pub documents: Vec<Node>,
    /// A syntax error ends the text (libyaml cannot resynchronise); the
    /// documents before it are still returned.
    pub error: Option<Problem>,
    pub warnings: Vec<Problem>,
}

/// Budget of nodes that aliases may add, against "billion laughs" inputs:
/// without aliases a node needs input bytes, so a budget proportional to
/// the input admits every honest document.
fn alias_budget(len: usize) -> usize {
    len.saturating_mul(4).max(100_000)
}

/// Composes every document of `text`.
pub fn compose_documents(text: &str) -> Composed {
    super::guard::catch(|| compose_unguarded(text)).unwrap_or_else(|failure| Composed {
        documents: Vec::new(),
        error: Some(Problem {
            mark: Mark { line: 1, column: 1 },
            message: format!("the YAML parser failed on this document ({failure})"),
            context: None,
        }),
        warnings: Vec::new(),
    })
}

fn compose_unguarded(text: &str) -> Composed {
    // libyaml-safer 0.3 panics on a block scalar that ends the input without
    // a line break (C libyaml reads nothing there). Such input gets a final
    // line break, and the one block scalar that then reaches the end of the
    // input gives it back, so values are as libyaml reads the original.
    let owned;
    let (input, appended_break_at) = if text.is_empty() || text.ends_with(['\n', '\r']) {
        (text, None)
    } else {
        owned = format!("{text}\n");
        (owned.as_str(), Some(text.len() as u64))
    };
    let mut composer = Composer {
        anchors: HashMap::new(),
        alias_budget: alias_budget(text.len()),
        out: Composed::default(),
        stack: Vec::new(),
    };
    let mut bytes = input.as_bytes();
    let mut parser = Parser::new();
    parser.set_input_string(&mut bytes);
    loop {
        match parser.parse() {
            Ok(mut event) => {
                if let Some(end) = appended_break_at {
                    give_back_appended_break(&mut event, end);
                }
                match composer.event(event.data, to_mark(event.start_mark)) {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(problem) => {
                        composer.out.error = Some(problem);
                        break;
                    }
                }
            }
            Err(e) => {
                composer.out.error = Some(parse_error(&e));
                break;
            }
        }
    }
    composer.out
}

/// A block scalar that ran into the line break appended at `end` gives it
/// back (clip and keep chomping took it as the final line break).
fn give_back_appended_break(event: &mut libyaml_safer::Event, end: u64) {
    if let EventData::Scalar { value, style, .. } = &mut event.data
        && matches!(style, ScalarStyle::Literal | ScalarStyle::Folded)
        && event.end_mark.index > end
        && value.ends_with('\n')
    {
        value.pop();
    }
}

struct Composer {
    anchors: HashMap<String, Node>,
    alias_budget: usize,
    out: Composed,
    stack: Vec<Frame>,
}

/// A collection being composed.
struct Frame {
    value: Value,
    mark: Mark,
    anchor: Option<String>,
    /// A mapping's key waiting for its value.
    key: Option<Node>,
}

impl Composer {
    /// Takes one event; false at the end of the stream.
    fn event(&mut self, data: EventData, mark: Mark) -> Result<bool, Problem> {
        let (node, anchor) = match data {
            EventData::StreamEnd => return Ok(false),
            EventData::StreamStart { .. } | EventData::DocumentStart { .. } => return Ok(true),
            EventData::DocumentEnd { .. } => {
                self.anchors.clear();
                return Ok(true);
            }
            EventData::Alias { anchor } => (self.alias(&anchor, mark)?, None),
            EventData::Scalar {
                anchor,
                tag,
                value,
                style,
                ..
            } => {
                let scalar = Scalar {
                    text: value,
                    style: scalar_style(style),
                    tag: tag.map(String::into_boxed_str),
                };
                (
                    Node {
                        value: Value::Scalar(scalar),
                        mark,
                    },
                    anchor,
                )
            }
            EventData::SequenceStart { anchor, .. } => {
                self.stack
                    .push(Frame::new(Value::Seq(Vec::new()), mark, anchor));
                return Ok(true);
            }
            EventData::MappingStart { anchor, .. } => {
                self.stack
                    .push(Frame::new(Value::Map(Vec::new()), mark, anchor));
                return Ok(true);
            }
            EventData::SequenceEnd | EventData::MappingEnd => {
                let Some(frame) = self.stack.pop() else {
                    return Ok(true);
                };
                let anchor = frame.anchor.clone();
                (frame.finish(&mut self.out.warnings), anchor)
            }
        };
        if let Some(name) = anchor {
            self.anchors.insert(name, node.clone());
        }
        match self.stack.last_mut() {
            Some(parent) => parent.push(node),
            None => self.out.documents.push(node),
        }
        Ok(true)
    }

    fn alias(&mut self, anchor: &str, mark: Mark) -> Result<Node, Problem> {
        let Some(target) = self.anchors.get(anchor) else {
            return Err(Problem {
                mark,
                message: format!("unknown anchor {anchor:?} referenced"),
                context: None,
            });
        };
        let size = node_count(target);
        if size > self.alias_budget {
            return Err(Problem {
                mark,
                message: "aliases expand to too many nodes (a \"billion laughs\" document?)"
                    .to_string(),
                context: None,
            });
        }
        self.alias_budget -= size;
        Ok(target.clone())
    }
}

impl Frame {
    fn new(value: Value, mark: Mark, anchor: Option<String>) -> Frame {
        Frame {
            value,
            mark,
            anchor,
            key: None,
        }
    }

    fn push(&mut self, node: Node) {
        match &mut self.value {
            Value::Seq(items) => items.push(node),
            Value::Map(entries) => match self.key.take() {
                Some(key) => entries.push((key, node)),
                None => self.key = Some(node),
            },
            Value::Scalar(_) => {}
        }
    }

    fn finish(self, warnings: &mut Vec<Problem>) -> Node {
        let value = match self.value {
            Value::Map(entries) => Value::Map(resolve_keys(entries, warnings)),
            other => other,
        };
        Node {
            value,
            mark: self.mark,
        }
    }
}

fn is_merge_key(key: &Node) -> bool {
    match &key.value {
        Value::Scalar(s) => {
            s.text == "<<"
                && (s.style == Style::Plain || s.tag.as_deref() == Some("tag:yaml.org,2002:merge"))
        }
        _ => false,
    }
}

/// Expands merge keys (explicit keys win over merged ones, and earlier
/// merged mappings over later ones) and keeps the last of repeated keys.
fn resolve_keys(entries: Vec<(Node, Node)>, warnings: &mut Vec<Problem>) -> Vec<(Node, Node)> {
    let has_merge = entries.iter().any(|(k, _)| is_merge_key(k));
    let mut explicit = Vec::with_capacity(entries.len());
    let mut merged = Vec::new();
    for (key, value) in entries {
        if has_merge && is_merge_key(&key) {
            match value.value {
                Value::Map(m) => merged.extend(m),
                Value::Seq(items) => {
                    for item in items {
                        match item.value {
                            Value::Map(m) => merged.extend(m),
                            _ => warnings.push(Problem {
                                mark: item.mark,
                                message: "merge key value is not a mapping; ignored".into(),
                                context: None,
                            }),
                        }
                    }
                }
                _ => warnings.push(Problem {
                    mark: value.mark,
                    message: "merge key value is not a mapping; ignored".into(),
                    context: None,
                }),
            }
        } else {
            explicit.push((key, value));
        }
    }
    let mut result = last_of_repeated_keys(explicit, warnings);
    if !merged.is_empty() {
        let mut present: HashSet<String> = result.iter().filter_map(|(k, _)| key_text(k)).collect();
        for (key, value) in merged {
            if let Some(text) = key_text(&key)
                && present.insert(text)
            {
                result.push((key, value));
            }
        }
    }
    result
}

fn key_text(key: &Node) -> Option<String> {
    match &key.value {
        Value::Scalar(s) => Some(s.text.clone()),
        _ => None,
    }
}

fn last_of_repeated_keys(
    entries: Vec<(Node, Node)>,
    warnings: &mut Vec<Problem>,
) -> Vec<(Node, Node)> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut repeated = Vec::new();
    for (i, (key, _)) in entries.iter().enumerate() {
        if let Value::Scalar(s) = &key.value
            && let Some(first) = seen.insert(&s.text, i)
        {
            repeated.push((first, i));
        }
    }
    if repeated.is_empty() {
        return entries;
    }
    let mut dropped = HashSet::new();
    for (earlier, later) in repeated {
        let (key, _) = &entries[later];
        let first = entries[earlier].0.mark;
        warnings.push(Problem {
            mark: key.mark,
            message: format!(
                "key {:?} is repeated; the last value is used",
                key.as_str().unwrap_or("")
            ),
            context: Some(("the first is", first)),
        });
        dropped.insert(earlier);
    }
    entries
        .into_iter()
        .enumerate()
        .filter(|(i, _)| !dropped.contains(i))
        .map(|(_, e)| e)
        .collect()
}

fn node_count(node: &Node) -> usize {
    match &node.value {
        Value::Scalar(_) => 1,
        Value::Seq(items) => 1 + items.iter().map(node_count).sum::<usize>(),
        Value::Map(entries) => {
            1 + entries
                .iter()
                .map(|(k, v)| node_count(k) + node_count(v))
                .sum::<usize>()
        }
    }
}

fn scalar_style(style: ScalarStyle) -> Style {
    match style {
        ScalarStyle::SingleQuoted => Style::SingleQuoted,
        ScalarStyle::DoubleQuoted => Style::DoubleQuoted,
        ScalarStyle::Literal => Style::Literal,
        ScalarStyle::Folded => Style::Folded,
        _ => Style::Plain,
    }
}

fn to_mark(mark: libyaml_safer::Mark) -> Mark {
    Mark {
        line: u32::try_from(mark.line + 1).unwrap_or(u32::MAX),
        column: u32::try_from(mark.column + 1).unwrap_or(u32::MAX),
    }
}

fn parse_error(e: &libyaml_safer::Error) -> Problem {
    let mark = e
        .problem_mark()
        .map(to_mark)
        .unwrap_or(Mark { line: 1, column: 1 });
    let context = e.context().zip(e.context_mark().map(to_mark));
    Problem {
        mark,
        message: e.problem().to_string(),
        context,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Node {
        let composed = compose_documents(text);
        assert!(composed.error.is_none(), "{:?}", composed.error);
        assert_eq!(composed.documents.len(), 1);
        composed.documents.into_iter().next().unwrap()
    }

    #[test]
    fn anchors_aliases_and_merge_keys() {
        let doc = one("base: &b {app: web, tier: x}\nlabels:\n  <<: *b\n  tier: front\n");
        let labels = doc.get("labels").unwrap();
        assert_eq!(labels.get("app").unwrap().as_str(), Some("web"));
        assert_eq!(labels.get("tier").unwrap().as_str(), Some("front"));
        assert_eq!(labels.entries().unwrap().len(), 2);
    }

    #[test]
    fn merge_of_a_list_prefers_the_first() {
        let doc = one("a: &a {k: 1}\nb: &b {k: 2, j: 3}\nc:\n  <<: [*a, *b]\n");
        let c = doc.get("c").unwrap();
        assert_eq!(c.get("k").unwrap().as_str(), Some("1"));
        assert_eq!(c.get("j").unwrap().as_str(), Some("3"));
    }

    #[test]
    fn repeated_keys_keep_the_last_with_a_warning() {
        let composed = compose_documents("a: 1\nb: 2\na: 3\n");
        let doc = &composed.documents[0];
        assert_eq!(doc.get("a").unwrap().as_str(), Some("3"));
        assert_eq!(doc.entries().unwrap().len(), 2);
        assert_eq!(composed.warnings.len(), 1);
        assert_eq!(composed.warnings[0].mark.line, 3);
    }

    #[test]
    fn alias_bombs_are_refused() {
        let mut text = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        let mut prev = 'a';
        for name in 'b'..='k' {
            text.push_str(&format!(
                "{name}: &{name} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
            ));
            prev = name;
        }
        let composed = compose_documents(&text);
        let error = composed.error.expect("refused");
        assert!(error.message.contains("too many nodes"), "{error:?}");
    }

    #[test]
    fn syntax_errors_have_positions() {
        let composed = compose_documents("a: 1\nb: [unclosed\n");
        let error = composed.error.expect("an error");
        assert!(error.mark.line >= 2, "{error:?}");
    }

    #[test]
    fn block_scalar_at_the_end_of_input_without_a_line_break() {
        for (text, expected) in [
            ("a: |\n  text", "text"),
            ("a: |+\n  text", "text"),
            ("a: |-\n  text", "text"),
            ("a: >\n  two\n  words", "two words"),
            ("a: |\n  text\n", "text\n"),
            ("a: |\n  x\nb: |\n  y", "x\n"),
        ] {
            let doc = one(text);
            assert_eq!(doc.get("a").unwrap().as_str(), Some(expected), "{text:?}");
        }
        assert_eq!(
            one("a: |\n  x\nb: |\n  y").get("b").unwrap().as_str(),
            Some("y")
        );
    }

    #[test]
    fn a_parser_panic_is_an_error_for_the_document() {
        // libyaml-safer 0.3 panics on a tag followed by `,` in a flow
        // sequence; libyaml itself accepts it.
        let composed = compose_documents("a: [!t,x]\n");
        let error = composed.error.expect("an error, not a panic");
        assert!(error.message.contains("YAML parser failed"), "{error:?}");
    }

    #[test]
    fn unknown_alias_is_an_error() {
        let composed = compose_documents("a: *nope\n");
        assert!(composed.error.unwrap().message.contains("unknown anchor"));
    }
}
