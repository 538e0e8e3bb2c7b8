//! Processing again: waiting out an unreachable transport, re-driving a
//! dead letter and what waited behind it.

use sea_orm::DbErr;

use crate::dlq::{self};
use crate::ledger::{self};
use crate::worker::{Disposition, Event, RedriveError, Worker};
use crate::workflow::Workflow;

use super::ProcessOutcome;

impl Worker {
    /// [`Worker::process`], waiting for the transport whenever it was
    /// unreachable (no attempt is counted meanwhile), until `stop`.
    pub(crate) async fn process_when_reachable(
        &self,
        wf: &Workflow,
        ev: &Event,
        stop: &tokio_util::sync::CancellationToken,
    ) -> Result<ProcessOutcome, DbErr> {
        loop {
            let o = self.process(wf, ev).await?;
            if o.disposition != Disposition::Paused || stop.is_cancelled() {
                return Ok(o);
            }
            tokio::select! {
                _ = stop.cancelled() => return Ok(o),
                _ = self.transport.wait_up() => {}
            }
        }
    }

    /// Re-drive a dead letter through the normal path: reopen its dead
    /// deliveries and process the stored event again (the ledger skips what
    /// was sent). The dead letter is closed only once the event has an
    /// outcome: every delivery recorded, or a new dead letter written in its
    /// place. Still held behind its aggregate, retrying after a 4xx, or
    /// interrupted while the transport is down, it stays open: nothing else
    /// owns the event (its stream message was settled long ago), so closing
    /// it then lost the email from every list.
    ///
    /// ```no_run
    /// # async fn example(worker: herald::worker::Worker) -> Result<(), Box<dyn std::error::Error>> {
    /// // After fixing the template or the SMTP account that failed it.
    /// let dl = herald::dlq::get(worker.db(), 42).await?.ok_or("no dead letter 42")?;
    /// let outcome = worker.redrive(&dl).await?;
    /// println!("{} sent, {} skipped", outcome.sent, outcome.skipped);
    /// # Ok(()) }
    /// ```
    pub async fn redrive(
        &self,
        dl: &herald_entities::dead_letter::Model,
    ) -> Result<ProcessOutcome, RedriveError> {
        let wf = self
            .workflow(&dl.workflow)
            .ok_or_else(|| RedriveError::UnknownWorkflow(dl.workflow.clone()))?;
        ledger::reopen_dead(&self.db, dl.event_id.into(), &dl.workflow).await?;
        let o = self
            .process_when_reachable(
                &wf,
                &Event::from_dead_letter(dl),
                &tokio_util::sync::CancellationToken::new(),
            )
            .await?;
        let settled = match o.disposition {
            Disposition::Ack => true,
            // A new dead letter takes its place; none written: still held.
            Disposition::Terminate { .. } => o.dead_lettered > 0,
            _ => false,
        };
        if settled {
            dlq::mark_retried(&self.db, dl.id).await?;
        }
        Ok(o)
    }

    /// Re-drive what waited behind `dl` (re-driven or discarded), in stream
    /// order, until one is not delivered: it then holds the rest again.
    ///
    /// ```no_run
    /// # async fn example(worker: herald::worker::Worker) -> Result<(), Box<dyn std::error::Error>> {
    /// let dl = herald::dlq::get(worker.db(), 42).await?.ok_or("no dead letter 42")?;
    /// worker.redrive(&dl).await?;
    /// // The aggregate's later events waited behind it: send them now, in order.
    /// for (id, o) in worker.release_followers(&dl).await? {
    ///     println!("dead letter #{id}: {:?}", o.disposition);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn release_followers(
        &self,
        dl: &herald_entities::dead_letter::Model,
    ) -> Result<Vec<(i64, ProcessOutcome)>, RedriveError> {
        let mut out = Vec::new();
        for f in dlq::followers(&self.db, dl).await? {
            let o = self.redrive(&f).await?;
            let done = o.delivered();
            out.push((f.id, o));
            if !done {
                break;
            }
        }
        Ok(out)
    }
}
