//! Activations quantized once per matmul to 8-bit blocks (ggml's Q8_1, with f32 scale and sum).

use super::packed::BLOCK;

/// `[tokens, cols]` activations as 32-value blocks: `x ≈ d * q` with `q` in `-127..=127`.
///
/// Like ggml's Q8_1 it keeps each block's value sum (needed by the Q4 offset `m` and by the
/// Q8 kernels' `+128` bias), but scale and sum stay f32/i32 instead of f16.
#[derive(Debug, Default)]
pub(super) struct QuantizedActivations {
    /// Tokens (rows of `x`).
    pub tokens: usize,
    /// Values per token.
    pub cols: usize,
    /// `[tokens, cols]` quantized values.
    pub qs: Vec<i8>,
    /// `[tokens, cols / 32]` block scales.
    pub d: Vec<f32>,
    /// `[tokens, cols / 32]` block sums `d * Σq`.
    pub s: Vec<f32>,
    /// `[tokens, cols / 32]` integer block sums `Σq`.
    pub qsum: Vec<i32>,
}

impl QuantizedActivations {
    /// Quantizes `x` (`tokens * cols` values, row-major; `cols` a multiple of 32) with ggml's
    /// `quantize_row_q8_1` rounding: `d = max|x| / 127`, `q = round(x / d)`.
    pub(super) fn quantize(x: &[f32], cols: usize) -> Self {
        debug_assert!(cols.is_multiple_of(BLOCK) && x.len().is_multiple_of(cols));
        let tokens = x.len() / cols;
        let blocks = x.len() / BLOCK;
        let mut out = Self {
            tokens,
            cols,
            qs: vec![0; x.len()],
            d: vec![0.0; blocks],
            s: vec![0.0; blocks],
            qsum: vec![0; blocks],
        };
        for (b, (xs, qs)) in x
            .chunks_exact(BLOCK)
            .zip(out.qs.chunks_exact_mut(BLOCK))
            .enumerate()
        {
            let amax = xs.iter().fold(0f32, |a, &v| a.max(v.abs()));
            let d = amax / 127.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            let mut sum = 0i32;
            for (q, &v) in qs.iter_mut().zip(xs) {
                // |v * id| <= 127 up to rounding, so the cast never saturates meaningfully.
                let r = (v * id).round() as i32;
                let r = r.clamp(-127, 127);
                *q = r as i8;
                sum += r;
            }
            out.d[b] = d;
            out.s[b] = d * sum as f32;
            out.qsum[b] = sum;
        }
        out
    }
}
