//! The parallel driver: one rayon region per matmul, row groups split into a few large tasks.

use super::activation::QuantizedActivations;
use super::packed::{PackedWeights, GROUP_ROWS};
use rayon::prelude::*;
use std::ops::Range;

/// A kernel computing the rows of some row groups for every token.
///
/// # Safety
/// The CPU must support the kernel's instruction set; `out` as in [`OutRows::write`].
pub(super) type GroupsKernel =
    unsafe fn(&PackedWeights, &QuantizedActivations, Range<usize>, OutRows);

/// Weight bytes per task below which a rayon hand-off (a few µs) costs more than it saves;
/// 64 KiB streams from memory in about 3 µs on one core.
const MIN_TASK_BYTES: usize = 64 * 1024;
/// Tasks per thread: enough to even out a busy or slower core, few enough to keep each large.
const TASKS_PER_THREAD: usize = 4;

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
    let tasks = task_count(w, act.tokens);
    let per_task = groups.div_ceil(tasks);
    // SAFETY: ranges below are disjoint; `y` outlives the region; the kernel's CPU
    // requirement is the caller's.
    let call = |r: Range<usize>| unsafe { kernel(w, act, r, out) };
    if tasks == 1 {
        call(0..groups);
    } else {
        (0..tasks)
            .into_par_iter()
            .for_each(|i| call((i * per_task).min(groups)..((i + 1) * per_task).min(groups)));
    }
    y
}

/// How many tasks to split a matmul into: the compute grows with the tokens, the memory
/// traffic does not, so count a token tile of 4 like another read of the weights.
fn task_count(w: &PackedWeights, tokens: usize) -> usize {
    let work = w.groups() * w.group_bytes() * tokens.div_ceil(4);
    let by_size = (work / MIN_TASK_BYTES).max(1);
    by_size
        .min(rayon::current_num_threads() * TASKS_PER_THREAD)
        .min(w.groups())
        .max(1)
}
