//! Queue, history and interrupt, scoped to the user: `GET /prompt`, `GET/POST /queue`,
//! `GET /history[/{id}]`, `POST /history`, `POST /interrupt`. Paging of history is applied
//! after filtering, with ComfyUI's semantics (`max_items` without `offset` = the last N).
use super::ctx::{Ctx, empty_ok, private_json};
use crate::auth::roles::Permission;
use crate::body::Body;
use crate::proxy::forward;
use crate::proxy::upstream::UpstreamError;
use crate::reject::Reject;
use crate::tenancy::filter;
use bytes::Bytes;
use http::{Method, Response, StatusCode};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

fn items<'v>(queue: &'v Value, key: &str) -> impl Iterator<Item = &'v Value> {
    queue
        .get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

fn item_id(item: &Value) -> Option<&str> {
    item.get(1).and_then(Value::as_str)
}

/// A queue/history tuple as the user may see it.
pub fn item_to_client(ctx: &Ctx<'_>, item: &mut Value) {
    if let Some(extra) = item.get_mut(3) {
        filter::clean_extra_data(extra);
    }
    if !ctx.sees_all()
        && let Some(graph) = item.get_mut(2).and_then(Value::as_object_mut)
    {
        super::submit::graph_to_client(ctx, graph);
    }
}

/// The user's own pending + running count.
pub fn own_count(ctx: &Ctx<'_>, queue: &Value) -> usize {
    items(queue, "queue_running")
        .chain(items(queue, "queue_pending"))
        .filter(|i| ctx.owns_item(i))
        .count()
}

pub async fn prompt_get(ctx: &Ctx<'_>) -> Result<Response<Body>, Reject> {
    let q = ctx
        .app
        .tenancy
        .live
        .queue(ctx.snap, crate::tenancy::live::QUEUE_FRESH)
        .await?;
    let n = if ctx.sees_all() {
        items(&q, "queue_running").count() + items(&q, "queue_pending").count()
    } else {
        own_count(ctx, &q)
    };
    Ok(private_json(
        StatusCode::OK,
        &json!({"exec_info": {"queue_remaining": n}}),
    ))
}

pub async fn queue_get(ctx: &Ctx<'_>) -> Result<Response<Body>, Reject> {
    let q = ctx.call_json(Method::GET, "/queue", None).await?;
    let mut out = Map::new();
    for key in ["queue_running", "queue_pending"] {
        let list: Vec<Value> = items(&q, key)
            .filter(|i| ctx.sees_all() || ctx.owns_item(i))
            .cloned()
            .map(|mut i| {
                item_to_client(ctx, &mut i);
                i
            })
            .collect();
        out.insert(key.into(), Value::Array(list));
    }
    Ok(private_json(StatusCode::OK, &Value::Object(out)))
}

/// `{"clear": true}` / `{"delete": [ids]}` for `/queue` and `/history`, limited to the user's
/// own ids (`clear` becomes a delete of the user's ids).
pub async fn clear_or_delete(
    ctx: &Ctx<'_>,
    path: &str,
    body: Bytes,
) -> Result<Response<Body>, Reject> {
    let v: Value = serde_json::from_slice(&body).map_err(|_| {
        Reject::BadRequest("send JSON {\"clear\": true} or {\"delete\": [ids]}".into())
    })?;
    if ctx.sees_all() {
        return forward_json(ctx, path, &v).await;
    }
    let mut ids: Vec<String> = Vec::new();
    if v.get("clear").and_then(Value::as_bool) == Some(true) {
        let listing = if path == "/queue" {
            "/queue"
        } else {
            "/history"
        };
        let current = ctx.call_json(Method::GET, listing, None).await?;
        if path == "/queue" {
            ids.extend(
                items(&current, "queue_pending")
                    .filter(|i| ctx.owns_item(i))
                    .filter_map(item_id)
                    .map(str::to_owned),
            );
        } else if let Some(h) = current.as_object() {
            ids.extend(
                h.iter()
                    .filter(|(_, e)| e.get("prompt").is_some_and(|p| ctx.owns_item(p)))
                    .map(|(k, _)| k.clone()),
            );
        }
    }
    if let Some(list) = v.get("delete").and_then(Value::as_array) {
        ids.extend(
            list.iter()
                .filter_map(Value::as_str)
                .filter(|id| ctx.owns_prompt(id))
                .map(str::to_owned),
        );
    }
    if ids.is_empty() {
        return Ok(empty_ok());
    }
    ids.dedup();
    tracing::debug!(user = %ctx.owner(), path, count = ids.len(), "deleting own entries");
    forward_json(ctx, path, &json!({ "delete": ids })).await
}

/// comfy-warden's own POST (rebuilt from the user's ids): ComfyUI's empty 200, or a refusal
/// saying what ComfyUI answered instead.
async fn forward_json(ctx: &Ctx<'_>, path: &str, v: &Value) -> Result<Response<Body>, Reject> {
    let (status, _, _) = ctx.call(Method::POST, path, Some(v)).await?;
    if !status.is_success() {
        return Err(UpstreamError::status(status, path).into());
    }
    ctx.app.tenancy.live.queue_changed().await;
    Ok(empty_ok())
}

/// ComfyUI's paging over the user's own entries (in insertion order).
pub fn page<T>(list: Vec<T>, max_items: Option<usize>, offset: Option<i64>) -> Vec<T> {
    let len = list.len() as i64;
    let mut offset = offset.unwrap_or(-1);
    if offset < 0
        && let Some(m) = max_items
    {
        offset = len - m as i64;
    }
    let start = offset.max(0) as usize;
    let take = max_items.unwrap_or(usize::MAX);
    list.into_iter().skip(start).take(take).collect()
}

fn query_usize(query: Option<&str>, key: &str) -> Result<Option<i64>, ()> {
    let Some(q) = query else { return Ok(None) };
    match form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == key) {
        None => Ok(None),
        Some((_, v)) => v.parse::<i64>().map(Some).map_err(|_| ()),
    }
}

pub async fn history_get(ctx: &Ctx<'_>, query: Option<&str>) -> Result<Response<Body>, Reject> {
    let (Ok(max_items), Ok(offset)) = (
        query_usize(query, "max_items"),
        query_usize(query, "offset"),
    ) else {
        return Err(Reject::BadRequest(
            "max_items and offset must be integers".into(),
        ));
    };
    // Concurrent requests share one upstream fetch (tenancy/live.rs).
    let body = ctx.app.tenancy.live.history(ctx.snap).await?;
    let all = serde_json::from_slice::<RawEntries<'_>>(&body)
        .map_err(|e| UpstreamError::malformed("/history", e))?
        .0;
    // Only the user's entries on the requested page are parsed whole; the others are skipped
    // after reading their id (and, for ids the ledger does not know, the owner tag).
    let own: Vec<(String, &RawValue)> = all
        .into_iter()
        .filter(|(_, e)| ctx.sees_all() || owns_raw_entry(ctx, e))
        .collect();
    let max_items = max_items.map(|m| m.max(0) as usize);
    let mut out = Map::new();
    for (id, raw) in page(own, max_items, offset) {
        let Ok(mut entry) = serde_json::from_str::<Value>(raw.get()) else {
            continue;
        };
        entry_to_client(ctx, &mut entry);
        out.insert(id, entry);
    }
    Ok(private_json(StatusCode::OK, &Value::Object(out)))
}

/// ComfyUI's `/history` object as its entries in order, each left unparsed.
struct RawEntries<'a>(Vec<(String, &'a RawValue)>);

impl<'de: 'a, 'a> serde::Deserialize<'de> for RawEntries<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visit<'a> {
            type Value = RawEntries<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of history entries")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut m: M,
            ) -> Result<Self::Value, M::Error> {
                let mut v = Vec::with_capacity(m.size_hint().unwrap_or(0));
                while let Some(entry) = m.next_entry::<String, &'de RawValue>()? {
                    v.push(entry);
                }
                Ok(RawEntries(v))
            }
        }
        d.deserialize_map(Visit(std::marker::PhantomData))
    }
}

/// Does the user own this unparsed history entry? Reads `prompt[1]` (the prompt id) and, only
/// when the ledger does not know it, the owner tag in `prompt[3]`.
fn owns_raw_entry(ctx: &Ctx<'_>, entry: &RawValue) -> bool {
    #[derive(serde::Deserialize)]
    struct Entry<'a> {
        #[serde(borrow)]
        prompt: Option<Vec<&'a RawValue>>,
    }
    let Ok(Entry {
        prompt: Some(prompt),
    }) = serde_json::from_str::<Entry<'_>>(entry.get())
    else {
        return false;
    };
    let Some(Ok(id)) = prompt
        .get(1)
        .map(|r| serde_json::from_str::<std::borrow::Cow<'_, str>>(r.get()))
    else {
        return false;
    };
    // Only the owner tag is read from `extra_data` (which carries the whole workflow).
    #[derive(serde::Deserialize)]
    struct Extra<'a> {
        #[serde(borrow, rename = "comfy_warden_owner")]
        owner: Option<std::borrow::Cow<'a, str>>,
    }
    let tag = || {
        let extra: Extra<'_> = serde_json::from_str(prompt.get(3)?.get()).ok()?;
        extra.owner.map(|o| o.into_owned())
    };
    ctx.app
        .tenancy
        .ledger
        .owns_tagged(&id, tag, ctx.owner(), ctx.ns())
}

/// A history entry as the user may see it.
pub fn entry_to_client(ctx: &Ctx<'_>, entry: &mut Value) {
    if let Some(p) = entry.get_mut("prompt") {
        item_to_client(ctx, p);
    }
    if ctx.sees_all() {
        return;
    }
    if let Some(outputs) = entry.get_mut("outputs") {
        filter::outputs_to_client(outputs, ctx.ns(), ctx.owner(), &ctx.app.tenancy.ledger);
    }
    if let Some(status) = entry.get_mut("status") {
        filter::redact_all(status, ctx.ns());
    }
}

pub async fn history_one(ctx: &Ctx<'_>, prompt_id_raw: &str) -> Result<Response<Body>, Reject> {
    let prompt_id = percent_encoding::percent_decode_str(prompt_id_raw)
        .decode_utf8_lossy()
        .into_owned();
    if !ctx.sees_all() && !ctx.owns_prompt(&prompt_id) {
        return Ok(private_json(StatusCode::OK, &filter::empty_object()));
    }
    let path = format!(
        "/history/{}",
        percent_encoding::utf8_percent_encode(&prompt_id, percent_encoding::NON_ALPHANUMERIC)
    );
    let mut h = ctx.call_json(Method::GET, &path, None).await?;
    // Only the asked entry is shown, filtered; anything else ComfyUI sent is dropped.
    let mut out = Map::new();
    if let Some(mut entry) = h.as_object_mut().and_then(|m| m.remove(&prompt_id)) {
        entry_to_client(ctx, &mut entry);
        out.insert(prompt_id, entry);
    }
    Ok(private_json(StatusCode::OK, &Value::Object(out)))
}

/// `POST /interrupt`: only the user's own running prompt is ever interrupted (an empty body
/// would interrupt whatever runs, whoever owns it). Users with `interrupt_any` are forwarded.
pub async fn interrupt(ctx: &Ctx<'_>, body: Bytes) -> Result<Response<Body>, Reject> {
    let asked: Option<String> = serde_json::from_slice::<Value>(&body).ok().and_then(|v| {
        v.get("prompt_id")
            .and_then(Value::as_str)
            .map(str::to_owned)
    });
    if ctx.user.can(Permission::InterruptAny) {
        let v = asked
            .map(|id| json!({ "prompt_id": id }))
            .unwrap_or_else(|| json!({}));
        ctx.call(Method::POST, "/interrupt", Some(&v)).await?;
        return Ok(empty_ok());
    }
    let q = ctx
        .app
        .tenancy
        .live
        .queue(ctx.snap, std::time::Duration::ZERO)
        .await?;
    let running: Vec<&str> = items(&q, "queue_running")
        .filter(|i| ctx.owns_item(i))
        .filter_map(item_id)
        .collect();
    let target = match asked.as_deref() {
        Some(id) => running.iter().find(|r| **r == id).copied(),
        None => running.first().copied(),
    };
    let Some(target) = target else {
        tracing::debug!(user = %ctx.owner(), "interrupt: nothing of this user is running");
        return Ok(empty_ok());
    };
    ctx.call(
        Method::POST,
        "/interrupt",
        Some(&json!({ "prompt_id": target })),
    )
    .await?;
    Ok(empty_ok())
}

pub use forward::MAX_FILTERED_BODY;

#[cfg(test)]
mod tests {
    use super::page;

    #[test]
    fn paging_like_comfyui() {
        let l: Vec<i32> = (0..10).collect();
        assert_eq!(
            page(l.clone(), Some(3), None),
            vec![7, 8, 9],
            "max_items alone = last N"
        );
        assert_eq!(page(l.clone(), Some(3), Some(2)), vec![2, 3, 4]);
        assert_eq!(page(l.clone(), None, Some(8)), vec![8, 9]);
        assert_eq!(page(l.clone(), None, None), l);
        assert_eq!(page(l.clone(), Some(20), None), l);
        assert!(page(l, Some(0), None).is_empty());
    }
}
