//! The people of the tests: one fixture per user (the password is `NAME-pw`), and the usual
//! set. Build other sets from the single users, e.g. `vec![alice(), gail()]`.
use super::config::TestUser;

/// alice, a `user`.
pub fn alice() -> TestUser {
    TestUser::new("alice", "alice-pw", &["user"])
}

/// bob, a `user`.
pub fn bob() -> TestUser {
    TestUser::new("bob", "bob-pw", &["user"])
}

/// root, an `admin`.
pub fn root() -> TestUser {
    TestUser::new("root", "root-pw", &["admin"])
}

/// gail, a `guest`.
pub fn gail() -> TestUser {
    TestUser::new("gail", "gail-pw", &["guest"])
}

/// alice and bob (users) and root (admin): the set of the cross-tenant tests.
pub fn users() -> Vec<TestUser> {
    vec![alice(), bob(), root()]
}
