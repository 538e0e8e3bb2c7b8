//! The console's only writes: re-drive or discard a dead letter (POST).
//!
//! They exist only when `--http-token` is set and the process has a worker
//! (`worker`, `up`); otherwise these routes answer 403 and change nothing.
//! A POST is accepted only when all of these hold, checked in this order:
//!
//! 1. **Not cross-site.** A browser names where a request comes from: the
//!    `Origin` header (sent with every POST by current browsers) must be this
//!    console's own origin, and `Sec-Fetch-Site`, when sent, must be
//!    `same-origin`. A page elsewhere that submits a form here is refused
//!    before the token is even looked at.
//! 2. **The operator's token**, in the form's `token` field (typed on the
//!    dead letter's page; a password manager can fill it) or as
//!    `Authorization: Bearer TOKEN` (scripts, curl), compared in constant time.
//! 3. **For a form, the page's CSRF token**: the dead letter's page sets a
//!    random `herald_csrf` cookie (`HttpOnly; SameSite=Strict`) and puts the
//!    same value in a hidden field; the POST must carry both, equal
//!    (double-submit). A cross-site page can neither read that cookie nor
//!    make the browser send it (SameSite=Strict), so this holds even for a
//!    client or proxy that drops `Origin`. A Bearer request needs no cookie:
//!    no cross-site page can add an `Authorization` header without a CORS
//!    preflight, which this server never grants.
//!
//! We chose a per-page double-submit cookie over a login session: the
//! console keeps no session state, the token is never stored in the browser
//! by us, and a restart invalidates nothing an operator holds.
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use herald::worker::{Disposition, ProcessOutcome, RedriveError};
use serde_json::json;

use super::console::{Failure, db};
use super::views::Page;
use super::{AppState, WriteMode};

const CSRF_COOKIE: &str = "herald_csrf";
/// An action answers within this; one still running (waiting for the SMTP
/// server) goes on in the background and the page says so.
const ACTION_WAIT: Duration = Duration::from_secs(8);

/// The page's CSRF value: the browser's `herald_csrf` cookie when it holds
/// a well-formed one (so two open tabs keep working), else a fresh random one.
pub struct Csrf {
    pub value: String,
    fresh: bool,
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn well_formed(v: &str) -> bool {
    v.len() == 32 && v.bytes().all(|b| b.is_ascii_hexdigit())
}

pub fn csrf_cookie(headers: &HeaderMap) -> Csrf {
    match cookie(headers, CSRF_COOKIE).filter(|v| well_formed(v)) {
        Some(v) => Csrf {
            value: v.to_string(),
            fresh: false,
        },
        // 122 random bits from the OS's generator.
        None => Csrf {
            value: uuid::Uuid::new_v4().simple().to_string(),
            fresh: true,
        },
    }
}

pub fn set_csrf_cookie(response: &mut Response, csrf: &Csrf) {
    if !csrf.fresh {
        return;
    }
    let c = format!(
        "{CSRF_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict",
        csrf.value
    );
    if let Ok(v) = HeaderValue::from_str(&c) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// Why a POST was refused (403, nothing done).
fn refused(why: &str, id: i64) -> Response {
    tracing::warn!(dead_letter = id, reason = why, "console: write refused");
    Page::message(
        StatusCode::FORBIDDEN,
        "Refused",
        why,
        json!([{ "href": format!("/dead-letters/{id}"), "text": format!("Dead letter {id}") }]),
    )
    .into_response()
}

/// Steps 1 to 3 of the module's rules; `Err` says why the POST is refused.
fn authorize(
    s: &AppState,
    headers: &HeaderMap,
    form: &[(String, String)],
) -> Result<(), &'static str> {
    let token = match (s.writes(), &s.token) {
        (WriteMode::Enabled, Some(t)) => t,
        (WriteMode::NoWorker, _) => {
            return Err(
                "This console is read-only: a relay has no worker to re-drive with. Use the console of `herald worker` or `herald up`.",
            );
        }
        _ => {
            return Err("This console is read-only: it was started without --http-token.");
        }
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        let own = !host.is_empty()
            && (origin == format!("http://{host}") || origin == format!("https://{host}"));
        if !own {
            return Err(
                "Cross-origin request refused: this form may only be sent from the console's own pages.",
            );
        }
    }
    if let Some(site) = headers.get("sec-fetch-site")
        && site.as_bytes() != b"same-origin"
    {
        return Err(
            "Cross-site request refused: this form may only be sent from the console's own pages.",
        );
    }
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match bearer {
        Some(given) if token.matches(given.trim()) => Ok(()),
        Some(_) => Err("Wrong token."),
        None => {
            if !field("token").is_some_and(|given| token.matches(given)) {
                return Err("Wrong or missing token.");
            }
            let cookie = cookie(headers, CSRF_COOKIE).filter(|v| well_formed(v));
            match (cookie, field("csrf")) {
                (Some(c), Some(f)) if c.as_bytes() == f.as_bytes() => Ok(()),
                _ => Err(
                    "The form's CSRF token does not match this browser's: reload the dead letter's page and try again.",
                ),
            }
        }
    }
}

/// What a re-drive (and the events re-driven after it) did.
#[derive(Default)]
struct Tally {
    redriven: u64,
    delivered: u64,
    failed: Vec<String>,
    sent: u64,
}

impl Tally {
    fn count(&mut self, id: i64, r: Result<ProcessOutcome, RedriveError>) -> bool {
        self.redriven += 1;
        match r {
            Ok(o) => {
                self.sent += o.sent;
                if o.disposition == Disposition::Ack {
                    self.delivered += 1;
                    return true;
                }
                self.failed.push(format!(
                    "dead letter {id}: not delivered: {}",
                    o.disposition
                ));
            }
            Err(e) => self.failed.push(format!("dead letter {id}: {e}")),
        }
        false
    }

    fn text(&self, what: &str, action: Action) -> String {
        let counted = match action {
            Action::Redrive => "Re-driven (it and the events held behind it)",
            Action::Discard => "Events held behind it re-driven",
        };
        let mut t = if action == Action::Discard && self.redriven == 0 {
            format!("{what} Nothing was held behind it.")
        } else {
            format!(
                "{what} {counted}: {}, delivered: {}, emails sent: {}.",
                self.redriven, self.delivered, self.sent
            )
        };
        for f in &self.failed {
            t.push(' ');
            t.push_str(f);
            t.push('.');
        }
        t
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Action {
    Redrive,
    Discard,
}

pub async fn redrive(
    State(s): State<AppState>,
    Path(raw): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    act(s, &raw, &headers, &body, Action::Redrive).await
}

pub async fn discard(
    State(s): State<AppState>,
    Path(raw): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    act(s, &raw, &headers, &body, Action::Discard).await
}

async fn act(s: AppState, raw: &str, headers: &HeaderMap, body: &[u8], action: Action) -> Response {
    let Ok(id) = raw.parse::<i64>() else {
        return Failure::BadRequest("Not a dead letter id.".into()).into_response();
    };
    let form: Vec<(String, String)> = url::form_urlencoded::parse(body).into_owned().collect();
    if let Err(why) = authorize(&s, headers, &form) {
        return refused(why, id);
    }
    match run(&s, id, action).await {
        Ok(r) => r,
        Err(f) => f.into_response(),
    }
}

async fn run(s: &AppState, id: i64, action: Action) -> Result<Response, Failure> {
    let db = db(s)?.clone();
    let Some(worker) = s.worker().cloned() else {
        return Err(Failure::Unavailable("the worker is not running yet".into()));
    };
    // One action at a time: a second click waits, then finds it closed.
    let guard = s.actions.clone().lock_owned().await;
    let d = herald::dlq::get(&db, id)
        .await?
        .ok_or_else(|| Failure::NotFound(format!("There is no dead letter {id}.")))?;
    let back = json!([{ "href": format!("/dead-letters/{id}"), "text": format!("Dead letter {id}") },
                      { "href": format!("/events/{}", d.event_id), "text": "The event's life" }]);
    if d.retried_at.is_some() {
        return Ok(Page::message(
            StatusCode::CONFLICT,
            "Already closed",
            &format!("Dead letter {id} was already re-driven or discarded; nothing was done."),
            back,
        )
        .into_response());
    }
    let task = tokio::spawn(async move {
        let _guard = guard;
        let mut tally = Tally::default();
        let what = match action {
            Action::Redrive => {
                tracing::info!(dead_letter = id, "console: re-driving");
                let r = worker.redrive(&d).await;
                if tally.count(d.id, r) {
                    release(&worker, &d, &mut tally).await;
                }
                format!("Dead letter {id} re-driven.")
            }
            Action::Discard => {
                tracing::info!(dead_letter = id, "console: discarding");
                herald::dlq::discard(worker.db(), id).await?;
                release(&worker, &d, &mut tally).await;
                format!("Dead letter {id} discarded: it will not be sent.")
            }
        };
        Ok::<_, sea_orm::DbErr>(tally.text(&what, action))
    });
    match tokio::time::timeout(ACTION_WAIT, task).await {
        Ok(Ok(Ok(text))) => Ok(Page::message(StatusCode::OK, "Done", &text, back).into_response()),
        Ok(Ok(Err(e))) => Err(Failure::Database(e)),
        Ok(Err(e)) => Err(Failure::Unavailable(format!("the action failed: {e}"))),
        Err(_) => Ok(Page::message(
            StatusCode::ACCEPTED,
            "Still running",
            &format!(
                "The action on dead letter {id} is still running (the SMTP server may be unreachable: see /readyz); it goes on in the background. Reload the dead letter's page later."
            ),
            back,
        )
        .into_response()),
    }
}

/// Re-drive what waited behind `d`, as `herald dlq retry` does.
async fn release(
    worker: &herald::worker::Worker,
    d: &herald_entities::dead_letter::Model,
    tally: &mut Tally,
) {
    match worker.release_followers(d).await {
        Ok(followers) => {
            for (fid, o) in followers {
                tally.count(fid, Ok(o));
            }
        }
        Err(e) => tally.failed.push(format!("the events held behind it: {e}")),
    }
}

/// `POST /reload` (token required, as for the other writes): load the
/// workflows directory again, as SIGHUP does. 200 with what changed; 422
/// with every problem when the set is refused (the running set goes on).
pub async fn reload(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    const TEXT: &str = "text/plain; charset=utf-8";
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    if let Err(why) = authorize(&s, &headers, &form) {
        tracing::warn!(reason = why, "console: reload refused");
        return (
            StatusCode::FORBIDDEN,
            [(header::CONTENT_TYPE, TEXT)],
            format!("{why}\n"),
        )
            .into_response();
    }
    let Some(worker) = s.worker().cloned() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, TEXT)],
            "the worker is not running yet\n",
        )
            .into_response();
    };
    match tokio::task::spawn_blocking(move || worker.reload()).await {
        Ok(Ok(r)) => {
            super::super::commands::log_reload(&Ok(r.clone()));
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, TEXT)],
                super::super::commands::describe_reload(&r),
            )
                .into_response()
        }
        Ok(Err(e)) => {
            let text = e.to_string();
            tracing::error!(error = %text, "reload refused");
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                [(header::CONTENT_TYPE, TEXT)],
                format!("{text}\n"),
            )
                .into_response()
        }
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, TEXT)],
            format!("reload failed: {e}\n"),
        )
            .into_response(),
    }
}
