//! A small CIDR block type for `customer.allowed_ips`: `10.0.0.0/8`, `2001:db8::/32`, or a plain
//! address (a /32 or /128).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An IPv4 or IPv6 network: an address and a prefix length, with no host bits set.
///
/// An IPv4 block also matches IPv4-mapped IPv6 peers (`::ffff:10.0.0.1`), which is how a dual-stack
/// listener reports IPv4 clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix_len: u8,
}

/// Why a string is not a CIDR block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CidrError {
    /// The address part is not an IPv4 or IPv6 address.
    #[error("'{0}' is not an IP address")]
    BadAddress(String),
    /// The prefix length is not a number or longer than the address.
    #[error("prefix length '{len}' is not a number in 0..={max}")]
    BadPrefixLen {
        /// The text after the '/'.
        len: String,
        /// 32 for IPv4, 128 for IPv6.
        max: u8,
    },
    /// Bits below the prefix are set, which usually means a typo.
    #[error("'{given}' has host bits set; did you mean '{suggestion}'?")]
    HostBitsSet {
        /// The block as written.
        given: String,
        /// The network the prefix length describes.
        suggestion: String,
    },
}

impl Cidr {
    /// A block from its network address and prefix length.
    ///
    /// # Errors
    /// The prefix is longer than the address, or `addr` has bits set below the prefix.
    pub fn new(addr: IpAddr, prefix_len: u8) -> Result<Self, CidrError> {
        let max = max_len(addr);
        if prefix_len > max {
            return Err(CidrError::BadPrefixLen { len: prefix_len.to_string(), max });
        }
        let network = truncate(addr, prefix_len);
        if network != addr {
            return Err(CidrError::HostBitsSet {
                given: format!("{addr}/{prefix_len}"),
                suggestion: format!("{network}/{prefix_len}"),
            });
        }
        Ok(Self { addr, prefix_len })
    }

    /// The network address.
    #[must_use]
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length in bits.
    #[must_use]
    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// Whether `ip` lies in this block (IPv4 blocks also match IPv4-mapped IPv6 addresses).
    #[must_use]
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => v4_match(net, ip, self.prefix_len),
            (IpAddr::V4(net), IpAddr::V6(ip)) => {
                ip.to_ipv4_mapped().is_some_and(|ip| v4_match(net, ip, self.prefix_len))
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => v6_match(net, ip, self.prefix_len),
            (IpAddr::V6(net), IpAddr::V4(ip)) => v6_match(net, ip.to_ipv6_mapped(), self.prefix_len),
        }
    }
}

fn max_len(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

fn mask32(len: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}

fn mask128(len: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
}

fn v4_match(net: Ipv4Addr, ip: Ipv4Addr, len: u8) -> bool {
    (u32::from(net) ^ u32::from(ip)) & mask32(len) == 0
}

fn v6_match(net: Ipv6Addr, ip: Ipv6Addr, len: u8) -> bool {
    (u128::from(net) ^ u128::from(ip)) & mask128(len) == 0
}

fn truncate(addr: IpAddr, len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask32(len))),
        IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask128(len))),
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    /// Parses `ADDR/LEN` or a plain `ADDR` (a single host).
    fn from_str(s: &str) -> Result<Self, CidrError> {
        let (addr_text, len_text) = match s.split_once('/') {
            Some((addr, len)) => (addr, Some(len)),
            None => (s, None),
        };
        let addr: IpAddr =
            addr_text.trim().parse().map_err(|_| CidrError::BadAddress(addr_text.to_owned()))?;
        let max = max_len(addr);
        let prefix_len = match len_text {
            None => max,
            Some(len) => match len.trim().parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(CidrError::BadPrefixLen { len: len.to_owned(), max }),
            },
        };
        Cidr::new(addr, prefix_len)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

impl Serialize for Cidr {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_blocks_hosts_and_rejects_host_bits() {
        let block: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(block.contains("10.1.200.3".parse().unwrap()));
        assert!(!block.contains("10.2.0.1".parse().unwrap()));
        assert!(block.contains("::ffff:10.1.0.9".parse().unwrap()));
        let host: Cidr = "192.0.2.7".parse().unwrap();
        assert_eq!(host.prefix_len(), 32);
        assert!(host.contains("192.0.2.7".parse().unwrap()));
        assert!(!host.contains("192.0.2.8".parse().unwrap()));
        let any: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(any.contains("203.0.113.1".parse().unwrap()));
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains("2001:db8:1::1".parse().unwrap()));
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
        assert_eq!(
            "10.0.0.1/8".parse::<Cidr>(),
            Err(CidrError::HostBitsSet { given: "10.0.0.1/8".into(), suggestion: "10.0.0.0/8".into() })
        );
        assert!(matches!("10.0.0.0/33".parse::<Cidr>(), Err(CidrError::BadPrefixLen { .. })));
        assert!(matches!("10.0.0/8".parse::<Cidr>(), Err(CidrError::BadAddress(_))));
        assert_eq!(block.to_string().parse::<Cidr>(), Ok(block));
    }
}
