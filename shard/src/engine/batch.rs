//! A batch cached in the shard between RPCs: concatenation (Decode of several batches,
//! Prefill with a cached batch) and filtering (FilterBatch).

use super::request::RequestState;
use super::types::BatchSummary;
use crate::error::{Result, ShardError};
use std::collections::HashSet;

/// Requests that advance together, one forward per step.
#[derive(Debug)]
pub struct Batch {
    /// Batch id (the first batch's id after a concatenation, as in TGI).
    pub id: u64,
    /// Its requests, in order.
    pub requests: Vec<RequestState>,
}

impl Batch {
    /// What the router is told about this batch.
    pub fn summary(&self) -> BatchSummary {
        BatchSummary {
            id: self.id,
            request_ids: self.requests.iter().map(|r| r.id).collect(),
            size: self.requests.len() as u32,
            max_tokens: self.requests.iter().map(|r| r.capacity() as u32).sum(),
            current_tokens: self.requests.iter().map(|r| r.next_chunk as u32).sum(),
        }
    }

    /// Joins batches into one (keeps the first id); request ids must be unique.
    pub fn concatenate(batches: Vec<Batch>) -> Result<Batch> {
        let mut it = batches.into_iter();
        let mut first = it
            .next()
            .ok_or_else(|| ShardError::InvalidArgument("no batch to concatenate".into()))?;
        let mut seen: HashSet<u64> = first.requests.iter().map(|r| r.id).collect();
        for b in it {
            for r in b.requests {
                if !seen.insert(r.id) {
                    return Err(ShardError::invalid_request(
                        r.id,
                        "request id appears in two batches",
                    ));
                }
                first.requests.push(r);
            }
        }
        Ok(first)
    }

    /// Keeps only `keep` (in the batch's order); returns the removed requests. Every id in
    /// `keep` must be in the batch.
    pub fn filter(&mut self, keep: &[u64]) -> Result<Vec<RequestState>> {
        let present: HashSet<u64> = self.requests.iter().map(|r| r.id).collect();
        if let Some(missing) = keep.iter().find(|id| !present.contains(id)) {
            return Err(ShardError::InvalidArgument(format!(
                "request {missing} is not in batch {}",
                self.id
            )));
        }
        let keep: HashSet<u64> = keep.iter().copied().collect();
        let (kept, removed): (Vec<_>, Vec<_>) = std::mem::take(&mut self.requests)
            .into_iter()
            .partition(|r| keep.contains(&r.id));
        self.requests = kept;
        Ok(removed)
    }
}
