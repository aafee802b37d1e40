//! Guard: who is connecting (the one place that decides the client IP) and whether they may.
pub mod client_ip;
pub mod ip_rules;
