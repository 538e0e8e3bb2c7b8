//! Dead letters: the list (filtered) and one in detail, with the email as
//! the workflow renders it now.
use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use herald_entities::dead_letter;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::http::views::Page;
use crate::http::{AppState, WriteMode};

use super::overview::writes_note;
use super::{Failure, PAGE_ROWS, db, opt_time, snippet, time};

#[derive(Deserialize)]
pub struct DeadLetterFilter {
    workflow: Option<String>,
    closed: Option<String>,
}

fn dead_letter_state(d: &dead_letter::Model) -> &'static str {
    match (d.retried_at, d.discarded_at) {
        (_, Some(_)) => "discarded",
        (Some(_), None) => "re-driven",
        (None, None) => "open",
    }
}

pub async fn dead_letters(
    State(s): State<AppState>,
    Query(f): Query<DeadLetterFilter>,
) -> Result<Page, Failure> {
    let db = db(&s)?;
    let workflow = f
        .workflow
        .as_deref()
        .map(str::trim)
        .filter(|w| !w.is_empty());
    if workflow.is_some_and(|w| w.len() > 200) {
        return Err(Failure::BadRequest(
            "That workflow name is too long.".into(),
        ));
    }
    let closed = f
        .closed
        .as_deref()
        .is_some_and(|c| !c.is_empty() && c != "0");
    let rows = herald::dlq::recent(db, workflow, closed, PAGE_ROWS).await?;
    let mut workflows = herald::dlq::workflows(db).await?;
    if let Some(w) = s.worker() {
        workflows.extend(w.catalog().workflows.iter().map(|w| w.name.clone()));
    }
    workflows.sort();
    workflows.dedup();
    let list: Vec<Value> = rows
        .iter()
        .map(|d| {
            json!({
                "id": d.id, "created_at": time(&d.created_at), "workflow": d.workflow,
                "recipient": d.recipient, "kind": d.kind.as_str(), "reason": snippet(&d.reason),
                "event_id": d.event_id.to_string(), "state": dead_letter_state(d),
            })
        })
        .collect();
    let options: Vec<Value> = workflows
        .iter()
        .map(|w| json!({ "name": w, "selected": Some(w.as_str()) == workflow }))
        .collect();
    Ok(Page::new(
        "dead_letters",
        "Dead letters",
        json!({
            "rows": list, "count": list.len(), "full": list.len() as u64 == PAGE_ROWS, "limit": PAGE_ROWS,
            "closed": closed, "workflow": workflow, "workflows": options,
        }),
    ))
}

/// The path's dead letter id, or a page saying it is not one.
fn dead_letter_id(raw: &str) -> Result<i64, Failure> {
    raw.parse::<i64>().map_err(|_| {
        Failure::BadRequest(format!(
            "{:?} is not a dead letter id (a number, as in /dead-letters/12).",
            snippet(raw)
        ))
    })
}

pub async fn dead_letter(
    State(s): State<AppState>,
    Path(raw): Path<String>,
    headers: axum::http::HeaderMap,
) -> Result<Response, Failure> {
    let id = dead_letter_id(&raw)?;
    let db = db(&s)?;
    let d = herald::dlq::get(db, id)
        .await?
        .ok_or_else(|| Failure::NotFound(format!("There is no dead letter {id}.")))?;
    let payload = match serde_json::from_str::<Value>(&d.payload) {
        Ok(v) => serde_json::to_string_pretty(&v).unwrap_or_else(|_| d.payload.clone()),
        Err(_) => d.payload.clone(),
    };
    let event_headers: BTreeMap<String, Value> =
        serde_json::from_str(&d.headers).unwrap_or_default();
    let event_headers: Vec<Value> = event_headers
        .iter()
        .map(|(k, v)| {
            let v = v.as_str().map_or_else(|| v.to_string(), str::to_string);
            json!({ "name": k, "value": v })
        })
        .collect();
    let writes = s.writes();
    let csrf = crate::http::actions::csrf_cookie(&headers);
    let page = Page::new(
        "dead_letter",
        format!("Dead letter {id}"),
        json!({
            "id": d.id, "event_id": d.event_id.to_string(), "workflow": d.workflow,
            "recipient": d.recipient, "subject": d.subject, "aggregate": d.aggregate,
            "stream_seq": d.stream_seq, "kind": d.kind.as_str(), "reason": d.reason,
            "smtp_reply": d.smtp_reply, "attempts": d.attempts, "created_at": time(&d.created_at),
            "retried_at": opt_time(&d.retried_at), "discarded_at": opt_time(&d.discarded_at),
            "state": dead_letter_state(&d), "open": d.retried_at.is_none(),
            "held": d.kind == herald::dlq::DeadLetterKind::Held,
            "payload": payload, "headers": event_headers,
            "rendered": rendered(&s, &d).await,
            "can_write": writes == WriteMode::Enabled, "writes": writes_note(writes),
            "csrf": csrf.value,
        }),
    );
    let mut response = page.into_response();
    if writes == WriteMode::Enabled {
        crate::http::actions::set_csrf_cookie(&mut response, &csrf);
    }
    Ok(response)
}

/// [`rendered_now`] with every key the template reads (strict mode).
async fn rendered(s: &AppState, d: &dead_letter::Model) -> Value {
    let mut r = json!({ "error": null, "skipped": null, "emails": [] });
    if let (Value::Object(all), Value::Object(got)) = (&mut r, rendered_now(s, d).await) {
        all.extend(got);
    }
    r
}

/// The emails the workflow renders for the dead letter's event now: with
/// the worker's catalog (what a re-drive would send), or, in a relay, the
/// workflows directory loaded afresh. Bodies are shown as source text.
async fn rendered_now(s: &AppState, d: &dead_letter::Model) -> Value {
    let catalog = match s.worker() {
        Some(w) => w.catalog(),
        None => {
            let dir = s.sources.workflows.clone();
            match tokio::task::spawn_blocking(move || herald::workflow::load(&dir)).await {
                Ok(Ok(c)) => std::sync::Arc::new(c),
                Ok(Err(e)) => return json!({ "error": format!("the workflows do not load: {e}") }),
                Err(e) => return json!({ "error": format!("loading the workflows failed: {e}") }),
            }
        }
    };
    let Some(wf) = catalog.get(&d.workflow) else {
        return json!({ "error": format!("workflow {:?} is not in {}", d.workflow, catalog.dir.display()) });
    };
    let payload: Value = serde_json::from_str(&d.payload).unwrap_or_default();
    let headers: serde_json::Map<String, Value> =
        serde_json::from_str(&d.headers).unwrap_or_default();
    let header = |k: &str| headers.get(k).and_then(Value::as_str).map(str::to_string);
    let meta = herald::workflow::render::Meta {
        id: d.event_id.to_string(),
        subject: d.subject.clone(),
        aggregate: header(herald::jetstream::headers::AGGREGATE),
        occurred_at: header(herald::jetstream::headers::OCCURRED_AT).unwrap_or_default(),
        workflow: d.workflow.clone(),
    };
    let list = |m: &[herald::workflow::Mailbox]| {
        m.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    match catalog.render(wf, &payload, &meta) {
        Ok(herald::workflow::render::Outcome::Emails(emails)) => json!({
            "emails": emails.iter().map(|e| json!({
                "index": e.index, "from": e.from.to_string(), "to": list(&e.to), "cc": list(&e.cc),
                "bcc": list(&e.bcc), "reply_to": list(&e.reply_to), "subject": e.subject,
                "headers": e.headers.iter().map(|(k, v)| json!({ "name": k, "value": v })).collect::<Vec<_>>(),
                "message_id": format!("<{}>", herald::worker::message_id(d.event_id.into(), &d.workflow, e.index, &e.from)),
                "text": e.text, "html": e.html,
            })).collect::<Vec<_>>(),
        }),
        Ok(herald::workflow::render::Outcome::Skipped { guard }) => {
            json!({ "skipped": format!("the guard {guard:?} does not hold: nothing would be sent") })
        }
        Err(e) => json!({ "error": e.to_string() }),
    }
}
