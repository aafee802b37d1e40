//! IP allow/deny decisions. A non-empty `allow` list admits only its networks; `deny` always
//! blocks (it wins over `allow`, so an operator can carve holes out of an allowed range).
use super::client_ip::in_nets;
use crate::config::IpRules;
use std::net::IpAddr;

pub fn admits(rules: &IpRules, ip: IpAddr) -> bool {
    if in_nets(ip, &rules.deny) {
        return false;
    }
    rules.allow.is_empty() || in_nets(ip, &rules.allow)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(allow: &[&str], deny: &[&str]) -> IpRules {
        IpRules {
            allow: allow.iter().map(|s| s.parse().unwrap()).collect(),
            deny: deny.iter().map(|s| s.parse().unwrap()).collect(),
            unban: Vec::new(),
        }
    }

    #[test]
    fn matrix() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(admits(&rules(&[], &[]), ip("198.51.100.1")));
        assert!(!admits(
            &rules(&[], &["198.51.100.0/24"]),
            ip("198.51.100.1")
        ));
        assert!(admits(&rules(&["10.0.0.0/8"], &[]), ip("10.2.3.4")));
        assert!(!admits(&rules(&["10.0.0.0/8"], &[]), ip("11.2.3.4")));
        assert!(!admits(
            &rules(&["10.0.0.0/8"], &["10.2.0.0/16"]),
            ip("10.2.3.4")
        ));
        assert!(admits(&rules(&["10.0.0.0/8"], &[]), ip("::ffff:10.2.3.4")));
    }
}
