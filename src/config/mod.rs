//! Configuration: the TOML files of one directory, validated into an immutable [`Snapshot`].
//!
//! `warden.toml` holds the daemon settings and names the data files (users, roles, IP rules).
//! Relative paths are resolved against the configuration directory. Every decision of the
//! daemon reads one `Arc<Snapshot>`; `watch` swaps it atomically when the files change.
//!
//! `load` is the orchestrator; the model is `model` (re-exported here, so the rest of the crate
//! names `config::Snapshot`, `config::User`, …). Files of this module import each other by
//! their own paths (`super::model::User`), never through these re-exports, so no file here
//! depends on `mod.rs`.
pub mod duration;
mod endpoints;
pub mod error;
pub mod identity;
mod ip_rules;
mod limits;
mod load;
pub mod model;
pub mod oidc;
pub mod paths;
pub mod raw;
mod read;
pub mod store;
mod upstream;
mod users;
pub mod watch;

pub use endpoints::DEFAULT_HSTS;
pub use error::ConfigError;
pub use load::load;
pub use model::*;
pub use read::{parse_net, read_optional};
pub use users::{NAME_RULE, load_roles, load_users, load_users_with, valid_name};

#[cfg(test)]
mod tests {
    use super::parse_net;

    #[test]
    fn nets_are_truncated_and_mapped_ones_become_v4() {
        assert_eq!(parse_net("10.1.2.3/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(parse_net("192.0.2.7").unwrap().to_string(), "192.0.2.7/32");
        assert_eq!(
            parse_net("::ffff:127.0.0.1").unwrap().to_string(),
            "127.0.0.1/32"
        );
        assert_eq!(
            parse_net("::ffff:10.0.0.0/104").unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(
            parse_net("2001:db8::/32").unwrap().to_string(),
            "2001:db8::/32"
        );
        assert!(parse_net("10.0.0.0/33").is_err());
    }
}
