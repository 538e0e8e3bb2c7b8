//! Deliverability: suppressed addresses (hard bounces, or added by hand),
//! one-click unsubscribes per address and category, shared rate limits, and
//! the schedule of deliveries that wait (delays, send windows, digests),
//! kept in the database so that a restart loses nothing.
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    // Long but flat: the schema as it was released, statement after statement
    // (a released migration is never restructured).
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let pg = manager.get_database_backend() == DbBackend::Postgres;
        let (ts, id, real) = if pg {
            ("TIMESTAMPTZ", "BIGSERIAL PRIMARY KEY", "DOUBLE PRECISION")
        } else {
            (
                "timestamp_with_timezone_text",
                "INTEGER PRIMARY KEY AUTOINCREMENT",
                "REAL",
            )
        };
        let uuid = if pg { "UUID" } else { "uuid_text" };
        for sql in [
            // An address that gets no mail: a permanent RCPT reply (5.1.x) or an operator.
            format!(
                "CREATE TABLE IF NOT EXISTS herald_suppressions ( \
                   address VARCHAR NOT NULL PRIMARY KEY, \
                   reason TEXT NOT NULL, \
                   smtp_reply TEXT NULL, \
                   source VARCHAR NOT NULL, \
                   created_at {ts} NOT NULL)"
            ),
            // One-click unsubscribes: no more mail of `category` to `address`.
            format!(
                "CREATE TABLE IF NOT EXISTS herald_unsubscribes ( \
                   address VARCHAR NOT NULL, \
                   category VARCHAR NOT NULL, \
                   created_at {ts} NOT NULL, \
                   PRIMARY KEY (address, category))"
            ),
            // A shared token bucket per transport or workflow: times are
            // microseconds since the epoch, so both databases do the sums.
            format!(
                "CREATE TABLE IF NOT EXISTS herald_rate_limits ( \
                   key VARCHAR NOT NULL PRIMARY KEY, \
                   next_free BIGINT NOT NULL, \
                   factor {real} NOT NULL DEFAULT 1, \
                   throttled_at BIGINT NULL)"
            ),
            // Deliveries that wait: a delayed event (kind 'delay', the event
            // whole) or a digest (kind 'digest', its events in
            // herald_digest_items). `event_id` is the event's, or the
            // digest's own id (its ledger key and Message-ID stem).
            format!(
                "CREATE TABLE IF NOT EXISTS herald_schedule ( \
                   id {id}, \
                   workflow VARCHAR NOT NULL, \
                   event_id {uuid} NOT NULL, \
                   kind VARCHAR NOT NULL, \
                   digest_key VARCHAR NULL, \
                   due_at {ts} NOT NULL, \
                   subject VARCHAR NOT NULL, \
                   payload TEXT NOT NULL, \
                   headers TEXT NOT NULL, \
                   aggregate VARCHAR NULL, \
                   stream_seq BIGINT NULL, \
                   items INTEGER NOT NULL DEFAULT 0, \
                   sealed_at {ts} NULL, \
                   lease_owner VARCHAR NULL, \
                   lease_until {ts} NULL, \
                   done_at {ts} NULL, \
                   created_at {ts} NOT NULL)"
            ),
            "CREATE UNIQUE INDEX IF NOT EXISTS idx_herald_schedule_event \
             ON herald_schedule (workflow, event_id)"
                .to_string(),
            // One open digest per (workflow, key): events join it until it is sealed.
            "CREATE UNIQUE INDEX IF NOT EXISTS idx_herald_schedule_open_digest \
             ON herald_schedule (workflow, digest_key) \
             WHERE kind = 'digest' AND sealed_at IS NULL"
                .to_string(),
            "CREATE INDEX IF NOT EXISTS idx_herald_schedule_due \
             ON herald_schedule (due_at) WHERE done_at IS NULL"
                .to_string(),
            format!(
                "CREATE TABLE IF NOT EXISTS herald_digest_items ( \
                   schedule_id BIGINT NOT NULL, \
                   event_id {uuid} NOT NULL, \
                   stream_seq BIGINT NULL, \
                   subject VARCHAR NOT NULL, \
                   payload TEXT NOT NULL, \
                   headers TEXT NOT NULL, \
                   created_at {ts} NOT NULL, \
                   PRIMARY KEY (schedule_id, event_id))"
            ),
        ] {
            db.execute_unprepared(&sql).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for t in [
            "herald_digest_items",
            "herald_schedule",
            "herald_rate_limits",
            "herald_unsubscribes",
            "herald_suppressions",
        ] {
            db.execute_unprepared(&format!("DROP TABLE IF EXISTS {t}"))
                .await?;
        }
        Ok(())
    }
}
