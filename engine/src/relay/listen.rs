//! PostgreSQL: wake the relay when a row commits (NOTIFY on the outbox
//! channel, delivered at commit), instead of waiting for the next poll.
use std::sync::Arc;
use std::time::Duration;

use sea_orm::DatabaseConnection;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Listen until `stop`; reconnect after a dropped connection (the relay
/// polls meanwhile, so nothing waits on this).
pub async fn wake_on_notify(db: DatabaseConnection, wake: Arc<Notify>, stop: CancellationToken) {
    let pool = db.get_postgres_connection_pool().clone();
    while !stop.is_cancelled() {
        match sea_orm::sqlx::postgres::PgListener::connect_with(&pool).await {
            Ok(mut l) => {
                if l.listen(crate::outbox::NOTIFY_CHANNEL).await.is_ok() {
                    loop {
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            r = l.recv() => match r {
                                Ok(_) => wake.notify_one(),
                                Err(_) => break,
                            },
                        }
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "LISTEN failed; polling"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}
