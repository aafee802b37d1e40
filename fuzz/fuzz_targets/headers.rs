//! The request headers comfy-warden reads before it knows who is asking: the client IP from the
//! socket peer and X-Forwarded-For / Forwarded (via trusted proxies only), the session cookie,
//! the Bearer token and HTTP Basic credentials.
//! Input (text, so the seeds are readable): line 1 the socket peer (`10.0.0.1:443`), line 2 the
//! trusted networks (comma-separated CIDRs), line 3 `tls` or anything else, then one header per
//! line (`Name: value`).
//! Asserts: no panic; an untrusted peer is always the client IP; a trusted peer's client IP is
//! the peer or an address written in one of its forwarding headers (never anything else); a
//! Basic user name never holds the `:` separator.
#![no_main]
use comfy_warden::fuzz_api;
use http::{HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;
use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, SocketAddr};

fn normalise(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

fuzz_target!(|data: &[u8]| {
    let mut lines = data.split(|b| *b == b'\n');
    let (Some(peer), Some(nets), Some(tls)) = (lines.next(), lines.next(), lines.next()) else {
        return;
    };
    let Some(peer) = std::str::from_utf8(peer)
        .ok()
        .and_then(|p| p.trim().parse::<SocketAddr>().ok())
    else {
        return;
    };
    let ip = peer.ip();
    let trusted: Vec<IpNet> = String::from_utf8_lossy(nets)
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    let tls = tls == b"tls";
    let mut headers = HeaderMap::new();
    let mut written = String::new();
    for line in lines {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) else {
            continue;
        };
        if (name == "x-forwarded-for" || name == "forwarded")
            && let Ok(s) = value.to_str()
        {
            written.push_str(s);
            written.push(',');
        }
        headers.append(name, value);
    }

    let client = fuzz_api::client_ip(peer, &headers, &trusted);
    let peer_ip = normalise(ip);
    let peer_trusted = trusted.iter().any(|n| n.contains(&peer_ip));
    if !peer_trusted {
        assert_eq!(client, peer_ip, "an untrusted peer chose its address");
    } else if client != peer_ip {
        // Somewhere in the forwarding headers, in some spelling.
        let spelled = [
            client.to_string(),
            match client {
                IpAddr::V4(v4) => v4.to_ipv6_mapped().to_string(),
                IpAddr::V6(v6) => v6.to_string(),
            },
        ];
        let lower = written.to_ascii_lowercase();
        let found = spelled.iter().any(|s| lower.contains(s.as_str()))
            || written
                .split([',', ';', '=', '"', '[', ']', ' '])
                .any(|part| {
                    let p = part.trim();
                    p.parse::<IpAddr>().ok().map(normalise) == Some(client)
                        || p.parse::<SocketAddr>().ok().map(|s| normalise(s.ip())) == Some(client)
                });
        assert!(
            found,
            "client {client} is in no forwarding header: {written:?}"
        );
    }
    let _ = fuzz_api::session_cookie(&headers, tls);
    let _ = fuzz_api::bearer(&headers);
    if let Some((user, password)) = fuzz_api::basic(&headers) {
        assert!(!user.contains(':'), "a Basic user name holds the separator");
        let _ = password;
    }
});
