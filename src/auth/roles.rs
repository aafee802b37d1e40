//! Permissions and the roles that bundle them. Built-in roles (`admin`, `power`, `user`,
//! `guest`) exist unless roles.toml redefines them; a user's permissions are the union of roles.
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Permission {
    /// Queue prompts.
    Run,
    /// Upload images and masks.
    Upload,
    /// See every user's queue, history and files unfiltered.
    ViewAll,
    /// Interrupt prompts of other users.
    InterruptAny,
    /// Call ComfyUI's `/free`.
    FreeMemory,
    /// Use ComfyUI-Manager routes.
    Manager,
    /// Create API tokens for scripts.
    ApiTokens,
    /// Read and write one's own ComfyUI settings and user data.
    Settings,
    /// comfy-warden administration (users, bans, sessions, metrics).
    Admin,
}

impl Permission {
    pub const ALL: [Permission; 9] = [
        Permission::Run,
        Permission::Upload,
        Permission::ViewAll,
        Permission::InterruptAny,
        Permission::FreeMemory,
        Permission::Manager,
        Permission::ApiTokens,
        Permission::Settings,
        Permission::Admin,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Permission::Run => "run",
            Permission::Upload => "upload",
            Permission::ViewAll => "view_all",
            Permission::InterruptAny => "interrupt_any",
            Permission::FreeMemory => "free_memory",
            Permission::Manager => "manager",
            Permission::ApiTokens => "api_tokens",
            Permission::Settings => "settings",
            Permission::Admin => "admin",
        }
    }

    pub fn parse(name: &str) -> Option<Permission> {
        Permission::ALL.into_iter().find(|p| p.name() == name)
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of permissions, as a bit set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PermSet(u16);

impl PermSet {
    pub const EMPTY: PermSet = PermSet(0);

    pub fn of(perms: &[Permission]) -> PermSet {
        perms.iter().fold(PermSet::EMPTY, |s, p| s.with(*p))
    }

    pub fn with(self, p: Permission) -> PermSet {
        PermSet(self.0 | (1 << p as u8))
    }

    pub fn union(self, other: PermSet) -> PermSet {
        PermSet(self.0 | other.0)
    }

    pub fn has(self, p: Permission) -> bool {
        self.0 & (1 << p as u8) != 0
    }

    pub fn names(self) -> Vec<&'static str> {
        Permission::ALL
            .into_iter()
            .filter(|p| self.has(*p))
            .map(Permission::name)
            .collect()
    }
}

/// Role name → permissions. Starts from the built-in roles; roles.toml adds or replaces.
/// Roles with `require_totp` are listed apart.
#[derive(Debug, Clone)]
pub struct Roles(BTreeMap<String, PermSet>, BTreeSet<String>);

impl Default for Roles {
    fn default() -> Self {
        use Permission::*;
        let mut m = BTreeMap::new();
        m.insert("admin".to_string(), PermSet::of(&Permission::ALL));
        m.insert(
            "power".to_string(),
            PermSet::of(&[Run, Upload, ApiTokens, Settings, FreeMemory, InterruptAny]),
        );
        m.insert(
            "user".to_string(),
            PermSet::of(&[Run, Upload, ApiTokens, Settings]),
        );
        m.insert("guest".to_string(), PermSet::of(&[Settings]));
        Roles(m, BTreeSet::new())
    }
}

impl Roles {
    pub fn insert(&mut self, name: String, perms: PermSet) {
        self.0.insert(name, perms);
    }

    pub fn get(&self, name: &str) -> Option<PermSet> {
        self.0.get(name).copied()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// Marks a role as requiring a second factor (roles.toml `require_totp = true`).
    pub fn require_totp(&mut self, name: &str) {
        self.1.insert(name.to_owned());
    }

    pub fn requires_totp(&self, name: &str) -> bool {
        self.1.contains(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_roles() {
        let r = Roles::default();
        assert!(r.get("admin").unwrap().has(Permission::Admin));
        assert!(r.get("user").unwrap().has(Permission::Run));
        assert!(!r.get("user").unwrap().has(Permission::ViewAll));
        assert!(!r.get("guest").unwrap().has(Permission::Run));
        assert!(!r.get("guest").unwrap().has(Permission::Upload));
    }

    #[test]
    fn names_round_trip() {
        for p in Permission::ALL {
            assert_eq!(Permission::parse(p.name()), Some(p));
        }
        assert_eq!(Permission::parse("root"), None);
    }
}
