//! The PostgreSQL statements of a group: a group's rows cut into statements
//! short enough for one TLS record, written in one commit.
use chrono::Utc;
use herald_entities::delivery::{self, DeliveryState};
use sea_orm::sea_query::{PostgresQueryBuilder, Query, SimpleExpr};
use sea_orm::{
    ActiveValue, ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement,
    TransactionTrait, Value,
};

use super::SentRecord;
use crate::ledger::claims::on_key_conflict;

const COLUMNS: [delivery::Column; 12] = [
    delivery::Column::EventId,
    delivery::Column::Workflow,
    delivery::Column::Recipient,
    delivery::Column::ItemIndex,
    delivery::Column::Subject,
    delivery::Column::State,
    delivery::Column::Attempts,
    delivery::Column::LastError,
    delivery::Column::CreatedAt,
    delivery::Column::UpdatedAt,
    delivery::Column::MessageId,
    delivery::Column::SentAt,
];

/// The most bytes of values one statement carries. rustls writes a TLS
/// record (16 KiB at most) per write and sqlx sets no TCP_NODELAY: a
/// message longer than a record went out as two writes, and the second
/// waited for the server's delayed ACK (40 ms). Measured over TLS to
/// PostgreSQL on loopback: groups of 130–256 claims took 50–90 ms instead
/// of a few; without TLS they did not. A larger group is written as
/// several statements in one transaction (still one commit).
const STATEMENT_BYTES: usize = 10 * 1024;

/// `items` in order, cut into runs whose `size`s add up to at most
/// [`STATEMENT_BYTES`] (an item larger than that goes alone).
pub(crate) fn chunks<T>(items: &[T], size: impl Fn(&T) -> usize) -> Vec<&[T]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, item) in items.iter().enumerate() {
        let n = size(item);
        if i > start && bytes + n > STATEMENT_BYTES {
            out.push(&items[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += n;
    }
    if start < items.len() {
        out.push(&items[start..]);
    }
    out
}

/// Run `statements` in order and return all their rows: one alone, or
/// several in one transaction, so a group costs one commit either way.
pub(super) async fn in_one_commit(
    db: &DatabaseConnection,
    statements: Vec<Statement>,
) -> Result<Vec<sea_orm::QueryResult>, DbErr> {
    if let [one] = &statements[..] {
        return db.query_all_raw(one.clone()).await;
    }
    let txn = db.begin().await?;
    let mut out = Vec::new();
    for st in statements {
        out.extend(txn.query_all_raw(st).await?);
    }
    txn.commit().await?;
    Ok(out)
}

/// About how many bytes a claim row's values take in a statement: its
/// strings and ~100 for the fixed-size fields and framing.
pub(super) fn claim_size(row: &delivery::ActiveModel) -> usize {
    let len = |a: &ActiveValue<String>| match a {
        ActiveValue::Set(x) | ActiveValue::Unchanged(x) => x.len(),
        ActiveValue::NotSet => 0,
    };
    let error = match &row.last_error {
        ActiveValue::Set(Some(x)) | ActiveValue::Unchanged(Some(x)) => x.len(),
        _ => 0,
    };
    100 + len(&row.workflow) + len(&row.recipient) + len(&row.subject) + error
}

/// One multi-row `INSERT … ON CONFLICT DO NOTHING RETURNING key` of `rows`.
pub(super) fn claims_statement(rows: &[&delivery::ActiveModel]) -> Result<Statement, DbErr> {
    let mut insert = Query::insert();
    insert
        .into_table(delivery::Entity)
        .columns(COLUMNS)
        .on_conflict(on_key_conflict())
        .returning(Query::returning().columns([
            delivery::Column::EventId,
            delivery::Column::Workflow,
            delivery::Column::Recipient,
        ]));
    for row in rows {
        insert
            .values(values(row)?)
            .map_err(|e| DbErr::Custom(e.to_string()))?;
    }
    let (sql, params) = insert.build(PostgresQueryBuilder);
    Ok(Statement::from_sql_and_values(
        DbBackend::Postgres,
        sql,
        params,
    ))
}

/// A claim row's values in [`COLUMNS`] order (every one is set by `new_row`).
fn values(row: &delivery::ActiveModel) -> Result<Vec<SimpleExpr>, DbErr> {
    Ok([
        set(&row.event_id)?,
        set(&row.workflow)?,
        set(&row.recipient)?,
        set(&row.item_index)?,
        set(&row.subject)?,
        set(&row.state)?,
        set(&row.attempts)?,
        set(&row.last_error)?,
        set(&row.created_at)?,
        set(&row.updated_at)?,
        set(&row.message_id)?,
        set(&row.sent_at)?,
    ]
    .into_iter()
    .map(SimpleExpr::Value)
    .collect())
}

/// The value an active field holds.
fn set<T: Into<Value> + Clone>(a: &ActiveValue<T>) -> Result<Value, DbErr> {
    match a {
        ActiveValue::Set(x) | ActiveValue::Unchanged(x) => Ok(x.clone().into()),
        ActiveValue::NotSet => Err(DbErr::Custom("a claim row has a column not set".into())),
    }
}

/// One `UPDATE … FROM (VALUES …)` recording `items` as sent at `now`.
pub(super) fn sent_statement(items: &[SentRecord], now: chrono::DateTime<Utc>) -> Statement {
    let mut params: Vec<Value> = vec![now.into()];
    let mut rows = Vec::with_capacity(items.len());
    for s in items {
        let n = params.len();
        rows.push(format!(
            "(${}, ${}, ${}, ${}, ${})",
            n + 1,
            n + 2,
            n + 3,
            n + 4,
            n + 5
        ));
        params.extend([
            s.key.event_id.into(),
            s.key.workflow.clone().into(),
            s.key.recipient.clone().into(),
            s.message_id.clone().into(),
            s.reply.clone().into(),
        ]);
    }
    let sql = format!(
        "UPDATE herald_deliveries AS d SET state = '{sent}', message_id = v.mid, \
             smtp_response = v.reply, sent_at = $1, updated_at = $1 \
             FROM (VALUES {rows}) AS v(event_id, workflow, recipient, mid, reply) \
             WHERE d.event_id = v.event_id AND d.workflow = v.workflow AND d.recipient = v.recipient",
        sent = DeliveryState::Sent.as_str(),
        rows = rows.join(", "),
    );
    Statement::from_sql_and_values(DbBackend::Postgres, sql, params)
}

#[cfg(test)]
mod tests {
    use super::{STATEMENT_BYTES, chunks};

    #[test]
    fn chunks_keep_order_and_the_budget() {
        let sizes = [4000, 4000, 4000, 20_000, 1, 1];
        let cut = chunks(&sizes, |n| *n);
        assert_eq!(cut, vec![&[4000, 4000][..], &[4000], &[20_000], &[1, 1]]);
        assert!(
            cut.iter()
                .all(|c| c.len() == 1 || c.iter().sum::<usize>() <= STATEMENT_BYTES)
        );
        assert!(chunks(&[] as &[usize], |n| *n).is_empty());
    }
}
