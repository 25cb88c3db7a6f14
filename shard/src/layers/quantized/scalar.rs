//! Portable kernels over the repacked layout: the fallback without AVX2 and the tests' reference.

use super::activation::QuantizedActivations;
use super::matmul::OutRows;
use super::packed::{Format, PackedWeights, BLOCK, GROUP_ROWS};
use half::f16;
use std::ops::Range;

/// Computes rows of `groups` for every token of `act` into `out`.
///
/// # Safety
/// `out` must be valid for writes at `t * out.stride + row` for every token `t` and every
/// `row < out.rows` in `groups`, with no other thread writing those elements.
pub(super) unsafe fn matmul_groups(
    w: &PackedWeights,
    act: &QuantizedActivations,
    groups: Range<usize>,
    out: OutRows,
) {
    let blocks = w.blocks();
    let gbb = w.group_block_bytes();
    for g in groups {
        let gw = w.group(g);
        for t in 0..act.tokens {
            let mut acc = [0f32; GROUP_ROWS];
            for k in 0..blocks {
                let blk = &gw[k * gbb..][..gbb];
                let x = act.block(k, t);
                for (j, a) in acc.iter_mut().enumerate() {
                    *a += match w.format() {
                        Format::Q4 => q4_block_dot(blk, j, &x.qs, x.d, x.s),
                        Format::Q8 => q8_block_dot(blk, j, &x.qs, x.d),
                    };
                }
            }
            for (j, &v) in acc.iter().enumerate() {
                // SAFETY: forwarded from the caller's contract; `write` skips padding rows.
                unsafe { out.write(t, g * GROUP_ROWS + j, v) };
            }
        }
    }
}

/// Reads the f16 at byte offset `at`.
fn f16_at(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

/// Row `j` of a Q4 group-block against one activation block: `d dx Σ q·x + m s`.
fn q4_block_dot(blk: &[u8], j: usize, xq: &[i8], dx: f32, sx: f32) -> f32 {
    let (d, m) = (f16_at(blk, 2 * j), f16_at(blk, 16 + 2 * j));
    let mut isum = 0i32;
    for i in 0..BLOCK / 2 {
        let byte = blk[32 + (i / 4) * 32 + j * 4 + i % 4];
        isum += i32::from(byte & 0x0F) * i32::from(xq[i]);
        isum += i32::from(byte >> 4) * i32::from(xq[i + BLOCK / 2]);
    }
    d * dx * isum as f32 + m * sx
}

/// Row `j` of a Q8 group-block against one activation block: `d dx Σ q·x`.
fn q8_block_dot(blk: &[u8], j: usize, xq: &[i8], dx: f32) -> f32 {
    let d = f16_at(blk, 2 * j);
    let mut isum = 0i32;
    for (i, &x) in xq.iter().enumerate() {
        let q = (blk[16 + (i / 4) * 32 + j * 4 + i % 4] ^ 0x80) as i8;
        isum += i32::from(q) * i32::from(x);
    }
    d * dx * isum as f32
}
