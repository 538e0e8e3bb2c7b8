//! Order per aggregate across workers and restarts. The lanes keep an
//! aggregate's messages in order inside one worker; but an earlier event may
//! be in another worker's hands, or unacknowledged by a worker that died
//! (JetStream redelivers it only after the ack wait, and may hand the next
//! one out first). So before emailing an event of an aggregate, the worker
//! asks the database whether every earlier event of that aggregate that
//! this workflow consumes is done, from how far the workflow has come
//! (`herald_aggregate_progress`) and the outbox (the order of record).
use std::time::Duration;

use herald_entities::delivery::DeliveryState;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement, Value};

use crate::workflow::Workflow;
use crate::{EventId, subject};

use crate::db::ph;

/// An earlier event of the aggregate that the workflow has not finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outstanding {
    pub event_id: EventId,
    pub seq: i64,
}

/// The first earlier event of `aggregate` (outbox order, before `seq`) that
/// `wf` consumes and has not finished, if any. An event the stream no
/// longer holds (below `first_stream_seq`) is not waited for.
pub async fn outstanding(
    db: &DatabaseConnection,
    wf: &Workflow,
    aggregate: &str,
    seq: i64,
    first_stream_seq: u64,
) -> Result<Option<Outstanding>, DbErr> {
    let b = db.get_database_backend();
    let sql = format!(
        "SELECT o.seq, o.subject, o.event_id, o.stream_seq FROM herald_outbox o \
         WHERE o.ordering_key = {k} AND o.seq < {s} AND o.seq > COALESCE( \
           (SELECT p.seq FROM herald_aggregate_progress p \
            WHERE p.workflow = {w} AND p.ordering_key = {k}), 0) \
         ORDER BY o.seq LIMIT 100",
        k = ph(b, 1),
        s = ph(b, 2),
        w = ph(b, 3),
    );
    let values: Vec<Value> = vec![aggregate.into(), seq.into(), wf.name.as_str().into()];
    for r in db
        .query_all_raw(Statement::from_sql_and_values(b, sql, values))
        .await?
    {
        let subj: String = r.try_get("", "subject")?;
        if !wf.subjects.iter().any(|f| subject::matches(f, &subj)) {
            continue;
        }
        let stream_seq: Option<i64> = r.try_get("", "stream_seq")?;
        if stream_seq.is_some_and(|s| u64::try_from(s).unwrap_or(0) < first_stream_seq) {
            continue;
        }
        let event_id: uuid::Uuid = r.try_get("", "event_id")?;
        let earlier = Outstanding {
            event_id: event_id.into(),
            seq: r.try_get("", "seq")?,
        };
        // Done, but the progress was not recorded (a crash in between)?
        if finished(db, &wf.name, earlier.event_id).await? {
            advance(db, &wf.name, aggregate, earlier.seq).await?;
            continue;
        }
        return Ok(Some(earlier));
    }
    Ok(None)
}

/// Has `workflow` finished `event`: recorded deliveries, all final?
async fn finished(db: &DatabaseConnection, workflow: &str, event: EventId) -> Result<bool, DbErr> {
    let rows = crate::ledger::deliveries_of(db, event).await?;
    let mine: Vec<_> = rows.iter().filter(|d| d.workflow == workflow).collect();
    // A scheduled delivery has settled its place: later events do not wait
    // for its delay.
    Ok(!mine.is_empty()
        && mine
            .iter()
            .all(|d| d.state.is_final() || d.state == DeliveryState::Scheduled))
}

/// Record that `workflow` has finished the aggregate's events up to `seq`.
pub async fn advance(
    db: &DatabaseConnection,
    workflow: &str,
    aggregate: &str,
    seq: i64,
) -> Result<(), DbErr> {
    let b = db.get_database_backend();
    let greatest = match b {
        DbBackend::Postgres => "GREATEST",
        _ => "MAX",
    };
    let sql = format!(
        "INSERT INTO herald_aggregate_progress (workflow, ordering_key, seq) VALUES ({w}, {k}, {s}) \
         ON CONFLICT (workflow, ordering_key) DO UPDATE \
         SET seq = {greatest}(herald_aggregate_progress.seq, excluded.seq)",
        w = ph(b, 1),
        k = ph(b, 2),
        s = ph(b, 3),
    );
    let values: Vec<Value> = vec![workflow.into(), aggregate.into(), seq.into()];
    db.execute_raw(Statement::from_sql_and_values(b, sql, values))
        .await?;
    Ok(())
}

/// How long to wait before asking again: soon at first (the other worker
/// is usually about to finish), then less often.
pub fn wait(asked: u32) -> Duration {
    let ms = 50u64.saturating_mul(1u64 << asked.min(5));
    Duration::from_millis(ms.min(1_000))
}
