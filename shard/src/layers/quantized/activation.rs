//! Activations quantized once per matmul to 8-bit blocks (ggml's Q8_1, with f32 scale and sum).

use super::packed::BLOCK;

/// One token's quantized 32-value block: `x ≈ d * q` with `q` in `-127..=127`.
///
/// Like ggml's Q8_1 it keeps the block's value sum (needed by the Q4 offset `m` and by the
/// Q8 kernels' `+128` bias), but scale and sum stay f32/i32 instead of f16.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C, align(16))]
pub(super) struct ActBlock {
    /// Quantized values.
    pub qs: [i8; BLOCK],
    /// Scale.
    pub d: f32,
    /// `d * Σq`.
    pub s: f32,
    /// `Σq`.
    pub qsum: i32,
}

/// `[tokens, cols]` activations quantized to [`ActBlock`]s, stored block-major
/// (`[cols / 32][tokens]`) so that a tile of tokens reads one contiguous run per block.
#[derive(Debug, Default)]
pub(super) struct QuantizedActivations {
    /// Tokens (rows of `x`).
    pub tokens: usize,
    /// `[cols / 32][tokens]` blocks.
    pub blocks: Vec<ActBlock>,
}

impl QuantizedActivations {
    /// Quantizes `x` (`tokens * cols` values, row-major; `cols` a multiple of 32) like ggml's
    /// SIMD `quantize_row_q8_1`: `d = max|x| / 127`, `q = x / d` rounded to nearest, ties even.
    ///
    /// `simd` selects the AVX2 path (the caller checked the CPU); both give identical output.
    pub(super) fn quantize(x: &[f32], cols: usize, simd: bool) -> Self {
        debug_assert!(cols.is_multiple_of(BLOCK) && x.len().is_multiple_of(cols));
        let tokens = x.len() / cols;
        let per_token = cols / BLOCK;
        let mut blocks = vec![ActBlock::default(); x.len() / BLOCK];
        for (b, xs) in x.chunks_exact(BLOCK).enumerate() {
            let (t, k) = (b / per_token, b % per_token);
            let out = &mut blocks[k * tokens + t];
            let (d, sum) = match simd {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `simd` is only set when AVX2 is available; both blocks hold 32 values.
                true => unsafe { quantize_block_avx2(xs, &mut out.qs) },
                _ => quantize_block(xs, &mut out.qs),
            };
            out.d = d;
            out.s = d * sum as f32;
            out.qsum = sum;
        }
        Self { tokens, blocks }
    }

    /// Block `k` of token `t`.
    pub(super) fn block(&self, k: usize, t: usize) -> &ActBlock {
        &self.blocks[k * self.tokens + t]
    }

    /// Block `k` of tokens `t0 .. t0 + T` (`None` only for indices past the end).
    pub(super) fn tile<const T: usize>(&self, k: usize, t0: usize) -> Option<&[ActBlock; T]> {
        debug_assert!(t0 + T <= self.tokens);
        self.blocks.get(k * self.tokens + t0..)?.first_chunk::<T>()
    }
}

/// Quantizes one block into `qs`; returns `(d, Σq)`.
///
/// Written lane-wise over 8-value chunks (no float reduction order to preserve) so that it
/// compiles to vector max / multiply / round instructions.
#[inline]
fn quantize_block(xs: &[f32], qs: &mut [i8]) -> (f32, i32) {
    let mut lanes = [0f32; 8];
    for chunk in xs.chunks_exact(8) {
        for (m, &v) in lanes.iter_mut().zip(chunk) {
            *m = m.max(v.abs());
        }
    }
    let amax = lanes.iter().fold(0f32, |a, &m| a.max(m));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let mut sums = [0i32; 8];
    for (chunk, qchunk) in xs.chunks_exact(8).zip(qs.chunks_exact_mut(8)) {
        for ((q, &v), s) in qchunk.iter_mut().zip(chunk).zip(sums.iter_mut()) {
            // |v · id| ≤ 127 up to rounding; the clamp only guards that rounding.
            let r = ((v * id).round_ties_even() as i32).clamp(-127, 127);
            *q = r as i8;
            *s += r;
        }
    }
    (d, sums.iter().sum())
}

/// [`quantize_block`] with AVX2: same operations in the same order, so the same bits.
///
/// # Safety
/// The CPU must support AVX2; `xs` and `qs` must hold 32 values each.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn quantize_block_avx2(xs: &[f32], qs: &mut [i8]) -> (f32, i32) {
    use std::arch::x86_64::*;
    debug_assert!(xs.len() == BLOCK && qs.len() == BLOCK);
    // SAFETY: 4 × 8 f32 read from and 32 i8 written to blocks of 32 (caller's contract).
    unsafe {
        let v = [0, 8, 16, 24].map(|o| _mm256_loadu_ps(xs.as_ptr().add(o)));
        let abs = _mm256_set1_ps(f32::from_bits(0x7FFF_FFFF));
        let m = v.iter().fold(_mm256_setzero_ps(), |m, &x| {
            _mm256_max_ps(m, _mm256_and_ps(x, abs))
        });
        let mut lanes = [0f32; 8];
        _mm256_storeu_ps(lanes.as_mut_ptr(), m);
        let amax = lanes.iter().fold(0f32, |a, &m| a.max(m));
        let d = amax / 127.0;
        let id = _mm256_set1_ps(if d != 0.0 { 1.0 / d } else { 0.0 });
        // `cvtps` rounds to nearest, ties even (the default MXCSR mode), like `round_ties_even`.
        let lim = _mm256_set1_epi32(127);
        let q = v.map(|x| {
            _mm256_max_epi32(
                _mm256_min_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(x, id)), lim),
                _mm256_sub_epi32(_mm256_setzero_si256(), lim),
            )
        });
        let sum = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
        let mut sums = [0i32; 8];
        _mm256_storeu_si256(sums.as_mut_ptr() as *mut __m256i, sum);
        // Packing interleaves 128-bit lanes; the permute restores value order.
        let q16 = _mm256_packs_epi16(
            _mm256_packs_epi32(q[0], q[1]),
            _mm256_packs_epi32(q[2], q[3]),
        );
        let q8 = _mm256_permutevar8x32_epi32(q16, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256(qs.as_mut_ptr() as *mut __m256i, q8);
        (d, sums.iter().sum())
    }
}

#[cfg(test)]
mod tests {
    use super::{QuantizedActivations, BLOCK};

    /// Random values, an all-zero block, and exact ties (`d = 1`, values at `k + 0.5`).
    fn inputs() -> Vec<f32> {
        let mut x: Vec<f32> = (0..3 * 576)
            .map(|i| ((i as u64 * 2_654_435_761) % 2001) as f32 / 137.0 - 7.3)
            .collect();
        x[..BLOCK].fill(0.0);
        for (i, v) in x[BLOCK..2 * BLOCK].iter_mut().enumerate() {
            *v = if i == 0 { 127.0 } else { i as f32 - 16.5 };
        }
        x
    }

    #[test]
    fn quantized_blocks_reconstruct_within_half_a_step() {
        let x = inputs();
        let act = QuantizedActivations::quantize(&x, 576, false);
        for (t, row) in x.chunks(576).enumerate() {
            for (k, xs) in row.chunks(BLOCK).enumerate() {
                let b = act.block(k, t);
                let amax = xs.iter().fold(0f32, |a, v| a.max(v.abs()));
                assert_eq!(b.d, amax / 127.0);
                assert_eq!(b.qsum, b.qs.iter().map(|&q| i32::from(q)).sum::<i32>());
                for (&v, &q) in xs.iter().zip(&b.qs) {
                    assert!((v - b.d * f32::from(q)).abs() <= b.d * 0.5 * (1.0 + 1e-6));
                }
            }
        }
        // Ties go to even, like ggml's SIMD rounding: -15.5 -> -16, -14.5 -> -14.
        let ties = act.block(1, 0);
        assert_eq!((ties.qs[1], ties.qs[2]), (-16, -14));
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_quantizer_matches_scalar_bit_for_bit() {
        if !is_x86_feature_detected!("avx2") {
            return;
        }
        let x = inputs();
        let (a, b) = (
            QuantizedActivations::quantize(&x, 576, false),
            QuantizedActivations::quantize(&x, 576, true),
        );
        for (a, b) in a.blocks.iter().zip(&b.blocks) {
            assert_eq!(
                (a.qs, a.d.to_bits(), a.s.to_bits(), a.qsum),
                (b.qs, b.d.to_bits(), b.s.to_bits(), b.qsum)
            );
        }
    }
}
