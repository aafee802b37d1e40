//! Edits of the writable users file as a TOML document (`toml_edit`): comments, order and
//! formatting the operator wrote stay as they are; only the touched keys change. Pure text in,
//! text out: reading, validating and writing the file is `change.rs`'s job.
use toml_edit::{Array, DocumentMut, Item, Table, TableLike, Value};

/// The header of a writable users file created by comfy-warden.
pub const NEW_FILE_HEADER: &str = "# Users managed by comfy-warden (`comfy-warden user ...`, the setup page and the admin\n\
# API). Edits by hand are fine: comments and order are kept. Users in the declarative users\n\
# file (files.users) cannot be defined here too.\n";

pub struct UsersDoc {
    doc: DocumentMut,
    /// The file was empty or absent: the header goes first.
    new_file: bool,
}

impl UsersDoc {
    /// Parses the file's text; an empty text gets the header of a new file.
    pub fn parse(text: &str) -> Result<UsersDoc, String> {
        let new_file = text.trim().is_empty();
        let doc = if new_file {
            DocumentMut::new()
        } else {
            text.parse::<DocumentMut>()
                .map_err(|e| format!("not valid TOML: {}", e.message()))?
        };
        Ok(UsersDoc { doc, new_file })
    }

    pub fn contains(&self, name: &str) -> bool {
        self.doc
            .get("users")
            .and_then(Item::as_table_like)
            .is_some_and(|t| t.contains_key(name))
    }

    fn users_mut(&mut self) -> Result<&mut dyn TableLike, String> {
        if !self.doc.contains_key("users") {
            let mut t = Table::new();
            t.set_implicit(true);
            self.doc.insert("users", Item::Table(t));
        }
        self.doc
            .get_mut("users")
            .and_then(Item::as_table_like_mut)
            .ok_or_else(|| "`users` is not a table".to_string())
    }

    fn user_mut(&mut self, name: &str) -> Result<&mut dyn TableLike, String> {
        self.users_mut()?
            .get_mut(name)
            .and_then(Item::as_table_like_mut)
            .ok_or_else(|| format!("no user {name:?} in the file"))
    }

    /// Adds `[users.NAME]` at the end of the file.
    pub fn add(
        &mut self,
        name: &str,
        password_hash: Option<&str>,
        roles: &[String],
    ) -> Result<(), String> {
        let users = self.users_mut()?;
        if users.contains_key(name) {
            return Err(format!("user {name:?} already exists"));
        }
        let mut t = Table::new();
        if let Some(h) = password_hash {
            t.insert("password_hash", toml_edit::value(h));
        }
        t.insert("roles", Item::Value(roles_value(roles)));
        users.insert(name, Item::Table(t));
        Ok(())
    }

    /// Removes the user with the comments written right above it; comment paragraphs set apart
    /// by a blank line (a file header) move to whatever follows.
    pub fn remove(&mut self, name: &str) -> Result<(), String> {
        let users = self.users_mut()?;
        let next = {
            let mut keys = users.iter().map(|(k, _)| k.to_owned());
            keys.by_ref().find(|k| k == name);
            keys.next()
        };
        let removed = users
            .remove(name)
            .ok_or_else(|| format!("no user {name:?} in the file"))?;
        let keep = removed
            .as_table()
            .and_then(|t| t.decor().prefix())
            .and_then(|p| p.as_str())
            .and_then(|p| p.rfind("\n\n").map(|i| p[..i + 2].to_owned()))
            .filter(|k| !k.trim().is_empty());
        let Some(keep) = keep else { return Ok(()) };
        match next
            .and_then(|n| users.get_mut(&n))
            .and_then(Item::as_table_mut)
        {
            Some(t) => {
                let old = t
                    .decor()
                    .prefix()
                    .and_then(|p| p.as_str())
                    .unwrap_or("")
                    .trim_start_matches('\n')
                    .to_owned();
                t.decor_mut().set_prefix(format!("{keep}{old}"));
            }
            None => {
                let old = self.doc.trailing().as_str().unwrap_or("").to_owned();
                self.doc.set_trailing(format!("{keep}{old}"));
            }
        }
        Ok(())
    }

    pub fn set_roles(&mut self, name: &str, roles: &[String]) -> Result<(), String> {
        set(self.user_mut(name)?, "roles", roles_value(roles));
        Ok(())
    }

    pub fn set_password_hash(&mut self, name: &str, hash: &str) -> Result<(), String> {
        set(self.user_mut(name)?, "password_hash", Value::from(hash));
        Ok(())
    }

    /// Sets `disabled`; enabling a user who has no `disabled` key changes nothing.
    pub fn set_disabled(&mut self, name: &str, disabled: bool) -> Result<(), String> {
        let user = self.user_mut(name)?;
        if disabled || user.contains_key("disabled") {
            set(user, "disabled", Value::from(disabled));
        }
        Ok(())
    }

    /// `token_version + 1` (the absent key counts as 1); returns the new version.
    pub fn bump_token_version(&mut self, name: &str) -> Result<u64, String> {
        let user = self.user_mut(name)?;
        let current = match user.get("token_version") {
            None => 1,
            Some(item) => item
                .as_integer()
                .and_then(|i| u64::try_from(i).ok())
                .ok_or_else(|| format!("users.{name}.token_version is not a number"))?,
        };
        let next = current
            .checked_add(1)
            .and_then(|n| i64::try_from(n).ok())
            .ok_or_else(|| format!("users.{name}.token_version cannot grow further"))?;
        set(user, "token_version", Value::from(next));
        u64::try_from(next).map_err(|e| e.to_string())
    }
}

impl std::fmt::Display for UsersDoc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.new_file {
            f.write_str(NEW_FILE_HEADER)?;
            f.write_str("\n")?;
        }
        write!(f, "{}", self.doc)
    }
}

fn roles_value(roles: &[String]) -> Value {
    Value::Array(roles.iter().map(String::as_str).collect::<Array>())
}

/// Replaces a value and keeps the comments and spacing around the old one.
fn set(table: &mut dyn TableLike, key: &str, mut new: Value) {
    match table.get_mut(key) {
        Some(Item::Value(old)) => {
            *new.decor_mut() = old.decor().clone();
            *old = new;
        }
        _ => {
            table.insert(key, Item::Value(new));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "# local users\n\n[users.carol] # carol's entry\npassword_hash = \"x\"\nroles = [\"user\"]   # just a user\n\n# the end\n";

    #[test]
    fn edits_keep_comments_and_order() {
        let mut d = UsersDoc::parse(FILE).unwrap();
        d.set_roles("carol", &["power".into(), "user".into()])
            .unwrap();
        d.set_disabled("carol", true).unwrap();
        assert_eq!(d.bump_token_version("carol").unwrap(), 2);
        assert_eq!(d.bump_token_version("carol").unwrap(), 3);
        d.add("dave@example.org", Some("h"), &["user".into()])
            .unwrap();
        let out = d.to_string();
        for kept in [
            "# local users",
            "# carol's entry",
            "# just a user",
            "# the end",
        ] {
            assert!(out.contains(kept), "{kept} lost:\n{out}");
        }
        assert!(
            out.contains("roles = [\"power\", \"user\"]   # just a user"),
            "{out}"
        );
        assert!(out.contains("token_version = 3"), "{out}");
        assert!(out.contains("[users.\"dave@example.org\"]"), "{out}");
        assert!(out.find("carol").unwrap() < out.find("dave").unwrap());
        let parsed: crate::config::raw::UsersFile = toml::from_str(
            &out.replace(
                "\"x\"",
                "\"$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA\"",
            )
            .replace(
                "\"h\"",
                "\"$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA\"",
            ),
        )
        .unwrap();
        assert_eq!(parsed.users.len(), 2);
    }

    #[test]
    fn enable_without_key_changes_nothing_and_remove_works() {
        let mut d = UsersDoc::parse(FILE).unwrap();
        d.set_disabled("carol", false).unwrap();
        assert_eq!(d.to_string(), FILE);
        d.remove("carol").unwrap();
        assert!(!d.contains("carol"));
        assert!(d.remove("carol").is_err());
        assert!(d.set_roles("nobody", &[]).is_err());
    }

    #[test]
    fn removing_keeps_the_file_header() {
        let text =
            "# header\n\n# about a\n[users.a]\nroles = []\n\n# about b\n[users.b]\nroles = []\n";
        let mut d = UsersDoc::parse(text).unwrap();
        d.remove("a").unwrap();
        assert_eq!(
            d.to_string(),
            "# header\n\n# about b\n[users.b]\nroles = []\n"
        );
        d.remove("b").unwrap();
        assert_eq!(d.to_string(), "# header\n\n");
        let mut d = UsersDoc::parse(text).unwrap();
        d.remove("b").unwrap();
        assert_eq!(
            d.to_string(),
            "# header\n\n# about a\n[users.a]\nroles = []\n"
        );
    }

    #[test]
    fn new_file_gets_a_header() {
        let mut d = UsersDoc::parse("").unwrap();
        d.add("alice", Some("h"), &["admin".into()]).unwrap();
        let out = d.to_string();
        assert!(out.starts_with("# Users managed by comfy-warden"), "{out}");
        assert!(
            out.contains("[users.alice]\npassword_hash = \"h\"\nroles = [\"admin\"]\n"),
            "{out}"
        );
        assert!(d.add("alice", None, &[]).is_err());
    }
}
