//! The console's pages (all GET, read-only): the overview, dead letters
//! (list and detail, with the email as the workflow renders it now), one
//! event's life, and the search that finds an event by id or the
//! deliveries to an address. Data comes from the library (`status`,
//! `trace`, `ledger`, `dlq`); the HTML from `views.rs`.
use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use herald::EventId;
use herald_entities::dead_letter;
use serde::Deserialize;
use serde_json::{Value, json};

use super::views::Page;
use super::{AppState, WriteMode};

/// NATS must answer the overview's questions within this.
const NATS_TIMEOUT: Duration = Duration::from_secs(3);
/// Rows on a page of dead letters or search results.
const PAGE_ROWS: u64 = 200;
/// The longest search accepted (an address is at most 254 characters).
const MAX_QUERY: usize = 320;
/// A longer reason or reply is cut in lists (the detail page has it whole).
const SNIPPET: usize = 160;
/// Delivery states in the order the overview shows them.
const STATES: [&str; 9] = [
    "sent",
    "skipped",
    "retrying",
    "sending",
    "uncertain",
    "dead",
    "scheduled",
    "suppressed",
    "unsubscribed",
];

/// A page that could not be produced, and why (rendered as a page).
pub enum Failure {
    BadRequest(String),
    NotFound(String),
    Unavailable(String),
    Database(sea_orm::DbErr),
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let home = json!([{ "href": "/", "text": "Overview" }]);
        match self {
            Failure::BadRequest(m) => {
                Page::message(StatusCode::BAD_REQUEST, "Bad request", &m, home)
            }
            Failure::NotFound(m) => Page::message(StatusCode::NOT_FOUND, "Not found", &m, home),
            Failure::Unavailable(m) => Page::message(
                StatusCode::SERVICE_UNAVAILABLE,
                "Not available yet",
                &m,
                home,
            ),
            Failure::Database(e) => {
                let m = herald::db::describe(&e);
                tracing::warn!(error = %m, "console: database query failed");
                Page::message(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Database error",
                    &format!("the database did not answer: {m}"),
                    home,
                )
            }
        }
        .into_response()
    }
}

impl From<sea_orm::DbErr> for Failure {
    fn from(e: sea_orm::DbErr) -> Self {
        Failure::Database(e)
    }
}

pub fn db(s: &AppState) -> Result<&sea_orm::DatabaseConnection, Failure> {
    s.db().ok_or_else(|| {
        Failure::Unavailable("the process is starting: the database is not open yet".into())
    })
}

/// `2026-05-01 12:00:03 UTC`.
fn time(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn opt_time(t: &Option<DateTime<Utc>>) -> Value {
    t.as_ref().map_or(Value::Null, |t| Value::String(time(t)))
}

/// The first line of `s`, at most [`SNIPPET`] characters.
fn snippet(s: &str) -> String {
    let line = s.lines().next().unwrap_or("");
    match line.char_indices().nth(SNIPPET) {
        Some((i, _)) => format!("{}…", &line[..i]),
        None => line.to_string(),
    }
}

/// A CSS class from a state name (`not pulling` → `notpulling`).
fn class(state: &str) -> String {
    state.chars().filter(char::is_ascii_alphanumeric).collect()
}

fn age(seconds: f64) -> String {
    herald::duration::human(Duration::from_secs_f64(seconds.max(0.0)))
}

pub async fn not_found() -> Failure {
    Failure::NotFound("There is no such page.".into())
}

pub async fn method_not_allowed() -> Response {
    Page::message(
        StatusCode::METHOD_NOT_ALLOWED,
        "Method not allowed",
        "This address does not take that method.",
        json!([{ "href": "/", "text": "Overview" }]),
    )
    .into_response()
}

// ---- overview ---------------------------------------------------------------

pub async fn overview(State(s): State<AppState>) -> Result<Page, Failure> {
    let db = db(&s)?;
    let mut status = herald::status::from_database(db).await?;
    match s.jetstream() {
        Some(js) => {
            let asked = tokio::time::timeout(
                NATS_TIMEOUT,
                herald::status::add_stream(&mut status, js, &s.sources.stream),
            )
            .await;
            match asked {
                Ok(Ok(())) => {}
                Ok(Err(e)) => status.stream_error = Some(e),
                Err(_) => {
                    status.stream_error =
                        Some(format!("NATS did not answer within {NATS_TIMEOUT:?}"))
                }
            }
        }
        None => status.stream_error = Some("not connected to NATS yet".into()),
    }
    let now = Utc::now();
    let activity = herald::ledger::hourly_activity(db, now - chrono::Duration::hours(24)).await?;
    let consumers: Vec<Value> = status
        .consumers
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "workflow": c.name.strip_prefix("herald-").unwrap_or(&c.name),
                "state": c.state, "class": class(c.state),
                "pending": c.pending, "ack_pending": c.ack_pending, "redelivered": c.redelivered,
            })
        })
        .collect();
    let deliveries: Vec<Value> = STATES
        .iter()
        .map(|st| json!({ "state": st, "count": status.deliveries.get(*st).copied().unwrap_or(0) }))
        .collect();
    let (chart, hours) = chart(&activity, now);
    Ok(Page::new(
        "overview",
        "Overview",
        json!({
            "role": s.role,
            "version": s.worker().map(|w| w.version()).unwrap_or_default(),
            "ready": s.health.is_ready(),
            "problems": s.health.problems(),
            "writes": writes_note(s.writes()),
            "outbox": {
                "pending": status.outbox.pending, "parked": status.outbox.parked,
                "oldest": if status.outbox.pending > 0 { age(status.outbox.oldest_pending_age_seconds) } else { "-".into() },
            },
            "stream": status.stream,
            "stream_error": status.stream_error,
            "consumers": consumers,
            "deliveries": deliveries,
            "dead_letters": status.dead_letters,
            "chart": chart,
            "hours": hours,
            "states": STATES,
            "held_outbox": status.held.outbox,
            "held_workflows": status.held.workflows,
        }),
    ))
}

fn writes_note(w: WriteMode) -> &'static str {
    match w {
        WriteMode::Enabled => "Re-drive and discard are enabled (--http-token).",
        WriteMode::NoToken => {
            "Read-only: start with --http-token to re-drive or discard dead letters."
        }
        WriteMode::NoWorker => {
            "Read-only: a relay cannot re-drive; use the console of a worker or of herald up."
        }
    }
}

/// The last 24 hours as stacked bars (an inline SVG: geometry computed
/// here, drawn by the template) and as table rows.
fn chart(activity: &[herald::ledger::HourlyCount], now: DateTime<Utc>) -> (Value, Vec<Value>) {
    const BAR: i64 = 30;
    const HEIGHT: i64 = 140;
    const TOP: i64 = 10;
    const BOTTOM: i64 = 22;
    let this_hour = now.timestamp().div_euclid(3600);
    let first = this_hour - 23;
    let mut by_hour: BTreeMap<i64, BTreeMap<&str, i64>> = BTreeMap::new();
    for a in activity {
        let h = a.hour.timestamp().div_euclid(3600);
        if (first..=this_hour).contains(&h)
            && let Some(state) = STATES.iter().find(|s| **s == a.state)
        {
            *by_hour.entry(h).or_default().entry(state).or_default() += a.count;
        }
    }
    let max = by_hour
        .values()
        .map(|m| m.values().sum::<i64>())
        .max()
        .unwrap_or(0)
        .max(1);
    let plot = HEIGHT - TOP - BOTTOM;
    let (mut bars, mut labels, mut rows) = (Vec::new(), Vec::new(), Vec::new());
    for (i, h) in (first..=this_hour).enumerate() {
        let x = i as i64 * BAR + 4;
        let counts = by_hour.get(&h);
        let start = DateTime::from_timestamp(h * 3600, 0).unwrap_or(now);
        let mut y = HEIGHT - BOTTOM;
        for state in STATES {
            let n = counts.and_then(|m| m.get(state)).copied().unwrap_or(0);
            if n == 0 {
                continue;
            }
            // At least one pixel, so a single dead letter is visible.
            let height = (n * plot / max).max(1);
            y -= height;
            bars.push(json!({
                "x": x, "y": y, "w": BAR - 6, "h": height, "class": state,
                "title": format!("{} {state}: {n}", start.format("%H:00")),
            }));
        }
        if i % 3 == 0 {
            labels.push(json!({ "x": x, "text": start.format("%H:00").to_string() }));
        }
        let total: i64 = counts.map(|m| m.values().sum()).unwrap_or(0);
        if total > 0 {
            let mut row =
                json!({ "hour": start.format("%Y-%m-%d %H:00").to_string(), "total": total });
            for state in STATES {
                row[state] = json!(counts.and_then(|m| m.get(state)).copied().unwrap_or(0));
            }
            rows.push(row);
        }
    }
    let chart = json!({
        "width": 24 * BAR + 8, "height": HEIGHT, "axis": HEIGHT - BOTTOM, "label_y": HEIGHT - 6,
        "max": max, "bars": bars, "labels": labels, "empty": rows.is_empty(),
    });
    (chart, rows)
}

// ---- dead letters -----------------------------------------------------------

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
    let csrf = super::actions::csrf_cookie(&headers);
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
        super::actions::set_csrf_cookie(&mut response, &csrf);
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

// ---- events and search ------------------------------------------------------

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
