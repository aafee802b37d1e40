//! The route table of the isolation contract, as data in one place: every ComfyUI route, the
//! permission it needs and what comfy-warden does with it. Core routes also exist under `/api`
//! (exactly one leading `/api` is stripped before matching); `/internal/*` does not.
//! Anything not listed is denied to non-admins unless the configuration allow-lists it.
use crate::auth::roles::Permission;
use http::Method;

/// What comfy-warden does with a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Frontend files: forwarded as they are (GET/HEAD only).
    Static,
    /// Shared, read-only data: forwarded with the user's `comfy-user`.
    Pass,
    /// `/extensions`: forwarded; comfy-warden's own frontend extension is added.
    Extensions,
    /// Per-user ComfyUI data (`/settings*`, `/userdata*`, `/v2/userdata`): forwarded with the
    /// user's `comfy-user`; private caching; active content as attachment.
    UserData,
    /// `/system_stats` without `system.argv`.
    SystemStats,
    /// `/experiment/models` without absolute `folders`.
    ExperimentModels,
    /// `/experiment/models/preview/…`: path validated.
    ModelPreview,
    UploadImage,
    UploadMask,
    View,
    PromptGet,
    PromptPost,
    QueueGet,
    QueuePost,
    HistoryGet,
    HistoryOne,
    HistoryPost,
    Interrupt,
    ObjectInfo,
    InternalFiles,
    /// `GET /users`, answered by comfy-warden.
    UsersGet,
    /// Forwarded only with the permission the route names (no filtering).
    Gated,
    /// A known path with a method it does not have.
    MethodNotAllowed,
    /// Not a known route.
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub action: Action,
    /// The permission needed, if any (beyond being signed in).
    pub needs: Option<Permission>,
}

#[derive(Clone, Copy)]
enum Pat {
    Exact(&'static str),
    Prefix(&'static str),
}

impl Pat {
    fn matches(self, path: &str) -> bool {
        match self {
            Pat::Exact(p) => path == p,
            Pat::Prefix(p) => path.starts_with(p) && path.len() > p.len(),
        }
    }
}

#[derive(Clone, Copy)]
enum Methods {
    Get,
    Post,
    GetPost,
    Any,
}

impl Methods {
    fn allows(self, m: &Method) -> bool {
        let get = m == Method::GET || m == Method::HEAD;
        match self {
            Methods::Get => get,
            Methods::Post => m == Method::POST,
            Methods::GetPost => get || m == Method::POST,
            Methods::Any => true,
        }
    }
}

use Action as A;
use Methods as M;
use Pat::{Exact as E, Prefix as P};
use Permission as Perm;

/// Core routes; each also answers under `/api`.
const CORE: &[(Methods, Pat, Action, Option<Permission>)] = &[
    (M::Get, E("/embeddings"), A::Pass, None),
    (M::Get, E("/models"), A::Pass, None),
    (M::Get, P("/models/"), A::Pass, None),
    (M::Get, E("/experiment/models"), A::ExperimentModels, None),
    (
        M::Get,
        P("/experiment/models/preview/"),
        A::ModelPreview,
        None,
    ),
    (M::Get, P("/experiment/models/"), A::Pass, None),
    (M::Get, E("/extensions"), A::Extensions, None),
    (
        M::Post,
        E("/upload/image"),
        A::UploadImage,
        Some(Perm::Upload),
    ),
    (
        M::Post,
        E("/upload/mask"),
        A::UploadMask,
        Some(Perm::Upload),
    ),
    (M::Get, E("/view"), A::View, None),
    (M::Get, P("/view_metadata/"), A::Pass, None),
    (M::Get, E("/system_stats"), A::SystemStats, None),
    (M::Get, E("/features"), A::Pass, None),
    (M::Get, E("/prompt"), A::PromptGet, None),
    (M::Post, E("/prompt"), A::PromptPost, Some(Perm::Run)),
    (M::Get, E("/object_info"), A::ObjectInfo, None),
    (M::Get, P("/object_info/"), A::ObjectInfo, None),
    (M::Get, E("/history"), A::HistoryGet, None),
    (M::Post, E("/history"), A::HistoryPost, None),
    (M::Get, P("/history/"), A::HistoryOne, None),
    (M::Get, E("/queue"), A::QueueGet, None),
    (M::Post, E("/queue"), A::QueuePost, None),
    (M::Post, E("/interrupt"), A::Interrupt, None),
    (M::Post, E("/free"), A::Gated, Some(Perm::FreeMemory)),
    (
        M::GetPost,
        E("/settings"),
        A::UserData,
        Some(Perm::Settings),
    ),
    (
        M::GetPost,
        P("/settings/"),
        A::UserData,
        Some(Perm::Settings),
    ),
    (M::Get, E("/userdata"), A::UserData, Some(Perm::Settings)),
    (M::Any, P("/userdata/"), A::UserData, Some(Perm::Settings)),
    (M::Get, E("/v2/userdata"), A::UserData, Some(Perm::Settings)),
    (M::Get, E("/users"), A::UsersGet, None),
    (M::Post, E("/users"), A::Gated, Some(Perm::Admin)),
    (M::Get, E("/workflow_templates"), A::Pass, None),
    (M::Get, E("/i18n"), A::Pass, None),
];

/// Routes that exist only without `/api` (ComfyUI's `/internal` sub-application), and
/// extension route families that are dangerous whatever their path.
const OTHER: &[(Methods, Pat, Action, Option<Permission>)] = &[
    (M::Get, P("/internal/files/"), A::InternalFiles, None),
    (M::Any, P("/internal/"), A::Gated, Some(Perm::Admin)),
    // ComfyUI-Manager: installs code, runs pip, reboots — remote code execution.
    (M::Any, P("/manager/"), A::Gated, Some(Perm::Manager)),
    (M::Any, P("/api/manager/"), A::Gated, Some(Perm::Manager)),
    (M::Any, P("/customnode/"), A::Gated, Some(Perm::Manager)),
    (M::Any, P("/api/customnode/"), A::Gated, Some(Perm::Manager)),
    (M::Any, P("/externalmodel/"), A::Gated, Some(Perm::Manager)),
    (
        M::Any,
        P("/api/externalmodel/"),
        A::Gated,
        Some(Perm::Manager),
    ),
    (M::Any, P("/snapshot/"), A::Gated, Some(Perm::Manager)),
    (M::Any, P("/api/snapshot/"), A::Gated, Some(Perm::Manager)),
    // Newer ComfyUI (not owner-scoped upstream): admins only.
    (M::Any, E("/api/jobs"), A::Gated, Some(Perm::ViewAll)),
    (M::Any, P("/api/jobs/"), A::Gated, Some(Perm::ViewAll)),
    (M::Any, E("/api/assets"), A::Gated, Some(Perm::ViewAll)),
    (M::Any, P("/api/assets/"), A::Gated, Some(Perm::ViewAll)),
    (M::Any, E("/api/tags"), A::Gated, Some(Perm::ViewAll)),
    (M::Any, P("/api/api/"), A::Gated, Some(Perm::ViewAll)),
];

/// Frontend static files: `/`, the bundle's folders, and root files with a static extension.
const STATIC_PREFIXES: &[&str] = &[
    "/assets/",
    "/scripts/",
    "/extensions/",
    "/fonts/",
    "/cursor/",
    "/templates/",
    "/docs/",
    "/api/workflow_templates/",
];
const STATIC_EXTENSIONS: &[&str] = &[
    "js",
    "mjs",
    "css",
    "map",
    "json",
    "ico",
    "png",
    "svg",
    "jpg",
    "webp",
    "woff",
    "woff2",
    "ttf",
    "txt",
    "webmanifest",
    "html",
];

fn is_static(path: &str) -> bool {
    if path == "/" || path == "/api/" || path == "/index.html" {
        return true;
    }
    if STATIC_PREFIXES.iter().any(|p| path.starts_with(p)) {
        return true;
    }
    // A root-level file such as /favicon.ico or /manifest.json. A target that does not start
    // with `/` (authority form `host:port`, asterisk `*`) is no file at all.
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    !rest.contains('/')
        && rest
            .rsplit_once('.')
            .is_some_and(|(_, ext)| STATIC_EXTENSIONS.contains(&ext))
}

fn lookup(
    table: &[(Methods, Pat, Action, Option<Permission>)],
    method: &Method,
    path: &str,
) -> Option<Route> {
    let mut path_known = false;
    for (methods, pat, action, needs) in table {
        if pat.matches(path) {
            if methods.allows(method) {
                return Some(Route {
                    action: *action,
                    needs: *needs,
                });
            }
            path_known = true;
        }
    }
    path_known.then_some(Route {
        action: A::MethodNotAllowed,
        needs: None,
    })
}

/// Classifies a request path (as sent, percent-encoding intact).
pub fn classify(method: &Method, path: &str) -> Route {
    if let Some(r) = lookup(OTHER, method, path) {
        return r;
    }
    let core_path = path
        .strip_prefix("/api")
        .filter(|p| p.starts_with('/'))
        .unwrap_or(path);
    if let Some(r) = lookup(CORE, method, core_path) {
        return r;
    }
    if (method == Method::GET || method == Method::HEAD) && is_static(path) {
        return Route {
            action: A::Static,
            needs: None,
        };
    }
    Route {
        action: A::Unknown,
        needs: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(m: Method, p: &str) -> Route {
        classify(&m, p)
    }

    #[test]
    fn targets_without_a_leading_slash_are_no_static_files() {
        // Found by the routes fuzz target: `GET host:port` (authority form, an empty path) and a
        // target starting with a multi-byte character panicked slicing off the first byte.
        for p in ["", "*", "é", "favicon.ico", "127.0.0.1:8188"] {
            assert_eq!(c(Method::GET, p).action, A::Unknown, "{p:?}");
        }
        assert_eq!(c(Method::GET, "/favicon.ico").action, A::Static);
    }

    #[test]
    fn api_twins_classify_alike() {
        for p in [
            "/prompt",
            "/queue",
            "/history",
            "/view",
            "/object_info",
            "/system_stats",
            "/userdata/x.json",
            "/settings",
        ] {
            assert_eq!(
                c(Method::GET, p),
                c(Method::GET, &format!("/api{p}")),
                "{p}"
            );
        }
        assert_eq!(c(Method::POST, "/api/prompt").action, A::PromptPost);
        assert_eq!(c(Method::POST, "/api/prompt").needs, Some(Perm::Run));
    }

    #[test]
    fn internal_has_no_api_twin() {
        assert_eq!(c(Method::GET, "/internal/logs").needs, Some(Perm::Admin));
        assert_eq!(
            c(Method::GET, "/internal/files/input").action,
            A::InternalFiles
        );
        assert_eq!(c(Method::GET, "/api/internal/logs").action, A::Unknown);
    }

    #[test]
    fn dangerous_routes_are_gated() {
        assert_eq!(c(Method::POST, "/free").needs, Some(Perm::FreeMemory));
        assert_eq!(c(Method::POST, "/api/free").needs, Some(Perm::FreeMemory));
        assert_eq!(c(Method::POST, "/users").needs, Some(Perm::Admin));
        assert_eq!(c(Method::GET, "/users").action, A::UsersGet);
        assert_eq!(
            c(Method::POST, "/manager/queue/install").needs,
            Some(Perm::Manager)
        );
        assert_eq!(
            c(Method::GET, "/api/manager/version").needs,
            Some(Perm::Manager)
        );
        assert_eq!(
            c(Method::GET, "/customnode/getlist").needs,
            Some(Perm::Manager)
        );
        assert_eq!(c(Method::GET, "/api/jobs").needs, Some(Perm::ViewAll));
        assert_eq!(c(Method::GET, "/api/api/jobs").needs, Some(Perm::ViewAll));
        assert_eq!(
            c(Method::GET, "/api/assets/123/content").needs,
            Some(Perm::ViewAll)
        );
    }

    #[test]
    fn guests_cannot_queue_or_upload() {
        assert_eq!(c(Method::POST, "/upload/image").needs, Some(Perm::Upload));
        assert_eq!(c(Method::POST, "/upload/mask").needs, Some(Perm::Upload));
        assert_eq!(c(Method::POST, "/prompt").needs, Some(Perm::Run));
    }

    #[test]
    fn statics_and_unknowns() {
        assert_eq!(c(Method::GET, "/").action, A::Static);
        assert_eq!(c(Method::GET, "/assets/index-abc.js").action, A::Static);
        assert_eq!(
            c(Method::GET, "/extensions/core/groupNode.js").action,
            A::Static
        );
        assert_eq!(c(Method::GET, "/favicon.ico").action, A::Static);
        assert_eq!(c(Method::POST, "/assets/x.js").action, A::Unknown);
        assert_eq!(
            c(Method::GET, "/my_custom_node/do_things").action,
            A::Unknown
        );
        assert_eq!(c(Method::GET, "/api/my_custom_node/run").action, A::Unknown);
        assert_eq!(c(Method::DELETE, "/prompt").action, A::MethodNotAllowed);
        assert_eq!(c(Method::HEAD, "/view").action, A::View);
    }
}
