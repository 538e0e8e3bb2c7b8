//! The relay's per-aggregate order check reads the aggregates that are held
//! (leased or backing off) once per claim; this partial index holds only such
//! in-flight rows. It replaces the (ordering_key, seq) index of unpublished
//! rows, which the old per-row probe needed.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared("DROP INDEX IF EXISTS idx_herald_outbox_ordering")
            .await?;
        db.execute_unprepared(
            "CREATE INDEX IF NOT EXISTS idx_herald_outbox_held ON herald_outbox (ordering_key) \
             WHERE published_at IS NULL AND (lease_until IS NOT NULL OR next_attempt_at IS NOT NULL)",
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared("DROP INDEX IF EXISTS idx_herald_outbox_held")
            .await?;
        db.execute_unprepared(
            "CREATE INDEX IF NOT EXISTS idx_herald_outbox_ordering ON herald_outbox (ordering_key, seq) WHERE published_at IS NULL",
        )
        .await?;
        Ok(())
    }
}
