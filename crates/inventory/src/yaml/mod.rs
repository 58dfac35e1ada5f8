//! YAML read the way the Kubernetes tooling reads it.
//!
//! `kubectl` and the API machinery read manifests with goyaml, a port of
//! libyaml, and decode scalars by the type of the field they land in. This
//! module does the same in two steps: libyaml's own parsing algorithm (the
//! `libyaml-safer` port) composes each document into a [`Node`] tree that
//! keeps every scalar's original text, style and position; the typed decoder
//! in [`de`] then reads a field by its Rust type, so a plain `1.10` or `y` in
//! a string field stays the text `1.10` or `y`, while only the YAML 1.2 core
//! schema's `true`/`false` are booleans where the type is open.

mod compose;
pub mod de;
mod guard;
mod resolve;

pub use compose::{Composed, Problem, compose_documents};

/// Reads one document of Palisade's own files (audit and detector configs,
/// baselines) exactly as manifests are read. Errors say where:
/// `line 3 column 7: skip[0]: expected a string, found a mapping`.
pub fn from_str<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    let composed = compose_documents(text);
    if let Some(e) = composed.error {
        return Err(format!(
            "line {} column {}: YAML syntax error: {}",
            e.mark.line, e.mark.column, e.message
        ));
    }
    let mut documents = composed.documents.into_iter();
    let node = documents
        .next()
        .unwrap_or_else(|| Node::null(Mark { line: 1, column: 1 }));
    if documents.next().is_some() {
        return Err("expected one YAML document, found several".to_string());
    }
    de::from_node(&node).map(|(value, _)| value).map_err(|e| {
        let at = if e.mark.is_known() {
            format!("line {} column {}: ", e.mark.line, e.mark.column)
        } else {
            String::new()
        };
        format!("{at}{e}")
    })
}
pub use resolve::Resolved;

/// Position of a node in its text: 1-based line and column.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Mark {
    pub line: u32,
    pub column: u32,
}

impl Mark {
    /// Unknown position (nodes made from JSON values).
    pub const UNKNOWN: Mark = Mark { line: 0, column: 0 };

    pub fn is_known(self) -> bool {
        self.line > 0
    }
}

/// How a scalar was written; only plain scalars are resolved to non-strings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    Plain,
    SingleQuoted,
    DoubleQuoted,
    Literal,
    Folded,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Scalar {
    pub text: String,
    pub style: Style,
    /// The explicit tag, expanded (`tag:yaml.org,2002:str` for `!!str`).
    pub tag: Option<Box<str>>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Scalar(Scalar),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub value: Value,
    pub mark: Mark,
}

impl Node {
    pub fn scalar(text: impl Into<String>, style: Style, mark: Mark) -> Node {
        Node {
            value: Value::Scalar(Scalar {
                text: text.into(),
                style,
                tag: None,
            }),
            mark,
        }
    }

    pub fn null(mark: Mark) -> Node {
        Node::scalar("", Style::Plain, mark)
    }

    /// The scalar's value by the YAML 1.2 core schema (goyaml.v3's rules);
    /// `None` for collections.
    pub fn resolved(&self) -> Option<Resolved> {
        match &self.value {
            Value::Scalar(s) => Some(resolve::resolve(s)),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.resolved(), Some(Resolved::Null))
    }

    /// A scalar's text; `None` for collections and null.
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar(s) if !self.is_null() => Some(&s.text),
            _ => None,
        }
    }

    /// The value of `key` in a mapping (the last one, if the key repeats).
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entries()?
            .iter()
            .rev()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }

    pub fn entries(&self) -> Option<&[(Node, Node)]> {
        match &self.value {
            Value::Map(entries) => Some(entries),
            _ => None,
        }
    }

    /// What kind of node this is, for messages.
    pub fn describe(&self) -> &'static str {
        match &self.value {
            Value::Seq(_) => "a sequence",
            Value::Map(_) => "a mapping",
            Value::Scalar(_) => match self.resolved() {
                Some(Resolved::Null) => "null",
                Some(Resolved::Bool(_)) => "a boolean",
                Some(Resolved::Int(_)) | Some(Resolved::UInt(_)) => "an integer",
                Some(Resolved::Float(_)) => "a number",
                _ => "a string",
            },
        }
    }

    /// Builds a node from a JSON value (JSON input is read by serde_json,
    /// which is much faster; JSON positions are those of the document).
    pub fn from_json(value: serde_json::Value, mark: Mark) -> Node {
        use serde_json::Value as J;
        let value = match value {
            J::Null => return Node::null(mark),
            J::Bool(b) => return Node::scalar(b.to_string(), Style::Plain, mark),
            J::Number(n) => return Node::scalar(n.to_string(), Style::Plain, mark),
            J::String(s) => return Node::scalar(s, Style::DoubleQuoted, mark),
            J::Array(items) => Value::Seq(
                items
                    .into_iter()
                    .map(|v| Node::from_json(v, mark))
                    .collect(),
            ),
            J::Object(map) => Value::Map(
                map.into_iter()
                    .map(|(k, v)| {
                        (
                            Node::scalar(k, Style::DoubleQuoted, mark),
                            Node::from_json(v, mark),
                        )
                    })
                    .collect(),
            ),
        };
        Node { value, mark }
    }
}

#[cfg(test)]
mod tests {
    #[derive(Debug, PartialEq, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Config {
        skip: Vec<String>,
        window: Option<u32>,
    }

    #[test]
    fn own_files_are_read_like_manifests() {
        let c: Config = super::from_str("skip: [no, 1.10]\nwindow: 0x10\n").unwrap();
        assert_eq!(
            c,
            Config {
                skip: vec!["no".into(), "1.10".into()],
                window: Some(16)
            }
        );
        let empty = super::from_str::<Option<Config>>("# nothing\n").unwrap();
        assert_eq!(empty, None);
    }

    #[test]
    fn errors_say_where() {
        let e = super::from_str::<Config>("skip:\n  - {a: 1}\n").unwrap_err();
        assert_eq!(
            e,
            "line 2 column 5: skip[0]: expected a string, found a mapping"
        );
        let e = super::from_str::<Config>("skip: []\nother: 1\n").unwrap_err();
        assert!(
            e.starts_with("line 2 column 1: unknown field `other`"),
            "{e}"
        );
        let e = super::from_str::<Config>("skip: [\n").unwrap_err();
        assert!(e.contains("YAML syntax error"), "{e}");
        let e = super::from_str::<Config>("skip: []\n---\nskip: []\n").unwrap_err();
        assert!(e.contains("several"), "{e}");
    }
}
