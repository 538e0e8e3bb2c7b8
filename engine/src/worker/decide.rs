//! The one decision about a message: from the outcomes of its deliveries to
//! what happens to it. No I/O: every branch is a unit test.
use std::time::Duration;

/// The fate of a message: the only thing the consumer loop acts on.
///
/// ```no_run
/// # async fn example(worker: herald::worker::Worker) -> Result<(), Box<dyn std::error::Error>> {
/// use herald::worker::Disposition;
/// let dl = herald::dlq::get(worker.db(), 42).await?.ok_or("no dead letter 42")?;
/// match worker.redrive(&dl).await?.disposition {
///     Disposition::Ack => println!("delivered"),
///     other => println!("not yet: {other}"),
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Disposition {
    Ack,
    Retry {
        after: Duration,
    },
    /// Terminate: the event as a whole cannot be processed (dead letter written).
    Terminate {
        reason: String,
    },
    /// Nothing failed, but another worker holds a claim on one of its
    /// deliveries: look at the message again after `after`, when that
    /// delivery is recorded or its claim has gone stale.
    Busy {
        after: Duration,
    },
    /// The transport could not be reached: nothing was tried and no attempt
    /// counted. Process the message again when the transport is back.
    Paused,
}

impl std::fmt::Display for Disposition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Disposition::Ack => f.write_str("done"),
            Disposition::Retry { after } => {
                write!(f, "retrying in {}", crate::duration::human(*after))
            }
            Disposition::Terminate { reason } => write!(f, "dead-lettered: {reason}"),
            Disposition::Busy { after } => write!(
                f,
                "claimed by another worker; looking again in {}",
                crate::duration::human(*after)
            ),
            Disposition::Paused => f.write_str("waiting for the SMTP transport"),
        }
    }
}

/// What happened to one recipient's delivery.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum DeliveryOutcome {
    /// Accepted by the server and recorded.
    Sent,
    /// The ledger had it as done (sent, skipped, dead): nothing to do.
    AlreadyDone,
    /// Another worker holds its claim; look again after this.
    InFlight(Duration),
    /// A transient failure, attempt recorded: try again after this.
    Retry(Duration),
    /// Dead-lettered (permanent failure or attempts exhausted).
    Dead,
    /// The transport could not be reached; the claim was given back.
    Paused,
}

/// The message's disposition from its deliveries' outcomes: if the
/// transport was down, wait for it; else retry as soon as the first retry or
/// claim allows; else wait for the other worker's claim; else everything is
/// recorded and the message is done.
pub(crate) fn decide(outcomes: &[DeliveryOutcome]) -> Disposition {
    if outcomes.contains(&DeliveryOutcome::Paused) {
        return Disposition::Paused;
    }
    let mut retry: Option<Duration> = None;
    let mut busy: Option<Duration> = None;
    for o in outcomes {
        match o {
            DeliveryOutcome::Retry(d) => retry = Some(sooner(retry, *d)),
            DeliveryOutcome::InFlight(d) => busy = Some(sooner(busy, *d)),
            DeliveryOutcome::Sent
            | DeliveryOutcome::AlreadyDone
            | DeliveryOutcome::Dead
            | DeliveryOutcome::Paused => {}
        }
    }
    match (retry, busy) {
        (Some(after), busy) => Disposition::Retry {
            after: sooner(busy, after),
        },
        (None, Some(after)) => Disposition::Busy { after },
        (None, None) => Disposition::Ack,
    }
}

/// The earlier of a wait so far (if any) and `d`: a message with several
/// recipients is looked at again as soon as the first of them may proceed.
fn sooner(so_far: Option<Duration>, d: Duration) -> Duration {
    so_far.map_or(d, |x| x.min(d))
}

#[cfg(test)]
mod tests {
    use super::*;
    use DeliveryOutcome::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn all_recorded_acks() {
        assert_eq!(decide(&[]), Disposition::Ack);
        assert_eq!(decide(&[Sent, AlreadyDone, Dead]), Disposition::Ack);
    }

    #[test]
    fn the_soonest_retry_wins_and_a_claim_elsewhere_may_make_it_sooner() {
        assert_eq!(
            decide(&[Sent, Retry(3 * S), Retry(2 * S)]),
            Disposition::Retry { after: 2 * S }
        );
        assert_eq!(
            decide(&[Retry(3 * S), InFlight(S)]),
            Disposition::Retry { after: S }
        );
    }

    #[test]
    fn an_unreachable_transport_pauses_whatever_else_happened() {
        assert_eq!(decide(&[Sent, Retry(S), Paused, Dead]), Disposition::Paused);
    }

    #[test]
    fn only_claims_elsewhere_is_busy() {
        assert_eq!(
            decide(&[Sent, InFlight(2 * S), InFlight(S)]),
            Disposition::Busy { after: S }
        );
    }
}
