//! Engine-side request and result types (the gRPC layer converts to and from the wire).

use super::stopping::{FinishReason, StoppingParams};
use crate::sampling::SamplingParams;

/// A request entering the shard with a Prefill.
#[derive(Debug, Clone)]
pub struct NewRequest {
    /// Router-assigned id.
    pub id: u64,
    /// Prompt text.
    pub inputs: String,
    /// Keep only the last `truncate` prompt tokens (0: no truncation).
    pub truncate: u32,
    /// Let the tokenizer add BOS etc.
    pub add_special_tokens: bool,
    /// Sampling parameters.
    pub sampling: SamplingParams,
    /// Stopping parameters.
    pub stopping: StoppingParams,
    /// Return prompt token logprobs.
    pub prefill_logprobs: bool,
    /// Return the n most likely tokens with each generated token.
    pub top_n_tokens: u32,
    /// KV blocks assigned by the router (empty: the shard allocates).
    pub blocks: Vec<u32>,
    /// KV slot of every position (empty: derived from `blocks`).
    pub slots: Vec<u32>,
    /// Prompt tokens already in the KV cache.
    pub cache_len: u32,
    /// Prompt tokens to compute in the first forward (chunked prefill).
    pub chunk_len: Option<u32>,
}

/// A batch entering with a Prefill.
#[derive(Debug, Clone)]
pub struct NewBatch {
    /// Router-assigned batch id.
    pub id: u64,
    /// Its requests.
    pub requests: Vec<NewRequest>,
}

/// What the router learns about a batch kept in the shard (TGI's `CachedBatch`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchSummary {
    /// Batch id.
    pub id: u64,
    /// Ids of the requests still in it.
    pub request_ids: Vec<u64>,
    /// Number of requests.
    pub size: u32,
    /// KV token capacity reserved for the batch.
    pub max_tokens: u32,
    /// Tokens the next forward will process.
    pub current_tokens: u32,
}

/// Ids with their logprobs, texts and specialness (TGI's `Tokens`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TokenList {
    /// Token ids.
    pub ids: Vec<u32>,
    /// Natural-log probabilities (NaN where unknown).
    pub logprobs: Vec<f32>,
    /// Each token decoded on its own.
    pub texts: Vec<String>,
    /// Whether each is a special token.
    pub is_special: Vec<bool>,
}

/// The final text of a finished request.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratedText {
    /// All generated ids decoded with special tokens skipped.
    pub text: String,
    /// Number of generated tokens.
    pub generated_tokens: u32,
    /// Why it ended.
    pub finish_reason: FinishReason,
    /// The seed, when the request sampled.
    pub seed: Option<u64>,
}

/// One request's output from one step.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// Request id.
    pub request_id: u64,
    /// Prompt tokens with logprobs, on the first generation when asked for.
    pub prefill_tokens: Option<TokenList>,
    /// The token(s) generated this step.
    pub tokens: TokenList,
    /// Set when the request finished.
    pub generated_text: Option<GeneratedText>,
    /// Top-n alternatives for each generated token.
    pub top_tokens: Vec<TokenList>,
}

/// Result of a Prefill or Decode.
#[derive(Debug, Clone)]
pub struct StepOutput {
    /// Generations of the requests this rank reports.
    pub generations: Vec<Generation>,
    /// The batch kept for the next step, absent when every request finished.
    pub batch: Option<BatchSummary>,
    /// Model forward time: from the call's start until the logits were read (for a forward
    /// run ahead, only the part this call waited for).
    pub forward_ns: u64,
    /// Sampling + detokenization time.
    pub decode_ns: u64,
    /// Whole call.
    pub total_ns: u64,
    /// Time spent concatenating batches, when any were.
    pub concat_ns: Option<u64>,
}

/// Warmup parameters.
#[derive(Debug, Clone)]
pub struct WarmupParams {
    /// The batch to run.
    pub batch: NewBatch,
    /// Router's max input tokens, if set.
    pub max_input_tokens: Option<u32>,
    /// Largest prefill the router will send.
    pub max_prefill_tokens: u32,
    /// Router's max total tokens, if set.
    pub max_total_tokens: Option<u32>,
}

/// What Warmup reports back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WarmupResult {
    /// KV capacity in tokens (`num_blocks * BLOCK_SIZE`).
    pub max_supported_total_tokens: u32,
    /// Max input tokens per request.
    pub max_input_tokens: u32,
    /// Max input + generated tokens per request.
    pub max_total_tokens: u32,
}
