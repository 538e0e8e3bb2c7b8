//! One-click unsubscribe (RFC 8058), for recipients: `POST /u/{token}`
//! records the unsubscribe, `GET /u/{token}` only shows a page whose button
//! posts. Link scanners and mail previews follow GETs; a GET must never
//! unsubscribe anyone.
//!
//! Unlike the console's writes there is no origin or CSRF check: the POST
//! comes from mailbox providers' servers and from the recipient's browser on
//! this page, and the token itself is the authority. It is an HMAC over
//! (address, category) under `--unsubscribe-secret`: a forged or altered
//! token is refused (400) and records nothing. Recording is idempotent, so a
//! provider's retry or a second click changes nothing.
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::json;

use super::AppState;
use super::views::Page;

/// The worker's unsubscribe settings and database, or the page saying why
/// this process cannot take unsubscribes.
fn settings(
    s: &AppState,
) -> Result<
    (
        herald::unsubscribe::Unsubscribe,
        sea_orm::DatabaseConnection,
    ),
    Page,
> {
    match (s.worker().and_then(|w| w.unsubscribe().cloned()), s.db()) {
        (Some(u), Some(db)) => Ok((u, db.clone())),
        _ => Err(page(
            StatusCode::NOT_FOUND,
            "Not found",
            "This server does not handle unsubscribe links.",
        )),
    }
}

fn page(status: StatusCode, heading: &str, text: &str) -> Page {
    Page::new(
        "unsubscribe",
        heading,
        json!({ "heading": heading, "text": text, "confirm": false }),
    )
    .status(status)
}

fn invalid() -> Page {
    page(
        StatusCode::BAD_REQUEST,
        "Invalid link",
        "This unsubscribe link is not valid. Use the link from the email itself, complete.",
    )
}

/// `GET /u/{token}`: what the button would do; changes nothing.
pub async fn confirm(State(s): State<AppState>, Path(token): Path<String>) -> Page {
    let (u, _) = match settings(&s) {
        Ok(x) => x,
        Err(p) => return p,
    };
    match u.verify(&token) {
        Ok(sub) => Page::new(
            "unsubscribe",
            "Unsubscribe",
            json!({
                "heading": "Unsubscribe",
                "confirm": true,
                "address": sub.address,
                "category": sub.category,
                "action": format!("/u/{token}"),
            }),
        ),
        Err(_) => invalid(),
    }
}

/// `POST /u/{token}`: record the unsubscribe (idempotent).
pub async fn record(State(s): State<AppState>, Path(token): Path<String>) -> Page {
    let (u, db) = match settings(&s) {
        Ok(x) => x,
        Err(p) => return p,
    };
    let Ok(sub) = u.verify(&token) else {
        tracing::info!("unsubscribe: refused a token that does not verify");
        return invalid();
    };
    match herald::unsubscribe::record(&db, &sub).await {
        Ok(new) => {
            if new {
                tracing::info!(address = %sub.address, category = %sub.category, "unsubscribed");
            }
            page(
                StatusCode::OK,
                "Unsubscribed",
                &format!(
                    "{} will get no more emails of the kind \u{201c}{}\u{201d}.",
                    sub.address, sub.category
                ),
            )
        }
        Err(e) => {
            tracing::warn!(error = %herald::db::describe(&e), "unsubscribe: cannot record it now");
            // 503: mailbox providers retry a one-click POST that failed.
            page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again",
                "Your request could not be recorded just now. Please try again in a minute.",
            )
        }
    }
}
