//! The outside world as disjoint address ranges: the IPv4 and IPv6 spaces
//! cut at every boundary of every `ipBlock` (cidr and except), so that each
//! range is inside or outside every block, and all its addresses are
//! treated alike by every policy.

use std::collections::BTreeSet;
use std::net::IpAddr;

use palisade_inventory::cidr::ip_to_u128;
use palisade_inventory::{Cidr, Family, IpRange, NetworkPolicy, Peer};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExternalRanges {
    /// Sorted by family then start; together they cover both spaces.
    ranges: Vec<IpRange>,
}

impl ExternalRanges {
    pub fn from_policies(policies: &[NetworkPolicy], extra_cuts: &[IpRange]) -> ExternalRanges {
        let mut cuts = extra_cuts.to_vec();
        for policy in policies {
            for rule in policy.ingress.iter().chain(&policy.egress) {
                for peer in &rule.peers {
                    if let Peer::IpBlock { cidr, except } = peer {
                        cuts.push(cidr.range());
                        cuts.extend(except.iter().map(Cidr::range));
                    }
                }
            }
        }
        ExternalRanges::cut(&cuts)
    }

    /// The ranges `roxctl netpol connectivity` prints for one direction:
    /// the address space cut at the edges of every ipBlock of that
    /// direction's rules (ingress `from` for sources, egress `to` for
    /// destinations), each block taken as `cidr` minus its `except`s, in
    /// every policy. Boundaries that change no block's membership (an
    /// `except` inside another, or equal to its `cidr`) do not cut, and
    /// neighbouring ranges are never merged, even with equal connections.
    /// The engine's own cut refines these, so each printed range is judged
    /// alike throughout.
    pub fn printed(policies: &[NetworkPolicy], ingress: bool) -> ExternalRanges {
        let mut cuts = Vec::new();
        for policy in policies {
            let rules = if ingress {
                &policy.ingress
            } else {
                &policy.egress
            };
            for peer in rules.iter().flat_map(|r| &r.peers) {
                if let Peer::IpBlock { cidr, except } = peer {
                    cuts.extend(block_intervals(cidr, except));
                }
            }
        }
        ExternalRanges::cut(&cuts)
    }

    /// Cuts both address spaces at the starts and ends of `cuts`.
    pub fn cut(cuts: &[IpRange]) -> ExternalRanges {
        let mut ranges = Vec::new();
        for family in [Family::V4, Family::V6] {
            // Each boundary is the first address of a new range.
            let mut starts: BTreeSet<u128> = BTreeSet::from([0]);
            for c in cuts.iter().filter(|c| c.family == family) {
                starts.insert(c.start);
                if c.end < family.max() {
                    starts.insert(c.end + 1);
                }
            }
            let starts: Vec<u128> = starts.into_iter().collect();
            for (i, &start) in starts.iter().enumerate() {
                let end = starts.get(i + 1).map_or(family.max(), |next| next - 1);
                ranges.push(IpRange { family, start, end });
            }
        }
        ExternalRanges { ranges }
    }

    pub fn ranges(&self) -> &[IpRange] {
        &self.ranges
    }

    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    pub fn index_of(&self, ip: IpAddr) -> usize {
        let key = (Family::of(ip), ip_to_u128(ip));
        // The ranges cover both spaces, so the range that starts at or
        // before the address always exists.
        self.ranges
            .partition_point(|r| (r.family, r.start) <= key)
            .saturating_sub(1)
    }

    /// Indices of the ranges inside `cidr` and outside every `except`.
    pub fn indices_in(&self, cidr: &Cidr, except: &[Cidr]) -> Vec<usize> {
        let block = cidr.range();
        let first = self
            .ranges
            .partition_point(|r| (r.family, r.start) < (block.family, block.start));
        (first..self.ranges.len())
            .take_while(|&i| block.contains_range(&self.ranges[i]))
            .filter(|&i| {
                !except
                    .iter()
                    .any(|e| e.range().contains_range(&self.ranges[i]))
            })
            .collect()
    }
}

/// `cidr` minus its `except`s as maximal contiguous intervals.
fn block_intervals(cidr: &Cidr, except: &[Cidr]) -> Vec<IpRange> {
    let block = cidr.range();
    let mut holes: Vec<IpRange> = except
        .iter()
        .map(Cidr::range)
        .filter(|h| h.family == block.family)
        .collect();
    holes.sort_by_key(|h| h.start);
    let mut out = Vec::new();
    let mut next = block.start;
    let mut exhausted = false;
    for hole in holes {
        if exhausted || hole.end < next {
            continue;
        }
        if hole.start > next {
            out.push(IpRange {
                family: block.family,
                start: next,
                end: (hole.start - 1).min(block.end),
            });
        }
        match hole.end.checked_add(1) {
            Some(after) if after <= block.end => next = next.max(after),
            _ => exhausted = true,
        }
    }
    if !exhausted && next <= block.end {
        out.push(IpRange {
            family: block.family,
            start: next,
            end: block.end,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn no_cuts_gives_two_whole_spaces() {
        let r = ExternalRanges::cut(&[]);
        assert_eq!(r.len(), 2);
        assert_eq!(r.ranges()[0].to_string(), "0.0.0.0-255.255.255.255");
    }

    #[test]
    fn block_with_except_makes_uniform_ranges() {
        let r = ExternalRanges::cut(&[cidr("10.0.0.0/8").range(), cidr("10.1.0.0/16").range()]);
        let v4: Vec<String> = r
            .ranges()
            .iter()
            .filter(|r| r.family == Family::V4)
            .map(|r| r.to_string())
            .collect();
        assert_eq!(
            v4,
            [
                "0.0.0.0-9.255.255.255",
                "10.0.0.0-10.0.255.255",
                "10.1.0.0-10.1.255.255",
                "10.2.0.0-10.255.255.255",
                "11.0.0.0-255.255.255.255"
            ]
        );
        let inside = r.indices_in(&cidr("10.0.0.0/8"), &[cidr("10.1.0.0/16")]);
        assert_eq!(inside, [1, 3]);
        assert_eq!(r.index_of("10.1.2.3".parse().unwrap()), 2);
        assert_eq!(r.index_of("255.255.255.255".parse().unwrap()), 4);
        assert_eq!(r.index_of("::1".parse().unwrap()), 5);
    }

    fn v4_strings(r: &ExternalRanges) -> Vec<String> {
        r.ranges()
            .iter()
            .filter(|r| r.family == Family::V4)
            .map(|r| format!("{}-{}", r.first(), r.last()))
            .collect()
    }

    #[test]
    fn block_intervals_drop_holes() {
        let b = block_intervals(
            &cidr("10.0.0.0/8"),
            &[cidr("10.1.0.0/16"), cidr("10.1.2.0/24")],
        );
        let s: Vec<String> = b.iter().map(|r| r.to_string()).collect();
        assert_eq!(s, ["10.0.0.0-10.0.255.255", "10.2.0.0-10.255.255.255"]);
        assert!(block_intervals(&cidr("10.0.0.0/8"), &[cidr("10.0.0.0/8")]).is_empty());
        let edge = block_intervals(&cidr("10.0.0.0/8"), &[cidr("10.255.0.0/16")]);
        assert_eq!(edge[0].to_string(), "10.0.0.0-10.254.255.255");
    }

    #[test]
    fn printed_ranges_follow_roxctl() {
        let text = "kind: NetworkPolicy\nmetadata: {name: p, namespace: a}\nspec:\n  podSelector: {}\n  ingress:\n  - from:\n    - ipBlock: {cidr: 10.0.0.0/8, except: [10.10.0.0/16, 10.10.1.0/24]}\n  egress:\n  - to:\n    - ipBlock: {cidr: 192.168.0.0/16, except: [192.168.0.0/17, 192.168.0.0/18]}\n";
        let (inv, _) = palisade_inventory::Inventory::from_texts([("p.yaml", text)]);
        let sources = ExternalRanges::printed(&inv.policies, true);
        assert_eq!(
            v4_strings(&sources),
            [
                "0.0.0.0-9.255.255.255",
                "10.0.0.0-10.9.255.255",
                "10.10.0.0-10.10.255.255",
                "10.11.0.0-10.255.255.255",
                "11.0.0.0-255.255.255.255"
            ]
        );
        // Egress blocks cut only destinations; an except inside another
        // changes no membership, so it cuts nothing.
        let destinations = ExternalRanges::printed(&inv.policies, false);
        assert_eq!(
            v4_strings(&destinations),
            [
                "0.0.0.0-192.168.127.255",
                "192.168.128.0-192.168.255.255",
                "192.169.0.0-255.255.255.255"
            ]
        );
    }

    #[test]
    fn whole_space_block() {
        let r = ExternalRanges::cut(&[cidr("0.0.0.0/0").range()]);
        assert_eq!(r.indices_in(&cidr("0.0.0.0/0"), &[]), [0]);
        assert_eq!(r.indices_in(&cidr("::/0"), &[]), [1]);
    }
}
