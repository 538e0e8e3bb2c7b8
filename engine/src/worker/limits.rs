//! The rate limits one worker applies: its transport's (from the SMTP URL,
//! or none) and each workflow's (`rate:`), all shared with every other
//! worker through the database (`crate::rate`).
use std::collections::HashMap;
use std::time::Duration;

use sea_orm::{DatabaseConnection, DbErr};

use crate::rate::Limiter;
use crate::smtp::Transport;
use crate::workflow::Catalog;

pub(crate) struct Limits {
    transport: Limiter,
    workflows: HashMap<String, Limiter>,
}

impl Limits {
    pub(crate) fn new(db: &DatabaseConnection, catalog: &Catalog, transport: &Transport) -> Limits {
        let workflows = catalog
            .workflows
            .iter()
            .filter_map(|w| {
                let rate = w.delivery.rate?;
                Some((
                    w.name.clone(),
                    Limiter::new(db.clone(), format!("workflow:{}", w.name), Some(rate)),
                ))
            })
            .collect();
        Limits {
            transport: Limiter::new(
                db.clone(),
                format!("transport:{}", transport.name()),
                transport.rate(),
            ),
            workflows,
        }
    }

    /// Reserve a slot for one email of `workflow`: how long to wait.
    pub(crate) async fn reserve(&self, workflow: &str) -> Result<Duration, DbErr> {
        let mut wait = self.transport.reserve().await?;
        if let Some(l) = self.workflows.get(workflow) {
            wait = wait.max(l.reserve().await?);
        }
        Ok(wait)
    }

    /// The server asked to slow down.
    pub(crate) async fn throttled(&self) -> Result<(), DbErr> {
        self.transport.throttled().await
    }
}
