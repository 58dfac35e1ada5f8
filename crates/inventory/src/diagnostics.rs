//! Diagnostics: what could not be read or understood, with where and why.

use std::fmt;

use crate::model::Source;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Read as Kubernetes tooling reads it, but worth knowing (a number
    /// taken as a label's text); listed with `-v` only.
    Note,
    Warning,
    Error,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub source: Source,
    pub message: String,
}

impl Diagnostic {
    pub fn error(source: Source, message: String) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            source,
            message,
        }
    }

    pub fn note(source: Source, message: String) -> Diagnostic {
        Diagnostic {
            severity: Severity::Note,
            source,
            message,
        }
    }

    pub fn warning(source: Source, message: String) -> Diagnostic {
        Diagnostic {
            severity: Severity::Warning,
            source,
            message,
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Note => "note",
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        write!(f, "{}: {level}: {}", self.source, self.message)
    }
}

#[derive(Clone, Debug, Default)]
pub struct Diagnostics {
    items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn push(&mut self, d: Diagnostic) {
        self.items.push(d);
    }

    pub fn items(&self) -> &[Diagnostic] {
        &self.items
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn extend(&mut self, other: Diagnostics) {
        self.items.extend(other.items);
    }

    /// Warnings and errors: what `--strict` refuses and what is shown
    /// without `-v`.
    pub fn problems(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items.iter().filter(|d| d.severity > Severity::Note)
    }

    pub fn notes(&self) -> usize {
        self.items
            .iter()
            .filter(|d| d.severity == Severity::Note)
            .count()
    }

    pub fn errors(&self) -> usize {
        self.items
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count()
    }
}
