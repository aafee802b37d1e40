//! Applies the route table to one authenticated request: permission gate, ComfyUI user id, then
//! the handler the table names. Everything that reaches ComfyUI goes through here.
use super::ctx::Ctx;
use super::{extensions, files, info, objectinfo, queue, submit};
use crate::app::App;
use crate::auth::identity::Identity;
use crate::auth::roles::Permission;
use crate::body::Body;
use crate::body::read_small_body;
use crate::config::Snapshot;
use crate::reject::Reject;
use crate::tenancy::provision::ProvisionError;
use crate::tenancy::route_table::{Action, classify};
use http::{Request, Response};
use hyper::body::Incoming;
use std::net::IpAddr;
use std::sync::Arc;

/// Small JSON bodies of queue/history/interrupt calls.
const SMALL_BODY: u64 = 1 << 20;

pub async fn handle(
    app: &Arc<App>,
    snap: &Snapshot,
    ident: &Identity,
    req: Request<Incoming>,
    client_ip: IpAddr,
    tls: bool,
) -> Result<Response<Body>, Reject> {
    let user = &ident.user;
    let path = req.uri().path().to_owned();
    let route = classify(req.method(), &path);

    if let Some(p) = route.needs
        && !user.can(p)
    {
        tracing::info!(target: "audit", event = "route_denied", user = %user.name, client_ip = %client_ip, route = %path, needs = %p, "permission missing");
        return Err(Reject::MissingPermission(p.name()));
    }
    match route.action {
        Action::MethodNotAllowed => return Err(Reject::MethodNotAllowedOnRoute),
        Action::Unknown if !(user.can(Permission::Admin) || snap.tenancy.allows_route(&path)) => {
            tracing::info!(target: "audit", event = "route_denied", user = %user.name, client_ip = %client_ip, route = %path, "route not in the isolation table");
            return Err(Reject::RouteNotAllowed);
        }
        Action::UsersGet => return Ok(info::users_get()),
        _ => {}
    }

    let comfy_user = match app.tenancy.comfy_users.id_for(snap, user).await {
        Ok(id) => id,
        Err(ProvisionError::Upstream(e)) => return Err(e.into()),
        Err(e) => {
            tracing::error!(error = %e, user = %user.name, "cannot provision the ComfyUI user");
            return Err(Reject::ComfyMisconfigured(e.to_string().into()));
        }
    };
    let ctx = Ctx {
        app,
        snap,
        user,
        client_ip,
        tls,
        comfy_user,
    };

    match route.action {
        Action::Static | Action::Pass | Action::Gated | Action::Unknown => ctx.forward(req).await,
        Action::Extensions => extensions::extensions(&ctx, &req).await,
        Action::UserData => info::user_data(&ctx, req).await,
        Action::SystemStats => info::system_stats(&ctx, &req).await,
        Action::ExperimentModels => info::experiment_models(&ctx, &req).await,
        Action::ModelPreview => info::model_preview(&ctx, req).await,
        Action::ObjectInfo => objectinfo::object_info(&ctx, &req).await,
        Action::View => files::view(&ctx, req).await,
        Action::UploadImage => files::upload(&ctx, req, false).await,
        Action::UploadMask => files::upload(&ctx, req, true).await,
        Action::InternalFiles => {
            if ctx.sees_all() {
                ctx.forward(req).await
            } else {
                files::internal_files(&ctx, path.rsplit('/').next().unwrap_or(""))
            }
        }
        Action::PromptGet => queue::prompt_get(&ctx).await,
        Action::PromptPost => submit::submit(&ctx, req).await,
        Action::QueueGet => queue::queue_get(&ctx).await,
        Action::HistoryGet => queue::history_get(&ctx, req.uri().query()).await,
        Action::HistoryOne => {
            let id = path.rsplit('/').next().unwrap_or("").to_owned();
            queue::history_one(&ctx, &id).await
        }
        Action::QueuePost | Action::HistoryPost | Action::Interrupt => {
            let (_, bytes) = read_small_body(req, SMALL_BODY).await?;
            match route.action {
                Action::QueuePost => queue::clear_or_delete(&ctx, "/queue", bytes).await,
                Action::HistoryPost => queue::clear_or_delete(&ctx, "/history", bytes).await,
                _ => queue::interrupt(&ctx, bytes).await,
            }
        }
        Action::UsersGet | Action::MethodNotAllowed => {
            Err(Reject::Internal("unreachable route state".into()))
        }
    }
}
