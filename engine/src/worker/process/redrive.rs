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
    /// deliveries, process the stored event again (the ledger skips what was
    /// sent), and mark the dead letter retried. A new failure writes a new
    /// dead letter.
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
        // Closed first: it must not hold back its own re-drive.
        dlq::mark_retried(&self.db, dl.id).await?;
        self.process_when_reachable(
            &wf,
            &Event::from_dead_letter(dl),
            &tokio_util::sync::CancellationToken::new(),
        )
        .await
        .map_err(RedriveError::from)
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
            let done = o.disposition == Disposition::Ack;
            out.push((f.id, o));
            if !done {
                break;
            }
        }
        Ok(out)
    }
}
