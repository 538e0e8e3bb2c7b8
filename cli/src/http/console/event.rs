//! One event's life, and the search that finds an event by id or the
//! deliveries to an address.

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use herald::EventId;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::http::AppState;
use crate::http::views::Page;

use super::{Failure, MAX_QUERY, PAGE_ROWS, class, db, opt_time, snippet, time};

/// The path's event id, or a page saying it is not one.
fn event_id(raw: &str) -> Result<EventId, Failure> {
    raw.trim().parse::<EventId>().map_err(|_| {
        Failure::BadRequest(format!(
            "{:?} is not an event id (a UUID such as 0190f2a4-5c1e-7d3a-9b2f-3c4d5e6f7a8b).",
            snippet(raw)
        ))
    })
}

pub async fn event(State(s): State<AppState>, Path(raw): Path<String>) -> Result<Page, Failure> {
    let id = event_id(&raw)?;
    let db = db(&s)?;
    let t = herald::trace::trace(db, id).await?;
    if t.outbox.is_none() && t.deliveries.is_empty() && t.dead_letters.is_empty() {
        return Err(Failure::NotFound(format!(
            "Herald knows nothing of event {id}: no outbox row (it may have been pruned), no delivery, no dead letter."
        )));
    }
    // Times as the rest of the console shows them.
    let when = |v: &Value| -> Value {
        v.as_str()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map_or(v.clone(), |t| Value::String(time(&t.with_timezone(&Utc))))
    };
    let outbox = t.outbox.map(|mut o| {
        for k in ["created_at", "published_at", "parked_at"] {
            o[k] = when(&o[k]);
        }
        o
    });
    let deliveries: Vec<Value> = t
        .deliveries
        .into_iter()
        .map(|mut d| {
            for k in ["updated_at", "sent_at"] {
                d[k] = when(&d[k]);
            }
            d["class"] = json!(class(d["state"].as_str().unwrap_or("")));
            d
        })
        .collect();
    let dead_letters: Vec<Value> = t
        .dead_letters
        .into_iter()
        .map(|mut d| {
            for k in ["created_at", "retried_at"] {
                d[k] = when(&d[k]);
            }
            d
        })
        .collect();
    Ok(Page::new(
        "event",
        format!("Event {id}"),
        json!({
            "event_id": id.to_string(), "outbox": outbox,
            "deliveries": deliveries, "dead_letters": dead_letters,
        }),
    ))
}

#[derive(Deserialize)]
pub struct SearchQuery {
    q: Option<String>,
}

/// `/search?q=EVENT_ID|ADDRESS`: an event id goes to its page; an address
/// lists the deliveries to it, newest first.
pub async fn search(
    State(s): State<AppState>,
    Query(query): Query<SearchQuery>,
) -> Result<Response, Failure> {
    let q = query.q.as_deref().map(str::trim).unwrap_or("");
    let page = |data: Value| Page::new("search", "Where is my email?", data);
    if q.is_empty() {
        return Ok(page(json!({ "q": "", "searched": false, "rows": [] })).into_response());
    }
    if q.len() > MAX_QUERY {
        return Err(Failure::BadRequest(format!(
            "The search is {} characters long; an event id or an email address is at most {MAX_QUERY}.",
            q.len()
        )));
    }
    if let Ok(id) = q.parse::<EventId>() {
        return Ok(Redirect::to(&format!("/events/{id}")).into_response());
    }
    if !q.contains('@') {
        return Err(Failure::BadRequest(format!(
            "{:?} is neither an event id (a UUID) nor an email address.",
            snippet(q)
        )));
    }
    let db = db(&s)?;
    let rows = herald::ledger::deliveries_to(db, q, PAGE_ROWS).await?;
    let rows: Vec<Value> = rows
        .iter()
        .map(|d| {
            json!({
                "event_id": d.event_id.to_string(), "workflow": d.workflow, "recipient": d.recipient,
                "subject": d.subject, "state": d.state.as_str(), "class": class(d.state.as_str()),
                "attempts": d.attempts, "updated_at": time(&d.updated_at), "sent_at": opt_time(&d.sent_at),
                "message_id": d.message_id,
                "reply": d.smtp_response.as_deref().or(d.last_error.as_deref()).map(snippet),
            })
        })
        .collect();
    Ok(page(json!({
        "q": q, "searched": true, "count": rows.len(),
        "full": rows.len() as u64 == PAGE_ROWS, "limit": PAGE_ROWS, "rows": rows,
    }))
    .into_response())
}
