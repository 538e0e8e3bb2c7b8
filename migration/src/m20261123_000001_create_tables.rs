use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum HeraldOutbox {
    Table,
    Seq,
    EventId,
    Subject,
    AggregateType,
    AggregateId,
    OrderingKey,
    Payload,
    Headers,
    CreatedAt,
    PublishedAt,
    StreamSeq,
    Attempts,
    LastError,
    NextAttemptAt,
    LeaseOwner,
    LeaseUntil,
    ParkedAt,
}

#[derive(DeriveIden)]
enum HeraldDeliveries {
    Table,
    Id,
    EventId,
    Workflow,
    Recipient,
    ItemIndex,
    Subject,
    State,
    Attempts,
    MessageId,
    SmtpResponse,
    LastError,
    ResendReason,
    CreatedAt,
    UpdatedAt,
    SentAt,
}

#[derive(DeriveIden)]
enum HeraldDeadLetters {
    Table,
    Id,
    EventId,
    Workflow,
    Recipient,
    Subject,
    StreamSeq,
    Payload,
    Headers,
    Kind,
    Reason,
    SmtpReply,
    Attempts,
    CreatedAt,
    RetriedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    // Long but flat: the schema as it was released, statement after statement
    // (a released migration is never restructured).
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(HeraldOutbox::Table)
                    .if_not_exists()
                    .col(big_pk_auto(HeraldOutbox::Seq))
                    .col(uuid_uniq(HeraldOutbox::EventId))
                    .col(string(HeraldOutbox::Subject))
                    .col(string_null(HeraldOutbox::AggregateType))
                    .col(string_null(HeraldOutbox::AggregateId))
                    .col(string_null(HeraldOutbox::OrderingKey))
                    .col(text(HeraldOutbox::Payload))
                    .col(text(HeraldOutbox::Headers))
                    .col(timestamp_with_time_zone(HeraldOutbox::CreatedAt))
                    .col(timestamp_with_time_zone_null(HeraldOutbox::PublishedAt))
                    .col(big_integer_null(HeraldOutbox::StreamSeq))
                    .col(integer(HeraldOutbox::Attempts).default(0))
                    .col(text_null(HeraldOutbox::LastError))
                    .col(timestamp_with_time_zone_null(HeraldOutbox::NextAttemptAt))
                    .col(string_null(HeraldOutbox::LeaseOwner))
                    .col(timestamp_with_time_zone_null(HeraldOutbox::LeaseUntil))
                    .col(timestamp_with_time_zone_null(HeraldOutbox::ParkedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(HeraldDeliveries::Table)
                    .if_not_exists()
                    .col(big_pk_auto(HeraldDeliveries::Id))
                    .col(uuid(HeraldDeliveries::EventId))
                    .col(string(HeraldDeliveries::Workflow))
                    .col(string(HeraldDeliveries::Recipient))
                    .col(integer(HeraldDeliveries::ItemIndex).default(0))
                    .col(string(HeraldDeliveries::Subject))
                    .col(string(HeraldDeliveries::State))
                    .col(integer(HeraldDeliveries::Attempts).default(0))
                    .col(string_null(HeraldDeliveries::MessageId))
                    .col(text_null(HeraldDeliveries::SmtpResponse))
                    .col(text_null(HeraldDeliveries::LastError))
                    .col(text_null(HeraldDeliveries::ResendReason))
                    .col(timestamp_with_time_zone(HeraldDeliveries::CreatedAt))
                    .col(timestamp_with_time_zone(HeraldDeliveries::UpdatedAt))
                    .col(timestamp_with_time_zone_null(HeraldDeliveries::SentAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(HeraldDeadLetters::Table)
                    .if_not_exists()
                    .col(big_pk_auto(HeraldDeadLetters::Id))
                    .col(uuid(HeraldDeadLetters::EventId))
                    .col(string(HeraldDeadLetters::Workflow))
                    .col(string_null(HeraldDeadLetters::Recipient))
                    .col(string(HeraldDeadLetters::Subject))
                    .col(big_integer_null(HeraldDeadLetters::StreamSeq))
                    .col(text(HeraldDeadLetters::Payload))
                    .col(text(HeraldDeadLetters::Headers))
                    .col(string(HeraldDeadLetters::Kind))
                    .col(text(HeraldDeadLetters::Reason))
                    .col(text_null(HeraldDeadLetters::SmtpReply))
                    .col(integer(HeraldDeadLetters::Attempts).default(0))
                    .col(timestamp_with_time_zone(HeraldDeadLetters::CreatedAt))
                    .col(timestamp_with_time_zone_null(HeraldDeadLetters::RetriedAt))
                    .to_owned(),
            )
            .await?;

        // Partial indexes are the same SQL on SQLite and PostgreSQL, which the
        // index builder cannot express; they keep the relay's hot query and the
        // retention sweep on small indexes however large the table grows.
        let db = manager.get_connection();
        for sql in [
            // The relay's claim: unpublished rows in insertion order.
            "CREATE INDEX IF NOT EXISTS idx_herald_outbox_pending ON herald_outbox (seq) WHERE published_at IS NULL",
            // Per-aggregate order check: earlier unpublished rows of the same aggregate.
            "CREATE INDEX IF NOT EXISTS idx_herald_outbox_ordering ON herald_outbox (ordering_key, seq) WHERE published_at IS NULL",
            // Retention: prune published rows by age.
            "CREATE INDEX IF NOT EXISTS idx_herald_outbox_published_at ON herald_outbox (published_at) WHERE published_at IS NOT NULL",
            "CREATE UNIQUE INDEX IF NOT EXISTS idx_herald_deliveries_key ON herald_deliveries (event_id, workflow, recipient)",
            "CREATE INDEX IF NOT EXISTS idx_herald_deliveries_state ON herald_deliveries (state)",
            "CREATE INDEX IF NOT EXISTS idx_herald_dead_letters_workflow ON herald_dead_letters (workflow, id)",
            "CREATE INDEX IF NOT EXISTS idx_herald_dead_letters_event ON herald_dead_letters (event_id)",
        ] {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(HeraldDeadLetters::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(HeraldDeliveries::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(HeraldOutbox::Table).to_owned())
            .await
    }
}
