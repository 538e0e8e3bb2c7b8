//! Writing an event's dead letter, and the whole-event failure of a render.

use sea_orm::DbErr;

use crate::dlq::{self, NewDeadLetter};
use crate::ledger::{self, Claim, Key};
use crate::worker::{Disposition, Event, Worker};
use crate::workflow::Workflow;
use crate::workflow::render::RenderError;
use herald_entities::dead_letter::DeadLetterKind;

use super::ProcessOutcome;

impl Worker {
    #[allow(clippy::too_many_arguments)] // one row's fields, named at every call site
    pub(in crate::worker) async fn dead_letter(
        &self,
        wf: &Workflow,
        ev: &Event,
        recipient: Option<&str>,
        kind: DeadLetterKind,
        reason: String,
        smtp: Option<String>,
        attempts: u32,
    ) -> Result<(), DbErr> {
        self.metrics.dead_letters(&wf.name).inc();
        tracing::error!(workflow = %wf.name, event_id = %ev.id, subject = %ev.subject,
            recipient = recipient.unwrap_or("(whole event)"), %reason, "dead letter");
        dlq::insert(
            &self.db,
            NewDeadLetter {
                event_id: ev.id,
                workflow: &wf.name,
                recipient,
                subject: &ev.subject,
                aggregate: ev.aggregate.as_deref(),
                stream_seq: ev.stream_seq,
                payload: &ev.payload,
                headers: ev.headers.clone(),
                kind,
                reason,
                smtp_reply: smtp,
                attempts,
            },
        )
        .await
        .map(|_| ())
    }
    pub(in crate::worker) async fn render_failed(
        &self,
        wf: &Workflow,
        ev: &Event,
        e: RenderError,
    ) -> Result<ProcessOutcome, DbErr> {
        let reason = e.to_string();
        let key = Key {
            event_id: ev.id,
            workflow: &wf.name,
            recipient: ledger::WHOLE_EVENT_RECIPIENT,
        };
        match ledger::claim(&self.db, &key, 0, "", self.cfg.ack_wait, false).await? {
            // Already dead-lettered by an earlier delivery of this message.
            Claim::Done { .. } => {
                return Ok(ProcessOutcome::whole(
                    Disposition::Terminate { reason },
                    0,
                    0,
                ));
            }
            // Another worker is writing this dead letter now.
            Claim::InFlight { retry_after } => {
                return Ok(ProcessOutcome::whole(
                    Disposition::Busy { after: retry_after },
                    0,
                    0,
                ));
            }
            Claim::Send { .. } => {}
        }
        ledger::mark_dead(&self.db, &key, &reason, None).await?;
        self.dead_letter(
            wf,
            ev,
            None,
            DeadLetterKind::Permanent,
            reason.clone(),
            None,
            1,
        )
        .await?;
        Ok(ProcessOutcome::whole(
            Disposition::Terminate { reason },
            0,
            1,
        ))
    }
}
