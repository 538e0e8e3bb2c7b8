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

/// Rows of an aggregate read per query while looking for its first
/// unfinished event.
const PAGE: i64 = 100;

/// The first earlier event of `aggregate` (outbox order, before `seq`) that
/// `wf` consumes and has not finished, if any. An event the stream no
/// longer holds (below `first_stream_seq`) is not waited for.
///
/// Read a page at a time from the workflow's progress on: the aggregate's
/// earlier rows may be mostly other workflows' events, and every one must
/// be looked at (a fixed window once missed an unfinished event behind a
/// hundred of those). The rows passed over (another workflow's, gone from
/// the stream, or finished) move the progress on, so the next event's
/// check starts after them.
pub async fn outstanding(
    db: &DatabaseConnection,
    wf: &Workflow,
    aggregate: &str,
    seq: i64,
    first_stream_seq: u64,
) -> Result<Option<Outstanding>, DbErr> {
    let mut after = progress(db, &wf.name, aggregate).await?;
    let start = after;
    loop {
        let rows = earlier_rows(db, aggregate, after, seq).await?;
        let full = rows.len() as i64 == PAGE;
        for row in rows {
            let consumed = wf
                .subjects
                .iter()
                .any(|f| subject::matches(f, &row.subject));
            let gone = row
                .stream_seq
                .is_some_and(|s| u64::try_from(s).unwrap_or(0) < first_stream_seq);
            // Done, but the progress was not recorded (a crash in between)?
            if consumed && !gone && !finished(db, &wf.name, row.earlier.event_id).await? {
                if after > start {
                    advance(db, &wf.name, aggregate, after).await?;
                }
                return Ok(Some(row.earlier));
            }
            after = row.earlier.seq;
        }
        if !full {
            break;
        }
    }
    if after > start {
        advance(db, &wf.name, aggregate, after).await?;
    }
    Ok(None)
}

/// One earlier outbox row of an aggregate.
struct EarlierRow {
    earlier: Outstanding,
    subject: String,
    stream_seq: Option<i64>,
}

/// How far `workflow` has finished the aggregate's events (an outbox seq; 0: none).
async fn progress(db: &DatabaseConnection, workflow: &str, aggregate: &str) -> Result<i64, DbErr> {
    let b = db.get_database_backend();
    let sql = format!(
        "SELECT seq FROM herald_aggregate_progress WHERE workflow = {w} AND ordering_key = {k}",
        w = ph(b, 1),
        k = ph(b, 2),
    );
    let values: Vec<Value> = vec![workflow.into(), aggregate.into()];
    let row = db
        .query_one_raw(Statement::from_sql_and_values(b, sql, values))
        .await?;
    match row {
        Some(r) => r.try_get("", "seq"),
        None => Ok(0),
    }
}

/// The aggregate's rows after `after` and before `before`, in outbox order,
/// a page at most.
async fn earlier_rows(
    db: &DatabaseConnection,
    aggregate: &str,
    after: i64,
    before: i64,
) -> Result<Vec<EarlierRow>, DbErr> {
    let b = db.get_database_backend();
    let sql = format!(
        "SELECT seq, subject, event_id, stream_seq FROM herald_outbox \
         WHERE ordering_key = {k} AND seq > {a} AND seq < {s} ORDER BY seq LIMIT {PAGE}",
        k = ph(b, 1),
        a = ph(b, 2),
        s = ph(b, 3),
    );
    let values: Vec<Value> = vec![aggregate.into(), after.into(), before.into()];
    let mut out = Vec::new();
    for r in db
        .query_all_raw(Statement::from_sql_and_values(b, sql, values))
        .await?
    {
        let event_id: uuid::Uuid = r.try_get("", "event_id")?;
        out.push(EarlierRow {
            earlier: Outstanding {
                event_id: event_id.into(),
                seq: r.try_get("", "seq")?,
            },
            subject: r.try_get("", "subject")?,
            stream_seq: r.try_get("", "stream_seq")?,
        });
    }
    Ok(out)
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
