//! pcapng: a sequence of blocks, each `type, total length, body, total
//! length`. Section headers set the byte order and reset the interfaces;
//! interface descriptions give each packet its link type and timestamp
//! resolution. Packet blocks (enhanced, simple, and the obsolete packet
//! block) are decoded; every other block is skipped without being buffered.

use std::io::Read;

use super::{CaptureReader, MAX_BLOCK_LEN, Order};
use crate::model::Micros;

const SECTION_HEADER: u32 = 0x0a0d_0d0a;
const INTERFACE_DESCRIPTION: u32 = 1;
const OBSOLETE_PACKET: u32 = 2;
const SIMPLE_PACKET: u32 = 3;
const ENHANCED_PACKET: u32 = 6;

/// Far more than any real capture declares; a bound on what a hostile file
/// can make us keep.
const MAX_INTERFACES: usize = 65_536;

#[derive(Clone, Copy, Debug)]
enum Resolution {
    /// Units of 10^-n seconds.
    Decimal(u8),
    /// Units of 2^-n seconds.
    Binary(u8),
}

#[derive(Clone, Copy, Debug)]
struct Interface {
    link_type: u32,
    resolution: Resolution,
    /// `if_tsoffset`, seconds added to every timestamp.
    offset_seconds: i64,
}

impl Interface {
    fn time(&self, high: u32, low: u32) -> Micros {
        let units = u128::from((u64::from(high) << 32) | u64::from(low));
        let micros = match self.resolution {
            Resolution::Decimal(n) if n <= 6 => units.saturating_mul(10u128.pow(u32::from(6 - n))),
            // 10^39 overflows u128; any such resolution makes every
            // timestamp 0 s, which is as good as the file deserves.
            Resolution::Decimal(n) => 10u128
                .checked_pow(u32::from(n - 6))
                .map_or(0, |d| units / d),
            Resolution::Binary(n) => units.saturating_mul(1_000_000) >> n.min(127),
        };
        let micros = Micros::try_from(micros).unwrap_or(Micros::MAX);
        micros.saturating_add(self.offset_seconds.saturating_mul(1_000_000))
    }
}

/// What the current section says.
struct Section {
    order: Order,
    interfaces: Vec<Interface>,
    /// Simple packet blocks have no timestamp: they get the previous one.
    last_time: Micros,
}

/// Reads blocks until the input ends or cannot be trusted any more. The
/// first block's type (the section header's) was consumed by detection.
pub(super) fn read<R: Read>(reader: &mut CaptureReader<'_, R>) {
    let mut section = Section {
        order: Order::Little,
        interfaces: Vec::new(),
        last_time: 0,
    };
    let mut block_type = SECTION_HEADER.to_le_bytes();
    let mut first = true;
    loop {
        let offset = reader.offset - if first { 4 } else { 0 };
        let record = reader.packets + 1;
        if !first {
            let fill = reader.fill_header(&mut block_type);
            if !reader.complete(fill, record, offset, "a block header") {
                return;
            }
        }
        first = false;
        let Some(len) = block_length(reader, &mut section, block_type, offset) else {
            return;
        };
        let kind = section.order.u32(&block_type, 0);
        if !block(reader, &mut section, kind, len, offset) {
            return;
        }
    }
}

/// Reads the block's total length (for a section header, with the byte
/// order that comes with it) and checks it. `None` stops the reading.
fn block_length<R: Read>(
    reader: &mut CaptureReader<'_, R>,
    section: &mut Section,
    block_type: [u8; 4],
    offset: u64,
) -> Option<usize> {
    let record = reader.packets + 1;
    let is_section = u32::from_le_bytes(block_type) == SECTION_HEADER;
    let mut head = [0u8; 8];
    let wanted = if is_section { 8 } else { 4 };
    let fill = reader.fill_header(&mut head[..wanted]);
    if !reader.complete(
        fill.partial_if_end(wanted),
        record,
        offset,
        "a block header",
    ) {
        return None;
    }
    if is_section {
        section.order = match head[4..8] {
            [0x4d, 0x3c, 0x2b, 0x1a] => Order::Little,
            [0x1a, 0x2b, 0x3c, 0x4d] => Order::Big,
            _ => {
                let message = "section header with an unknown byte-order magic: reading stopped";
                reader.diagnose(record, offset, message.to_string());
                return None;
            }
        };
    }
    let len = section.order.u32(&head, 0) as usize;
    let minimum = if is_section { 28 } else { 12 };
    if len < minimum || !len.is_multiple_of(4) {
        let message = format!("block length {len} is impossible: reading stopped");
        reader.diagnose(record, offset, message);
        return None;
    }
    Some(len)
}

/// Reads one block of total length `len` whose type and length fields were
/// consumed. Returns whether reading can go on.
fn block<R: Read>(
    reader: &mut CaptureReader<'_, R>,
    section: &mut Section,
    block_type: u32,
    len: usize,
    offset: u64,
) -> bool {
    let record = reader.packets + 1;
    let consumed = if block_type == SECTION_HEADER { 12 } else { 8 };
    let rest = len - consumed;
    let wanted = matches!(
        block_type,
        SECTION_HEADER | INTERFACE_DESCRIPTION | OBSOLETE_PACKET | SIMPLE_PACKET | ENHANCED_PACKET
    );
    if !wanted {
        let fill = reader.skip(rest as u64).partial_if_end(rest);
        return reader.complete(fill, record, offset, "a block");
    }
    if len > MAX_BLOCK_LEN {
        let message = format!(
            "block length {len} exceeds the {MAX_BLOCK_LEN}-byte bound: \
             the file is corrupt from here; reading stopped"
        );
        reader.diagnose(record, offset, message);
        return false;
    }
    let fill = reader.fill_record(rest).partial_if_end(rest);
    if !reader.complete(fill, record, offset, "a block") {
        return false;
    }
    // The body, without the trailing copy of the length.
    let body_len = rest - 4;
    if section.order.u32(&reader.buf, body_len) as usize != len {
        let message = "block's trailing length differs from its leading one: reading stopped";
        reader.diagnose(record, offset, message.to_string());
        return false;
    }
    match block_type {
        SECTION_HEADER => section.interfaces.clear(),
        INTERFACE_DESCRIPTION => interface(reader, section, body_len, offset),
        _ => packet(reader, section, block_type, body_len, offset),
    }
    true
}

fn interface<R: Read>(
    reader: &mut CaptureReader<'_, R>,
    section: &mut Section,
    body_len: usize,
    offset: u64,
) {
    let body = reader.buf.get(..body_len).unwrap_or_default();
    let order = section.order;
    let mut interface = Interface {
        link_type: u32::from(order.u16(body, 0)),
        resolution: Resolution::Decimal(6),
        offset_seconds: 0,
    };
    // Options after link type, reserved and snaplen: code, length, value
    // padded to 4 bytes, until the end-of-options code or the body's end.
    let mut at: usize = 8;
    while let Some(value_at) = at.checked_add(4).filter(|&v| v <= body.len()) {
        let code = order.u16(body, at);
        let len = usize::from(order.u16(body, at + 2));
        let Some(value) = body.get(value_at..).and_then(|b| b.get(..len)) else {
            break;
        };
        match (code, value) {
            (0, _) => break,
            (9, &[resolution]) if resolution & 0x80 == 0 => {
                interface.resolution = Resolution::Decimal(resolution);
            }
            (9, &[resolution]) => interface.resolution = Resolution::Binary(resolution & 0x7f),
            (14, &[a, b, c, d, e, f, g, h]) => {
                let bytes = [a, b, c, d, e, f, g, h];
                interface.offset_seconds = match order {
                    Order::Little => i64::from_le_bytes(bytes),
                    Order::Big => i64::from_be_bytes(bytes),
                };
            }
            _ => {}
        }
        at = value_at + len.div_ceil(4) * 4;
    }
    if section.interfaces.len() == MAX_INTERFACES {
        let message = format!("more than {MAX_INTERFACES} interfaces: this one is ignored");
        reader.diagnose(reader.packets + 1, offset, message);
        return;
    }
    reader.check_link_type(interface.link_type, offset);
    section.interfaces.push(interface);
}

/// Decodes an enhanced, simple or obsolete packet block.
fn packet<R: Read>(
    reader: &mut CaptureReader<'_, R>,
    section: &mut Section,
    block_type: u32,
    body_len: usize,
    offset: u64,
) {
    let order = section.order;
    let body = reader.buf.get(..body_len).unwrap_or_default();
    let (interface_id, time, data_at, captured, original) = match block_type {
        SIMPLE_PACKET => {
            let original = order.u32(body, 0);
            let captured = (original as usize).min(body_len.saturating_sub(4));
            (0, None, 4, captured, original)
        }
        ENHANCED_PACKET | OBSOLETE_PACKET => {
            let id = if block_type == ENHANCED_PACKET {
                order.u32(body, 0) as usize
            } else {
                usize::from(order.u16(body, 0))
            };
            let stamp = (order.u32(body, 4), order.u32(body, 8));
            (
                id,
                Some(stamp),
                20,
                order.u32(body, 12) as usize,
                order.u32(body, 16),
            )
        }
        _ => return,
    };
    let Some(interface) = section.interfaces.get(interface_id).copied() else {
        reader.packets += 1;
        reader.stats.records += 1;
        reader.stats.skip("packet of an undeclared interface");
        return;
    };
    if body_len < data_at || captured > body_len - data_at {
        let record = reader.packets + 1;
        reader.packets += 1;
        reader.stats.records += 1;
        reader.stats.skip("packet block shorter than its packet");
        reader.diagnose(
            record,
            offset,
            format!("packet length {captured} exceeds its block"),
        );
        return;
    }
    let time = time.map_or(section.last_time, |(high, low)| interface.time(high, low));
    section.last_time = time;
    reader.packet(interface.link_type, data_at, captured, original, time);
}
