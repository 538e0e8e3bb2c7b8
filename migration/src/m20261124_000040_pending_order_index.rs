//! The relay on PostgreSQL holds a batch by row locks instead of leases and
//! checks, once per batch and aggregate, that no earlier unpublished row of
//! the aggregate is left outside the batch (engine/src/outbox/store/locked.rs).
//! That check reads the first unpublished row of each aggregate: this index
//! of unpublished rows by (aggregate, seq) answers it in one probe per
//! aggregate. (Migration 3 rebuilt the `ordering_key` column, which took an
//! older index of the same shape with it.) SQLite keeps leases and does not
//! need it; it is created there too, so that both schemas stay alike.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE INDEX IF NOT EXISTS idx_herald_outbox_ordering \
                 ON herald_outbox (ordering_key, seq) WHERE published_at IS NULL",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP INDEX IF EXISTS idx_herald_outbox_ordering")
            .await?;
        Ok(())
    }
}
