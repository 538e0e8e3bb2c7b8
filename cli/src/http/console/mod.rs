//! The console's pages (all GET, read-only): the overview, dead letters
//! (list and detail, with the email as the workflow renders it now), one
//! event's life, and the search that finds an event by id or the
//! deliveries to an address. Data comes from the library (`status`,
//! `trace`, `ledger`, `dlq`); the HTML from `views.rs`.
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::AppState;
use super::views::Page;

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

mod dead_letters;
mod event;
mod overview;

pub use dead_letters::{dead_letter, dead_letters};
pub use event::{event, search};
pub use overview::overview;
