//! The KV cache in host memory and a CPU attention kernel over it.
//!
//! Layout per layer: `[num_blocks * BLOCK_SIZE, kv_heads, head_dim]` f32. The kernel runs one
//! task per (token, KV head) so the keys of a GQA group are read once for all its query heads.

use super::{AttentionMetadata, PagedAttention, BLOCK_SIZE};
use crate::error::{Result, ShardError};
use candle_core::{DType, Tensor};
use rayon::prelude::*;

/// Paged KV cache in host memory.
#[derive(Debug)]
pub struct CpuPagedCache {
    keys: Vec<Vec<f32>>,
    values: Vec<Vec<f32>>,
    num_blocks: usize,
    kv_heads: usize,
    head_dim: usize,
}

impl CpuPagedCache {
    /// Bytes one token takes in the cache over all layers.
    pub fn bytes_per_token(layers: usize, kv_heads: usize, head_dim: usize) -> usize {
        2 * layers * kv_heads * head_dim * std::mem::size_of::<f32>()
    }

    /// A zeroed cache of `num_blocks` blocks.
    pub fn new(layers: usize, num_blocks: usize, kv_heads: usize, head_dim: usize) -> Self {
        let n = num_blocks * BLOCK_SIZE * kv_heads * head_dim;
        Self {
            keys: (0..layers).map(|_| vec![0.0; n]).collect(),
            values: (0..layers).map(|_| vec![0.0; n]).collect(),
            num_blocks,
            kv_heads,
            head_dim,
        }
    }
}

fn host_f32(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
}

impl PagedAttention for CpuPagedCache {
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
        let (t, heads, d) = q.dims3()?;
        let kvh = self.kv_heads;
        if d != self.head_dim || k.dims3()? != (t, kvh, d) || v.dims3()? != (t, kvh, d) {
            return Err(ShardError::InvalidArgument(format!(
                "attention shapes q {:?} k {:?} v {:?} do not match the cache ({kvh} kv heads, head dim {})",
                q.dims(),
                k.dims(),
                v.dims(),
                self.head_dim
            )));
        }
        if meta.num_tokens() != t {
            return Err(ShardError::InvalidArgument(format!(
                "attention metadata has {} tokens, q has {t}",
                meta.num_tokens()
            )));
        }
        let row = kvh * d;
        let slots_total = self.num_blocks * BLOCK_SIZE;
        let (kc, vc) = match (self.keys.get_mut(layer), self.values.get_mut(layer)) {
            (Some(kc), Some(vc)) => (kc, vc),
            _ => {
                return Err(ShardError::InvalidArgument(format!(
                    "layer {layer} out of range"
                )))
            }
        };
        let (kh, vh) = (host_f32(k)?, host_f32(v)?);
        for (i, &slot) in meta.token_slots.iter().enumerate() {
            let s = slot as usize;
            if s >= slots_total {
                return Err(ShardError::InvalidArgument(format!(
                    "slot {s} is outside the KV cache ({slots_total} slots)"
                )));
            }
            kc[s * row..(s + 1) * row].copy_from_slice(&kh[i * row..(i + 1) * row]);
            vc[s * row..(s + 1) * row].copy_from_slice(&vh[i * row..(i + 1) * row]);
        }
        for (seq, slots) in meta.seq_slots.iter().enumerate() {
            if let Some(&bad) = slots.iter().find(|&&s| s as usize >= slots_total) {
                return Err(ShardError::InvalidArgument(format!(
                    "sequence {seq} reads slot {bad}, outside the KV cache ({slots_total} slots)"
                )));
            }
        }

        let qh = host_f32(q)?;
        let group = heads / kvh;
        let scale = meta.softmax_scale;
        let (kc, vc) = (&*kc, &*vc);
        let mut out = vec![0f32; t * heads * d];
        // One task per (token, kv head): its `group` query heads share the K/V reads.
        out.par_chunks_mut(group * d)
            .enumerate()
            .try_for_each(|(task, out_g)| {
                let (ti, g) = (task / kvh, task % kvh);
                let seq = meta.token_seq[ti] as usize;
                let pos = meta.token_pos[ti] as usize;
                let slots = meta
                    .seq_slots
                    .get(seq)
                    .filter(|s| s.len() > pos)
                    .ok_or_else(|| {
                        ShardError::InvalidArgument(format!(
                            "no slots for position {pos} of sequence {seq}"
                        ))
                    })?;
                let lo = meta.window_start(pos);
                let n = pos + 1 - lo;
                let mut scores = vec![0f32; group * n];
                for (j, &slot) in slots[lo..=pos].iter().enumerate() {
                    let kr = &kc[slot as usize * row + g * d..][..d];
                    for hq in 0..group {
                        let qr = &qh[(ti * heads + g * group + hq) * d..][..d];
                        scores[hq * n + j] = dot(qr, kr) * scale;
                    }
                }
                for hq in 0..group {
                    softmax_in_place(&mut scores[hq * n..(hq + 1) * n]);
                }
                for (j, &slot) in slots[lo..=pos].iter().enumerate() {
                    let vr = &vc[slot as usize * row + g * d..][..d];
                    for hq in 0..group {
                        let p = scores[hq * n + j];
                        let o = &mut out_g[hq * d..(hq + 1) * d];
                        for (o, v) in o.iter_mut().zip(vr) {
                            *o += p * v;
                        }
                    }
                }
                Ok::<(), ShardError>(())
            })?;
        Ok(Tensor::from_vec(out, (t, heads * d), q.device())?.to_dtype(q.dtype())?)
    }
}

#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Eight accumulators let the compiler vectorise without -ffast-math.
    let mut acc = [0f32; 8];
    let chunks = a.len() / 8;
    for c in 0..chunks {
        for l in 0..8 {
            acc[l] += a[c * 8 + l] * b[c * 8 + l];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for i in chunks * 8..a.len() {
        s += a[i] * b[i];
    }
    s
}

fn softmax_in_place(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in x.iter_mut() {
        *v /= sum;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    /// Shape of a reference attention problem.
    #[derive(Clone, Copy)]
    struct Dims {
        t: usize,
        h: usize,
        kvh: usize,
        d: usize,
        window: Option<usize>,
    }

    /// Dense causal attention with GQA in f64, the reference.
    fn reference(q: &[f32], k: &[f32], v: &[f32], dims: &Dims) -> Vec<f32> {
        let Dims {
            t,
            h,
            kvh,
            d,
            window,
        } = *dims;
        let mut out = vec![0f32; t * h * d];
        let scale = 1.0 / (d as f64).sqrt();
        for i in 0..t {
            for hh in 0..h {
                let g = hh / (h / kvh);
                let lo = window.map(|w| (i + 1).saturating_sub(w)).unwrap_or(0);
                let s: Vec<f64> = (lo..=i)
                    .map(|j| {
                        (0..d)
                            .map(|x| {
                                q[(i * h + hh) * d + x] as f64 * k[(j * kvh + g) * d + x] as f64
                            })
                            .sum::<f64>()
                            * scale
                    })
                    .collect();
                let m = s.iter().cloned().fold(f64::MIN, f64::max);
                let z: f64 = s.iter().map(|x| (x - m).exp()).sum();
                for x in 0..d {
                    out[(i * h + hh) * d + x] = ((lo..=i)
                        .map(|j| (s[j - lo] - m).exp() / z * v[(j * kvh + g) * d + x] as f64)
                        .sum::<f64>()) as f32;
                }
            }
        }
        out
    }

    fn run(window: Option<usize>, chunks: &[usize]) -> Result<()> {
        let (h, kvh, d) = (4, 2, 8);
        let t: usize = chunks.iter().sum();
        let dev = Device::Cpu;
        let q = Tensor::randn(0f32, 1.0, (t, h, d), &dev)?;
        let k = Tensor::randn(0f32, 1.0, (t, kvh, d), &dev)?;
        let v = Tensor::randn(0f32, 1.0, (t, kvh, d), &dev)?;
        let expected = reference(
            &host_f32(&q)?,
            &host_f32(&k)?,
            &host_f32(&v)?,
            &Dims {
                t,
                h,
                kvh,
                d,
                window,
            },
        );
        // Scattered, non-contiguous blocks: the block table must be honoured.
        let blocks = [5u32, 2, 7, 3];
        let slot = |p: usize| blocks[p / BLOCK_SIZE] * BLOCK_SIZE as u32 + (p % BLOCK_SIZE) as u32;
        let mut cache = CpuPagedCache::new(1, 8, kvh, d);
        let mut got = Vec::new();
        let mut start = 0;
        for &n in chunks {
            // Feed the sequence in chunks (prefill, then chunked prefill / decode steps).
            let meta = AttentionMetadata {
                token_slots: (start..start + n).map(slot).collect(),
                token_seq: vec![0; n],
                token_pos: (start..start + n).map(|p| p as u32).collect(),
                seq_slots: vec![(0..start + n).map(slot).collect()],
                sliding_window: window,
                softmax_scale: 1.0 / (d as f32).sqrt(),
            };
            let o = cache.forward(
                0,
                &q.narrow(0, start, n)?,
                &k.narrow(0, start, n)?,
                &v.narrow(0, start, n)?,
                &meta,
            )?;
            got.extend(host_f32(&o)?);
            start += n;
        }
        let rel = got
            .iter()
            .zip(&expected)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max)
            / expected.iter().map(|x| x.abs()).fold(0f32, f32::max);
        assert!(rel < 1e-5, "relative error {rel}");
        Ok(())
    }

    #[test]
    fn matches_dense_causal_attention_in_one_prefill() -> Result<()> {
        run(None, &[40])
    }

    #[test]
    fn matches_dense_attention_over_chunks_and_decode_steps() -> Result<()> {
        run(None, &[17, 9, 1, 1, 1, 5])
    }

    #[test]
    fn honours_the_sliding_window() -> Result<()> {
        run(Some(6), &[20, 1, 1, 3])
    }

    #[test]
    fn rejects_slots_outside_the_cache() {
        let dev = Device::Cpu;
        let mut cache = CpuPagedCache::new(1, 1, 1, 2);
        let x = Tensor::ones((1, 1, 2), DType::F32, &dev).expect("t");
        let meta = AttentionMetadata {
            token_slots: vec![999],
            token_seq: vec![0],
            token_pos: vec![0],
            seq_slots: vec![vec![999]],
            sliding_window: None,
            softmax_scale: 1.0,
        };
        assert!(cache.forward(0, &x, &x, &x, &meta).is_err());
    }
}
