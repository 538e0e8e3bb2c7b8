//! One recipient's email: claim its ledger row, send, record the result.
use std::time::{Duration, Instant};

use sea_orm::DbErr;

use super::decide::DeliveryOutcome;
use super::{Worker, failpoint, message_id};
use crate::ledger::{self, Claim, Key};
use crate::smtp::{SendError, SendErrorKind};
use crate::suppression::lookup::Lookup;
use crate::suppression::{self, Blocked};
use crate::telemetry;
use crate::workflow::Workflow;
use crate::workflow::render::Email;
use crate::workflow::spec::OnUncertain;
use herald_entities::dead_letter::DeadLetterKind;
use herald_entities::delivery::DeliveryState;

use super::Event;

impl Worker {
    /// Deliver `email` to its recipient, keyed `recipient` in the ledger.
    pub(super) async fn deliver(
        &self,
        wf: &Workflow,
        ev: &Event,
        email: &Email,
        recipient: &str,
    ) -> Result<DeliveryOutcome, DbErr> {
        // Rate limits first, before any claim: a long wait holds no lease.
        let wait = self.limits().reserve(&wf.name).await?;
        if !wait.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.stop.cancelled() => return Ok(DeliveryOutcome::Paused),
            }
        }
        let key = Key {
            event_id: ev.id,
            workflow: &wf.name,
            recipient,
        };
        let Some((attempt, resent)) = self.claim(wf, ev, email, &key).await? else {
            return Ok(DeliveryOutcome::AlreadyDone);
        };
        let attempt = match attempt {
            Ok(a) => a,
            Err(outcome) => return Ok(outcome),
        };
        let Some(email) = self.addressable(wf, email, &key).await? else {
            return Ok(DeliveryOutcome::AlreadyDone);
        };
        let mut mid = message_id(ev.id, &wf.name, email.index, &email.from);
        if resent {
            // A deliberate resend must not look like the original downstream.
            mid = mid.replacen('@', &format!(".r{attempt}@"), 1);
        }
        let started = Instant::now();
        let to: Vec<&str> = email.to.iter().map(|m| m.address.as_str()).collect();
        let span = telemetry::smtp_span(&wf.name, &ev.id.to_string(), &to, attempt, &mid);
        let sent = self.transport.send(&email, &mid).await;
        match &sent {
            Ok(reply) => telemetry::end_smtp(span, Some(reply), None),
            Err(e) => telemetry::end_smtp(span, e.smtp_reply().as_deref(), Some(failure_kind(e))),
        }
        match sent {
            Ok(reply) => {
                failpoint::hit("after_smtp_accept");
                self.record_sent(&key, &format!("<{mid}>"), &reply).await?;
                failpoint::hit("after_ledger_sent");
                self.metrics.emails_sent(&wf.name).inc();
                self.metrics
                    .send_latency
                    .observe(&wf.name, started.elapsed());
                if let Ok(t) = chrono::DateTime::parse_from_rfc3339(&ev.occurred_at) {
                    let lat = chrono::Utc::now()
                        .signed_duration_since(t)
                        .to_std()
                        .unwrap_or_default();
                    self.metrics.end_to_end_latency.observe(&wf.name, lat);
                }
                Ok(DeliveryOutcome::Sent)
            }
            Err(e) => self.send_failed(wf, ev, &email, &key, attempt, e).await,
        }
    }

    /// Claim the delivery: `None` when it is done (skipped), `Err(outcome)`
    /// when it is not ours now, else the attempt and whether it is a resend.
    #[allow(clippy::type_complexity)]
    async fn claim(
        &self,
        wf: &Workflow,
        ev: &Event,
        email: &Email,
        key: &Key<'_>,
    ) -> Result<Option<(Result<u32, DeliveryOutcome>, bool)>, DbErr> {
        let resend_uncertain = wf.on_uncertain == OnUncertain::Resend;
        let mut claim = ledger::claim_grouped(
            &self.db,
            &self.new_claims,
            key,
            email.index,
            &email.subject,
            self.cfg.ack_wait,
            resend_uncertain,
        )
        .await?;
        let mut resent = false;
        if let (Claim::Done { state }, Some(reason)) = (&claim, &self.resend)
            && *state == DeliveryState::Sent
        {
            claim = ledger::claim_resend(&self.db, key, reason).await?;
            resent = true;
        }
        Ok(match claim {
            Claim::Done { .. } => {
                self.metrics.emails_skipped(&wf.name).inc();
                None
            }
            Claim::InFlight { retry_after: d } => {
                tracing::info!(workflow = %wf.name, event_id = %ev.id, recipient = key.recipient,
                    retry_in_ms = d.as_millis() as u64,
                    "another worker is sending this email; checking again later");
                self.metrics.emails_in_flight_elsewhere(&wf.name).inc();
                Some((Err(DeliveryOutcome::InFlight(d)), resent))
            }
            Claim::Send { attempt } => Some((Ok(attempt), resent)),
        })
    }

    /// The email as it may go out: without suppressed addresses (unless the
    /// workflow ignores suppression) and, for bulk mail, without addresses
    /// that unsubscribed from its category, and with the one-click
    /// unsubscribe headers. None when no `to` address is left: the delivery
    /// is then recorded `suppressed` or `unsubscribed`, not sent.
    async fn addressable(
        &self,
        wf: &Workflow,
        email: &Email,
        key: &Key<'_>,
    ) -> Result<Option<Email>, DbErr> {
        let category = wf.category();
        let all: Vec<String> = email
            .to
            .iter()
            .chain(&email.cc)
            .chain(&email.bcc)
            .map(|m| m.address.clone())
            .collect();
        let lookup = Lookup {
            addresses: all,
            category: category.map(str::to_string),
            suppressions: !wf.delivery.ignore_suppression,
        };
        let blocked = match lookup.asks() {
            true => self.lookups.write(lookup).await?,
            false => Vec::new(),
        };
        let mut email = email.clone();
        if !blocked.is_empty() {
            let is_blocked = |m: &crate::workflow::Mailbox| {
                blocked
                    .iter()
                    .any(|(a, _)| a.eq_ignore_ascii_case(&m.address))
            };
            email.to.retain(|m| !is_blocked(m));
            email.cc.retain(|m| !is_blocked(m));
            email.bcc.retain(|m| !is_blocked(m));
            if email.to.is_empty() {
                let (state, why) = match blocked.iter().any(|(_, b)| *b == Blocked::Suppressed) {
                    true => (
                        DeliveryState::Suppressed,
                        "not sent: the address is suppressed (`herald suppressions list`)",
                    ),
                    false => (
                        DeliveryState::Unsubscribed,
                        "not sent: the address unsubscribed from this category",
                    ),
                };
                ledger::mark_settled(&self.db, key, state, why, None).await?;
                self.metrics.emails_skipped(&wf.name).inc();
                return Ok(None);
            }
        }
        if let (Some(cat), Some(u), Some(first)) =
            (category, &self.cfg.unsubscribe, email.to.first())
        {
            email.headers.extend(u.headers(&first.address, cat));
        }
        Ok(Some(email))
    }

    /// The server has the email: recording it is now the only thing between
    /// us and a duplicate, so a database blip is retried here (up to 30 s)
    /// rather than turned into a redelivery.
    async fn record_sent(&self, key: &Key<'_>, message_id: &str, reply: &str) -> Result<(), DbErr> {
        let policy = backoff::ExponentialBackoff {
            initial_interval: Duration::from_millis(50),
            max_interval: Duration::from_secs(2),
            max_elapsed_time: Some(Duration::from_secs(30)),
            ..Default::default()
        };
        backoff::future::retry(policy, || async {
            let record = ledger::group::SentRecord {
                key: key.into(),
                message_id: message_id.to_string(),
                reply: reply.to_string(),
            };
            self.sent_records
                .write(record)
                .await
                .map_err(backoff::Error::transient)
        })
        .await
    }

    // One match over the kinds of failure: what each one does reads best side by side.
    #[allow(clippy::too_many_arguments)] // one delivery's context, named at the call
    async fn send_failed(
        &self,
        wf: &Workflow,
        ev: &Event,
        email: &Email,
        key: &Key<'_>,
        attempt: u32,
        e: SendError,
    ) -> Result<DeliveryOutcome, DbErr> {
        let reply = e.smtp_reply();
        let recipient = key.recipient;
        if e.asks_to_slow_down() {
            self.metrics.smtp_throttled.inc();
            self.limits().throttled().await?;
        }
        if let Some((address, code, message)) = e.refused_recipient()
            && suppression::is_hard_bounce(code, message)
        {
            return self.bounced(email, key, attempt, address, &e).await;
        }
        match e.kind() {
            // Nothing was tried: give the attempt back and wait for the
            // transport (the gate is closed and probing).
            SendErrorKind::Transport => {
                ledger::release(&self.db, key, attempt).await?;
                Ok(DeliveryOutcome::Paused)
            }
            // The server asks to slow down: the transport's rate backed off;
            // this email goes again later, its attempt given back.
            SendErrorKind::Throttle => {
                ledger::release(&self.db, key, attempt).await?;
                Ok(DeliveryOutcome::Retry(wf.retry.delay(1)))
            }
            SendErrorKind::Transient if attempt < wf.retry.max_attempts => {
                self.metrics.send_retries(&wf.name).inc();
                ledger::mark_retrying(&self.db, key, &e.to_string(), reply.as_deref()).await?;
                let d = wf.retry.delay(attempt);
                tracing::warn!(workflow = %wf.name, event_id = %ev.id, recipient, attempt, error = %e,
                    retry_in_ms = d.as_millis() as u64, "send failed, will retry");
                Ok(DeliveryOutcome::Retry(d))
            }
            SendErrorKind::Uncertain
                if wf.on_uncertain == OnUncertain::Resend && attempt < wf.retry.max_attempts =>
            {
                self.metrics.uncertain(&wf.name).inc();
                ledger::mark_uncertain(&self.db, key, &e.to_string()).await?;
                // Soon, and with the same Message-ID: if the first copy did
                // arrive, the recipient's system can tell the second is one.
                let d = wf.retry.delay(1);
                tracing::warn!(workflow = %wf.name, event_id = %ev.id, recipient, attempt, error = %e,
                    retry_in_ms = d.as_millis() as u64, "outcome unknown after the end of DATA; resending with the same Message-ID");
                Ok(DeliveryOutcome::Retry(d))
            }
            SendErrorKind::Uncertain if wf.on_uncertain == OnUncertain::Hold => {
                self.metrics.uncertain(&wf.name).inc();
                let reason = format!("held for an operator (on_uncertain: hold): {e}");
                ledger::mark_uncertain(&self.db, key, &reason).await?;
                self.dead_letter(
                    wf,
                    ev,
                    Some(recipient),
                    DeadLetterKind::Uncertain,
                    reason,
                    None,
                    attempt,
                )
                .await?;
                Ok(DeliveryOutcome::Dead)
            }
            kind => {
                let (dl_kind, reason) = match kind {
                    SendErrorKind::Permanent => (
                        DeadLetterKind::Permanent,
                        format!("SMTP refused the message: {e}"),
                    ),
                    _ => (
                        DeadLetterKind::Exhausted,
                        format!("gave up after {attempt} attempts: {e}"),
                    ),
                };
                ledger::mark_dead(&self.db, key, &reason, reply.as_deref()).await?;
                self.dead_letter(wf, ev, Some(recipient), dl_kind, reason, reply, attempt)
                    .await?;
                Ok(DeliveryOutcome::Dead)
            }
        }
    }

    /// A hard bounce (a permanent reply to RCPT, 5.1.x): the address is
    /// suppressed for all later mail. If it was the delivery's only `to`,
    /// the delivery is recorded `suppressed` (no dead letter: a bounce is
    /// information, not an operator's task); else the others are tried
    /// again without it, no attempt counted.
    async fn bounced(
        &self,
        email: &Email,
        key: &Key<'_>,
        attempt: u32,
        address: &str,
        e: &SendError,
    ) -> Result<DeliveryOutcome, DbErr> {
        let reply = e.smtp_reply();
        suppression::add(&self.db, address, "hard bounce", reply.as_deref(), "bounce").await?;
        self.metrics.suppressed.inc();
        tracing::warn!(%address, reply = reply.as_deref().unwrap_or(""), "hard bounce: the address is suppressed");
        let others = email
            .to
            .iter()
            .any(|m| !m.address.eq_ignore_ascii_case(address));
        if others {
            ledger::release(&self.db, key, attempt).await?;
            return Ok(DeliveryOutcome::Retry(std::time::Duration::ZERO));
        }
        ledger::mark_settled(
            &self.db,
            key,
            DeliveryState::Suppressed,
            &format!("hard bounce: {e}"),
            reply.as_deref(),
        )
        .await?;
        Ok(DeliveryOutcome::AlreadyDone)
    }
}

/// How a send failed, for its span: the kind, never the reply text.
fn failure_kind(e: &SendError) -> &'static str {
    match e.kind() {
        SendErrorKind::Transport => "transport unreachable",
        SendErrorKind::Transient => "transient failure",
        SendErrorKind::Permanent => "permanent failure",
        SendErrorKind::Uncertain => "uncertain",
        SendErrorKind::Throttle => "throttled",
    }
}
