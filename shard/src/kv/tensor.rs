//! The paged KV cache as candle tensors on the model's device (CUDA or CPU), with attention
//! built from candle ops only: slot writes in place, K/V gathered through each sequence's slots.
//!
//! Layout per layer: `[num_blocks * BLOCK_SIZE, kv_heads, head_dim]` in the model dtype, like
//! [`super::CpuPagedCache`]. The host-side plan of a forward (device index tensors, masks,
//! grouping of queries) is built on the first layer and reused by the others.

use super::{AttentionMetadata, ForwardKey, LayerOrder, PagedAttention, BLOCK_SIZE};
use crate::error::{Result, ShardError};
use candle_core::{DType, Device, Tensor};

/// Most f32 attention scores one piece materialises (128 MiB); larger work is split.
const SCORE_BUDGET: usize = 1 << 25;
/// Slot writes with at most this many contiguous runs use one copy per run.
const MAX_COPY_RUNS: usize = 8;
/// Added to the scores of masked keys; finite so masked rows never produce NaN.
const MASKED: f64 = -1e30;

/// Paged KV cache held in device tensors; attention from candle tensor ops.
#[derive(Debug)]
pub struct TensorPagedCache {
    keys: Vec<Tensor>,
    values: Vec<Tensor>,
    num_blocks: usize,
    kv_heads: usize,
    head_dim: usize,
    dtype: DType,
    device: Device,
    score_budget: usize,
    max_copy_runs: usize,
    plan: Option<Plan>,
    order: LayerOrder,
}

/// Everything about one forward that does not depend on the layer.
#[derive(Debug)]
struct Plan {
    key: ForwardKey,
    write: SlotWrite,
    pieces: Vec<Piece>,
    /// Puts the concatenated piece outputs back in token order; `None` when already in order.
    unpermute: Option<Tensor>,
}

/// How the new tokens' K/V reach their slots.
#[derive(Debug)]
enum SlotWrite {
    /// `(first token, tokens, first slot)` runs, each one contiguous copy (`slice_set`).
    Runs(Vec<(usize, usize, usize)>),
    /// `[T, kv_heads, head_dim]` u32 slot of every element, for one `scatter_set`.
    Scatter(Tensor),
}

/// Which rows of `q` a piece answers.
#[derive(Debug)]
enum Rows {
    Range(usize, usize),
    Index(Tensor),
}

/// `seqs` sequences × `queries` query tokens against `keys` gathered keys each.
#[derive(Debug)]
struct Piece {
    rows: Rows,
    /// `[seqs * keys]` u32 slots to gather.
    gather: Tensor,
    /// `[seqs, 1, queries, keys]` f32, 0 where a query may attend, `MASKED` elsewhere.
    mask: Tensor,
    /// `[seqs * queries, 2]` u32: first and last key each query may attend to (for the fused
    /// softmax kernel).
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    bounds: Tensor,
    seqs: usize,
    queries: usize,
    keys: usize,
}

impl TensorPagedCache {
    /// Bytes one token takes in the cache over all layers.
    pub fn bytes_per_token(layers: usize, kv_heads: usize, head_dim: usize, dtype: DType) -> usize {
        2 * layers * kv_heads * head_dim * dtype.size_in_bytes()
    }

    /// A zeroed cache of `num_blocks` blocks per layer in `dtype` on `device`.
    pub fn new(
        layers: usize,
        num_blocks: usize,
        kv_heads: usize,
        head_dim: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let shape = (num_blocks * BLOCK_SIZE, kv_heads, head_dim);
        let zeros = || Tensor::zeros(shape, dtype, device);
        Ok(Self {
            keys: (0..layers)
                .map(|_| zeros())
                .collect::<candle_core::Result<_>>()?,
            values: (0..layers)
                .map(|_| zeros())
                .collect::<candle_core::Result<_>>()?,
            num_blocks,
            kv_heads,
            head_dim,
            dtype,
            device: device.clone(),
            score_budget: SCORE_BUDGET,
            max_copy_runs: MAX_COPY_RUNS,
            plan: None,
            order: LayerOrder::default(),
        })
    }

    fn check_shapes(&self, layer: usize, q: &Tensor, k: &Tensor, v: &Tensor) -> Result<usize> {
        let (t, heads, d) = q.dims3()?;
        let kvh = self.kv_heads;
        let shapes_ok = d == self.head_dim
            && heads % kvh == 0
            && k.dims3()? == (t, kvh, d)
            && v.dims3()? == (t, kvh, d);
        if !shapes_ok {
            return Err(ShardError::InvalidArgument(format!(
                "attention shapes q {:?} k {:?} v {:?} do not match the cache ({kvh} kv heads, head dim {d})",
                q.dims(),
                k.dims(),
                v.dims(),
                d = self.head_dim
            )));
        }
        if layer >= self.keys.len() {
            return Err(ShardError::InvalidArgument(format!(
                "layer {layer} out of range ({} layers)",
                self.keys.len()
            )));
        }
        Ok(heads)
    }

    /// Reuses the plan within a forward (layers called in increasing order), rebuilds otherwise.
    fn plan_for(&mut self, layer: usize, heads: usize, meta: &AttentionMetadata) -> Result<()> {
        let reusable = self.order.continues(layer)
            && self
                .plan
                .as_ref()
                .is_some_and(|p| p.key.matches(meta, heads));
        if !reusable {
            self.plan = None;
            self.plan = Some(self.build_plan(heads, meta)?);
        }
        Ok(())
    }

    fn build_plan(&self, heads: usize, meta: &AttentionMetadata) -> Result<Plan> {
        let t = meta.num_tokens();
        meta.validate(self.num_blocks * BLOCK_SIZE)?;
        // Tokens of each sequence, in order of appearance.
        let mut by_seq: Vec<Vec<usize>> = vec![Vec::new(); meta.seq_slots.len()];
        for (i, &s) in meta.token_seq.iter().enumerate() {
            by_seq[s as usize].push(i);
        }
        let pos = |i: usize| meta.token_pos[i] as usize;
        let lo_of = |i: usize| meta.window_start(pos(i));
        let mut pieces = Vec::new();
        let mut order: Vec<usize> = Vec::with_capacity(t);

        // Single-token sequences (decode) are batched, padded to the longest key range.
        let singles: Vec<(usize, usize)> = by_seq
            .iter()
            .enumerate()
            .filter(|(_, toks)| toks.len() == 1)
            .map(|(s, toks)| (s, toks[0]))
            .collect();
        let mut rest = &singles[..];
        while !rest.is_empty() {
            let mut n = 0;
            let mut keys = 0;
            while let Some(&(_, i)) = rest.get(n) {
                let k = keys.max(pos(i) + 1 - lo_of(i));
                if n > 0 && (n + 1) * k * heads > self.score_budget {
                    break;
                }
                (n, keys) = (n + 1, k);
            }
            let (batch, tail) = rest.split_at(n);
            rest = tail;
            let mut gather = Vec::with_capacity(n * keys);
            let (lo_rel, mut hi_rel) = (vec![0u32; n], Vec::with_capacity(n));
            for &(s, i) in batch {
                let range = &meta.seq_slots[s][lo_of(i)..=pos(i)];
                gather.extend_from_slice(range);
                // Padding repeats a valid slot; the mask hides it.
                gather.extend(std::iter::repeat_n(range[0], keys - range.len()));
                hi_rel.push(range.len() as u32 - 1);
                order.push(i);
            }
            let rows: Vec<u32> = batch.iter().map(|&(_, i)| i as u32).collect();
            pieces.push(self.piece(&rows, &gather, &lo_rel, &hi_rel, n)?);
        }

        // Multi-token sequences (prefill chunks): one piece per run of queries.
        for (s, toks) in by_seq.iter().enumerate().filter(|(_, t)| t.len() > 1) {
            let slots = &meta.seq_slots[s];
            let rows_cap = (self.score_budget / (heads * slots.len())).max(1);
            for chunk in toks.chunks(rows_cap) {
                let lo = chunk.iter().map(|&i| lo_of(i)).min().unwrap_or(0);
                let hi = chunk.iter().map(|&i| pos(i)).max().unwrap_or(0);
                let lo_rel: Vec<u32> = chunk.iter().map(|&i| (lo_of(i) - lo) as u32).collect();
                let hi_rel: Vec<u32> = chunk.iter().map(|&i| (pos(i) - lo) as u32).collect();
                let rows: Vec<u32> = chunk.iter().map(|&i| i as u32).collect();
                pieces.push(self.piece(&rows, &slots[lo..=hi], &lo_rel, &hi_rel, 1)?);
                order.extend_from_slice(chunk);
            }
        }

        let unpermute = if order.iter().enumerate().all(|(j, &i)| i == j) {
            None
        } else {
            let mut inverse = vec![0u32; t];
            for (j, &i) in order.iter().enumerate() {
                inverse[i] = j as u32;
            }
            Some(Tensor::from_vec(inverse, t, &self.device)?)
        };
        Ok(Plan {
            key: ForwardKey::of(meta, heads),
            write: self.slot_write(&meta.token_slots)?,
            pieces,
            unpermute,
        })
    }

    /// Contiguous copies when the new slots form few runs (typical prefill), else one scatter.
    fn slot_write(&self, slots: &[u32]) -> Result<SlotWrite> {
        let mut runs: Vec<(usize, usize, usize)> = Vec::new();
        for (i, &s) in slots.iter().enumerate() {
            match runs.last_mut() {
                Some((_, n, first)) if *first + *n == s as usize => *n += 1,
                _ => runs.push((i, 1, s as usize)),
            }
        }
        if runs.len() <= self.max_copy_runs {
            return Ok(SlotWrite::Runs(runs));
        }
        let ids = Tensor::from_slice(slots, (slots.len(), 1, 1), &self.device)?
            .broadcast_as((slots.len(), self.kv_heads, self.head_dim))?
            .contiguous()?;
        Ok(SlotWrite::Scatter(ids))
    }

    /// Uploads one piece's indices and builds its mask: `seqs` sequences, each with
    /// `rows.len() / seqs` queries and `gather.len() / seqs` keys; query `r` may attend to the
    /// gathered keys `lo_rel[r]..=hi_rel[r]`.
    fn piece(
        &self,
        rows: &[u32],
        gather: &[u32],
        lo_rel: &[u32],
        hi_rel: &[u32],
        seqs: usize,
    ) -> Result<Piece> {
        let dev = &self.device;
        let (r, queries, keys) = (rows.len(), rows.len() / seqs, gather.len() / seqs);
        let idx = Tensor::arange(0u32, keys as u32, dev)?.reshape((1, keys))?;
        let lo = Tensor::from_slice(lo_rel, (r, 1), dev)?;
        let hi = Tensor::from_slice(hi_rel, (r, 1), dev)?;
        let ok = (idx.broadcast_ge(&lo)?.to_dtype(DType::F32)?
            * idx.broadcast_le(&hi)?.to_dtype(DType::F32)?)?;
        let mask = ok
            .affine(-MASKED, MASKED)?
            .reshape((seqs, 1, queries, keys))?;
        let consecutive = rows.windows(2).all(|w| w[1] == w[0] + 1);
        let rows = match rows.first() {
            Some(&first) if consecutive => Rows::Range(first as usize, rows.len()),
            _ => Rows::Index(Tensor::from_slice(rows, rows.len(), dev)?),
        };
        let bounds: Vec<u32> = lo_rel
            .iter()
            .zip(hi_rel)
            .flat_map(|(&l, &h)| [l, h])
            .collect();
        Ok(Piece {
            rows,
            gather: Tensor::from_slice(gather, gather.len(), dev)?,
            mask,
            bounds: Tensor::from_vec(bounds, (r, 2), dev)?,
            seqs,
            queries,
            keys,
        })
    }

    /// Attention of one piece: `[seqs * queries, heads * head_dim]`.
    fn attend(&self, layer: usize, q: &Tensor, p: &Piece, scale: f64) -> Result<Tensor> {
        let (_, heads, d) = q.dims3()?;
        let (kvh, (b, n, l)) = (self.kv_heads, (p.seqs, p.queries, p.keys));
        let g = heads / kvh;
        let q = match &p.rows {
            Rows::Range(start, len) => q.narrow(0, *start, *len)?,
            Rows::Index(ix) => q.index_select(ix, 0)?,
        };
        // GQA without repeating K/V: the g query heads of a KV head are rows of one matmul.
        let q = q
            .reshape((b, n, kvh, g, d))?
            .permute((0, 2, 3, 1, 4))?
            .contiguous()?
            .reshape((b, kvh, g * n, d))?;
        let gather = |cache: &Tensor| -> Result<Tensor> {
            Ok(cache
                .index_select(&p.gather, 0)?
                .reshape((b, l, kvh, d))?
                .transpose(1, 2)?
                .contiguous()?)
        };
        let (k, v) = (gather(&self.keys[layer])?, gather(&self.values[layer])?);
        let scores = q.matmul(&k.t()?)?.reshape((b, heads, n, l))?;
        let probs = masked_softmax(&scores, p, scale, self.dtype)?.reshape((b, kvh, g * n, l))?;
        Ok(probs
            .matmul(&v)?
            .reshape((b, kvh, g, n, d))?
            .permute((0, 3, 1, 2, 4))?
            .contiguous()?
            .reshape((b * n, heads * d))?)
    }
}

/// Softmax of the scaled scores where each query may attend; a single kernel on CUDA.
fn masked_softmax(scores: &Tensor, p: &Piece, scale: f64, dtype: DType) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if scores.device().is_cuda() {
        return crate::kernels::masked_softmax(scores, &p.bounds, scale as f32);
    }
    let scores = scores
        .to_dtype(DType::F32)?
        .affine(scale, 0.0)?
        .broadcast_add(&p.mask)?;
    Ok(candle_nn::ops::softmax_last_dim(&scores)?.to_dtype(dtype)?)
}

impl PagedAttention for TensorPagedCache {
    fn num_blocks(&self) -> usize {
        self.num_blocks
    }

    fn forward(
        &mut self,
        layer: usize,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        meta: &AttentionMetadata,
    ) -> Result<Tensor> {
        let heads = self.check_shapes(layer, q, k, v)?;
        let t = q.dim(0)?;
        if meta.num_tokens() != t {
            return Err(ShardError::InvalidArgument(format!(
                "attention metadata has {} tokens, q has {t}",
                meta.num_tokens()
            )));
        }
        self.plan_for(layer, heads, meta)?;
        let plan = self.plan.as_ref().ok_or_else(|| {
            ShardError::InvalidArgument("attention plan missing after build".into())
        })?;
        let (kc, vc) = (&self.keys[layer], &self.values[layer]);
        let k = k.to_dtype(self.dtype)?.contiguous()?;
        let v = v.to_dtype(self.dtype)?.contiguous()?;
        // In place: the cache tensors keep their storage; only the new rows are written.
        match &plan.write {
            SlotWrite::Runs(runs) => {
                for &(first, len, slot) in runs {
                    kc.slice_set(&k.narrow(0, first, len)?, 0, slot)?;
                    vc.slice_set(&v.narrow(0, first, len)?, 0, slot)?;
                }
            }
            SlotWrite::Scatter(ids) => {
                kc.scatter_set(ids, &k, 0)?;
                vc.scatter_set(ids, &v, 0)?;
            }
        }
        self.attend_planned(layer, q, heads, meta)
    }
}

impl TensorPagedCache {
    /// Keys and values of `layer`, `[slots, kv_heads, head_dim]` each.
    pub fn layer(&self, layer: usize) -> Result<(&Tensor, &Tensor)> {
        match (self.keys.get(layer), self.values.get(layer)) {
            (Some(k), Some(v)) => Ok((k, v)),
            _ => Err(ShardError::InvalidArgument(format!(
                "layer {layer} out of range ({} layers)",
                self.keys.len()
            ))),
        }
    }

    /// Attention of `q` (`[T, heads, head_dim]`) over the cache whose new tokens' K/V were
    /// already written at `meta.token_slots` (by a fused kernel): `forward` without the write.
    pub fn attend_written(
        &mut self,
        layer: usize,
        q: &Tensor,
        meta: &AttentionMetadata,
    ) -> Result<Tensor> {
        let (_, heads, d) = q.dims3()?;
        if d != self.head_dim || heads % self.kv_heads != 0 || q.dim(0)? != meta.num_tokens() {
            return Err(ShardError::InvalidArgument(format!(
                "query shape {:?} does not match the cache ({} kv heads, head dim {}) and {} tokens",
                q.dims(),
                self.kv_heads,
                self.head_dim,
                meta.num_tokens()
            )));
        }
        self.layer(layer)?;
        self.plan_for(layer, heads, meta)?;
        self.attend_planned(layer, q, heads, meta)
    }

    fn attend_planned(
        &self,
        layer: usize,
        q: &Tensor,
        heads: usize,
        meta: &AttentionMetadata,
    ) -> Result<Tensor> {
        let plan = self.plan.as_ref().ok_or_else(|| {
            ShardError::InvalidArgument("attention plan missing after build".into())
        })?;
        if q.dim(0)? == 0 {
            return Ok(Tensor::zeros(
                (0, heads * self.head_dim),
                q.dtype(),
                q.device(),
            )?);
        }
        let out_dtype = q.dtype();
        let q = q.to_dtype(self.dtype)?;
        let scale = f64::from(meta.softmax_scale);
        let outs = plan
            .pieces
            .iter()
            .map(|p| self.attend(layer, &q, p, scale))
            .collect::<Result<Vec<_>>>()?;
        let out = Tensor::cat(&outs, 0)?;
        let out = match &plan.unpermute {
            Some(ix) => out.index_select(ix, 0)?,
            None => out,
        };
        Ok(out.to_dtype(out_dtype)?)
    }
}

#[cfg(test)]
mod tests;
