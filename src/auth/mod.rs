//! Authentication: passwords (argon2id), the signing key, sessions/tokens, and the decision of
//! which user (if any) a request belongs to.
pub mod basic;
pub mod csrf;
pub mod external;
pub mod identity;
pub mod keys;
pub mod password;
pub mod query_token;
pub mod roles;
pub mod session;
