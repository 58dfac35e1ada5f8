//! The fast path for the ordinary Hubble line: one pass over the bytes that
//! checks the JSON as strictly as serde_json does, but builds only the
//! fields Palisade reads and skips the rest without building anything.
//!
//! It answers `None` for anything it does not handle exactly as the serde
//! reader would: string escapes, `null` where a value is expected, numbers
//! that are not plain non-negative integers where one is read, duplicate
//! keys, response kinds other than flows, data-plane policy lists, deep
//! nesting, trailing text. The line then goes to the serde reader, so the
//! two can never disagree on a line (a test compares them on mutated
//! lines); the fast path only saves time.

use std::borrow::Cow;

use serde::de::IgnoredAny;

use super::wire::{Icmp, Ip, Layer4, Ports, RawJson, Record};
use crate::generic::json::{Scalar, Text};

/// Nesting beyond this goes to serde_json, which has its own limit and
/// error for it.
const MAX_DEPTH: u32 = 64;

/// The record on `line` (already checked to be UTF-8), or `None` when the
/// serde reader must decide.
pub(super) fn record(line: &str) -> Option<Record<'_>> {
    let mut cursor = Cursor { text: line, at: 0 };
    let record = record_at(&mut cursor, false)?;
    cursor.skip_whitespace();
    (cursor.at == line.len()).then_some(record)
}

/// Which key of [`Record`] this is, as a bit for duplicate detection
/// (serde rejects a known field given twice). `Err(true)`: a key the fast
/// path leaves to serde (rare response kinds, policy lists); `Err(false)`:
/// not a field of `Record`.
fn record_key(key: &str) -> Result<u32, bool> {
    Ok(match key {
        "flow" => 0,
        "time" => 1,
        "verdict" => 2,
        "drop_reason" => 3,
        "drop_reason_desc" => 4,
        "IP" => 5,
        "l4" => 6,
        "source" => 7,
        "destination" => 8,
        "Type" => 9,
        "reply" => 10,
        "is_reply" => 11,
        "traffic_direction" => 12,
        "lost_events" | "node_status" | "agent_event" | "debug_event" | "egress_allowed_by"
        | "ingress_allowed_by" | "egress_denied_by" | "ingress_denied_by" => return Err(true),
        _ => return Err(false),
    })
}

fn record_at<'a>(cursor: &mut Cursor<'a>, nested: bool) -> Option<Record<'a>> {
    let mut record = Record::default();
    let mut seen = 0u32;
    cursor.object(|cursor, key| {
        let bit = match record_key(key) {
            Ok(bit) => bit,
            Err(true) => return None,
            Err(false) => return cursor.skip_value(1),
        };
        if seen & (1 << bit) != 0 {
            return None;
        }
        seen |= 1 << bit;
        match bit {
            // A flow inside a flow is legal for serde (one type serves
            // both levels) but never written; leave it to serde.
            0 if nested => return None,
            0 => record.flow = Some(Box::new(record_at(cursor, true)?)),
            1 => record.time = Some(cursor.text()?),
            2 => record.verdict = Some(cursor.scalar()?),
            3 => record.drop_reason = Some(cursor.u32()?),
            4 => record.drop_reason_desc = Some(cursor.scalar()?),
            5 => record.ip = Some(ip(cursor)?),
            6 => record.l4 = Some(layer4(cursor)?),
            7 => record.source = Some(cursor.raw()?),
            8 => record.destination = Some(cursor.raw()?),
            9 => record.flow_type = Some(cursor.scalar()?),
            10 => record.reply = Some(cursor.boolean()?),
            11 => record.is_reply = Some(cursor.boolean()?),
            _ => record.traffic_direction = Some(cursor.scalar()?),
        }
        Some(())
    })?;
    Some(record)
}

fn ip<'a>(cursor: &mut Cursor<'a>) -> Option<Ip<'a>> {
    let mut ip = Ip::default();
    cursor.object(|cursor, key| {
        let slot = match key {
            "source" => &mut ip.source,
            "destination" => &mut ip.destination,
            _ => return cursor.skip_value(2),
        };
        if slot.is_some() {
            return None;
        }
        *slot = Some(cursor.text()?);
        Some(())
    })?;
    Some(ip)
}

fn layer4(cursor: &mut Cursor<'_>) -> Option<Layer4> {
    let mut l4 = Layer4::default();
    cursor.object(|cursor, key| match key {
        "TCP" => set_once(&mut l4.tcp, ports(cursor)?),
        "UDP" => set_once(&mut l4.udp, ports(cursor)?),
        "SCTP" => set_once(&mut l4.sctp, ports(cursor)?),
        "ICMPv4" => set_once(&mut l4.icmpv4, icmp(cursor)?),
        "ICMPv6" => set_once(&mut l4.icmpv6, icmp(cursor)?),
        "IGMP" => {
            cursor.skip_value(2)?;
            set_once(&mut l4.igmp, IgnoredAny)
        }
        "VRRP" => {
            cursor.skip_value(2)?;
            set_once(&mut l4.vrrp, IgnoredAny)
        }
        _ => cursor.skip_value(2),
    })?;
    Some(l4)
}

fn set_once<T>(slot: &mut Option<T>, value: T) -> Option<()> {
    match slot {
        Some(_) => None,
        None => {
            *slot = Some(value);
            Some(())
        }
    }
}

fn ports(cursor: &mut Cursor<'_>) -> Option<Ports> {
    let mut ports = Ports::default();
    cursor.object(|cursor, key| match key {
        "source_port" => set_once(&mut ports.source_port, cursor.u32()?),
        "destination_port" => set_once(&mut ports.destination_port, cursor.u32()?),
        _ => cursor.skip_value(3),
    })?;
    Some(ports)
}

fn icmp(cursor: &mut Cursor<'_>) -> Option<Icmp> {
    let mut icmp = Icmp::default();
    cursor.object(|cursor, key| match key {
        "type" => set_once(&mut icmp.icmp_type, cursor.u32()?),
        "code" => set_once(&mut icmp.code, cursor.u32()?),
        _ => cursor.skip_value(3),
    })?;
    Some(icmp)
}

/// A position in a line of JSON. Every method answers `None` when the
/// text there is not what it reads (or is JSON it leaves to serde).
struct Cursor<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        self.skip_whitespace();
        (self.peek()? == byte).then(|| self.at += 1)
    }

    /// A string without escapes, as serde_json would borrow it.
    fn string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.at;
        let rest = self.text.as_bytes().get(start..)?;
        let end = start + plain_run(rest);
        // Escapes need decoding and control characters are errors: both
        // are serde's to handle.
        if self.text.as_bytes().get(end) != Some(&b'"') {
            return None;
        }
        self.at = end + 1;
        // Quotes are ASCII, so both ends are character boundaries.
        self.text.get(start..end)
    }

    fn text(&mut self) -> Option<Text<'a>> {
        self.string().map(|s| Text(Cow::Borrowed(s)))
    }

    /// A plain non-negative integer: digits, no leading zero, no fraction
    /// or exponent (those, and negative numbers, go to serde).
    fn unsigned(&mut self) -> Option<u64> {
        self.skip_whitespace();
        let start = self.at;
        let bytes = self.text.as_bytes();
        while bytes.get(self.at).is_some_and(u8::is_ascii_digit) {
            self.at += 1;
        }
        let digits = &self.text[start..self.at];
        let leading_zero = digits.len() > 1 && digits.starts_with('0');
        if digits.is_empty() || leading_zero || matches!(self.peek(), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        digits.parse().ok()
    }

    fn u32(&mut self) -> Option<u32> {
        u32::try_from(self.unsigned()?).ok()
    }

    fn scalar(&mut self) -> Option<Scalar<'a>> {
        self.skip_whitespace();
        match self.peek()? {
            b'"' => self.string().map(|s| Scalar::Text(Cow::Borrowed(s))),
            _ => self.unsigned().map(Scalar::Unsigned),
        }
    }

    fn boolean(&mut self) -> Option<bool> {
        self.skip_whitespace();
        if self.literal("true").is_some() {
            Some(true)
        } else {
            self.literal("false").map(|()| false)
        }
    }

    fn literal(&mut self, word: &str) -> Option<()> {
        let rest = self.text.get(self.at..)?;
        rest.starts_with(word).then(|| self.at += word.len())
    }

    /// A value's exact text, checked as it is skipped.
    fn raw(&mut self) -> Option<RawJson<'a>> {
        self.skip_whitespace();
        let start = self.at;
        self.skip_value(1)?;
        Some(RawJson(&self.text[start..self.at]))
    }

    /// Skips any JSON value, checking its grammar.
    fn skip_value(&mut self, depth: u32) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.skip_whitespace();
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'{' => self.object(|cursor, _| cursor.skip_value(depth + 1)),
            b'[' => self.array(|cursor| cursor.skip_value(depth + 1)),
            b't' => self.literal("true"),
            b'f' => self.literal("false"),
            b'n' => self.literal("null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`, then a delimiter.
    fn number(&mut self) -> Option<()> {
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        match self.peek()? {
            b'0' => self.at += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            self.at_least_one_digit()?;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.at += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.at += 1;
            }
            self.at_least_one_digit()?;
        }
        // "01" or "1x": serde reports an error; so does the caller's next
        // step, but refuse here to be sure.
        match self.peek() {
            None | Some(b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') => Some(()),
            _ => None,
        }
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.at += 1;
        }
    }

    fn at_least_one_digit(&mut self) -> Option<()> {
        let start = self.at;
        self.digits();
        (self.at > start).then_some(())
    }

    /// `{ "key": value, ... }`, calling `field` at each value.
    fn object(&mut self, mut field: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        self.eat(b'{')?;
        if self.eat(b'}').is_some() {
            return Some(());
        }
        loop {
            let key = self.string()?;
            self.eat(b':')?;
            field(self, key)?;
            self.skip_whitespace();
            match self.peek()? {
                b',' => self.at += 1,
                b'}' => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// `[ value, ... ]`, calling `item` at each value.
    fn array(&mut self, mut item: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.eat(b'[')?;
        if self.eat(b']').is_some() {
            return Some(());
        }
        loop {
            item(self)?;
            self.skip_whitespace();
            match self.peek()? {
                b',' => self.at += 1,
                b']' => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }
}

/// The length of the run of bytes at the start of `bytes` that can stay in
/// a JSON string as they are: up to the first quote, backslash or control
/// character. Eight bytes at a time: strings are most of a Hubble line.
fn plain_run(bytes: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH_BITS: u64 = 0x8080_8080_8080_8080;
    // The high bit of each byte that is zero in `x` (exact for the lowest
    // such byte, which is all that is used).
    let zero_bytes = |x: u64| x.wrapping_sub(ONES) & !x & HIGH_BITS;
    let mut chunks = bytes.chunks_exact(8);
    let mut offset = 0;
    for chunk in chunks.by_ref() {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_le_bytes(word);
        let stops = zero_bytes(word ^ (ONES * u64::from(b'"')))
            | zero_bytes(word ^ (ONES * u64::from(b'\\')))
            | (word.wrapping_sub(ONES * 0x20) & !word & HIGH_BITS);
        if stops != 0 {
            return offset + (stops.trailing_zeros() / 8) as usize;
        }
        offset += 8;
    }
    let tail = chunks.remainder();
    offset
        + tail
            .iter()
            .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
            .unwrap_or(tail.len())
}

#[cfg(test)]
mod tests {
    use super::plain_run;

    #[test]
    fn plain_run_stops_at_quotes_backslashes_and_control_characters() {
        let naive = |bytes: &[u8]| {
            bytes
                .iter()
                .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
                .unwrap_or(bytes.len())
        };
        let mut cases: Vec<Vec<u8>> = vec![b"".to_vec(), b"abc".to_vec(), "é\u{1F600}x".into()];
        for stop in [b'"', b'\\', 0x00, 0x1f, b'\n'] {
            for at in 0..20 {
                let mut bytes = vec![b'a'; 24];
                bytes[at] = stop;
                // Bytes that are near misses for the arithmetic.
                bytes[23] = 0x20;
                bytes[22] = 0xff;
                cases.push(bytes);
            }
        }
        for bytes in cases {
            assert_eq!(plain_run(&bytes), naive(&bytes), "{bytes:?}");
        }
    }
}
