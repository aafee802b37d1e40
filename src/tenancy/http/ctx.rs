//! The per-request context of tenancy handlers: who is asking, from where, under which
//! configuration, and their ComfyUI user id.
use crate::app::App;
use crate::auth::roles::Permission;
use crate::body::{self, Body};
use crate::config::{Snapshot, User};
use crate::proxy::{forward, upstream::UpstreamError};
use crate::reject::Reject;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};
use serde_json::Value;
use std::net::IpAddr;
use std::sync::Arc;

pub struct Ctx<'a> {
    pub app: &'a Arc<App>,
    pub snap: &'a Snapshot,
    pub user: &'a Arc<User>,
    pub client_ip: IpAddr,
    pub tls: bool,
    pub comfy_user: HeaderValue,
}

impl Ctx<'_> {
    pub fn ns(&self) -> &str {
        &self.user.namespace
    }

    pub fn owner(&self) -> &str {
        &self.user.name
    }

    /// Admins with `view_all` see ComfyUI unfiltered.
    pub fn sees_all(&self) -> bool {
        self.user.can(Permission::ViewAll)
    }

    /// comfy-warden's own JSON call to ComfyUI on behalf of this user.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        json: Option<&Value>,
    ) -> Result<(StatusCode, HeaderMap, Bytes), UpstreamError> {
        forward::call(self.snap, method, path, Some(&self.comfy_user), json).await
    }

    /// Like [`Ctx::call`] for a JSON answer that must be 200.
    pub async fn call_json(
        &self,
        method: Method,
        path: &str,
        json: Option<&Value>,
    ) -> Result<Value, UpstreamError> {
        let body = self.call_ok(method, path, json).await?;
        serde_json::from_slice(&body).map_err(|e| UpstreamError::malformed(path, e))
    }

    /// [`Ctx::call`] for a 200 answer: its body, or an error naming the status.
    pub async fn call_ok(
        &self,
        method: Method,
        path: &str,
        json: Option<&Value>,
    ) -> Result<Bytes, UpstreamError> {
        let (status, _, body) = self.call(method, path, json).await?;
        if status != StatusCode::OK {
            return Err(UpstreamError::status(status, path));
        }
        Ok(body)
    }

    pub fn tenant(&self) -> crate::tenancy::tenant::Tenant {
        crate::tenancy::tenant::Tenant::new(&self.app.tenancy, self.user)
    }

    pub fn owns_item(&self, item: &Value) -> bool {
        self.app
            .tenancy
            .ledger
            .owns_item(item, self.owner(), self.ns())
    }

    pub fn owns_prompt(&self, prompt_id: &str) -> bool {
        self.app.tenancy.ledger.owns_prompt(prompt_id, self.owner())
    }

    /// Forwards the request as it is (path and query untouched), with this user's `comfy-user`.
    pub async fn forward(
        &self,
        req: http::Request<hyper::body::Incoming>,
    ) -> Result<Response<Body>, Reject> {
        forward::forward(
            self.snap,
            req,
            self.client_ip,
            self.tls,
            Some(&self.comfy_user),
        )
        .await
    }

    /// Turns the client's request head into ComfyUI's for `path_and_query` (see
    /// `proxy::forward::upstream_parts`), with this user's `comfy-user`.
    pub fn upstream_parts(
        &self,
        parts: &mut http::request::Parts,
        path_and_query: &str,
    ) -> Result<(), Reject> {
        forward::upstream_parts(
            self.snap,
            parts,
            path_and_query,
            self.client_ip,
            self.tls,
            Some(&self.comfy_user),
        )
        .map_err(|_| Reject::InvalidPath)
    }
}

/// A JSON answer about one user's data: never cached by shared caches.
pub fn private_json(status: StatusCode, v: &Value) -> Response<Body> {
    private_json_bytes(status, serde_json::to_vec(v).unwrap_or_default())
}

/// [`private_json`] for JSON already serialised.
pub fn private_json_bytes(status: StatusCode, json: impl Into<Bytes>) -> Response<Body> {
    let mut r = body::json_bytes(status, json);
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    r
}

/// ComfyUI's empty 200 answer (POST /queue, /history, /interrupt).
pub fn empty_ok() -> Response<Body> {
    let mut r = Response::new(body::empty());
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}
