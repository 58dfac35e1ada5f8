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
