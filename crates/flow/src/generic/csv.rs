//! RFC 4180 CSV, as much of it as flow exports need: comma-separated
//! fields, fields in double quotes may hold commas, newlines and doubled
//! quotes (`""`). A quote inside an unquoted field is taken literally, as
//! spreadsheet exports write them.

use std::ops::Range;

/// Where a record's text leaves the quoting state machine; a record is
/// complete when a line ends outside a quoted field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum QuoteState {
    FieldStart,
    Unquoted,
    Quoted,
    /// A quote inside a quoted field: the end of the field, or the first
    /// half of `""`.
    QuoteInQuoted,
}

impl QuoteState {
    /// The state after `text`, scanning from `self`.
    pub fn scan(self, text: &[u8]) -> QuoteState {
        text.iter().fold(self, |state, &byte| match (state, byte) {
            (QuoteState::FieldStart, b'"') => QuoteState::Quoted,
            (QuoteState::Quoted, b'"') => QuoteState::QuoteInQuoted,
            (QuoteState::QuoteInQuoted, b'"') => QuoteState::Quoted,
            (QuoteState::Quoted, _) => QuoteState::Quoted,
            (_, b',') => QuoteState::FieldStart,
            _ => QuoteState::Unquoted,
        })
    }

    /// Whether a line ending here ends the record.
    pub fn record_complete(self) -> bool {
        self != QuoteState::Quoted
    }
}

/// One record split into fields, unescaped into a reused buffer.
#[derive(Default)]
pub(crate) struct Fields {
    text: String,
    ranges: Vec<Range<usize>>,
}

impl Fields {
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    pub fn get(&self, index: usize) -> Option<&str> {
        self.ranges.get(index).map(|r| &self.text[r.clone()])
    }

    /// Splits `record` (which may contain newlines inside quoted fields).
    pub fn split(&mut self, record: &str) -> Result<(), String> {
        self.text.clear();
        self.ranges.clear();
        let bytes = record.as_bytes();
        let mut at = 0;
        loop {
            let start = self.text.len();
            at = if bytes.get(at) == Some(&b'"') {
                self.quoted(record, at + 1)?
            } else {
                let end = find(bytes, at, b',');
                self.text.push_str(&record[at..end]);
                end
            };
            self.ranges.push(start..self.text.len());
            if at >= bytes.len() {
                return Ok(());
            }
            at += 1; // the comma
        }
    }

    /// Reads a quoted field whose text starts at `at`; returns where the
    /// field ends (a comma or the end of the record).
    fn quoted(&mut self, record: &str, mut at: usize) -> Result<usize, String> {
        let bytes = record.as_bytes();
        loop {
            let quote = find(bytes, at, b'"');
            if quote == bytes.len() {
                return Err("a quoted field has no closing quote".to_string());
            }
            self.text.push_str(&record[at..quote]);
            if bytes.get(quote + 1) == Some(&b'"') {
                self.text.push('"');
                at = quote + 2;
                continue;
            }
            let after = quote + 1;
            return match bytes.get(after) {
                None | Some(b',') => Ok(after),
                Some(_) => Err(format!(
                    "text after the closing quote of a field (column {})",
                    after + 1
                )),
            };
        }
    }
}

fn find(bytes: &[u8], from: usize, wanted: u8) -> usize {
    bytes[from..]
        .iter()
        .position(|&b| b == wanted)
        .map_or(bytes.len(), |i| from + i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(record: &str) -> Result<Vec<String>, String> {
        let mut fields = Fields::default();
        fields.split(record)?;
        Ok((0..fields.len())
            .map(|i| fields.get(i).unwrap_or_default().to_string())
            .collect())
    }

    #[test]
    fn splits_quoted_and_plain_fields() {
        assert_eq!(split("a,b,,c").unwrap(), ["a", "b", "", "c"]);
        assert_eq!(
            split(r#""x, y","say ""hi""",plain"#).unwrap(),
            ["x, y", r#"say "hi""#, "plain"]
        );
        assert_eq!(split("\"two\nlines\",z").unwrap(), ["two\nlines", "z"]);
        assert_eq!(split("a,").unwrap(), ["a", ""]);
        assert_eq!(split("").unwrap(), [""]);
        assert_eq!(split("\"\"").unwrap(), [""]);
        assert_eq!(split(r#"6"2,x"#).unwrap(), [r#"6"2"#, "x"]);
    }

    #[test]
    fn rejects_broken_quoting() {
        assert!(split(r#""open,x"#).is_err());
        assert!(split(r#""a"b,x"#).is_err());
    }

    #[test]
    fn quote_state_finds_record_ends() {
        let start = QuoteState::FieldStart;
        assert!(start.scan(b"a,b").record_complete());
        assert!(!start.scan(b"a,\"b").record_complete());
        assert!(start.scan(b"a,\"b").scan(b"\nc\",d").record_complete());
        assert!(start.scan(br#"x"y,"#).record_complete());
        assert!(!start.scan(br#""a"""#).record_complete());
    }
}
