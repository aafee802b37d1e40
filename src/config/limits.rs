//! Validation of the guard settings: the connection and size limits of `[server]` and the
//! `[lockout]` section. Absent keys take their defaults; present ones are range-checked with
//! errors that name the file, line and key.
use super::endpoints::Endpoints;
use super::error::ConfigError;
use super::model::{LockoutPolicy, Server};
use super::{duration, raw};
use ipnet::IpNet;
use std::path::Path;
use std::time::Duration;

/// A bounded integer setting: the default when absent, else checked to lie in `range`.
fn bounded<T>(
    path: &Path,
    text: &str,
    v: &Option<toml::Spanned<T>>,
    default: T,
    range: std::ops::RangeInclusive<T>,
    what: &str,
) -> Result<T, ConfigError>
where
    T: Copy + PartialOrd + std::fmt::Display,
{
    let Some(v) = v else { return Ok(default) };
    let value = *v.get_ref();
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(ConfigError::at_offset(
            path,
            text,
            v.span().start,
            format!(
                "{what} must be between {} and {}",
                range.start(),
                range.end()
            ),
        ))
    }
}

/// A duration setting: the default when absent, else at least `min`.
fn duration_at_least(
    path: &Path,
    text: &str,
    v: &Option<toml::Spanned<duration::Dur>>,
    default: Duration,
    min: Duration,
) -> Result<Duration, ConfigError> {
    let Some(v) = v else { return Ok(default) };
    let d = v.get_ref().0;
    if d < min {
        return Err(ConfigError::at_offset(
            path,
            text,
            v.span().start,
            format!("must be at least {}", humantime::format_duration(min)),
        ));
    }
    Ok(d)
}

pub(super) fn server(
    path: &Path,
    text: &str,
    s: raw::RawServer,
    endpoints: Endpoints,
    trusted_proxies: Vec<IpNet>,
) -> Result<Server, ConfigError> {
    Ok(Server {
        listen: endpoints.listen,
        tls: endpoints.tls,
        http_redirect: endpoints.http_redirect,
        https_port: endpoints.https_port,
        metrics_listen: endpoints.metrics_listen,
        trusted_proxies,
        header_read_timeout: s.header_read_timeout.0,
        shutdown_grace: s.shutdown_grace.0,
        max_own_body: s.max_own_body,
        // hyper refuses (panics on) a read buffer below 8 KiB.
        max_header_bytes: bounded(
            path,
            text,
            &s.max_header_bytes,
            32 * 1024,
            8 * 1024..=1 << 20,
            "the header size limit",
        )?,
        max_upload_bytes: bounded(
            path,
            text,
            &s.max_upload_bytes,
            100 << 20,
            1..=u64::MAX,
            "the upload size limit",
        )?,
        max_connections_per_ip: bounded(
            path,
            text,
            &s.max_connections_per_ip,
            64,
            1..=1_000_000,
            "the connection limit per address",
        )?,
        max_connections: bounded(
            path,
            text,
            &s.max_connections,
            4096,
            1..=10_000_000,
            "the connection limit",
        )?,
        workers: bounded(
            path,
            text,
            &s.workers,
            std::thread::available_parallelism().map_or(1, |n| n.get()),
            1..=1024,
            "the number of workers",
        )?,
    })
}

pub(super) fn lockout(
    path: &Path,
    text: &str,
    l: &raw::RawLockout,
) -> Result<LockoutPolicy, ConfigError> {
    let second = Duration::from_secs(1);
    let max_delay = duration_at_least(path, text, &l.max_delay, Duration::from_secs(300), second)?;
    let first_delay = duration_at_least(
        path,
        text,
        &l.first_delay,
        second.min(max_delay),
        Duration::from_millis(100),
    )?;
    if let Some(v) = &l.first_delay
        && first_delay > max_delay
    {
        return Err(ConfigError::at_offset(
            path,
            text,
            v.span().start,
            "must not be longer than lockout.max_delay",
        ));
    }
    Ok(LockoutPolicy {
        max_failures: bounded(
            path,
            text,
            &l.max_failures,
            5,
            1..=1000,
            "lockout.max_failures",
        )?,
        window: duration_at_least(path, text, &l.window, Duration::from_secs(300), second)?,
        first_delay,
        max_delay,
        ban_after: bounded(
            path,
            text,
            &l.ban_after,
            0,
            0..=100_000,
            "lockout.ban_after",
        )?,
        ban_for: duration_at_least(path, text, &l.ban_for, Duration::from_secs(86400), second)?,
    })
}
