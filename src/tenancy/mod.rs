//! Tenancy: what makes one ComfyUI look like a private one to each user (the isolation contract
//! of `docs/isolation.md`). `route_table` classifies a request; the handlers (`http`) rewrite
//! requests and filter answers with the help of `paths` (namespaces), `ledger` (ownership), `live` (sockets,
//! running prompt, queue), `provision` (ComfyUI user ids) and `filter` (answers).
pub mod catalog;
pub mod events;
pub mod filter;
pub mod http;
pub mod ledger;
pub mod live;
pub mod namespace;
pub mod nodes;
pub mod paths;
pub mod prompt;
pub mod provision;
pub mod route_table;
pub mod tenant;

/// Per-daemon tenancy state.
pub struct Tenancy {
    pub comfy_users: provision::ComfyUsers,
    pub ledger: ledger::Ledger,
    pub live: live::Live,
    pub catalog: catalog::CatalogCache,
    pub filtered: catalog::FilteredCache,
}

impl Tenancy {
    pub fn new(state_dir: &std::path::Path) -> Tenancy {
        Tenancy {
            comfy_users: Default::default(),
            ledger: ledger::Ledger::open(state_dir),
            live: Default::default(),
            catalog: Default::default(),
            filtered: Default::default(),
        }
    }
}
