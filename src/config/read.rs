//! Reading the configuration's files: text (a missing optional file is `None`), TOML into the
//! raw shapes with errors that name file, line and key, paths relative to the directory, and
//! address/network values.
use super::error::ConfigError;
use ipnet::IpNet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

pub fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Like [`read`], but a missing file is `None`.
pub fn read_optional(path: &Path) -> Result<Option<String>, ConfigError> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ConfigError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

pub fn parse<T: serde::de::DeserializeOwned>(path: &Path) -> Result<(T, String), ConfigError> {
    let text = read(path)?;
    let value = toml::from_str(&text).map_err(|e| ConfigError::from_toml(path, &text, &e))?;
    Ok((value, text))
}

pub fn resolve(dir: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        dir.join(p)
    }
}

/// Parses an address or network: `10.0.0.0/8`, `192.0.2.7`, `2001:db8::/32`.
pub fn parse_net(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    let net = match s.parse::<IpNet>() {
        Ok(net) => net.trunc(),
        Err(_) => s.parse::<IpAddr>().map(IpNet::from).map_err(|_| {
            format!("{s:?} is not an IP address or CIDR network (like 10.0.0.0/8 or 2001:db8::/32)")
        })?,
    };
    // Client addresses are compared as IPv4 when IPv4-mapped, so mapped networks are too.
    if let IpNet::V6(v6) = net
        && let Some(v4) = v6.addr().to_ipv4_mapped()
        && v6.prefix_len() >= 96
        && let Ok(n) = ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96)
    {
        return Ok(IpNet::V4(n));
    }
    Ok(net)
}
