//! CIDR blocks (`10.0.0.0/8`, `2001:db8::/32`, or a bare address meaning one host), for the
//! address bindings of tokens, AppRole secret-ids and policy conditions.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An address block. A bare address parses as a block of one (`/32` or `/128`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

/// Why a CIDR block did not parse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CidrError(String);

impl fmt::Display for CidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CidrError {}

impl Cidr {
    /// The block's first address (host bits cleared) and prefix length.
    pub fn network(&self) -> IpAddr {
        self.network
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `address` lies in the block. An IPv4 address mapped into IPv6 (`::ffff:a.b.c.d`)
    /// matches the IPv4 block it maps, as a dual-stack socket reports IPv4 clients that way.
    pub fn contains(&self, address: IpAddr) -> bool {
        let address = match address {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
            v4 => v4,
        };
        match (self.network, address) {
            (IpAddr::V4(net), IpAddr::V4(addr)) => {
                mask_v4(u32::from(addr), self.prefix) == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(addr)) => {
                mask_v6(u128::from(addr), self.prefix) == u128::from(net)
            }
            _ => false,
        }
    }

    /// Whether any block in `blocks` holds `address`; an empty list holds every address.
    pub fn any_contains(blocks: &[Cidr], address: IpAddr) -> bool {
        blocks.is_empty() || blocks.iter().any(|block| block.contains(address))
    }
}

fn mask_v4(bits: u32, prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        bits & (u32::MAX << (32 - u32::from(prefix)))
    }
}

fn mask_v6(bits: u128, prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        bits & (u128::MAX << (128 - u32::from(prefix)))
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    /// Parses `a.b.c.d/n`, `x::y/n` or a bare address. Host bits after the prefix are cleared,
    /// as Vault accepts `10.1.2.3/8` and means `10.0.0.0/8`.
    fn from_str(text: &str) -> Result<Cidr, CidrError> {
        let text = text.trim();
        let invalid = || CidrError(format!("invalid CIDR block {text:?}"));
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let address: IpAddr = address.parse().map_err(|_| invalid())?;
        let max = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(digits) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
                digits.parse::<u8>().map_err(|_| invalid())?
            }
            Some(_) => return Err(invalid()),
        };
        if prefix > max {
            return Err(invalid());
        }
        let network = match address {
            IpAddr::V4(v4) => IpAddr::V4(mask_v4(u32::from(v4), prefix).into()),
            IpAddr::V6(v6) => IpAddr::V6(mask_v6(u128::from(v6), prefix).into()),
        };
        Ok(Cidr { network, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap_or_else(|_| panic!("{text}"))
    }

    fn cidr(text: &str) -> Cidr {
        text.parse()
            .unwrap_or_else(|error| panic!("{text}: {error}"))
    }

    #[test]
    fn blocks_hold_their_addresses() {
        assert!(cidr("127.0.0.0/8").contains(ip("127.0.0.2")));
        assert!(!cidr("127.0.0.2/32").contains(ip("127.0.0.3")));
        assert!(cidr("127.0.0.2").contains(ip("127.0.0.2")));
        assert!(cidr("0.0.0.0/0").contains(ip("8.8.8.8")));
        assert!(!cidr("0.0.0.0/0").contains(ip("::1")));
        assert!(cidr("::1").contains(ip("::1")));
        assert!(cidr("2001:db8::/32").contains(ip("2001:db8:1::5")));
        assert!(!cidr("2001:db8::/32").contains(ip("2001:db9::5")));
        assert!(cidr("10.0.0.0/8").contains(ip("::ffff:10.1.2.3")));
        assert_eq!(cidr("10.1.2.3/8").to_string(), "10.0.0.0/8");
        assert!(Cidr::any_contains(&[], ip("1.2.3.4")));
    }

    #[test]
    fn networks_for_the_seal_guard_hold_their_addresses() {
        let private = cidr("10.0.0.0/8");
        assert!(private.contains(ip("10.1.2.3")));
        assert!(!private.contains(ip("11.0.0.1")));
        assert!(!private.contains(ip("::1")));
        assert!(private.contains(ip("::ffff:10.9.9.9")));
        let loopback6 = cidr("::1/128");
        assert!(loopback6.contains(ip("::1")));
        assert!(!loopback6.contains(ip("::2")));
        assert!(cidr("0.0.0.0/0").contains(ip("203.0.113.9")));
        let host = cidr("127.0.0.1");
        assert_eq!(host.to_string(), "127.0.0.1/32");
        assert!(host.contains(ip("127.0.0.1")));
        assert!(!host.contains(ip("127.0.0.2")));
        assert!("10.0.0.0/-1".parse::<Cidr>().is_err());
    }

    #[test]
    fn bad_blocks_are_refused() {
        for bad in [
            "",
            "10.0.0.0/",
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "x",
            "10.0.0.0/+8",
            "1.2.3.4/8/8",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn parsing_never_panics(text in "\\PC{0,40}") {
            let _ = text.parse::<Cidr>();
        }

        #[test]
        fn a_block_holds_its_network_and_display_round_trips(a: u32, prefix in 0u8..=32) {
            let block: Cidr = format!("{}/{prefix}", std::net::Ipv4Addr::from(a)).parse().unwrap();
            proptest::prop_assert!(block.contains(IpAddr::V4(a.into())));
            proptest::prop_assert_eq!(block.to_string().parse::<Cidr>().unwrap(), block);
        }
    }
}
