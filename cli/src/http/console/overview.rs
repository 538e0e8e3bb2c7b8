//! The overview page: backlog, stream, consumers, held aggregates and the
//! activity chart of the last hours.
use std::collections::BTreeMap;

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::http::views::Page;
use crate::http::{AppState, WriteMode};

use super::{Failure, NATS_TIMEOUT, STATES, age, class, db};

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
                Ok(Err(e)) => status.stream_error = Some(e.to_string()),
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

pub(super) fn writes_note(w: WriteMode) -> &'static str {
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
