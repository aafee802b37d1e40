//! `ip-rules.toml`: allow, deny and unban lists of addresses and networks.
use super::error::ConfigError;
use super::model::IpRules;
use super::raw;
use super::read::{parse, parse_net};
use std::path::Path;

/// The IP rules of `path` (none configured: allow everyone, deny nobody).
pub fn load(path: Option<&Path>) -> Result<IpRules, ConfigError> {
    let Some(path) = path else {
        return Ok(IpRules::default());
    };
    let (f, text): (raw::IpRulesFile, String) = parse(path)?;
    let nets = |v: &[toml::Spanned<String>]| {
        v.iter()
            .map(|s| {
                parse_net(s.get_ref())
                    .map_err(|m| ConfigError::at_offset(path, &text, s.span().start, m))
            })
            .collect::<Result<Vec<_>, _>>()
    };
    Ok(IpRules {
        allow: nets(&f.allow)?,
        deny: nets(&f.deny)?,
        unban: nets(&f.unban)?,
    })
}
