//! Running a batch's next forward ahead of the Decode that asks for it. After a step whose
//! batch stays cached, the engine queues that batch's next forward on the device before it
//! answers, so the GPU computes it while the answer travels to the router and the router's
//! next Decode travels back: per step the device waits for the host's finishing work alone,
//! not for the round trip as well.
//!
//! The forward is used only when the Decode names exactly that batch and its requests are
//! unchanged (same ids, same computed and next lengths). Any other RPC's forward simply
//! queues behind it: the K/V it wrote sit at positions the real step rewrites before
//! attention reads them, or in blocks a later owner writes before reading (one stream keeps
//! that order), so a discarded forward costs device time and nothing else.

use super::batch::Batch;
use super::request::RequestState;
use super::step::Launched;
use super::Engine;
use std::time::Instant;

/// A launched forward and the batch state it was computed for.
pub(super) struct Ahead {
    batch_id: u64,
    key: Vec<RequestKey>,
    launched: Launched,
    at: Instant,
}

/// What a request's next forward input is made of (besides ids the request keeps).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RequestKey {
    id: u64,
    computed: usize,
    next_chunk: usize,
    len: usize,
}

fn key(requests: &[RequestState]) -> Vec<RequestKey> {
    requests
        .iter()
        .map(|r| RequestKey {
            id: r.id,
            computed: r.computed,
            next_chunk: r.next_chunk,
            len: r.all_ids.len(),
        })
        .collect()
}

/// How often a Decode found its forward already launched.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunAheadCounts {
    /// Forwards launched ahead.
    pub launched: u64,
    /// Of those, used by the Decode that followed.
    pub used: u64,
}

impl Engine {
    /// Queues `batch`'s next forward if running ahead is on (replacing any earlier one). A
    /// failed launch is left for the Decode to run again and report.
    pub(super) fn run_ahead(&mut self, batch: &Batch) {
        self.ahead = None;
        if !self.config.run_ahead || batch.requests.is_empty() {
            return;
        }
        match self.launch(&batch.requests) {
            Ok(launched) => {
                self.run_ahead_counts.launched += 1;
                self.ahead = Some(Ahead {
                    batch_id: batch.id,
                    key: key(&batch.requests),
                    launched,
                    at: Instant::now(),
                });
            }
            Err(e) => tracing::debug!(batch = batch.id, error = %e, "no forward run ahead"),
        }
    }

    /// The forward run ahead for a Decode of `ids` that joined into `batch`, if it is still
    /// that batch's next forward; any other is dropped.
    pub(super) fn take_ahead(&mut self, ids: &[u64], batch: &Batch) -> Option<Launched> {
        let ahead = self.ahead.take()?;
        if ids != [ahead.batch_id] || ahead.key != key(&batch.requests) {
            tracing::debug!(batch = ahead.batch_id, "forward run ahead discarded");
            return None;
        }
        self.run_ahead_counts.used += 1;
        tracing::debug!(
            batch = ahead.batch_id,
            ahead_us = ahead.at.elapsed().as_micros() as u64,
            "forward run ahead used"
        );
        Some(ahead.launched)
    }

    /// Drops the forward run ahead for batch `id` (every one for `None`).
    pub(super) fn drop_ahead(&mut self, id: Option<u64>) {
        if id.is_none() || self.ahead.as_ref().map(|a| a.batch_id) == id {
            self.ahead = None;
        }
    }

    /// Forwards run ahead so far, and how many of them were used.
    pub fn run_ahead_counts(&self) -> RunAheadCounts {
        self.run_ahead_counts
    }
}
