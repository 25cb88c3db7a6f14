//! Wire (proto v3) <-> engine type conversions. The only place that knows both.

use crate::engine::stopping::{FinishReason, StoppingParams};
use crate::engine::{BatchSummary, Generation, NewBatch, NewRequest, StepOutput, TokenList};
use crate::error::{Result, ShardError};
use crate::sampling::SamplingParams;
use text_generation_proto::v3 as pb;

/// A wire request as an engine request.
pub fn request(r: pb::Request) -> Result<NewRequest> {
    let p = r.parameters.unwrap_or_default();
    let s = r.stopping_parameters.unwrap_or_default();
    if !p.grammar.is_empty() {
        return Err(ShardError::invalid_request(
            r.id,
            "grammar-constrained generation is not supported by this shard",
        ));
    }
    // `inputs` is the stringified chunks (images inlined as markdown); a text-only model
    // reads that. Fall back to the text chunks when a client only filled `input_chunks`.
    let inputs = if r.inputs.is_empty() {
        r.input_chunks
            .map(|i| {
                i.chunks
                    .into_iter()
                    .filter_map(|c| match c.chunk {
                        Some(pb::input_chunk::Chunk::Text(t)) => Some(t),
                        _ => None,
                    })
                    .collect::<String>()
            })
            .unwrap_or_default()
    } else {
        r.inputs
    };
    Ok(NewRequest {
        id: r.id,
        inputs,
        truncate: r.truncate,
        add_special_tokens: r.add_special_tokens,
        sampling: SamplingParams {
            temperature: p.temperature,
            top_k: p.top_k,
            top_p: p.top_p,
            typical_p: p.typical_p,
            do_sample: p.do_sample,
            seed: p.seed,
            repetition_penalty: p.repetition_penalty,
            frequency_penalty: p.frequency_penalty,
            watermark: p.watermark,
        },
        stopping: StoppingParams {
            max_new_tokens: s.max_new_tokens,
            stop_sequences: s.stop_sequences,
            ignore_eos_token: s.ignore_eos_token,
        },
        prefill_logprobs: r.prefill_logprobs,
        top_n_tokens: r.top_n_tokens,
        blocks: r.blocks,
        slots: r.slots,
        cache_len: r.cache_len,
        chunk_len: r.chunk_len,
    })
}

/// A wire batch as an engine batch.
pub fn batch(b: pb::Batch) -> Result<NewBatch> {
    Ok(NewBatch {
        id: b.id,
        requests: b
            .requests
            .into_iter()
            .map(request)
            .collect::<Result<Vec<_>>>()?,
    })
}

/// Engine batch summary as a `CachedBatch`.
pub fn cached_batch(s: BatchSummary) -> pb::CachedBatch {
    pb::CachedBatch {
        id: s.id,
        request_ids: s.request_ids,
        size: s.size,
        max_tokens: s.max_tokens,
        current_tokens: s.current_tokens,
    }
}

fn tokens(t: TokenList) -> pb::Tokens {
    pb::Tokens {
        ids: t.ids,
        logprobs: t.logprobs,
        texts: t.texts,
        is_special: t.is_special,
    }
}

fn finish_reason(r: FinishReason) -> pb::FinishReason {
    match r {
        FinishReason::Length => pb::FinishReason::Length,
        FinishReason::EosToken => pb::FinishReason::EosToken,
        FinishReason::StopSequence => pb::FinishReason::StopSequence,
    }
}

/// Engine generation on the wire.
pub fn generation(g: Generation) -> pb::Generation {
    pb::Generation {
        request_id: g.request_id,
        prefill_tokens: g.prefill_tokens.map(tokens),
        tokens: Some(tokens(g.tokens)),
        generated_text: g.generated_text.map(|t| pb::GeneratedText {
            text: t.text,
            generated_tokens: t.generated_tokens,
            finish_reason: finish_reason(t.finish_reason) as i32,
            seed: t.seed,
        }),
        top_tokens: g.top_tokens.into_iter().map(tokens).collect(),
    }
}

/// The parts of a Prefill/Decode response.
pub struct StepParts {
    /// Generations.
    pub generations: Vec<pb::Generation>,
    /// Cached batch.
    pub batch: Option<pb::CachedBatch>,
    /// Timings.
    pub forward_ns: u64,
    /// Timings.
    pub decode_ns: u64,
    /// Timings.
    pub total_ns: u64,
    /// Timings.
    pub concat_ns: Option<u64>,
}

/// Splits a step result into wire parts.
pub fn step(o: StepOutput) -> StepParts {
    StepParts {
        generations: o.generations.into_iter().map(generation).collect(),
        batch: o.batch.map(cached_batch),
        forward_ns: o.forward_ns,
        decode_ns: o.decode_ns,
        total_ns: o.total_ns,
        concat_ns: o.concat_ns,
    }
}
