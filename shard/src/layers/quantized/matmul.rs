//! The matmul driver: quantized activations in, `[tokens, out]` f32 out, row groups split
//! into chunks run by the calling thread and rayon helpers.

use super::activation::QuantizedActivations;
use super::packed::{PackedWeights, GROUP_ROWS};
use super::parallel::for_each_chunk;
use std::ops::Range;

/// A kernel computing the rows of some row groups for every token.
///
/// # Safety
/// The CPU must support the kernel's instruction set; `out` as in [`OutRows::write`].
pub(super) type GroupsKernel =
    unsafe fn(&PackedWeights, &QuantizedActivations, Range<usize>, OutRows);

/// Weight bytes per chunk: small enough that a helper joining late still finds work, large
/// enough that claiming a chunk (one contended atomic) is noise (32 KiB streams in ~1.5 µs).
const CHUNK_BYTES: usize = 32 * 1024;
/// Fewest row groups per chunk: 32 output floats (two cache lines) per token, so chunks run by
/// different threads share an output cache line only at their ends.
const MIN_CHUNK_GROUPS: usize = 4;
/// Chunks below which a matmul runs on the calling thread alone (256 KiB of weights at one
/// token: about 8 µs from memory, a few thread wake-ups).
const MIN_PARALLEL_CHUNKS: usize = 8;

/// The `[tokens, rows]` output as a raw view that tasks write disjoint rows of.
#[derive(Debug, Clone, Copy)]
pub(super) struct OutRows {
    ptr: *mut f32,
    /// Row stride (output features).
    stride: usize,
    /// Real rows; padding rows of the last group are dropped.
    rows: usize,
    tokens: usize,
}

// SAFETY: `OutRows` is only a pointer to the output buffer; `run` gives every task a disjoint
// range of row groups, so no element is written by two threads, and the buffer outlives the
// parallel region.
unsafe impl Send for OutRows {}
// SAFETY: as above.
unsafe impl Sync for OutRows {}

impl OutRows {
    /// Writes `v` at token `t`, row `row`, unless `row` is a padding row.
    ///
    /// # Safety
    /// The view's buffer must be alive and no other thread may access this element.
    pub(super) unsafe fn write(self, t: usize, row: usize, v: f32) {
        debug_assert!(t < self.tokens);
        if row < self.rows && t < self.tokens {
            // SAFETY: `t < tokens` and `row < rows`, inside the `tokens * stride` buffer.
            unsafe { *self.ptr.add(t * self.stride + row) = v };
        }
    }

    /// Where group `g`'s 8 rows of token `t` start, if all 8 are real rows.
    ///
    /// # Safety
    /// The pointer may only be written as [`OutRows::write`] allows.
    pub(super) unsafe fn full_group(self, t: usize, g: usize) -> Option<*mut f32> {
        let row0 = g * GROUP_ROWS;
        // SAFETY: `t < tokens` and `row0 + 8 <= rows`: inside the buffer.
        (t < self.tokens && row0 + GROUP_ROWS <= self.rows)
            .then(|| unsafe { self.ptr.add(t * self.stride + row0) })
    }

    /// Writes the 8 rows of group `g` at token `t`, dropping padding rows.
    ///
    /// # Safety
    /// As for [`OutRows::write`], for each of the group's rows.
    pub(super) unsafe fn write_group(self, t: usize, g: usize, v: &[f32; GROUP_ROWS]) {
        let row0 = g * GROUP_ROWS;
        let n = GROUP_ROWS.min(self.rows.saturating_sub(row0));
        if t < self.tokens && n > 0 {
            // SAFETY: rows `row0 .. row0 + n` of token `t` lie inside the buffer.
            unsafe {
                std::ptr::copy_nonoverlapping(v.as_ptr(), self.ptr.add(t * self.stride + row0), n)
            };
        }
    }
}

/// `y = x W^T` for quantized activations `act`: `[tokens, rows]` row-major.
///
/// # Safety
/// `kernel` must be runnable on this CPU.
pub(super) unsafe fn run(
    kernel: GroupsKernel,
    w: &PackedWeights,
    act: &QuantizedActivations,
) -> Vec<f32> {
    let mut y = vec![0f32; act.tokens * w.rows()];
    let out = OutRows {
        ptr: y.as_mut_ptr(),
        stride: w.rows(),
        rows: w.rows(),
        tokens: act.tokens,
    };
    let groups = w.groups();
    let per_chunk = groups_per_chunk(w, act.tokens);
    let chunks = groups.div_ceil(per_chunk);
    // SAFETY: chunks cover disjoint group ranges; `y` outlives the loop; the kernel's CPU
    // requirement is the caller's.
    let work = |c: usize| unsafe {
        kernel(
            w,
            act,
            c * per_chunk..((c + 1) * per_chunk).min(groups),
            out,
        )
    };
    // Small matmuls stay on the calling thread: waking a worker costs about what they do.
    let helpers = if chunks >= MIN_PARALLEL_CHUNKS {
        rayon::current_num_threads().saturating_sub(1)
    } else {
        0
    };
    for_each_chunk(chunks, helpers, &work);
    y
}

/// Row groups per chunk: about [`CHUNK_BYTES`] of weights, scaled down as the tokens (and so
/// the compute per weight byte) grow; a token tile of 4 counts like another weight read.
/// Never below [`MIN_CHUNK_GROUPS`].
fn groups_per_chunk(w: &PackedWeights, tokens: usize) -> usize {
    let cost = w.group_bytes() * tokens.div_ceil(4).max(1);
    (CHUNK_BYTES / cost).max(MIN_CHUNK_GROUPS)
}
