//! Replay: run a workflow again over a range of the stream, after an outage
//! or a bug. It reads with an ephemeral ordered consumer (the workflow's
//! durable consumer is untouched) and sends each message through the normal
//! path, so the ledger decides: deliveries already sent are skipped unless
//! `resend` is set.
//!
//! ```no_run
//! # async fn example(worker: herald::worker::Worker, js: async_nats::jetstream::Context) -> Result<(), Box<dyn std::error::Error>> {
//! use herald::replay::{ReplayOptions, Start, replay};
//! let catalog = worker.catalog();
//! let wf = catalog.get("welcome").ok_or("no workflow welcome")?;
//! // Everything since the outage began; what was already sent is skipped.
//! let opts = ReplayOptions::from(Start::Time("2026-11-20T08:00:00Z".parse()?));
//! let stop = tokio_util::sync::CancellationToken::new();
//! let summary = replay(&worker, &js, "HERALD", wf, &opts, |_| {}, stop).await?;
//! println!("sent {}", summary.sent);
//! # Ok(()) }
//! ```
use std::time::Duration;

use async_nats::jetstream;
use chrono::{DateTime, Utc};
use futures::StreamExt;

use crate::worker::{Disposition, Event, Worker};
use crate::workflow::Workflow;
use tokio_util::sync::CancellationToken;

mod preview;
mod range;
pub use preview::{Preview, WouldSend};
use range::open_range;

/// Where a replay starts.
///
/// ```
/// use herald::replay::{ReplayOptions, Start};
/// // From a stream sequence (e.g. a previous replay's `last_seq + 1`) ...
/// let by_seq = ReplayOptions::from(Start::Seq(1_201));
/// // ... or from the start of an outage.
/// let by_time = ReplayOptions::from(Start::Time("2026-11-20T08:00:00Z".parse()?));
/// # Ok::<(), chrono::ParseError>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub enum Start {
    Time(DateTime<Utc>),
    Seq(u64),
}

/// Which part of the stream a replay covers, and whether it only lists what
/// it would send (the flags of `herald replay`).
///
/// ```
/// use herald::replay::{ReplayOptions, Start};
/// let opts = ReplayOptions::from(Start::Seq(1)).dry_run(true);
/// assert!(opts.dry_run && opts.until.is_none());
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ReplayOptions {
    pub start: Start,
    /// Stop at messages published after this time.
    pub until: Option<DateTime<Utc>>,
    /// List what would be sent; send nothing, write nothing.
    pub dry_run: bool,
}

impl ReplayOptions {
    /// Replay from `start` to the end of the stream, sending.
    ///
    /// ```
    /// use herald::replay::{ReplayOptions, Start};
    /// let opts = ReplayOptions::from(Start::Seq(500));
    /// assert!(!opts.dry_run);
    /// ```
    pub fn from(start: Start) -> Self {
        ReplayOptions {
            start,
            until: None,
            dry_run: false,
        }
    }

    /// Stop at messages published after this time.
    ///
    /// ```
    /// use chrono::{Duration, Utc};
    /// use herald::replay::{ReplayOptions, Start};
    /// // The last hour's outage, and nothing published since.
    /// let end = Utc::now();
    /// let opts = ReplayOptions::from(Start::Time(end - Duration::hours(1))).until(Some(end));
    /// ```
    pub fn until(mut self, t: Option<DateTime<Utc>>) -> Self {
        self.until = t;
        self
    }

    /// List what would be sent; send nothing, write nothing.
    ///
    /// ```
    /// use herald::replay::{ReplayOptions, Start};
    /// // Look before sending: `Progress::would_send` lists each email.
    /// let opts = ReplayOptions::from(Start::Seq(1)).dry_run(true);
    /// assert!(opts.dry_run);
    /// ```
    pub fn dry_run(mut self, yes: bool) -> Self {
        self.dry_run = yes;
        self
    }
}

/// Counts for the summary line `replayed N, sent S, skipped K, failed F`.
///
/// ```
/// # fn example(summary: herald::replay::Summary) {
/// println!("replayed {}, sent {}, skipped {}, failed {}",
///     summary.replayed, summary.sent, summary.skipped, summary.failed);
/// if let (true, Some(last)) = (summary.interrupted, summary.last_seq) {
///     println!("continue with --from-seq {}", last + 1);
/// }
/// # }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub replayed: u64,
    pub sent: u64,
    pub skipped: u64,
    pub failed: u64,
    /// The last stream sequence processed (continue with `--from-seq last+1`).
    pub last_seq: Option<u64>,
    /// Stopped by a signal before the end of the range.
    pub interrupted: bool,
}

/// One step, for progress display.
///
/// ```
/// // A dry run's listing, given to `replay` as its `on_progress`.
/// let show = |p: &herald::replay::Progress| {
///     for w in &p.would_send {
///         println!("seq {} to {}: {:?} ({})", p.seq, w.to, w.subject, w.preview);
///     }
/// };
/// ```
#[derive(Debug, Clone)]
pub struct Progress {
    pub seq: u64,
    /// Messages of the range still ahead.
    pub remaining: u64,
    /// Dry run: each email of this message and what the real run would do
    /// with it (one line without an email when the event sends none).
    pub would_send: Vec<WouldSend>,
}

/// Why a replay could not run (or stopped): the stream, its retention, or
/// the database.
///
/// ```no_run
/// # fn example(err: herald::replay::ReplayError) {
/// use herald::replay::ReplayError;
/// if let ReplayError::RangeGone { first, .. } = err {
///     eprintln!("the stream starts at {first}: replay from there, republish the rest");
/// }
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    #[error("stream {stream}: {detail}")]
    Stream { stream: String, detail: String },
    #[error(
        "the stream no longer holds sequence {requested}: it starts at {first} (retention); replay from --from-seq {first}, and use `herald outbox republish` for older events"
    )]
    RangeGone { requested: u64, first: u64 },
    #[error("database: {0}")]
    Database(#[from] sea_orm::DbErr),
}

/// Run workflow `wf` again over a range of the stream, through `worker`'s
/// normal path (the ledger skips what was already sent); `stop` ends it
/// early with `interrupted` set.
///
/// ```no_run
/// # async fn example(worker: herald::worker::Worker, js: async_nats::jetstream::Context) -> Result<(), Box<dyn std::error::Error>> {
/// use herald::replay::{replay, ReplayOptions, Start};
/// let catalog = worker.catalog();
/// let wf = catalog.get("welcome").ok_or("no workflow welcome")?;
/// let opts = ReplayOptions::from(Start::Seq(1_000)).until(Some(chrono::Utc::now()));
/// let stop = tokio_util::sync::CancellationToken::new();
/// let summary = replay(&worker, &js, "HERALD", wf, &opts, |_| {}, stop).await?;
/// println!("replayed {}, sent {}", summary.replayed, summary.sent);
/// # Ok(()) }
/// ```
pub async fn replay(
    worker: &Worker,
    js: &jetstream::Context,
    stream_name: &str,
    wf: &Workflow,
    opts: &ReplayOptions,
    mut on_progress: impl FnMut(&Progress),
    stop: CancellationToken,
) -> Result<Summary, ReplayError> {
    let err = |detail: String| stream_error(stream_name, detail);
    let mut summary = Summary::default();
    let Some(mut messages) = open_range(js, stream_name, wf, opts).await? else {
        return Ok(summary);
    };
    loop {
        let next = tokio::select! {
            m = tokio::time::timeout(Duration::from_secs(2), messages.next()) => m,
            _ = stop.cancelled() => { summary.interrupted = true; break; }
        };
        // Nothing within the timeout: the range (filtered) is exhausted.
        let Ok(Some(msg)) = next else { break };
        let msg = msg.map_err(|e| err(e.to_string()))?;
        let info = msg.info().map_err(|e| err(e.to_string()))?;
        let (seq, remaining) = (info.stream_sequence, info.pending);
        let published: DateTime<Utc> =
            DateTime::from_timestamp(info.published.unix_timestamp(), info.published.nanosecond())
                .unwrap_or_else(Utc::now);
        if opts.until.is_some_and(|u| published > u) {
            break;
        }
        let ev = match Event::from_message(&msg.message, Some(seq)) {
            Ok(ev) => ev,
            Err(reason) => {
                tracing::warn!(seq, %reason, "not a Herald event; skipped");
                summary.skipped += 1;
                summary.last_seq = Some(seq);
                continue;
            }
        };
        summary.replayed += 1;
        let Some(would_send) = replay_event(worker, wf, opts, &ev, &stop, &mut summary).await?
        else {
            summary.interrupted = true;
            break;
        };
        summary.last_seq = Some(seq);
        on_progress(&Progress {
            seq,
            remaining,
            would_send,
        });
        if remaining == 0 {
            break;
        }
    }
    Ok(summary)
}

fn stream_error(stream: &str, detail: String) -> ReplayError {
    ReplayError::Stream {
        stream: stream.to_string(),
        detail,
    }
}

/// One event of the range: sent through the worker (counted into the
/// summary), or in a dry run what it would send. `None`: the transport
/// paused and the replay stops here.
async fn replay_event(
    worker: &Worker,
    wf: &Workflow,
    opts: &ReplayOptions,
    ev: &Event,
    stop: &CancellationToken,
    summary: &mut Summary,
) -> Result<Option<Vec<WouldSend>>, ReplayError> {
    if opts.dry_run {
        return Ok(Some(preview::preview(worker, wf, ev, summary).await?));
    }
    let o = worker.process_when_reachable(wf, ev, stop).await?;
    if o.disposition == Disposition::Paused {
        return Ok(None);
    }
    tally(summary, &o);
    Ok(Some(Vec::new()))
}

/// Count one replayed event's outcome into the summary.
fn tally(summary: &mut Summary, o: &crate::worker::ProcessOutcome) {
    summary.sent += o.sent;
    summary.skipped += o.skipped;
    summary.failed += o.dead_lettered;
    // Dead-lettered already (held behind its aggregate's dead letter, or a
    // render that fails again): not delivered, and no new dead letter.
    if matches!(o.disposition, Disposition::Terminate { .. }) && o.dead_lettered == 0 {
        summary.failed += 1;
    }
    match o.disposition {
        // A transient failure cannot wait here; the durable consumer
        // or a later replay will deliver it.
        Disposition::Retry { .. } => summary.failed += 1,
        // A running worker is sending it right now (the consumer
        // catching up on the same range): not ours to send.
        Disposition::Busy { .. } => summary.skipped += 1,
        Disposition::Ack | Disposition::Terminate { .. } | Disposition::Paused => {}
    }
}
