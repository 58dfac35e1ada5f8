//! One line of `conntrack -E` (or `conntrack -L`) output, parsed:
//!
//! ```text
//! [1795345175.431827]    [NEW] tcp      6 120 SYN_SENT src=10.77.0.11 dst=10.77.0.12 sport=33772 dport=8080 [UNREPLIED] src=10.77.0.12 dst=10.77.0.11 sport=8080 dport=33772
//! ```
//!
//! An optional `[epoch.usec]` stamp and a tab (`-o timestamp`), the event type (absent
//! in `-L` listings), an optional layer 3 (`ipv4 2`, `-o extended`), the
//! protocol name and number, an optional timeout and TCP/SCTP state, then
//! the original tuple, the reply tuple, flags (`[UNREPLIED]`, `[ASSURED]`)
//! and `key=value` attributes in any order. Unknown attributes and tokens
//! are ignored, so newer conntrack versions still read.

use std::net::IpAddr;

use crate::generic::time::parse_epoch_seconds;
use crate::model::{Micros, Transport};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    New,
    Update,
    Destroy,
    /// A `conntrack -L` line: the entry as it is, no event.
    Listed,
}

/// One direction of a connection as conntrack tracks it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tuple {
    pub src: Option<IpAddr>,
    pub dst: Option<IpAddr>,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    /// ICMP type, code and identifier.
    pub icmp_type: Option<u8>,
    pub icmp_code: Option<u8>,
    pub icmp_id: Option<u16>,
    /// Counters, when accounting is on (`nf_conntrack_acct`).
    pub packets: Option<u64>,
    pub bytes: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConntrackEvent {
    pub time: Option<Micros>,
    pub kind: EventKind,
    pub transport: Transport,
    pub timeout: Option<u64>,
    /// TCP (or SCTP, DCCP) state as conntrack names it: `SYN_SENT`, `CLOSE`.
    pub state: Option<String>,
    pub original: Tuple,
    pub reply: Option<Tuple>,
    pub unreplied: bool,
    pub assured: bool,
    pub mark: Option<u64>,
    pub zone: Option<u16>,
    /// The entry's id (`-o id`).
    pub id: Option<u64>,
}

/// What a line of conntrack output is.
// Nearly every line is an event: boxing it would cost an allocation per
// line to shrink a value that is moved once.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConntrackLine {
    Event(ConntrackEvent),
    /// A line conntrack writes about itself, such as
    /// `conntrack v1.4.6 (conntrack-tools): 16 flow events have been shown.`
    Banner,
}

/// Parses one line. `Err` is the reason it is not conntrack output.
pub fn parse_conntrack_line(line: &[u8]) -> Result<ConntrackLine, String> {
    let text = std::str::from_utf8(line).map_err(|error| {
        format!(
            "not UTF-8 text (invalid byte at column {})",
            error.valid_up_to() + 1
        )
    })?;
    if text.trim_start().starts_with("conntrack v") {
        return Ok(ConntrackLine::Banner);
    }
    let mut tokens = text.split_ascii_whitespace().peekable();
    let mut time = None;
    if let Some(stamp) = tokens.peek().and_then(|t| bracketed(t))
        && stamp.starts_with(|c: char| c.is_ascii_digit())
    {
        let micros = parse_epoch_seconds(stamp).map_err(|e| format!("timestamp [{stamp}]: {e}"))?;
        time = Some(micros);
        tokens.next();
    }
    let kind = match tokens.peek().copied() {
        Some("[NEW]") => EventKind::New,
        Some("[UPDATE]") => EventKind::Update,
        Some("[DESTROY]") => EventKind::Destroy,
        _ => EventKind::Listed,
    };
    if kind != EventKind::Listed {
        tokens.next();
    }
    if matches!(tokens.peek().copied(), Some("ipv4" | "ipv6")) {
        tokens.next();
        tokens.next();
    }
    let name = tokens.next().ok_or("no protocol")?;
    let number = tokens.next().ok_or("no protocol number")?;
    let number: u8 = number
        .parse()
        .map_err(|_| format!("protocol {name} has number {number:?}, not 0-255"))?;
    let mut event = ConntrackEvent {
        time,
        kind,
        transport: Transport::from_ip_protocol(number),
        timeout: None,
        state: None,
        original: Tuple::default(),
        reply: None,
        unreplied: false,
        assured: false,
        mark: None,
        zone: None,
        id: None,
    };
    if let Some(timeout) = tokens.peek().and_then(|t| t.parse().ok()) {
        event.timeout = Some(timeout);
        tokens.next();
    }
    if let Some(state) = tokens.peek().filter(|t| is_state(t)) {
        event.state = Some(state.to_string());
        tokens.next();
    }
    for token in tokens {
        event.token(token)?;
    }
    event.check()?;
    Ok(ConntrackLine::Event(event))
}

fn bracketed(token: &str) -> Option<&str> {
    token.strip_prefix('[')?.strip_suffix(']')
}

fn is_state(token: &str) -> bool {
    !token.is_empty() && token.bytes().all(|c| c.is_ascii_uppercase() || c == b'_')
}

impl ConntrackEvent {
    fn token(&mut self, token: &str) -> Result<(), String> {
        if let Some(flag) = bracketed(token) {
            match flag {
                "UNREPLIED" => self.unreplied = true,
                "ASSURED" => self.assured = true,
                _ => {} // [OFFLOAD], [HW_OFFLOAD], [DYING]...
            }
            return Ok(());
        }
        let Some((key, value)) = token.split_once('=') else {
            return Ok(()); // e.g. the words of a `[start=...]` date
        };
        let bad = || format!("{key}={value:?} is not a valid value");
        if key == "src" {
            self.start_tuple();
        }
        match key {
            "mark" => self.mark = Some(value.parse().map_err(|_| bad())?),
            "zone" => self.zone = Some(value.parse().map_err(|_| bad())?),
            "id" if !self.takes_icmp_id() => self.id = Some(value.parse().map_err(|_| bad())?),
            _ => self.tuple_field(key, value).ok_or_else(bad)?,
        }
        Ok(())
    }

    /// The first `src=` opens the original tuple, the second the reply.
    fn start_tuple(&mut self) {
        if self.original.src.is_some() {
            self.reply = Some(Tuple::default());
        }
    }

    fn current_tuple(&mut self) -> &mut Tuple {
        match &mut self.reply {
            Some(reply) => reply,
            None => &mut self.original,
        }
    }

    /// ICMP tuples have an `id=` of their own; the entry's `id=` (`-o id`)
    /// comes after both tuples have theirs.
    fn takes_icmp_id(&mut self) -> bool {
        matches!(self.transport, Transport::Icmp | Transport::Icmpv6)
            && self.current_tuple().icmp_id.is_none()
    }

    /// Sets a tuple field; `None` when the value does not parse. Keys that
    /// are not tuple fields are ignored.
    fn tuple_field(&mut self, key: &str, value: &str) -> Option<()> {
        let tuple = self.current_tuple();
        match key {
            "src" => tuple.src = Some(value.parse().ok()?),
            "dst" => tuple.dst = Some(value.parse().ok()?),
            "sport" => tuple.sport = Some(value.parse().ok()?),
            "dport" => tuple.dport = Some(value.parse().ok()?),
            "type" => tuple.icmp_type = Some(value.parse().ok()?),
            "code" => tuple.icmp_code = Some(value.parse().ok()?),
            "id" => tuple.icmp_id = Some(value.parse().ok()?),
            "packets" => tuple.packets = Some(value.parse().ok()?),
            "bytes" => tuple.bytes = Some(value.parse().ok()?),
            _ => {}
        }
        Some(())
    }

    fn check(&self) -> Result<(), String> {
        let original = &self.original;
        if original.src.is_none() || original.dst.is_none() {
            return Err("no original tuple (src= dst=)".to_string());
        }
        if self.transport.has_ports() && (original.sport.is_none() || original.dport.is_none()) {
            return Err(format!(
                "{} entry without sport= and dport=",
                self.transport
            ));
        }
        Ok(())
    }
}
