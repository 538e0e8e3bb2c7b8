//! How far each workflow has come through each aggregate's events, so that
//! a worker can tell whether an earlier event of an aggregate is still
//! outstanding (in another worker, or unacknowledged by one that died)
//! before it emails a later one. And the index that finds an aggregate's
//! events in order.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(
            "CREATE TABLE IF NOT EXISTS herald_aggregate_progress ( \
               workflow VARCHAR NOT NULL, \
               ordering_key VARCHAR NOT NULL, \
               seq BIGINT NOT NULL, \
               PRIMARY KEY (workflow, ordering_key))",
        )
        .await?;
        db.execute_unprepared(
            "CREATE INDEX IF NOT EXISTS idx_herald_outbox_aggregate \
             ON herald_outbox (ordering_key, seq) WHERE ordering_key IS NOT NULL",
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared("DROP INDEX IF EXISTS idx_herald_outbox_aggregate")
            .await?;
        db.execute_unprepared("DROP TABLE IF EXISTS herald_aggregate_progress")
            .await?;
        Ok(())
    }
}
