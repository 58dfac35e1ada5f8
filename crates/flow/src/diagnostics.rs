//! What a reader could not read, with where and why, and what it skipped.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::Serialize;

/// Keep the first diagnostics only: a corrupt 5 GB capture must not produce
/// millions of messages. The rest are still counted.
pub const MAX_DIAGNOSTICS: usize = 100;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FlowDiagnostic {
    pub file: Arc<str>,
    /// 1-based packet number or line number.
    pub record: u64,
    /// Byte offset into the file, where the format is binary.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    pub message: String,
}

impl fmt::Display for FlowDiagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.offset {
            Some(offset) => write!(
                f,
                "{}: record {} (byte {offset}): {}",
                self.file, self.record, self.message
            ),
            None => write!(f, "{}:{}: {}", self.file, self.record, self.message),
        }
    }
}

/// A reader's account of one input: how much it read, what it skipped and
/// why. Nothing is dropped silently: every record is either turned into
/// flows, or counted under a skip reason.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReadStats {
    /// Records read (packets, lines).
    pub records: u64,
    /// Flows produced.
    pub flows: u64,
    /// Records not turned into flows, by reason ("ARP frame", "not JSON").
    pub skipped: BTreeMap<String, u64>,
    /// Errors and warnings, the first [`MAX_DIAGNOSTICS`] of them.
    pub diagnostics: Vec<FlowDiagnostic>,
    /// How many diagnostics were not kept.
    pub diagnostics_dropped: u64,
    /// The input ended in the middle of a record.
    pub truncated: bool,
}

impl ReadStats {
    pub fn skip(&mut self, reason: &str) {
        match self.skipped.get_mut(reason) {
            Some(n) => *n += 1,
            None => {
                self.skipped.insert(reason.to_string(), 1);
            }
        }
    }

    pub fn diagnose(&mut self, diagnostic: FlowDiagnostic) {
        if self.diagnostics.len() < MAX_DIAGNOSTICS {
            self.diagnostics.push(diagnostic);
        } else {
            self.diagnostics_dropped += 1;
        }
    }

    pub fn skipped_total(&self) -> u64 {
        self.skipped.values().sum()
    }

    /// Adds another input's account to this one.
    pub fn merge(&mut self, other: ReadStats) {
        self.records += other.records;
        self.flows += other.flows;
        for (reason, n) in other.skipped {
            *self.skipped.entry(reason).or_insert(0) += n;
        }
        for d in other.diagnostics {
            self.diagnose(d);
        }
        self.diagnostics_dropped += other.diagnostics_dropped;
        self.truncated |= other.truncated;
    }
}
