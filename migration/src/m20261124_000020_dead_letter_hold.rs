//! Dead letters remember their event's aggregate, so that a dead-lettered
//! event holds back only the later events of its own aggregate (per
//! workflow), and an operator can see and release what is held. The
//! partial index keeps the worker's per-message check ("is an earlier event
//! of this aggregate dead-lettered and unresolved?") on the few open rows.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Idempotent: racing processes (SQLite) may both get here.
        if !manager
            .has_column("herald_dead_letters", "aggregate")
            .await?
        {
            manager
                .alter_table(
                    Table::alter()
                        .table(Alias::new("herald_dead_letters"))
                        .add_column(ColumnDef::new(Alias::new("aggregate")).string().null())
                        .to_owned(),
                )
                .await?;
        }
        if !manager
            .has_column("herald_dead_letters", "discarded_at")
            .await?
        {
            manager
                .alter_table(
                    Table::alter()
                        .table(Alias::new("herald_dead_letters"))
                        .add_column(
                            ColumnDef::new(Alias::new("discarded_at"))
                                .timestamp_with_time_zone()
                                .null(),
                        )
                        .to_owned(),
                )
                .await?;
        }
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE INDEX IF NOT EXISTS idx_herald_dead_letters_hold \
                 ON herald_dead_letters (workflow, aggregate, stream_seq) \
                 WHERE retried_at IS NULL AND aggregate IS NOT NULL",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP INDEX IF EXISTS idx_herald_dead_letters_hold")
            .await?;
        for col in ["aggregate", "discarded_at"] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Alias::new("herald_dead_letters"))
                        .drop_column(Alias::new(col))
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
