//! Authentication: passwords (argon2id), the signing key, sessions/tokens, and the decision of
//! which user (if any) a request belongs to; the second factor (TOTP codes in `totp`, their
//! state and the sign-in tickets in `second_factor`).
pub mod basic;
pub mod csrf;
pub mod external;
pub mod identity;
pub mod keys;
pub mod oidc;
pub mod password;
pub mod query_token;
pub mod roles;
pub mod second_factor;
pub mod session;
pub mod totp;
