//! A fast path for plain Hubble lines: reads the fields Palisade uses into
//! the same [`Record`] serde builds, in one pass, without serde's
//! per-field machinery, and finds the end of each endpoint object without
//! parsing it (the identity cache parses each distinct endpoint text once).
//!
//! It gives up, returning `None`, on anything but the plain shape: an
//! escape in any string, `null`, a response other than a flow, a number
//! that is not a plain unsigned integer where one is read, a known field
//! given twice, deep nesting, or JSON it cannot read. The caller then reads
//! the line with serde, so every line either reads the same on both paths
//! or is read by serde alone, with serde's messages. Skipped values are
//! checked as strictly as serde checks ignored values (strings, numbers,
//! literals, structure), so a line serde rejects is never accepted here.

use std::borrow::Cow;

use serde::de::IgnoredAny;

use super::wire::{Icmp, Ip, Layer4, Policy, Ports, RawJson, Record};
use crate::generic::json::{Scalar, Text};

/// The record on `line` and, apart, the flow it carries (serde's
/// `record.flow`, kept out of the record to spare a box and two copies), or
/// `None` when serde must read the line.
pub fn record(line: &str) -> Option<(Record<'_>, Option<Record<'_>>)> {
    let mut cursor = Cursor {
        text: line,
        bytes: line.as_bytes(),
        at: 0,
        depth: 0,
    };
    let (mut record, mut flow) = (Record::default(), None);
    cursor.record(&mut record, Some(&mut flow))?;
    cursor.skip_whitespace();
    (cursor.at == cursor.bytes.len()).then_some((record, flow))
}

/// The index of the first byte at or after `from` that `stops` marks: 16
/// bytes at a time where the CPU compares 16 at once (SSE2, which every
/// x86-64 CPU has), then 8 at a time in a word.
fn find(bytes: &[u8], from: usize, stops: Stops) -> Option<usize> {
    let mut at = from;
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    while let Some(chunk) = bytes.get(at..at + 16) {
        // SAFETY: in_16 needs SSE2, which this build targets (the cfg
        // checks it; every x86-64 CPU has it).
        let hits = unsafe { stops.in_16(chunk.try_into().ok()?) };
        if hits != 0 {
            return Some(at + hits.trailing_zeros() as usize);
        }
        at += 16;
    }
    while let Some(chunk) = bytes.get(at..at + 8) {
        let hits = stops.in_word(u64::from_le_bytes(chunk.try_into().ok()?));
        if hits != 0 {
            return Some(at + hits.trailing_zeros() as usize / 8);
        }
        at += 8;
    }
    let tail = bytes.get(at..)?;
    let mut word = [b'"'; 8];
    word[..tail.len()].copy_from_slice(tail);
    let hits = stops.in_word(u64::from_le_bytes(word));
    let first = at + hits.trailing_zeros() as usize / 8;
    (first < bytes.len()).then_some(first)
}

/// The index of the `}` that closes the object opening at `start`.
fn object_end(bytes: &[u8], start: usize) -> Option<usize> {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    // SAFETY: SSE2 is enabled in this build (the cfg; see `find`).
    return unsafe { object_end_16(bytes, start) };
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    object_end_words(bytes, start)
}

/// [`object_end`] from one structural byte to the next, a word at a time.
/// `None` on an escape or a control character in a string, or no end.
#[cfg_attr(all(target_arch = "x86_64", target_feature = "sse2"), allow(dead_code))]
fn object_end_words(bytes: &[u8], start: usize) -> Option<usize> {
    let mut depth = 0u32;
    let mut i = start;
    loop {
        match *bytes.get(i)? {
            b'"' => {
                i = find(bytes, i + 1, Stops::StringEnd)?;
                if bytes[i] != b'"' {
                    return None;
                }
            }
            b'{' => depth += 1,
            b'}' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
        i = find(bytes, i + 1, Stops::Structural)?;
    }
}

/// The index of the `}` that closes the object opening at `start`, found
/// 16 bytes at a time from bit masks: which bytes are inside strings (a
/// running parity of quotes, as simdjson finds them), and the braces
/// outside them. `None` where the scalar scan gives up too: a backslash (an
/// escape, or invalid JSON outside a string), a control character in a
/// string, or no end.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[target_feature(enable = "sse2")]
fn object_end_16(bytes: &[u8], start: usize) -> Option<usize> {
    let (mut depth, mut in_string) = (0u32, false);
    let mut at = start;
    while at < bytes.len() {
        let mut block = [b' '; 16];
        let n = (bytes.len() - at).min(16);
        block[..n].copy_from_slice(&bytes[at..at + n]);
        let [quotes, backslashes, controls, opens, closes] = classes_16(&block);
        // Bit i: inside a string at byte i (its opening quote counts as
        // inside, its closing one does not).
        let mut inside = quotes;
        for shift in [1, 2, 4, 8] {
            inside ^= inside << shift;
        }
        inside &= 0xffff;
        if in_string {
            inside ^= 0xffff;
        }
        let mut braces = (opens | closes) & !inside;
        let mut end = None;
        while braces != 0 {
            let bit = braces.trailing_zeros();
            if opens & (1 << bit) != 0 {
                depth += 1;
            } else {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    end = Some(bit);
                    break;
                }
            }
            braces &= braces - 1;
        }
        // Only what comes before the end matters.
        let before = end.map_or(0xffff, |bit| (1u32 << bit) - 1);
        if (backslashes | controls & inside) & before != 0 {
            return None;
        }
        if let Some(bit) = end {
            return Some(at + bit as usize);
        }
        in_string = inside & 0x8000 != 0;
        at += 16;
    }
    None
}

/// Bit masks of the 16 bytes: quotes, backslashes, control characters,
/// `{` and `}`.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[target_feature(enable = "sse2")]
fn classes_16(bytes: &[u8; 16]) -> [u32; 5] {
    use std::arch::x86_64::{_mm_cmpeq_epi8, _mm_max_epu8, _mm_movemask_epi8, _mm_set1_epi8};
    let v = load_16(bytes);
    let is = |byte: u8| _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(byte as i8))) as u32;
    let limit = _mm_set1_epi8(0x1f);
    let controls = _mm_movemask_epi8(_mm_cmpeq_epi8(_mm_max_epu8(v, limit), limit)) as u32;
    [is(b'"'), is(b'\\'), controls, is(b'{'), is(b'}')]
}

#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[target_feature(enable = "sse2")]
fn load_16(bytes: &[u8; 16]) -> std::arch::x86_64::__m128i {
    let (low, high) = bytes.split_at(8);
    let half = |h: &[u8]| i64::from_le_bytes(h.try_into().unwrap_or_default());
    std::arch::x86_64::_mm_set_epi64x(half(high), half(low))
}

/// The bytes a scan stops at.
#[derive(Clone, Copy)]
enum Stops {
    /// Where a string's plain run stops: a quote, a backslash or a control
    /// character (below 0x20, which JSON does not allow in strings).
    StringEnd,
    /// What changes the depth of an object or starts a string.
    Structural,
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// High bits where a byte of `word` is `byte` (exact up to the first one:
/// the borrow of the subtraction may mark bytes after it).
fn bytes_equal(word: u64, byte: u8) -> u64 {
    let x = word ^ (ONES * u64::from(byte));
    x.wrapping_sub(ONES) & !x & HIGHS
}

impl Stops {
    /// A word whose bytes have their high bit set where the byte of `word`
    /// is a stop, exact at least up to the first one.
    fn in_word(self, word: u64) -> u64 {
        match self {
            Stops::StringEnd => {
                let control = word.wrapping_sub(ONES * 0x20) & !word & HIGHS;
                bytes_equal(word, b'"') | bytes_equal(word, b'\\') | control
            }
            Stops::Structural => {
                bytes_equal(word, b'"') | bytes_equal(word, b'{') | bytes_equal(word, b'}')
            }
        }
    }

    /// Bit `i` set where byte `i` of the 16 is a stop (all of them exact).
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    #[target_feature(enable = "sse2")]
    fn in_16(self, bytes: &[u8; 16]) -> u32 {
        use std::arch::x86_64::{
            __m128i, _mm_cmpeq_epi8, _mm_max_epu8, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
        };
        let v = load_16(bytes);
        let is = |byte: u8| -> __m128i { _mm_cmpeq_epi8(v, _mm_set1_epi8(byte as i8)) };
        let hits = match self {
            Stops::StringEnd => {
                // Unsigned bytes up to 0x1f: those whose max with 0x1f is 0x1f.
                let limit = _mm_set1_epi8(0x1f);
                let control = _mm_cmpeq_epi8(_mm_max_epu8(v, limit), limit);
                _mm_or_si128(_mm_or_si128(is(b'"'), is(b'\\')), control)
            }
            Stops::Structural => _mm_or_si128(_mm_or_si128(is(b'"'), is(b'{')), is(b'}')),
        };
        _mm_movemask_epi8(hits) as u32
    }
}

/// Nesting deeper than this is left to serde (whose limit is 128).
const MAX_DEPTH: u32 = 64;

struct Cursor<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
    depth: u32,
}

/// Sets a field read from the line. A field given twice gives up: serde
/// rejects it, so the fast path must not take the last one silently.
fn put<T>(slot: &mut Option<T>, value: Option<T>) -> Option<()> {
    if slot.is_some() {
        return None;
    }
    *slot = Some(value?);
    Some(())
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        self.skip_whitespace();
        (self.peek()? == byte).then(|| self.at += 1)
    }

    /// An object: `field` reads the value of each key.
    fn object(&mut self, mut field: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        self.nest(b'{', b'}', |cursor| {
            let key = cursor.plain_string()?;
            cursor.expect(b':')?;
            cursor.skip_whitespace();
            field(cursor, key)
        })
    }

    fn array(&mut self, item: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.nest(b'[', b']', item)
    }

    /// `open`, comma-separated members read by `member`, `close`.
    fn nest(
        &mut self,
        open: u8,
        close: u8,
        mut member: impl FnMut(&mut Self) -> Option<()>,
    ) -> Option<()> {
        self.expect(open)?;
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return None;
        }
        self.skip_whitespace();
        if self.peek()? == close {
            self.at += 1;
            self.depth -= 1;
            return Some(());
        }
        loop {
            self.skip_whitespace();
            member(self)?;
            self.skip_whitespace();
            match self.peek()? {
                b',' => self.at += 1,
                byte if byte == close => {
                    self.at += 1;
                    self.depth -= 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// A string without escapes or control characters, borrowed.
    fn plain_string(&mut self) -> Option<&'a str> {
        if self.peek()? != b'"' {
            return None;
        }
        let start = self.at + 1;
        let end = find(self.bytes, start, Stops::StringEnd)?;
        if self.bytes[end] != b'"' {
            return None;
        }
        self.at = end + 1;
        // Both ends are next to an ASCII quote, so on character boundaries.
        self.text.get(start..end)
    }

    fn text(&mut self) -> Option<Text<'a>> {
        self.plain_string().map(|s| Text(Cow::Borrowed(s)))
    }

    /// A protobuf enum or counter: a string, or an unsigned integer.
    fn scalar(&mut self) -> Option<Scalar<'a>> {
        match self.peek()? {
            b'"' => self.plain_string().map(|s| Scalar::Text(Cow::Borrowed(s))),
            _ => self.unsigned().map(Scalar::Unsigned),
        }
    }

    /// A JSON number that is a plain unsigned integer fitting in 64 bits.
    fn unsigned(&mut self) -> Option<u64> {
        let start = self.at;
        let digits = self.digits();
        let text = &self.bytes[start..self.at];
        let leading_zero = digits > 1 && text[0] == b'0';
        if digits == 0 || leading_zero || matches!(self.peek(), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        text.iter().try_fold(0u64, |n, &d| {
            n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        })
    }

    fn u32(&mut self) -> Option<u32> {
        u32::try_from(self.unsigned()?).ok()
    }

    fn digits(&mut self) -> usize {
        let start = self.at;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.at += 1;
        }
        self.at - start
    }

    fn bool(&mut self) -> Option<bool> {
        if self.literal(b"true").is_some() {
            Some(true)
        } else {
            self.literal(b"false").map(|()| false)
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let found = self.bytes[self.at..].starts_with(word);
        found.then(|| self.at += word.len())
    }

    /// Any JSON value, checked and not kept (escaped strings and `null`
    /// are left to serde like everywhere else).
    fn skip_value(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.plain_string().map(drop),
            b'{' => self.object(|cursor, _| cursor.skip_value()),
            b'[' => self.array(Self::skip_value),
            b't' | b'f' => self.bool().map(drop),
            b'-' | b'0'..=b'9' => self.skip_number(),
            _ => None,
        }
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
    fn skip_number(&mut self) -> Option<()> {
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        let start = self.at;
        let digits = self.digits();
        if digits == 0 || (digits > 1 && self.bytes[start] == b'0') {
            return None;
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            if self.digits() == 0 {
                return None;
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.at += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.at += 1;
            }
            if self.digits() == 0 {
                return None;
            }
        }
        Some(())
    }

    /// The exact text of an object, its end found by its strings and
    /// braces alone. Not checked here: the identity cache parses each
    /// distinct text (with serde) the first time it meets it, and a text
    /// equal to one it parsed is valid.
    fn raw_object(&mut self) -> Option<&'a str> {
        if self.peek()? != b'{' {
            return None;
        }
        let start = self.at;
        self.at = object_end(self.bytes, start)? + 1;
        self.text.get(start..self.at)
    }

    /// A `GetFlowsResponse` (given where its flow goes) or a `Flow`.
    fn record(
        &mut self,
        record: &mut Record<'a>,
        mut flow: Option<&mut Option<Record<'a>>>,
    ) -> Option<()> {
        self.object(|cursor, key| {
            let r = &mut *record;
            match key {
                "flow" if flow.is_some() => {
                    let mut inner = Record::default();
                    cursor.record(&mut inner, None)?;
                    put(flow.as_deref_mut()?, Some(inner))
                }
                "time" => put(&mut r.time, cursor.text()),
                "verdict" => put(&mut r.verdict, cursor.scalar()),
                "drop_reason" => put(&mut r.drop_reason, cursor.u32()),
                "drop_reason_desc" => put(&mut r.drop_reason_desc, cursor.scalar()),
                "IP" => put(&mut r.ip, cursor.ip()),
                "l4" => put(&mut r.l4, cursor.layer4()),
                "source" => put(&mut r.source, cursor.raw_object().map(RawJson)),
                "destination" => put(&mut r.destination, cursor.raw_object().map(RawJson)),
                "Type" => put(&mut r.flow_type, cursor.scalar()),
                "reply" => put(&mut r.reply, cursor.bool()),
                "is_reply" => put(&mut r.is_reply, cursor.bool()),
                "traffic_direction" => put(&mut r.traffic_direction, cursor.scalar()),
                "egress_allowed_by" => put(&mut r.egress_allowed_by, cursor.policies()),
                "ingress_allowed_by" => put(&mut r.ingress_allowed_by, cursor.policies()),
                "egress_denied_by" => put(&mut r.egress_denied_by, cursor.policies()),
                "ingress_denied_by" => put(&mut r.ingress_denied_by, cursor.policies()),
                // Other responses, and a flow inside a flow, are serde's.
                "flow" | "lost_events" | "node_status" | "agent_event" | "debug_event" => None,
                _ => cursor.skip_value(),
            }
        })
    }

    fn ip(&mut self) -> Option<Ip<'a>> {
        let mut ip = Ip::default();
        self.object(|cursor, key| match key {
            "source" => put(&mut ip.source, cursor.text()),
            "destination" => put(&mut ip.destination, cursor.text()),
            _ => cursor.skip_value(),
        })?;
        Some(ip)
    }

    fn layer4(&mut self) -> Option<Layer4> {
        let mut l4 = Layer4::default();
        self.object(|cursor, key| match key {
            "TCP" => put(&mut l4.tcp, cursor.ports()),
            "UDP" => put(&mut l4.udp, cursor.ports()),
            "SCTP" => put(&mut l4.sctp, cursor.ports()),
            "ICMPv4" => put(&mut l4.icmpv4, cursor.icmp()),
            "ICMPv6" => put(&mut l4.icmpv6, cursor.icmp()),
            "IGMP" => put(&mut l4.igmp, cursor.skip_value().map(|()| IgnoredAny)),
            "VRRP" => put(&mut l4.vrrp, cursor.skip_value().map(|()| IgnoredAny)),
            _ => cursor.skip_value(),
        })?;
        Some(l4)
    }

    fn ports(&mut self) -> Option<Ports> {
        let mut ports = Ports::default();
        self.object(|cursor, key| match key {
            "source_port" => put(&mut ports.source_port, cursor.u32()),
            "destination_port" => put(&mut ports.destination_port, cursor.u32()),
            _ => cursor.skip_value(),
        })?;
        Some(ports)
    }

    fn icmp(&mut self) -> Option<Icmp> {
        let mut icmp = Icmp::default();
        self.object(|cursor, key| match key {
            "type" => put(&mut icmp.icmp_type, cursor.u32()),
            "code" => put(&mut icmp.code, cursor.u32()),
            _ => cursor.skip_value(),
        })?;
        Some(icmp)
    }

    fn policies(&mut self) -> Option<Vec<Policy<'a>>> {
        let mut policies = Vec::new();
        self.array(|cursor| {
            let mut policy = Policy::default();
            cursor.object(|cursor, key| match key {
                "name" => put(&mut policy.name, cursor.text()),
                "namespace" => put(&mut policy.namespace, cursor.text()),
                _ => cursor.skip_value(),
            })?;
            policies.push(policy);
            Some(())
        })?;
        Some(policies)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::generic::ParsedLine;
    use crate::hubble::{parse_hubble_line_by_serde, parse_plain};
    use crate::model::{Format, RecordRef};

    const SAMPLES: [&str; 2] = [
        include_str!("../../tests/data/hubble-basic-sample-400-tcp-flows.json"),
        include_str!("../../tests/data/hubble-basic-sample-10-flows.json"),
    ];

    /// Lines of other shapes than the samples': every field the fast path
    /// reads, in the forms it takes and the ones it leaves to serde.
    const SHAPES: [&str; 8] = [
        r#"{"flow":{"time":"2024-01-02T03:04:05.000001Z","verdict":"DROPPED","drop_reason":133,"drop_reason_desc":"POLICY_DENIED","IP":{"source":"fd00::1","destination":"fd00::2","ipVersion":"IPv6"},"l4":{"UDP":{"source_port":5000,"destination_port":53}},"source":{"ID":12,"namespace":"a","pod_name":"p","labels":["k8s:app=x","reserved:init"]},"destination":{"labels":["reserved:world"]},"is_reply":false,"traffic_direction":"EGRESS","egress_denied_by":[{"name":"deny","namespace":"a","labels":["x"],"revision":3}]},"node_name":"n","time":"2024-01-02T03:04:05.000001Z"}"#,
        r#"{"verdict":1,"IP":{"source":"10.0.0.1","destination":"10.0.0.2"},"l4":{"ICMPv4":{"type":8,"code":0}},"source":{"workloads":[{"name":"web","kind":"Deployment"}],"namespace":"n"},"traffic_direction":1,"Type":"L3_L4"}"#,
        r#" { "flow" : { "verdict" : "FORWARDED" , "IP" : { "source" : "10.0.0.1" } , "l4" : { "SCTP" : { } } , "reply" : true , "extra" : [ 1 , -2.5e+3 , true , false , { } , [ ] ] } } "#,
        r#"{"flow":{"verdict":"FORWARDED","IP":{"source":"10.0.0.1","destination":"10.0.0.2"},"l4":{"IGMP":{"type":17}},"Type":"L7"}}"#,
        r#"{"flow":{"verdict":"AUDIT","IP":{"source":"10.0.0.1","destination":"10.0.0.2"},"l4":{"TCP":{"destination_port":80}},"ingress_allowed_by":[],"egress_allowed_by":[{"name":"a"}]}}"#,
        r#"{"lost_events":{"source":"PERF_EVENT_RING_BUFFER","num_events_lost":"42"}}"#,
        r#"{"node_status":{"state_change":"NODE_CONNECTED"},"time":"x"}"#,
        r#"{"flow":{"verdict":"FORWARDED","IP":{"source":"10.0.0.1","destination":"10.0.0.\u0032"},"l4":{"TCP":{}}}}"#,
    ];

    fn evidence() -> RecordRef {
        RecordRef {
            file: Arc::from("t"),
            format: Format::Hubble,
            record: 1,
        }
    }

    fn by_serde(line: &str) -> Result<ParsedLine, String> {
        parse_hubble_line_by_serde(line.as_bytes(), evidence())
    }

    /// What the fast path makes of the line, when it takes it.
    fn by_scan(line: &str) -> Option<ParsedLine> {
        let parsed = parse_plain(line, &evidence())?;
        let serde: Record<'_> = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("taken, but serde rejects it ({e}): {line}"));
        // Both paths must build the same record, not only the same flow.
        let (mut fast, flow) = record(line)?;
        fast.flow = flow.map(Box::new);
        assert_eq!(format!("{fast:?}"), format!("{serde:?}"), "{line}");
        Some(parsed)
    }

    /// The fast path either leaves the line to serde or reads it as serde
    /// does; it never takes a line serde rejects.
    fn assert_agrees(line: &str) -> bool {
        let Some(fast) = by_scan(line) else {
            return false;
        };
        assert_eq!(Ok(fast), by_serde(line), "{line}");
        true
    }

    #[test]
    fn reads_plain_lines_as_serde_does() {
        let lines: Vec<&str> = SAMPLES.iter().flat_map(|s| s.lines()).collect();
        for line in &lines {
            assert!(assert_agrees(line), "left to serde: {line}");
        }
        let taken: Vec<bool> = SHAPES.iter().map(|line| assert_agrees(line)).collect();
        // Other responses and escaped strings are serde's.
        assert_eq!(taken, [true, true, true, true, true, false, false, false]);
    }

    #[test]
    fn leaves_what_serde_rejects_or_reads_differently_to_serde() {
        let base = r#"{"flow":{"verdict":"FORWARDED","IP":{"source":"10.0.0.1"},"l4":{"TCP":{"source_port":1}}}}"#;
        for (from, to) in [
            (r#""source_port":1"#, r#""source_port":1,"source_port":2"#),
            (r#""source_port":1"#, r#""source_port":01"#),
            (r#""source_port":1"#, r#""source_port":1.0"#),
            (r#""source_port":1"#, r#""source_port":-1"#),
            (r#""source_port":1"#, r#""source_port":4294967296"#),
            (r#""source_port":1"#, r#""source_port":null"#),
            (r#""verdict":"FORWARDED""#, r#""verdict":true"#),
            (r#""verdict":"FORWARDED""#, r#""verd\u0069ct":"FORWARDED""#),
            (r#""TCP""#, r#""TCP","flow":{}"#),
            ("}}}}", "}}}},"),
            ("}}}}", "}}}}x"),
            ("}}}}", "}},}}"),
        ] {
            let line = base.replace(from, to);
            assert!(by_scan(&line).is_none(), "{line}");
        }
        assert!(assert_agrees(base));
    }

    #[test]
    fn a_damaged_line_is_never_read_otherwise_than_serde_reads_it() {
        // Every truncation, and every byte replaced by each character that
        // matters to JSON's grammar; also in a line that is skipped (no IP
        // layer) whatever its endpoints say.
        let without_ip = SHAPES[0].replace(
            r#""IP":{"source":"fd00::1","destination":"fd00::2","ipVersion":"IPv6"},"#,
            "",
        );
        let endpoint_outside = SHAPES[0].replacen(r#","source""#, r#"},"source""#, 1);
        let endpoint_outside =
            endpoint_outside.replacen(r#"]},"node_name""#, r#"],"node_name""#, 1);
        // Valid, but its endpoints beside the flow are left to serde.
        assert!(by_serde(&endpoint_outside).is_ok());
        assert!(!assert_agrees(&endpoint_outside));
        for line in [SHAPES[0], &without_ip, &endpoint_outside] {
            for end in 0..line.len() {
                if line.is_char_boundary(end) {
                    assert_agrees(&line[..end]);
                }
            }
            for at in 0..line.len() {
                for with in DAMAGE {
                    let damaged = format!("{}{with}{}", &line[..at], &line[at + 1..]);
                    assert_agrees(&damaged);
                }
            }
        }
    }

    const DAMAGE: [&str; 14] = [
        "\"", "\\", "{", "}", "[", "]", ",", ":", " ", "0", "-", "e", "x", "\u{1}",
    ];

    /// Both ways of finding an object's end agree wherever the object's
    /// pieces fall in the 16-byte blocks (a filler field shifts them), at
    /// the end of the input or before more, and on objects damaged at any
    /// byte, where the wide one may also give up on a backslash before the
    /// end (outside a string it is not JSON; serde then reads the line).
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    #[test]
    fn object_ends_agree_in_every_alignment() {
        let deep = format!("{}{}", r#"{"a":"#.repeat(20), "}".repeat(20));
        let objects = [
            r#"{"ID":223,"labels":["k8s:app=a{b}","x"],"pod_name":"p"}"#,
            r#"{"a":{"b":{"c":"}}}}"}},"d":"{"},"e":1}"#,
            r#"{"long":"0123456789abcdefghijklmnopqrstuvwxyz0123456789","n":{}}"#,
            r#"{"name":"café ☃ \u00e9","x":"é}"}"#,
            "{\"tab\"\t:\t\"x\"}",
            r#"{"esc":"a\"b"}"#,
            "{\"ctl\":\"a\u{1}b\"}",
            r#"{"open":"never closed"#,
            r#"{"a":1}}"#,
            r#"{}"#,
            r#"{"#,
            &deep,
        ];
        // SAFETY: SSE2 is part of x86-64 itself (checked by the cfg).
        let wide = |bytes: &[u8]| unsafe { object_end_16(bytes, 0) };
        let agree = |bytes: &[u8]| {
            let (w, s) = (wide(bytes), object_end_words(bytes, 0));
            let escape_first = || {
                let end = s.unwrap_or(bytes.len());
                bytes[..end].contains(&b'\\')
            };
            assert!(
                w == s || w.is_none() && escape_first(),
                "{w:?} {s:?} {:?}",
                String::from_utf8_lossy(bytes)
            );
        };
        for object in objects {
            for shift in 0..33 {
                let shifted = match object.strip_prefix('{') {
                    Some(rest) => format!(r#"{{"f":"{}",{rest}"#, "x".repeat(shift)),
                    None => object.to_string(),
                };
                for text in [shifted.clone(), format!("{shifted} ,")] {
                    let bytes = text.as_bytes();
                    agree(bytes);
                    for at in 0..bytes.len() {
                        for with in DAMAGE.iter().map(|d| d.as_bytes()).chain([&[0xff][..]]) {
                            let mut damaged = bytes[..at].to_vec();
                            damaged.extend_from_slice(with);
                            damaged.extend_from_slice(&bytes[at + 1..]);
                            agree(&damaged);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn finds_stops_in_every_position() {
        for length in 0..20 {
            for stop in 0..=length {
                let mut text = vec![b'a'; length];
                if stop < length {
                    text[stop] = b'"';
                }
                let expected = (stop < length).then_some(stop);
                assert_eq!(
                    find(&text, 0, Stops::StringEnd),
                    expected,
                    "{length} {stop}"
                );
            }
        }
        for length in 0..40 {
            for at in 0..length {
                for stop in [b'\\', 0x1f, 0x00] {
                    let mut text = vec![0xc3; length];
                    text[at] = stop;
                    assert_eq!(
                        find(&text, 0, Stops::StringEnd),
                        Some(at),
                        "{length} {at} {stop}"
                    );
                }
                let mut text = vec![b'a'; length];
                text[at] = b'}';
                assert_eq!(find(&text, 0, Stops::Structural), Some(at));
                assert_eq!(
                    find(&text, 0, Stops::StringEnd),
                    None,
                    "no string stop in {text:?}"
                );
            }
        }
        assert_eq!(find(b"abc\x1fdef", 0, Stops::StringEnd), Some(3));
        assert_eq!(find(b"{\"a\":{}}", 1, Stops::Structural), Some(1));
    }
}
