//! Guard: who is connecting (the one place that decides the client IP), whether they may
//! (IP rules, bans), how often they may guess passwords (lockout) and how many connections
//! they may hold, and how fast an address may have passwords checked (spacing).
pub mod client_ip;
pub mod conns;
pub mod ip_rules;
pub mod lockout;
pub mod lockout_file;
pub mod spacing;
pub mod subject;
pub mod tick;
