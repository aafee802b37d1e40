//! A tenant: one user as the isolation rules see them (name, namespace, whether they see
//! everything), with the ownership questions every handler and the WebSocket filter ask.
use super::paths::{self, Kind};
use crate::reject::Reject;
use serde_json::Value;
use std::sync::Arc;

/// Whose files a mapping is for: enough to run without the request (the upload pump).
#[derive(Clone)]
pub struct Tenant {
    pub tenancy: Arc<super::Tenancy>,
    pub owner: String,
    pub ns: String,
    pub sees_all: bool,
}

impl Tenant {
    pub fn new(tenancy: &Arc<super::Tenancy>, user: &crate::config::User) -> Tenant {
        Tenant {
            tenancy: tenancy.clone(),
            owner: user.name.to_string(),
            ns: user.namespace.clone(),
            sees_all: user.can(crate::auth::roles::Permission::ViewAll),
        }
    }

    /// Where `(kind, subfolder, name)` lives upstream: unchanged when the ledger says this user
    /// owns exactly that file, else inside the user's namespace.
    pub fn locate(&self, kind: Kind, sub: &str, name: &str) -> String {
        if self.tenancy.ledger.file_owner(kind, sub, name).as_deref() == Some(self.owner.as_str()) {
            sub.to_owned()
        } else {
            paths::to_upstream(&self.ns, kind, sub)
        }
    }

    /// A client file locator `{filename (maybe annotated), subfolder, type}`, checked and mapped
    /// to `(kind, upstream subfolder, name)`.
    pub fn map_locator(
        &self,
        filename: &str,
        subfolder: &str,
        default_kind: Kind,
        type_param: Option<&str>,
    ) -> Result<(Kind, String, String), Reject> {
        let (name, annotation) = paths::split_annotation(filename);
        let kind = match (annotation, type_param) {
            (Some(k), _) => k,
            (None, Some(t)) => Kind::parse(t)
                .ok_or_else(|| bad(format!("type must be input, output or temp, not {t:?}")))?,
            (None, None) => default_kind,
        };
        let name = paths::clean_name(name).map_err(|e| bad(format!("filename: {e}")))?;
        let sub = paths::clean(subfolder).map_err(|e| bad(format!("subfolder: {e}")))?;
        let up = self.locate(kind, &sub, &name);
        Ok((kind, up, name))
    }

    /// Does this user own the queue/history tuple `[number, prompt_id, prompt, extra_data, …]`?
    pub fn owns_item(&self, item: &Value) -> bool {
        self.tenancy.ledger.owns_item(item, &self.owner, &self.ns)
    }

    pub fn owns_prompt(&self, prompt_id: &str) -> bool {
        self.tenancy.ledger.owns_prompt(prompt_id, &self.owner)
    }

    /// The user's own pending + running count in a `/queue` answer.
    pub fn own_count(&self, queue: &Value) -> usize {
        ["queue_running", "queue_pending"]
            .iter()
            .flat_map(|k| {
                queue
                    .get(*k)
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
            })
            .filter(|i| self.sees_all || self.owns_item(i))
            .count()
    }
}

/// A 400 with these words.
pub fn bad(words: String) -> Reject {
    Reject::BadRequest(words.into())
}
