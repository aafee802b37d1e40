//! `POST /prompt`: the graph is rewritten into the user's namespace (see `prompt`), then the
//! request is rebuilt from checked values only: `client_id` forced to one of the user's sockets
//! (or their sink id), `prompt_id` accepted only as a fresh canonical UUID (else minted here),
//! `number`/`front` dropped, `extra_data` reduced to `extra_pnginfo` plus the owner tag. The
//! prompt is recorded as the user's before ComfyUI sees it (it may start at once), and the
//! per-user queue limit is enforced with a 429.
use super::ctx::{Ctx, private_json};
use crate::body::Body;
use crate::body::read_small_body;
use crate::proxy::upstream::UpstreamError;
use crate::reject::Reject;
use crate::tenancy::filter;
use crate::tenancy::ledger::OWNER_TAG;
use crate::tenancy::nodes::OWNER_INPUT;
use crate::tenancy::prompt;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::{Map, Value, json};

fn comfy_error(status: StatusCode, kind: &str, message: &str) -> Response<Body> {
    private_json(
        status,
        &json!({"error": {"type": kind, "message": message, "details": message, "extra_info": {}}, "node_errors": {}}),
    )
}

/// A prompt graph echoed by ComfyUI (queue, history), as the user may see it.
pub fn graph_to_client(ctx: &Ctx<'_>, graph: &mut Map<String, Value>) {
    prompt::strip(graph, ctx.ns(), &ctx.snap.tenancy.node_rules);
}

/// Canonical lowercase hyphenated UUID.
fn canonical_uuid(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok_and(|u| u.hyphenated().to_string() == s)
}

pub async fn submit(ctx: &Ctx<'_>, req: Request<Incoming>) -> Result<Response<Body>, Reject> {
    let (_, bytes) = read_small_body(req, ctx.snap.tenancy.max_prompt_bytes).await?;
    let Ok(Value::Object(mut body)) = serde_json::from_slice::<Value>(&bytes) else {
        return Ok(comfy_error(
            StatusCode::BAD_REQUEST,
            "invalid_prompt",
            "The request body is not a JSON object.",
        ));
    };
    let Some(Value::Object(mut graph)) = body.remove("prompt") else {
        return Ok(comfy_error(
            StatusCode::BAD_REQUEST,
            "no_prompt",
            "No prompt provided",
        ));
    };
    let tenant = ctx.tenant();
    let live = &ctx.app.tenancy.live;

    let limit = ctx.snap.tenancy.max_queued_per_user;
    if limit > 0 && !ctx.sees_all() {
        let q = live.queue(ctx.snap, std::time::Duration::ZERO).await?;
        if tenant.own_count(&q) >= limit {
            return Err(Reject::QueueFull { limit });
        }
    }

    let catalog = ctx.app.tenancy.catalog.get(ctx.snap).await?;
    let owner_tag = ctx.ns().to_owned();
    if ctx.sees_all() {
        // Admins work on ComfyUI's real paths; their outputs still get the cache partition.
        for node in graph.values_mut() {
            let class = node
                .get("class_type")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            if catalog.get(&class).is_some_and(|c| c.output_node)
                && let Some(inputs) = node.get_mut("inputs").and_then(Value::as_object_mut)
            {
                inputs.insert(OWNER_INPUT.into(), Value::String(owner_tag.clone()));
            }
        }
    } else {
        let owns = |kind, sub: &str, name: &str| {
            ctx.app
                .tenancy
                .ledger
                .file_owner(kind, sub, name)
                .as_deref()
                == Some(ctx.owner())
        };
        let rctx = prompt::Caller {
            ns: ctx.ns(),
            owner_tag: &owner_tag,
            catalog: &catalog,
            rules: &ctx.snap.tenancy.node_rules,
            admin: false,
            owns_file: &owns,
        };
        if let Err(refusal) = prompt::rewrite(&mut graph, &rctx) {
            tracing::info!(target: "audit", event = "prompt_refused", user = %ctx.owner(), client_ip = %ctx.client_ip,
                class = %refusal.class_type, reason = %refusal.message, "prompt refused");
            return Ok(private_json(
                StatusCode::BAD_REQUEST,
                &refusal.to_comfy_error(),
            ));
        }
    }

    let prompt_id = match body.get("prompt_id") {
        None | Some(Value::Null) => uuid::Uuid::new_v4().hyphenated().to_string(),
        Some(Value::String(p)) if canonical_uuid(p) => {
            if ctx.app.tenancy.ledger.knows_prompt(p) || exists_upstream(ctx, p).await {
                return Err(Reject::Conflict(
                    "this prompt_id is already in use; leave it out to get a new one".into(),
                ));
            }
            p.clone()
        }
        Some(_) => {
            return Err(Reject::BadRequest(
                "prompt_id must be a lowercase UUID (or left out)".into(),
            ));
        }
    };
    let proposed_client = body.get("client_id").and_then(Value::as_str);
    let client_id = live.prompt_client_id(&ctx.user.name, proposed_client);

    let mut extra = Map::new();
    let client_extra = body.remove("extra_data");
    if ctx.sees_all() {
        if let Some(Value::Object(e)) = client_extra {
            extra = e;
        }
    } else if let Some(pnginfo) = client_extra
        .as_ref()
        .and_then(|e| e.get("extra_pnginfo"))
        .filter(|v| v.is_object())
    {
        extra.insert("extra_pnginfo".into(), pnginfo.clone());
    }
    extra.insert("client_id".into(), Value::String(client_id.clone()));
    extra.insert(OWNER_TAG.into(), Value::String(owner_tag));

    let mut out = Map::new();
    out.insert("prompt".into(), Value::Object(graph));
    out.insert("client_id".into(), Value::String(client_id));
    out.insert("prompt_id".into(), Value::String(prompt_id.clone()));
    out.insert("extra_data".into(), Value::Object(extra));
    if let Some(Value::Array(targets)) = body.get("partial_execution_targets")
        && targets.iter().all(Value::is_string)
    {
        out.insert(
            "partial_execution_targets".into(),
            Value::Array(targets.clone()),
        );
    }
    if ctx.sees_all() {
        for k in ["number", "front"] {
            if let Some(v) = body.get(k) {
                out.insert(k.into(), v.clone());
            }
        }
    }

    ctx.app
        .tenancy
        .ledger
        .record_prompt(&prompt_id, ctx.owner());
    let result = ctx
        .call(Method::POST, "/prompt", Some(&Value::Object(out)))
        .await;
    live.queue_changed().await;
    let (status, _, bytes) = result?;
    // ComfyUI's own answer (the queued prompt, or a 400 with `node_errors`) passes, filtered;
    // a server error or an answer that is not JSON is not passed on.
    if status.is_server_error() {
        return Err(UpstreamError::status(status, "/prompt").into());
    }
    let mut v: Value =
        serde_json::from_slice(&bytes).map_err(|e| UpstreamError::malformed("/prompt", e))?;
    if !ctx.sees_all() {
        if let Some(ne) = v.get_mut("node_errors") {
            filter::scrub_node_errors(ne, ctx.ns());
        }
        if let Some(e) = v.get_mut("error") {
            filter::redact_all(e, ctx.ns());
        }
    }
    Ok(private_json(status, &v))
}

/// Is `prompt_id` already in ComfyUI's history or queue (made by someone not through us)?
async fn exists_upstream(ctx: &Ctx<'_>, prompt_id: &str) -> bool {
    let in_history = match ctx
        .call_json(Method::GET, &format!("/history/{prompt_id}"), None)
        .await
    {
        Ok(v) => v.as_object().is_none_or(|m| !m.is_empty()),
        Err(_) => true,
    };
    if in_history {
        return true;
    }
    match ctx.call_json(Method::GET, "/queue", None).await {
        Ok(q) => ["queue_running", "queue_pending"]
            .iter()
            .flat_map(|k| q.get(*k).and_then(Value::as_array).into_iter().flatten())
            .any(|i| i.get(1).and_then(Value::as_str) == Some(prompt_id)),
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::canonical_uuid;

    #[test]
    fn uuids() {
        assert!(canonical_uuid("d5b745fa-a8b7-4161-bf61-97ed1b64ab10"));
        for bad in [
            "D5B745FA-A8B7-4161-BF61-97ED1B64AB10",
            "d5b745faa8b74161bf6197ed1b64ab10",
            "../../etc",
            "123",
            "",
        ] {
            assert!(!canonical_uuid(bad), "{bad}");
        }
    }
}
