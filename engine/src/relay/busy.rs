//! The aggregates of the relay's batches in flight, so that a claim leaves
//! out the aggregates another batch of this relay holds.
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::outbox::store::Claimed;

/// The rows (seqs) of the batches in flight that belong to an aggregate,
/// by batch: a claim leaves out the aggregates of the others' rows.
#[derive(Default)]
pub(super) struct Busy {
    next: AtomicU64,
    held: Mutex<HashMap<u64, Vec<i64>>>,
}

impl Busy {
    /// The seqs other batches hold now, sorted.
    pub(super) fn others(&self) -> Vec<i64> {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let mut seqs: Vec<i64> = held.values().flatten().copied().collect();
        seqs.sort_unstable();
        seqs
    }

    /// Register a batch's rows until the returned guard is dropped.
    pub(super) fn hold(&self, rows: &[Claimed]) -> BusyGuard<'_> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let seqs: Vec<i64> = rows
            .iter()
            .filter(|r| r.ordering_key.is_some())
            .map(|r| r.seq)
            .collect();
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.insert(id, seqs);
        BusyGuard { busy: self, id }
    }
}

pub(super) struct BusyGuard<'a> {
    busy: &'a Busy,
    id: u64,
}

impl Drop for BusyGuard<'_> {
    fn drop(&mut self) {
        let mut held = self.busy.held.lock().unwrap_or_else(|p| p.into_inner());
        held.remove(&self.id);
    }
}
