//! Sets of connections: for each protocol, a set of port ranges over
//! 1-65535. Canonical (sorted, disjoint, non-adjacent ranges), so equal sets
//! compare and hash equal and can be interned.

use std::fmt;

use palisade_inventory::Protocol;

pub const MIN_PORT: u16 = 1;
pub const MAX_PORT: u16 = 65535;

/// Inclusive port ranges, canonical.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortSet(Vec<(u16, u16)>);

impl PortSet {
    pub fn all() -> PortSet {
        PortSet(vec![(MIN_PORT, MAX_PORT)])
    }

    pub fn ranges(&self) -> &[(u16, u16)] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn is_all(&self) -> bool {
        self.0 == [(MIN_PORT, MAX_PORT)]
    }

    pub fn contains(&self, port: u16) -> bool {
        let i = self.0.partition_point(|&(_, hi)| hi < port);
        self.0.get(i).is_some_and(|&(lo, _)| lo <= port)
    }

    pub fn add(&mut self, lo: u16, hi: u16) {
        let lo = lo.max(MIN_PORT);
        if lo > hi {
            return;
        }
        self.0.push((lo, hi));
        self.normalize();
    }

    fn normalize(&mut self) {
        self.0.sort_unstable();
        let mut merged: Vec<(u16, u16)> = Vec::with_capacity(self.0.len());
        for &(lo, hi) in &self.0 {
            match merged.last_mut() {
                Some(last) if u32::from(lo) <= u32::from(last.1) + 1 => last.1 = last.1.max(hi),
                _ => merged.push((lo, hi)),
            }
        }
        self.0 = merged;
    }

    pub fn union(&self, other: &PortSet) -> PortSet {
        let mut out = PortSet([self.0.as_slice(), other.0.as_slice()].concat());
        out.normalize();
        out
    }

    pub fn intersect(&self, other: &PortSet) -> PortSet {
        let mut out = Vec::new();
        let (mut i, mut j) = (0, 0);
        while i < self.0.len() && j < other.0.len() {
            let (a_lo, a_hi) = self.0[i];
            let (b_lo, b_hi) = other.0[j];
            let (lo, hi) = (a_lo.max(b_lo), a_hi.min(b_hi));
            if lo <= hi {
                out.push((lo, hi));
            }
            if a_hi < b_hi {
                i += 1;
            } else {
                j += 1;
            }
        }
        PortSet(out)
    }

    pub fn complement(&self) -> PortSet {
        let mut out = Vec::new();
        let mut next = u32::from(MIN_PORT);
        for &(lo, hi) in &self.0 {
            if u32::from(lo) > next {
                out.push((next as u16, lo - 1));
            }
            next = u32::from(hi) + 1;
        }
        if next <= u32::from(MAX_PORT) {
            out.push((next as u16, MAX_PORT));
        }
        PortSet(out)
    }

    pub fn difference(&self, other: &PortSet) -> PortSet {
        self.intersect(&other.complement())
    }
}

impl fmt::Display for PortSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, &(lo, hi)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if lo == hi {
                write!(f, "{lo}")?;
            } else {
                write!(f, "{lo}-{hi}")?;
            }
        }
        Ok(())
    }
}

/// A set of (protocol, port) pairs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnSet {
    /// Indexed by [`proto_index`]: TCP, UDP, SCTP.
    ports: [PortSet; 3],
}

fn proto_index(p: Protocol) -> usize {
    match p {
        Protocol::Tcp => 0,
        Protocol::Udp => 1,
        Protocol::Sctp => 2,
    }
}

impl ConnSet {
    pub fn none() -> ConnSet {
        ConnSet::default()
    }

    pub fn all() -> ConnSet {
        ConnSet {
            ports: [PortSet::all(), PortSet::all(), PortSet::all()],
        }
    }

    pub fn protocol_all(protocol: Protocol) -> ConnSet {
        let mut c = ConnSet::none();
        c.ports[proto_index(protocol)] = PortSet::all();
        c
    }

    pub fn single(protocol: Protocol, lo: u16, hi: u16) -> ConnSet {
        let mut c = ConnSet::none();
        c.add(protocol, lo, hi);
        c
    }

    pub fn add(&mut self, protocol: Protocol, lo: u16, hi: u16) {
        self.ports[proto_index(protocol)].add(lo, hi);
    }

    pub fn ports(&self, protocol: Protocol) -> &PortSet {
        &self.ports[proto_index(protocol)]
    }

    pub fn is_empty(&self) -> bool {
        self.ports.iter().all(PortSet::is_empty)
    }

    pub fn is_all(&self) -> bool {
        self.ports.iter().all(PortSet::is_all)
    }

    pub fn contains(&self, protocol: Protocol, port: u16) -> bool {
        self.ports[proto_index(protocol)].contains(port)
    }

    fn zip(&self, other: &ConnSet, op: impl Fn(&PortSet, &PortSet) -> PortSet) -> ConnSet {
        ConnSet {
            ports: std::array::from_fn(|i| op(&self.ports[i], &other.ports[i])),
        }
    }

    pub fn union(&self, other: &ConnSet) -> ConnSet {
        self.zip(other, PortSet::union)
    }

    pub fn intersect(&self, other: &ConnSet) -> ConnSet {
        self.zip(other, PortSet::intersect)
    }

    pub fn difference(&self, other: &ConnSet) -> ConnSet {
        self.zip(other, PortSet::difference)
    }

    /// Keeps only the given protocol (and, if given, the given port).
    pub fn restrict(&self, protocol: Option<Protocol>, port: Option<u16>) -> ConnSet {
        let mut filter = match protocol {
            Some(p) => ConnSet::protocol_all(p),
            None => ConnSet::all(),
        };
        if let Some(port) = port {
            for ps in &mut filter.ports {
                *ps = ps.intersect(&PortSet(vec![(port, port)]));
            }
        }
        self.intersect(&filter)
    }
}

/// Protocols in the order `roxctl netpol` prints them (alphabetical).
const DISPLAY_ORDER: [Protocol; 3] = [Protocol::Sctp, Protocol::Tcp, Protocol::Udp];

impl fmt::Display for ConnSet {
    /// The notation of `roxctl netpol connectivity`: `All Connections`,
    /// `No Connections`, or each protocol with its ports, alphabetically:
    /// `TCP 80,443,UDP 53`, `SCTP 1-65535,TCP 1-79,81-65535`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_all() {
            return f.write_str("All Connections");
        }
        if self.is_empty() {
            return f.write_str("No Connections");
        }
        let mut first = true;
        for p in DISPLAY_ORDER {
            let ports = self.ports(p);
            if ports.is_empty() {
                continue;
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            write!(f, "{p} {ports}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Protocol::*;

    #[test]
    fn formats_like_roxctl() {
        let mut c = ConnSet::single(Tcp, 443, 443);
        c.add(Tcp, 80, 80);
        c.add(Udp, 53, 53);
        assert_eq!(c.to_string(), "TCP 80,443,UDP 53");
        assert_eq!(ConnSet::all().to_string(), "All Connections");
        assert_eq!(ConnSet::none().to_string(), "No Connections");
        let mut holes = ConnSet::single(Tcp, 1, 65535);
        holes = holes.difference(&ConnSet::single(Tcp, 80, 80));
        assert_eq!(holes.to_string(), "TCP 1-79,81-65535");
        assert_eq!(ConnSet::protocol_all(Sctp).to_string(), "SCTP 1-65535");
        let mut mixed = ConnSet::protocol_all(Udp);
        mixed.add(Sctp, 9, 9);
        mixed.add(Tcp, 1, 79);
        assert_eq!(mixed.to_string(), "SCTP 9,TCP 1-79,UDP 1-65535");
    }

    #[test]
    fn adjacent_ranges_merge() {
        let mut p = PortSet::default();
        p.add(10, 20);
        p.add(21, 30);
        p.add(5, 5);
        assert_eq!(p.ranges(), [(5, 5), (10, 30)]);
        assert!(p.contains(30) && p.contains(5) && !p.contains(6) && !p.contains(31));
    }

    #[test]
    fn set_algebra() {
        let a = ConnSet::single(Tcp, 1, 100);
        let b = ConnSet::single(Tcp, 50, 200);
        assert_eq!(a.intersect(&b), ConnSet::single(Tcp, 50, 100));
        assert_eq!(a.union(&b), ConnSet::single(Tcp, 1, 200));
        assert_eq!(a.difference(&b), ConnSet::single(Tcp, 1, 49));
        assert_eq!(ConnSet::all().difference(&ConnSet::all()), ConnSet::none());
        assert_eq!(PortSet::default().complement(), PortSet::all());
        assert!(!ConnSet::protocol_all(Sctp).contains(Tcp, 80));
    }
}
