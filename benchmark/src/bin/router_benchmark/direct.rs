//! The shard measured directly over gRPC at the batch size the router reached, one run after
//! each HTTP round: both then see the same machine conditions (other load on a shared machine
//! drifts over minutes, which would otherwise show up as router overhead).

use text_generation_benchmark::decode::{self, Shards};
use text_generation_benchmark::error::BenchError;

/// Decode steps measured so far at one batch size.
pub struct Direct<'a> {
    shards: &'a Shards,
    /// Requests per batch.
    pub batch: u32,
    prompt_tokens: u32,
    max_new_tokens: u32,
    next_batch_id: u64,
    /// Decode step durations (ms) of the timed runs.
    pub steps_ms: Vec<f64>,
}

impl<'a> Direct<'a> {
    /// Prepares runs of `batch` requests with batch ids from `first_batch_id` (ids the router
    /// does not use, since the shard keys cached batches by id), after one short untimed run.
    pub async fn start(
        shards: &'a Shards,
        batch: u32,
        prompt_tokens: u32,
        max_new_tokens: u32,
        first_batch_id: u64,
    ) -> Result<Direct<'a>, BenchError> {
        let mut d = Direct {
            shards,
            batch,
            prompt_tokens,
            max_new_tokens,
            next_batch_id: first_batch_id,
            steps_ms: Vec::new(),
        };
        d.run(max_new_tokens.min(8)).await?;
        d.steps_ms.clear();
        Ok(d)
    }

    async fn run(&mut self, decode_length: u32) -> Result<(), BenchError> {
        let id = self.next_batch_id;
        self.next_batch_id += 1;
        let steps = decode::run_once(
            self.shards,
            id,
            self.batch,
            self.prompt_tokens,
            decode_length,
        )
        .await?
        .steps_ns;
        self.steps_ms
            .extend(steps.into_iter().map(|ns| ns as f64 / 1e6));
        Ok(())
    }

    /// One timed run of `max_new_tokens` tokens.
    pub async fn timed_run(&mut self) -> Result<(), BenchError> {
        self.run(self.max_new_tokens).await
    }
}
