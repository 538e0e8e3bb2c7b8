//! `Report`: what the checker found, the invariants it breaks
//! (`violations`), and the run's summary.
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// What the checker found.
#[derive(Debug, Default)]
pub struct Report {
    pub seed: u64,
    pub events: usize,
    /// Expected deliveries: event × workflow × recipient.
    pub expected: usize,
    pub sent: usize,
    pub dead_lettered: usize,
    pub emails: usize,
    pub lost: Vec<String>,
    pub duplicates_uncertain: usize,
    pub duplicates_unrecorded: usize,
    pub duplicates_unexplained: Vec<String>,
    pub order_violations: Vec<String>,
    pub stuck_outbox: i64,
    pub unfinished_deliveries: i64,
    pub stream_missing: usize,
    pub stream_duplicates: usize,
    pub faults: BTreeMap<&'static str, usize>,
    /// Bytes on disk per row, indexes included (for docs/capacity.md).
    pub outbox_bytes_per_row: i64,
    pub ledger_bytes_per_row: i64,
    pub produce_secs: f64,
    pub total_secs: f64,
    pub load: String,
    /// Processes that exited by themselves, or not cleanly on SIGTERM.
    pub exits: Vec<String>,
    /// Set when the run did not settle before its deadline.
    pub unsettled: String,
}

impl Report {
    /// Each broken invariant, one line each; empty when the run passed.
    pub fn violations(&self) -> Vec<String> {
        let mut v = Vec::new();
        if !self.unsettled.is_empty() {
            v.push(self.unsettled.clone());
        }
        let few = |xs: &[String]| xs.iter().take(10).cloned().collect::<Vec<_>>().join("; ");
        v.extend(self.exits.iter().cloned());
        if !self.lost.is_empty() {
            v.push(format!("lost {}: {}", self.lost.len(), few(&self.lost)));
        }
        if !self.duplicates_unexplained.is_empty() {
            v.push(format!(
                "duplicates outside the uncertain and accepted-but-unrecorded windows {}: {}",
                self.duplicates_unexplained.len(),
                few(&self.duplicates_unexplained)
            ));
        }
        if !self.order_violations.is_empty() {
            v.push(format!(
                "per-aggregate order violations {}: {}",
                self.order_violations.len(),
                few(&self.order_violations)
            ));
        }
        if self.stuck_outbox != 0 {
            v.push(format!("outbox rows stuck: {}", self.stuck_outbox));
        }
        if self.unfinished_deliveries != 0 {
            v.push(format!(
                "deliveries left unfinished (sending, retrying, uncertain): {}",
                self.unfinished_deliveries
            ));
        }
        if self.stream_missing != 0 {
            v.push(format!(
                "published events missing from the stream: {}",
                self.stream_missing
            ));
        }
        v
    }

    pub fn summary(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "seed {} · {} events · {} deliveries expected: {} sent, {} dead-lettered · {} emails at the sink",
            self.seed, self.events, self.expected, self.sent, self.dead_lettered, self.emails
        );
        let _ = writeln!(
            s,
            "lost {} · duplicates {} (uncertain {}, accepted-but-unrecorded {}, unexplained {}) · order violations {} · stuck outbox {} · unfinished deliveries {} · stream: missing {}, duplicate ids {}",
            self.lost.len(),
            self.duplicates_uncertain
                + self.duplicates_unrecorded
                + self.duplicates_unexplained.len(),
            self.duplicates_uncertain,
            self.duplicates_unrecorded,
            self.duplicates_unexplained.len(),
            self.order_violations.len(),
            self.stuck_outbox,
            self.unfinished_deliveries,
            self.stream_missing,
            self.stream_duplicates
        );
        let faults: Vec<String> = self
            .faults
            .iter()
            .map(|(k, n)| format!("{k} ×{n}"))
            .collect();
        let _ = writeln!(s, "faults: {}", faults.join(", "));
        let _ = writeln!(
            s,
            "on disk: outbox {} B/row, ledger {} B/row (indexes included)",
            self.outbox_bytes_per_row, self.ledger_bytes_per_row
        );
        let _ = writeln!(
            s,
            "produced in {:.1} s, all settled after {:.1} s; load average at the end: {}",
            self.produce_secs, self.total_secs, self.load
        );
        s
    }
}
