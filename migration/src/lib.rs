//! Schema migrations for Herald. Every migration runs on SQLite and PostgreSQL.
pub use sea_orm_migration::prelude::*;

mod m20261123_000001_create_tables;
mod m20261123_000002_held_index;
mod m20261124_000003_producer_contract;
mod m20261124_000020_dead_letter_hold;
mod m20261124_000021_aggregate_progress;
mod m20261124_000030_deliverability;
mod m20261124_000040_pending_order_index;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261123_000001_create_tables::Migration),
            Box::new(m20261123_000002_held_index::Migration),
            Box::new(m20261124_000003_producer_contract::Migration),
            Box::new(m20261124_000020_dead_letter_hold::Migration),
            Box::new(m20261124_000021_aggregate_progress::Migration),
            Box::new(m20261124_000030_deliverability::Migration),
            Box::new(m20261124_000040_pending_order_index::Migration),
        ]
    }

    // Our own name, so Herald's bookkeeping never collides with an
    // application's sea-orm migrations in the same database.
    fn migration_table_name() -> DynIden {
        "herald_migrations".into_iden()
    }
}
