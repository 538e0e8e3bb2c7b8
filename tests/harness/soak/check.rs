//! The invariant checker: lost events, duplicates, per-aggregate order, the
//! stream's contents, what is left in the outbox and the ledger.
use std::collections::{HashMap, HashSet};
use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};

use super::{Fault, Produced, Report, Soak, UNRECORDED_WINDOW};

impl Soak {
    /// Read the outbox, the stream, the ledger and the sink; say what holds.
    pub(super) async fn check(&self, produced: &[Produced]) -> Report {
        let mut r = Report {
            seed: self.seed,
            events: produced.len(),
            ..Default::default()
        };
        for f in self.faults.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            *r.faults.entry(f.kind).or_default() += 1;
        }
        let faults = self
            .faults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();

        // The ledger and the dead letters.
        let ledger = by_event_and_workflow(
            &self.conn,
            "SELECT event_id, workflow, state FROM herald_deliveries",
        )
        .await;
        let dead = by_event_and_workflow(
            &self.conn,
            "SELECT event_id, workflow, reason FROM herald_dead_letters WHERE discarded_at IS NULL",
        )
        .await;

        // The sink: copies per Message-ID, in the order they arrived.
        let received = self.sink.received();
        r.emails = received.len();
        let mut copies: HashMap<String, Vec<&crate::smtp::Received>> = HashMap::new();
        for m in &received {
            copies.entry(m.message_id()).or_default().push(m);
        }

        check_lost(&mut r, produced, &ledger, &dead, &copies);
        check_duplicates(&mut r, &copies, &faults);
        check_order(&mut r, produced, &received);

        // Stuck rows and unfinished deliveries.
        r.stuck_outbox = scalar(
            &self.conn,
            "SELECT COUNT(*) FROM herald_outbox WHERE published_at IS NULL",
        )
        .await;
        r.unfinished_deliveries = scalar(
            &self.conn,
            "SELECT COUNT(*) FROM herald_deliveries WHERE state IN ('sending', 'retrying', 'uncertain')",
        )
        .await;

        r.outbox_bytes_per_row = scalar(
            &self.conn,
            "SELECT (pg_total_relation_size('herald_outbox') / GREATEST(COUNT(*), 1))::bigint FROM herald_outbox",
        )
        .await;
        r.ledger_bytes_per_row = scalar(
            &self.conn,
            "SELECT (pg_total_relation_size('herald_deliveries') / GREATEST(COUNT(*), 1))::bigint FROM herald_deliveries",
        )
        .await;

        self.check_stream(&mut r, produced).await;
        r
    }

    /// The stream holds every published event (after the drill, thanks
    /// to republish), each id once.
    async fn check_stream(&self, r: &mut Report, produced: &[Produced]) {
        let js = self.cluster.jetstream().await;
        // Right after the last partition heals the cluster may still be
        // electing a leader ("JetStream system temporarily unavailable"):
        // read the stream once it answers with a leader.
        crate::wait::until(
            "the stream answers, with a leader",
            Duration::from_secs(120),
            || async {
                js.get_stream("HERALD").await.is_ok_and(|s| {
                    s.cached_info()
                        .cluster
                        .as_ref()
                        .is_some_and(|c| c.leader.is_some())
                })
            },
        )
        .await;
        let total = match js.get_stream("HERALD").await {
            Ok(s) => s.cached_info().state.messages as usize,
            Err(_) => 0,
        };
        let msgs = crate::env::stream_messages_of(&js, total).await;
        let mut ids: HashMap<&str, usize> = HashMap::new();
        for m in &msgs {
            *ids.entry(m.msg_id.as_str()).or_default() += 1;
        }
        r.stream_duplicates = ids.values().filter(|c| **c > 1).count();
        r.stream_missing = produced
            .iter()
            .filter(|p| !ids.contains_key(p.id.to_string().as_str()))
            .count();
    }
}

/// `(event_id, workflow) → third column` of a query's rows.
async fn by_event_and_workflow(
    conn: &DatabaseConnection,
    sql: &str,
) -> HashMap<(uuid::Uuid, String), String> {
    rows(conn, sql)
        .await
        .into_iter()
        .filter_map(|row| {
            Some((
                (
                    row.try_get_by_index::<uuid::Uuid>(0).ok()?,
                    row.try_get_by_index::<String>(1).ok()?,
                ),
                row.try_get_by_index::<String>(2).ok()?,
            ))
        })
        .collect()
}

/// Copies of each email at the sink, by Message-ID.
type Copies<'a> = HashMap<String, Vec<&'a crate::smtp::Received>>;

/// Lost: every event × workflow × recipient sent (and at the sink) or
/// dead-lettered with a reason.
fn check_lost(
    r: &mut Report,
    produced: &[Produced],
    ledger: &HashMap<(uuid::Uuid, String), String>,
    dead: &HashMap<(uuid::Uuid, String), String>,
    copies: &Copies,
) {
    let mut expected: Vec<(&Produced, &str)> = Vec::new();
    for p in produced {
        expected.push((p, "notify"));
        if p.important {
            expected.push((p, "audit"));
        }
    }
    r.expected = expected.len();
    for (p, wf) in &expected {
        let key = (p.id, wf.to_string());
        let mid = format!("<{}.{wf}.0@soak.example>", p.id);
        let at_sink = copies.contains_key(&mid);
        match (ledger.get(&key), dead.get(&key)) {
            (Some(state), _) if state == "sent" && at_sink => r.sent += 1,
            (Some(state), _) if state == "sent" => r
                .lost
                .push(format!("{wf} {} recorded sent, never at the sink", p.id)),
            (_, Some(reason)) if !reason.trim().is_empty() => r.dead_lettered += 1,
            (l, d) => r.lost.push(format!(
                "{wf} {} (agg {} n {}): ledger {l:?}, dead letter {d:?}",
                p.id, p.agg, p.n
            )),
        }
    }
}

/// Duplicates: each copy after the first needs a cause.
fn check_duplicates(r: &mut Report, copies: &Copies, faults: &[Fault]) {
    for (mid, cs) in copies {
        for pair in cs.windows(2) {
            let (prev, next) = (pair[0], pair[1]);
            if !prev.replied {
                r.duplicates_uncertain += 1;
            } else if faults
                .iter()
                .any(|f| UNRECORDED_WINDOW.contains(&f.kind) && f.at >= prev.at && f.at <= next.at)
            {
                r.duplicates_unrecorded += 1;
            } else {
                r.duplicates_unexplained.push(format!(
                    "{mid}: a copy {:?} after one acknowledged, no fault between",
                    next.at.duration_since(prev.at)
                ));
            }
        }
    }
}

/// Order: per workflow and aggregate, the first copies arrive in the
/// order the events were produced.
fn check_order(r: &mut Report, produced: &[Produced], received: &[crate::smtp::Received]) {
    let by_id: HashMap<String, &Produced> =
        produced.iter().map(|p| (p.id.to_string(), p)).collect();
    let mut seen: HashSet<String> = HashSet::new();
    let mut last: HashMap<(String, usize), usize> = HashMap::new();
    for m in received {
        let mid = m.message_id();
        if !seen.insert(mid.clone()) {
            continue;
        }
        let inner = mid.trim_matches(['<', '>']);
        let mut parts = inner.splitn(3, '.');
        let (Some(id), Some(wf)) = (parts.next(), parts.next()) else {
            continue;
        };
        let Some(p) = by_id.get(id) else { continue };
        if let Some(prev) = last.insert((wf.to_string(), p.agg), p.n)
            && prev >= p.n
        {
            r.order_violations.push(format!(
                "{wf} aggregate {}: event {} emailed after event {prev}",
                p.agg, p.n
            ));
        }
    }
}

/// Deliveries resolved: sent, or dead-lettered (a ledger row, or a dead
/// letter for an event held as a whole).
pub(super) async fn resolved(conn: &DatabaseConnection) -> i64 {
    scalar(
        conn,
        "SELECT COUNT(*) FROM (SELECT event_id, workflow FROM herald_deliveries WHERE state IN ('sent', 'dead') \
         UNION SELECT event_id, workflow FROM herald_dead_letters WHERE discarded_at IS NULL) t",
    )
    .await
}

async fn rows(conn: &DatabaseConnection, sql: &str) -> Vec<sea_orm::QueryResult> {
    conn.query_all_raw(Statement::from_string(conn.get_database_backend(), sql))
        .await
        .expect("query")
}

async fn scalar(conn: &DatabaseConnection, sql: &str) -> i64 {
    rows(conn, sql)
        .await
        .first()
        .and_then(|r| r.try_get_by_index::<i64>(0).ok())
        .unwrap_or(-1)
}
