//! CUDA graphs for decode steps at TGI's `CUDA_GRAPHS` batch sizes: a decode forward's few
//! hundred launches are recorded once per (batch bucket, slot-table bucket) and replayed with
//! one launch, so small batches are bound neither by the host queueing kernels nor by the
//! gaps between them.
//!
//! A captured forward reads every per-step input from one static u32 buffer (embedding ids,
//! positions, KV slots, each sequence's slot table), which a step fills with one upload; it
//! writes its logits into a static output; and the cache's attention plan is pinned to those
//! buffers, so launch shapes depend on the buckets alone. Batches are padded up to the bucket
//! with rows that write slot 0 and attend to it alone (block 0 is never handed to a request).
//! Graphs are captured on first use of a shape (the step that captures also runs eagerly and
//! returns its own logits) and dropped with the KV cache they point into.

use super::graph_inputs::{table_bucket, upload, Packing};
use crate::error::Result;
use crate::kernels::{paged_attention_counters, paged_attention_supported, PagedAttentionArgs};
use crate::kv::{AttentionMetadata, CudaPagedCache, PagedAttention};
use crate::models::{DecoderModel, ForwardInput, ForwardTensors};
use candle_core::cuda_backend::cudarc::driver::sys::{
    CUgraphInstantiate_flags, CUstreamCaptureMode,
};
use candle_core::cuda_backend::cudarc::driver::CudaGraph;
use candle_core::cuda_backend::WrapErr;
use candle_core::{DType, Tensor};
use std::collections::{HashMap, HashSet};

/// Most graphs kept; shapes beyond run eagerly.
const MAX_GRAPHS: usize = 48;

/// The decode graphs of one KV cache.
pub struct DecodeGraphs {
    /// Batch buckets, ascending.
    batch_sizes: Vec<usize>,
    /// Logits `[bucket, vocab]` f32, shared by the graphs of one batch bucket.
    outputs: HashMap<usize, Tensor>,
    graphs: HashMap<(usize, usize), Captured>,
    /// Shapes whose capture failed: they run eagerly from then on.
    failed: HashSet<(usize, usize)>,
}

struct Captured {
    graph: Graph,
    /// The packed inputs the graph reads (see [`Packing`]).
    inputs: Tensor,
    /// Attention's split counters, which the graph reads and resets on every replay; held
    /// here so that they live as long as the graph.
    _split_counters: Tensor,
}

/// `CudaGraph` holds raw driver handles and so is not `Send`; the engine that owns these
/// graphs is used by one thread at a time (behind the service's mutex), which is all the
/// driver asks of a graph.
struct Graph(CudaGraph);
// SAFETY: see above; the graph is only launched through `&mut DecodeGraphs`.
unsafe impl Send for Graph {}

impl DecodeGraphs {
    /// Graphs for the batch buckets `sizes` (TGI's `CUDA_GRAPHS`); `None` when there are none.
    pub fn new(sizes: &[usize]) -> Option<Self> {
        let mut batch_sizes: Vec<usize> = sizes.iter().copied().filter(|&b| b > 0).collect();
        batch_sizes.sort_unstable();
        batch_sizes.dedup();
        (!batch_sizes.is_empty()).then(|| Self {
            batch_sizes,
            outputs: HashMap::new(),
            graphs: HashMap::new(),
            failed: HashSet::new(),
        })
    }

    /// Graphs captured so far.
    pub fn captured(&self) -> usize {
        self.graphs.len()
    }

    /// Logits `[T, vocab]` of `input` through a graph, or `None` when the forward is not a
    /// decode step of a graph's shape (the caller then runs it eagerly).
    pub fn forward(
        &mut self,
        model: &DecoderModel,
        kv: &mut dyn PagedAttention,
        input: &ForwardInput,
    ) -> Result<Option<Tensor>> {
        let n = input.input_ids.len();
        let meta = &input.meta;
        // Decode shape: one token per sequence, in sequence order, every row sampled.
        let decode = n > 0
            && meta.seq_slots.len() == n
            && meta.token_seq.iter().copied().eq(0..n as u32)
            && input.logit_rows.iter().copied().eq(0..n as u32);
        let Some(&batch) = self.batch_sizes.iter().find(|&&b| b >= n) else {
            return Ok(None);
        };
        let Some(cache) = kv.as_cuda_mut() else {
            return Ok(None);
        };
        if !decode || !paged_attention_supported(model.config().head_dim, model.dtype()) {
            return Ok(None);
        }
        model.check(input)?;
        meta.validate(cache.num_slots())?;
        let longest = meta.seq_slots.iter().map(Vec::len).max().unwrap_or(1);
        let packing = Packing {
            batch,
            table: table_bucket(longest),
        };
        let key = (batch, packing.table);
        if self.failed.contains(&key)
            || (!self.graphs.contains_key(&key) && self.graphs.len() >= MAX_GRAPHS)
        {
            return Ok(None);
        }
        let host = packing.fill(&model.embedding_ids(&input.input_ids), meta)?;
        let out = self.output(batch, model)?;
        if let Some(c) = self.graphs.get(&key) {
            upload(&c.inputs, host)?;
            c.graph.0.launch().w()?;
            return Ok(Some(out.narrow(0, 0, n)?));
        }
        let inputs = Tensor::zeros(packing.len(), DType::U32, model.device())?;
        upload(&inputs, host)?;
        let counters = paged_attention_counters(batch, model.config().num_heads, model.device())?;
        cache.pin_plan(
            inputs.narrow(0, 2 * batch, batch)?,
            attention_args(&inputs, packing, meta, &counters)?,
        );
        let captured = capture(model, cache, &inputs, packing, meta, &out);
        cache.unpin_plan();
        match captured? {
            Some(graph) => {
                tracing::info!(
                    batch,
                    table = packing.table,
                    graphs = self.graphs.len() + 1,
                    "captured a CUDA graph for decode"
                );
                self.graphs.insert(
                    key,
                    Captured {
                        graph,
                        inputs,
                        _split_counters: counters,
                    },
                );
            }
            None => {
                self.failed.insert(key);
            }
        }
        Ok(Some(out.narrow(0, 0, n)?))
    }

    fn output(&mut self, batch: usize, model: &DecoderModel) -> Result<Tensor> {
        if let Some(t) = self.outputs.get(&batch) {
            return Ok(t.clone());
        }
        let t = Tensor::zeros(
            (batch, model.config().vocab_size),
            DType::F32,
            model.device(),
        )?;
        self.outputs.insert(batch, t.clone());
        Ok(t)
    }
}

/// The pinned attention plan: views of the packed buffer, and the graph's split counters.
fn attention_args(
    inputs: &Tensor,
    p: Packing,
    meta: &AttentionMetadata,
    counters: &Tensor,
) -> Result<PagedAttentionArgs> {
    let b = p.batch;
    let window = meta.sliding_window.unwrap_or(0);
    Ok(PagedAttentionArgs {
        token_seq: inputs.narrow(0, 3 * b, b)?,
        token_pos: inputs.narrow(0, b, b)?,
        seq_off: inputs.narrow(0, 4 * b, b)?,
        slot_table: inputs.narrow(0, 5 * b, b * p.table)?,
        max_keys: if window > 0 {
            p.table.min(window)
        } else {
            p.table
        },
        window,
        scale: meta.softmax_scale,
        split_counters: counters.clone(),
    })
}

/// Runs the step eagerly through the pinned plan (its logits land in `out`; the run also
/// fills candle's parameter cache and loads every kernel), then records the same forward
/// (without programmatic dependent launch, which a graph does not need).
/// `Ok(None)` when recording failed: the step's result stands, the shape stays eager.
fn capture(
    model: &DecoderModel,
    cache: &mut CudaPagedCache,
    inputs: &Tensor,
    p: Packing,
    meta: &AttentionMetadata,
    out: &Tensor,
) -> Result<Option<Graph>> {
    let b = p.batch;
    let tensors = ForwardTensors {
        ids: inputs.narrow(0, 0, b)?,
        positions: inputs.narrow(0, b, b)?,
        logit_rows: None,
    };
    // The pinned plan ignores the metadata's contents; only its token count is checked.
    let padded = AttentionMetadata {
        token_slots: vec![0; b],
        token_seq: (0..b as u32).collect(),
        token_pos: vec![0; b],
        seq_slots: Vec::new(),
        sliding_window: meta.sliding_window,
        softmax_scale: meta.softmax_scale,
    };
    let dev = model.device().as_cuda_device()?.clone();
    // Small host-to-device uploads (layout parameters) are served from a cache that the eager
    // run fills, since a capture may not copy from the host.
    let _cache_uploads = dev.enable_cuda_graph_htod_cache();
    let run = |cache: &mut CudaPagedCache| -> Result<()> {
        let logits = model.forward_tensors(&tensors, &padded, cache, false)?;
        out.slice_set(&logits, 0, 0)?;
        Ok(())
    };
    run(cache)?;
    let stream = dev.cuda_stream();
    stream
        .begin_capture(CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_RELAXED)
        .w()?;
    // Every tensor of the recorded forward is dropped inside the capture, so each of its
    // allocations is a graph node freed within the graph and the graph can be relaunched.
    let recorded = crate::kernels::without_pdl(|| run(cache));
    let ended = stream.end_capture(CUgraphInstantiate_flags(0));
    // A failed capture leaves the driver errors of its frees recorded on the context.
    let leftover = stream.context().check_err();
    match (recorded, ended) {
        (Ok(()), Ok(Some(graph))) => {
            graph.upload().w()?;
            Ok(Some(Graph(graph)))
        }
        (recorded, ended) => {
            tracing::warn!(
                batch = b,
                table = p.table,
                recorded = ?recorded.err(),
                ended = ?ended.err(),
                leftover = ?leftover.err(),
                "CUDA graph capture failed; this decode shape runs without a graph"
            );
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_drop_zero_and_sort() {
        assert!(DecodeGraphs::new(&[0]).is_none());
        assert!(DecodeGraphs::new(&[]).is_none());
        let g = DecodeGraphs::new(&[8, 1, 0, 4, 4]).map(|g| g.batch_sizes);
        assert_eq!(g, Some(vec![1, 4, 8]));
    }
}
