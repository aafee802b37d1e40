//! The one function that decides a request's client IP, used by every decision and log line.
//!
//! The socket peer is the client unless it is a trusted proxy (`server.trusted_proxies`). Then
//! `X-Forwarded-For` (or, when absent, `Forwarded`) is walked from the right, skipping trusted
//! hops, and the first untrusted address is the client. A malformed header from a trusted peer
//! falls back to the peer address: a broken proxy must not let its clients pick their address.
//! IPv4-mapped IPv6 addresses are normalised to IPv4 everywhere.
use http::HeaderMap;
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};

pub fn normalise(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

pub fn in_nets(ip: IpAddr, nets: &[IpNet]) -> bool {
    let ip = normalise(ip);
    nets.iter().any(|n| n.contains(&ip))
}

/// Resolves the client IP of a request that arrived from `peer`.
pub fn resolve(peer: SocketAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer_ip = normalise(peer.ip());
    if trusted.is_empty() || !in_nets(peer_ip, trusted) {
        return peer_ip;
    }
    let hops = match forwarded_chain(headers) {
        Some(Ok(h)) => h,
        Some(Err(())) => return peer_ip,
        None => return peer_ip,
    };
    let mut client = peer_ip;
    for hop in hops.iter().rev() {
        client = *hop;
        if !in_nets(*hop, trusted) {
            return *hop;
        }
    }
    client
}

/// The hop addresses, leftmost first. `None` when no forwarding header is present;
/// `Some(Err)` when one is present but cannot be read entirely.
fn forwarded_chain(headers: &HeaderMap) -> Option<Result<Vec<IpAddr>, ()>> {
    let xff: Vec<_> = headers.get_all("x-forwarded-for").iter().collect();
    if !xff.is_empty() {
        let mut out = Vec::new();
        for v in xff {
            let Ok(s) = v.to_str() else {
                return Some(Err(()));
            };
            for part in s.split(',') {
                match parse_hop(part.trim()) {
                    Some(ip) => out.push(ip),
                    None => return Some(Err(())),
                }
            }
        }
        return Some(Ok(out));
    }
    let fwd: Vec<_> = headers.get_all(http::header::FORWARDED).iter().collect();
    if fwd.is_empty() {
        return None;
    }
    let mut out = Vec::new();
    for v in fwd {
        let Ok(s) = v.to_str() else {
            return Some(Err(()));
        };
        for element in s.split(',') {
            let for_value = element
                .split(';')
                .filter_map(|pair| pair.split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("for"))
                .map(|(_, v)| v.trim().trim_matches('"'));
            match for_value.and_then(parse_hop) {
                Some(ip) => out.push(ip),
                None => return Some(Err(())),
            }
        }
    }
    Some(Ok(out))
}

/// One hop: `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`, `[2001:db8::1]:4711`.
fn parse_hop(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(normalise(ip));
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some(normalise(sa.ip()));
    }
    let inner = s.strip_prefix('[')?.strip_suffix(']')?;
    inner.parse::<IpAddr>().ok().map(normalise)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        m
    }
    fn nets(v: &[&str]) -> Vec<IpNet> {
        v.iter().map(|s| s.parse().unwrap()).collect()
    }
    fn peer(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn untrusted_peer_ignores_headers() {
        let r = resolve(
            peer("203.0.113.9:1234"),
            &h(&[("x-forwarded-for", "10.1.1.1")]),
            &nets(&["10.0.0.0/8"]),
        );
        assert_eq!(r, "203.0.113.9".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn trusted_chain_walks_from_the_right() {
        let hdr = h(&[("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.0.0.2")]);
        let r = resolve(peer("10.0.0.1:1"), &hdr, &nets(&["10.0.0.0/8"]));
        assert_eq!(r, "198.51.100.7".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn several_header_lines_are_one_list() {
        let hdr = h(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "198.51.100.7"),
        ]);
        assert_eq!(
            resolve(peer("10.0.0.1:1"), &hdr, &nets(&["10.0.0.0/8"])),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn malformed_falls_back_to_peer() {
        let hdr = h(&[("x-forwarded-for", "198.51.100.7, not-an-ip")]);
        assert_eq!(
            resolve(peer("10.0.0.1:1"), &hdr, &nets(&["10.0.0.0/8"])),
            "10.0.0.1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn forwarded_header_and_ipv6() {
        let hdr = h(&[(
            "forwarded",
            "for=\"[2001:db8::7]:4711\";proto=https, for=10.0.0.3",
        )]);
        assert_eq!(
            resolve(peer("10.0.0.1:1"), &hdr, &nets(&["10.0.0.0/8"])),
            "2001:db8::7".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn v4_mapped_peer_is_v4() {
        let r = resolve(
            peer("[::ffff:10.0.0.1]:1"),
            &h(&[("x-forwarded-for", "198.51.100.7")]),
            &nets(&["10.0.0.0/8"]),
        );
        assert_eq!(r, "198.51.100.7".parse::<IpAddr>().unwrap());
        assert_eq!(
            resolve(peer("[::ffff:192.0.2.1]:1"), &HeaderMap::new(), &[]),
            "192.0.2.1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn all_trusted_gives_leftmost() {
        let hdr = h(&[("x-forwarded-for", "10.9.9.9, 10.0.0.2")]);
        assert_eq!(
            resolve(peer("10.0.0.1:1"), &hdr, &nets(&["10.0.0.0/8"])),
            "10.9.9.9".parse::<IpAddr>().unwrap()
        );
    }
}
