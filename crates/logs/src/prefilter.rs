//! Finding, in a block of log lines, the few lines some rule could fire
//! on, at the speed of a literal search rather than a regex per line.
//!
//! The gate's patterns apply to a line's message (or a field within it).
//! Two supersets of their matches are searched over whole blocks:
//!
//! - each pattern with its assertions dropped (an anchor of a message is
//!   no anchor in a block, and a Unicode word boundary would stop the fast
//!   automaton on non-ASCII text; dropping one only adds matches);
//! - faster, when every pattern has a finite set of literals one of which
//!   starts each of its matches: those literals, lowercased, searched in a
//!   lowercased copy of the block, a few dozen at a time so that the
//!   regex engine's vectorised literal search (Teddy) applies. More than
//!   that in one search falls back to an automaton that reads one byte at
//!   a time, several times slower.
//!
//! A line holding a match holds one of the places found; the line is then
//! asked about exactly as before. A place found where no rule fires costs
//! only that question.

use regex::Regex;
use regex::bytes::Regex as BytesRegex;
use regex_syntax::hir::literal::{ExtractKind, Extractor};
use regex_syntax::hir::{Hir, HirKind, Repetition};

/// How many literals one vectorised search takes well (measured: up to
/// about 64, 48 leaves a margin).
const LITERALS_PER_SEARCH: usize = 48;

pub struct LineFilter {
    /// The patterns without assertions, for any block.
    anywhere: Regex,
    /// The literals' searches, when every pattern has its literals.
    literals: Vec<BytesRegex>,
}

impl LineFilter {
    /// `None` when there is no pattern, or one cannot be rewritten.
    pub fn new(patterns: &[String]) -> Option<LineFilter> {
        if patterns.is_empty() {
            return None;
        }
        let hirs: Vec<Hir> = patterns
            .iter()
            .map(|p| regex_syntax::parse(p).ok().map(|h| without_assertions(&h)))
            .collect::<Option<_>>()?;
        let anywhere = Regex::new(&Hir::alternation(hirs.clone()).to_string()).ok()?;
        let literals = match starting_literals(&hirs) {
            Some(literals) => literal_searches(literals)?,
            None => Vec::new(),
        };
        Some(LineFilter { anywhere, literals })
    }

    /// Places in `block` (whole lines, each ending in `\n`), in order, such
    /// that every line with a match of the patterns inside it holds one.
    /// `lowered` is scratch space, kept between calls.
    pub fn places(&self, block: &str, lowered: &mut Vec<u8>, places: &mut Vec<usize>) {
        places.clear();
        if self.literals.is_empty() {
            self.places_of_any_match(block, places);
            return;
        }
        lowered.clear();
        lowered.extend(block.bytes().map(|b| b.to_ascii_lowercase()));
        for search in &self.literals {
            let mut from = 0;
            while let Some(found) = search.find_at(lowered, from) {
                places.push(found.start());
                // One place per line is enough.
                from = next_line(lowered, found.start());
            }
        }
        places.sort_unstable();
    }

    /// Searching from a line's start, the shortest match ends no later than
    /// any match inside a line ahead, so no such line is passed over; the
    /// rest of a line that holds one needs no search.
    fn places_of_any_match(&self, block: &str, places: &mut Vec<usize>) {
        let mut from = 0;
        while from < block.len() {
            let Some(end) = self.anywhere.shortest_match_at(block, from) else {
                break;
            };
            // Its last byte, or its place when it is empty.
            let at = if end > from { end - 1 } else { end };
            places.push(at);
            from = next_line(block.as_bytes(), at);
        }
    }
}

/// Where the line after the one holding `at` starts.
fn next_line(block: &[u8], at: usize) -> usize {
    memchr::memchr(b'\n', &block[at..]).map_or(block.len(), |i| at + i + 1)
}

/// The pattern with every assertion (anchor, word boundary) made empty
/// and every group uncaptured: it matches wherever the pattern does, and
/// more.
fn without_assertions(hir: &Hir) -> Hir {
    match hir.kind() {
        HirKind::Look(_) => Hir::empty(),
        HirKind::Empty | HirKind::Literal(_) | HirKind::Class(_) => hir.clone(),
        HirKind::Capture(capture) => without_assertions(&capture.sub),
        HirKind::Repetition(repetition) => Hir::repetition(Repetition {
            sub: Box::new(without_assertions(&repetition.sub)),
            ..repetition.clone()
        }),
        HirKind::Concat(subs) => Hir::concat(subs.iter().map(without_assertions).collect()),
        HirKind::Alternation(subs) => {
            Hir::alternation(subs.iter().map(without_assertions).collect())
        }
    }
}

/// For all patterns together, lowercased literals one of which starts
/// every match (up to 16 bytes of it); `None` when some pattern has no
/// such finite set, or may match the empty text. A literal holding `\n`
/// is left out: a match inside one line cannot start with it.
fn starting_literals(hirs: &[Hir]) -> Option<Vec<Vec<u8>>> {
    let mut extractor = Extractor::new();
    // Case-insensitive words expand to every spelling; they fold back to
    // one once lowercased.
    extractor
        .kind(ExtractKind::Prefix)
        .limit_class(64)
        .limit_literal_len(16)
        .limit_total(8192);
    let mut all = Vec::new();
    for hir in hirs {
        let seq = extractor.extract(&lowercased(hir));
        for literal in seq.literals()? {
            if literal.as_bytes().is_empty() {
                return None;
            }
            all.push(literal.as_bytes().to_ascii_lowercase());
        }
    }
    all.retain(|l| !l.contains(&b'\n'));
    all.sort();
    all.dedup();
    // A literal that starts with another finds nothing the other misses.
    let mut kept: Vec<Vec<u8>> = Vec::new();
    for literal in all {
        if !kept.last().is_some_and(|k| literal.starts_with(k)) {
            kept.push(literal);
        }
    }
    Some(kept)
}

/// The pattern as it matches a lowercased text: every literal and every
/// small class with its ASCII letters lowercased. A case-insensitive word
/// is then one literal instead of 2^n spellings, which would overflow the
/// extractor's limits and leave only short, frequent prefixes. Larger
/// classes stay as they are; the extractor gives up on them anyway.
fn lowercased(hir: &Hir) -> Hir {
    use regex_syntax::hir::{Class, ClassBytes, ClassBytesRange, ClassUnicode, ClassUnicodeRange};
    const SMALL: u32 = 64;
    match hir.kind() {
        HirKind::Literal(literal) => Hir::literal(literal.0.to_ascii_lowercase()),
        HirKind::Class(Class::Unicode(class)) => {
            let size: u32 = class.ranges().iter().map(|r| r.len() as u32).sum();
            if size > SMALL {
                return hir.clone();
            }
            let chars = class.ranges().iter().flat_map(|r| r.start()..=r.end());
            let ranges = chars.map(|c| {
                let c = c.to_ascii_lowercase();
                ClassUnicodeRange::new(c, c)
            });
            Hir::class(Class::Unicode(ClassUnicode::new(ranges)))
        }
        HirKind::Class(Class::Bytes(class)) => {
            let size: u32 = class.ranges().iter().map(|r| r.len() as u32).sum();
            if size > SMALL {
                return hir.clone();
            }
            let bytes = class.ranges().iter().flat_map(|r| r.start()..=r.end());
            let ranges = bytes.map(|b| {
                let b = b.to_ascii_lowercase();
                ClassBytesRange::new(b, b)
            });
            Hir::class(Class::Bytes(ClassBytes::new(ranges)))
        }
        HirKind::Empty | HirKind::Look(_) => hir.clone(),
        HirKind::Capture(capture) => lowercased(&capture.sub),
        HirKind::Repetition(repetition) => Hir::repetition(Repetition {
            sub: Box::new(lowercased(&repetition.sub)),
            ..repetition.clone()
        }),
        HirKind::Concat(subs) => Hir::concat(subs.iter().map(lowercased).collect()),
        HirKind::Alternation(subs) => Hir::alternation(subs.iter().map(lowercased).collect()),
    }
}

/// The literals as searches: by length first (the vectorised search keys
/// on the first bytes of the shortest literal, so one- and two-byte
/// literals are searched apart, and short ones, which fare worst against
/// the common words of a log, together), then a few dozen to a search.
fn literal_searches(mut literals: Vec<Vec<u8>>) -> Option<Vec<BytesRegex>> {
    literals.sort_by_key(|l| (length_class(l), l.clone()));
    let mut searches = Vec::new();
    for same_key in literals.chunk_by(|a, b| length_class(a) == length_class(b)) {
        for group in same_key.chunks(LITERALS_PER_SEARCH) {
            let alternation: Vec<String> = group.iter().map(|l| escape_bytes(l)).collect();
            // Unicode off: literals are bytes, cut anywhere.
            let pattern = format!("(?-u:{})", alternation.join("|"));
            searches.push(BytesRegex::new(&pattern).ok()?);
        }
    }
    Some(searches)
}

fn length_class(literal: &[u8]) -> usize {
    match literal.len() {
        0..=2 => literal.len(),
        3..=4 => 3,
        _ => 5,
    }
}

/// A byte string as a pattern that matches exactly it.
fn escape_bytes(literal: &[u8]) -> String {
    literal
        .iter()
        .map(|&b| match b {
            b'a'..=b'z' | b'0'..=b'9' => (b as char).to_string(),
            _ => format!(r"\x{b:02x}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(patterns: &[&str]) -> LineFilter {
        let patterns: Vec<String> = patterns.iter().map(|p| p.to_string()).collect();
        LineFilter::new(&patterns).unwrap()
    }

    /// The lines (numbered from 0) holding a place.
    fn lines_found(filter: &LineFilter, text: &str) -> Vec<usize> {
        let mut places = Vec::new();
        filter.places(text, &mut Vec::new(), &mut places);
        let mut lines: Vec<usize> = places
            .iter()
            .map(|&at| text[..at].matches('\n').count())
            .collect();
        lines.dedup();
        lines
    }

    #[test]
    fn literals_are_found_case_blind_and_one_place_per_line() {
        let f = filter(&[
            "(?i)connection refused",
            "token",
            r"\b(401|403)\b",
            r"\[[^\n]*x{40,}",
        ]);
        assert!(!f.literals.is_empty());
        let text = "a CONNECTION REFUSED token\nnothing\nGET 403\n[y\nTOKEN\n";
        assert_eq!(lines_found(&f, text), [0, 2, 3, 4]);
    }

    /// Without a literal that starts every match, the automaton searches;
    /// a match across lines marks the line it ends in.
    #[test]
    fn patterns_without_starting_literals_are_searched_whole() {
        let f = filter(&[r"\d+ms", "^token$"]);
        assert!(f.literals.is_empty());
        let text = "took 12ms\nno\na token b\nms\n";
        assert_eq!(lines_found(&f, text), [0, 2]);
        assert!(
            LineFilter::new(&["x*".to_string()])
                .unwrap()
                .literals
                .is_empty()
        );
    }

    /// A case-insensitive word is searched as itself, lowercased, not cut to
    /// a short prefix because its 2^n spellings overflow the extractor.
    #[test]
    fn case_insensitive_words_stay_whole_literals() {
        let words = "(?i-u)/proc/self/environ|stratum\\+tcp://|union select|/etc/shadow";
        let literals = starting_literals(&[regex_syntax::parse(words).unwrap()]).unwrap();
        let expected: [&[u8]; 4] = [
            b"/etc/shadow",
            b"/proc/self/envir",
            b"stratum+tcp://",
            b"union select",
        ];
        assert_eq!(literals, expected);
        let f = filter(&[words]);
        assert_eq!(lines_found(&f, "x\nGET /PROC/SELF/ENVIRON\nunion\n"), [1]);
    }

    #[test]
    fn unicode_case_folds_stay_found() {
        // (?i)k also matches the Kelvin sign, U+212A.
        let f = filter(&["(?i)kelvin"]);
        assert_eq!(lines_found(&f, "x\n\u{212A}elvin\n"), [1]);
        // Invalid patterns give no filter.
        assert!(LineFilter::new(&["(".to_string()]).is_none());
    }
}
