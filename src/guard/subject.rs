//! The unit that failure counters, bans and connection limits are kept for: one IPv4 address,
//! or one IPv6 /64. A single IPv6 host usually holds a whole /64, so counting per IPv6 address
//! would let it walk around every limit by changing its low bits.
use super::client_ip::normalise;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Subject(IpNet);

impl Subject {
    /// The subject an address belongs to (IPv4-mapped addresses count as IPv4).
    pub fn of(ip: IpAddr) -> Subject {
        match normalise(ip) {
            IpAddr::V4(v4) => Subject(IpNet::V4(Ipv4Net::from(v4))),
            IpAddr::V6(v6) => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                let net = Ipv6Net::new(Ipv6Addr::from(bits), 64).unwrap_or(Ipv6Net::from(v6));
                Subject(IpNet::V6(net))
            }
        }
    }

    /// `203.0.113.9`, `2001:db8::1` (its /64) or `2001:db8::/64`.
    pub fn parse(s: &str) -> Option<Subject> {
        let s = s.trim();
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Some(Subject::of(ip));
        }
        match s.parse::<IpNet>().ok()? {
            IpNet::V4(n) if n.prefix_len() == 32 => Some(Subject::of(IpAddr::V4(n.addr()))),
            IpNet::V6(n) if n.prefix_len() == 64 => Some(Subject::of(IpAddr::V6(n.addr()))),
            _ => None,
        }
    }

    pub fn net(&self) -> IpNet {
        self.0
    }

    /// True when any of `nets` covers this subject, wholly or in part.
    pub fn touches(&self, nets: &[IpNet]) -> bool {
        nets.iter().any(|n| {
            let n = match (n, normalise(n.addr())) {
                (IpNet::V6(v6), IpAddr::V4(v4)) if v6.prefix_len() >= 96 => {
                    Ipv4Net::new(v4, v6.prefix_len() - 96)
                        .map(IpNet::V4)
                        .unwrap_or(*n)
                }
                _ => *n,
            };
            n.contains(&self.0) || self.0.contains(&n)
        })
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpNet::V4(n) => write!(f, "{}", n.addr()),
            IpNet::V6(n) => write!(f, "{}/64", n.network()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v4_is_the_address_v6_the_slash_64() {
        assert_eq!(Subject::of(ip("203.0.113.9")).to_string(), "203.0.113.9");
        assert_eq!(
            Subject::of(ip("::ffff:203.0.113.9")),
            Subject::of(ip("203.0.113.9"))
        );
        let a = Subject::of(ip("2001:db8:1:2::7"));
        assert_eq!(a, Subject::of(ip("2001:db8:1:2:ffff::1")));
        assert_ne!(a, Subject::of(ip("2001:db8:1:3::7")));
        assert_eq!(a.to_string(), "2001:db8:1:2::/64");
        assert_eq!(Subject::parse("2001:db8:1:2::/64"), Some(a));
        assert_eq!(Subject::parse(" 2001:db8:1:2::9 "), Some(a));
        assert_eq!(
            Subject::parse("203.0.113.9/32"),
            Some(Subject::of(ip("203.0.113.9")))
        );
        assert_eq!(Subject::parse("203.0.113.0/24"), None);
        assert_eq!(Subject::parse("nonsense"), None);
    }

    #[test]
    fn touches_nets() {
        let nets: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        assert!(Subject::of(ip("10.1.2.3")).touches(&nets));
        assert!(!Subject::of(ip("11.1.2.3")).touches(&nets));
        let v6: Vec<IpNet> = vec!["2001:db8:1:2::5/128".parse().unwrap()];
        assert!(Subject::of(ip("2001:db8:1:2::7")).touches(&v6));
        let mapped: Vec<IpNet> = vec!["::ffff:10.0.0.0/104".parse().unwrap()];
        assert!(Subject::of(ip("10.1.2.3")).touches(&mapped));
    }
}
