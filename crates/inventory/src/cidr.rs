//! CIDR blocks and address ranges over IPv4 and IPv6.
//!
//! Addresses are handled as integers (`u128`, IPv4 in the low 32 bits) tagged
//! with their family, so ranges of both families share one code path.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(ip: IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    pub fn bits(self) -> u8 {
        match self {
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }

    pub fn max(self) -> u128 {
        match self {
            Family::V4 => u32::MAX as u128,
            Family::V6 => u128::MAX,
        }
    }

    pub fn addr(self, value: u128) -> IpAddr {
        match self {
            // Truncation is intended: V4 values never exceed u32::MAX.
            Family::V4 => IpAddr::V4(Ipv4Addr::from(value as u32)),
            Family::V6 => IpAddr::V6(Ipv6Addr::from(value)),
        }
    }
}

pub fn ip_to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u32::from(v4) as u128,
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// An inclusive range of addresses of one family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpRange {
    pub family: Family,
    pub start: u128,
    pub end: u128,
}

impl IpRange {
    pub fn whole(family: Family) -> IpRange {
        IpRange {
            family,
            start: 0,
            end: family.max(),
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        Family::of(ip) == self.family && (self.start..=self.end).contains(&ip_to_u128(ip))
    }

    pub fn contains_range(&self, other: &IpRange) -> bool {
        self.family == other.family && self.start <= other.start && other.end <= self.end
    }

    pub fn first(&self) -> IpAddr {
        self.family.addr(self.start)
    }

    pub fn last(&self) -> IpAddr {
        self.family.addr(self.end)
    }
}

impl fmt::Display for IpRange {
    /// `a-b` as `roxctl netpol` prints ranges; a single address as itself.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.first())
        } else {
            write!(f, "{}-{}", self.first(), self.last())
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    pub family: Family,
    /// The network address, host bits cleared.
    pub network: u128,
    pub prefix: u8,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid CIDR {text:?}: {reason}")]
pub struct CidrError {
    pub text: String,
    pub reason: &'static str,
}

impl Cidr {
    pub fn range(&self) -> IpRange {
        let host_bits = u32::from(self.family.bits() - self.prefix);
        let host_mask = if host_bits == 128 {
            u128::MAX
        } else {
            (1u128 << host_bits) - 1
        };
        IpRange {
            family: self.family,
            start: self.network,
            end: self.network | host_mask,
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.range().contains(ip)
    }

    pub fn host(ip: IpAddr) -> Cidr {
        let family = Family::of(ip);
        Cidr {
            family,
            network: ip_to_u128(ip),
            prefix: family.bits(),
        }
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    /// Like Go's `net.ParseCIDR`, which the API server uses for `ipBlock`:
    /// an address and a prefix length are both required; host bits are
    /// masked off.
    fn from_str(text: &str) -> Result<Cidr, CidrError> {
        let err = |reason| CidrError {
            text: text.to_string(),
            reason,
        };
        let (addr, prefix) = text.split_once('/').ok_or_else(|| err("missing /prefix"))?;
        let ip: IpAddr = addr.parse().map_err(|_| err("not an IP address"))?;
        let family = Family::of(ip);
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= family.bits())
            .ok_or_else(|| err("prefix length out of range"))?;
        let host_bits = u32::from(family.bits() - prefix);
        let network = if host_bits == 128 {
            0
        } else {
            ip_to_u128(ip) & !((1u128 << host_bits) - 1)
        };
        Ok(Cidr {
            family,
            network,
            prefix,
        })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.family.addr(self.network), self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_masks_host_bits() {
        let c: Cidr = "10.1.2.3/8".parse().unwrap();
        assert_eq!(c.to_string(), "10.0.0.0/8");
        assert_eq!(c.range().to_string(), "10.0.0.0-10.255.255.255");
    }

    #[test]
    fn whole_spaces() {
        let v4: Cidr = "0.0.0.0/0".parse().unwrap();
        assert_eq!(v4.range(), IpRange::whole(Family::V4));
        let v6: Cidr = "::/0".parse().unwrap();
        assert_eq!(v6.range(), IpRange::whole(Family::V6));
        assert!(v6.contains("fd00:ec2::254".parse().unwrap()));
        assert!(!v6.contains("1.2.3.4".parse().unwrap()));
    }

    #[test]
    fn host_routes() {
        let c: Cidr = "169.254.169.254/32".parse().unwrap();
        assert_eq!(c.range().to_string(), "169.254.169.254");
        let c: Cidr = "fd00:ec2::254/128".parse().unwrap();
        assert!(c.contains("fd00:ec2::254".parse().unwrap()));
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "10.0.0.0",
            "10.0.0.0/33",
            "::/129",
            "x/8",
            "10.0.0.0/-1",
            "",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }
}
