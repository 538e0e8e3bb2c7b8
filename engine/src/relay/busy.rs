//! The aggregates of the relay's batches in flight, so that a claim leaves
//! out the aggregates another batch of this relay holds.
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::outbox::store::Claimed;

/// The aggregates of the batches in flight, by batch: a claim leaves out
/// the others' aggregates.
#[derive(Default)]
pub(super) struct Busy {
    next: AtomicU64,
    held: Mutex<HashMap<u64, Vec<String>>>,
}

impl Busy {
    /// The aggregates other batches hold now.
    pub(super) fn others(&self) -> Vec<String> {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.values().flatten().cloned().collect()
    }

    /// Register a batch's aggregates until the returned guard is dropped.
    pub(super) fn hold(&self, rows: &[Claimed]) -> BusyGuard<'_> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let mut keys: Vec<String> = rows.iter().filter_map(|r| r.ordering_key.clone()).collect();
        keys.sort_unstable();
        keys.dedup();
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.insert(id, keys);
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
