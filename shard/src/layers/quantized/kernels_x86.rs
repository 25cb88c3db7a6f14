//! AVX2 and VNNI kernels over the repacked layout, one instantiation per instruction set.
//!
//! Each 32-bit lane holds one of a group's 8 output rows: a weight vector carries 4
//! consecutive values of each row, the activation vector the same 4 values broadcast, so one
//! `u8 × i8` dot-product instruction (`vpmaddubsw` + `vpmaddwd`, or VNNI's `vpdpbusd`) adds
//! 4 products to every row at once and no horizontal reduction is ever needed. Weights are
//! unpacked once per block and reused from registers for a tile of up to 4 tokens (8 with
//! AVX-512's 32 registers).

use super::activation::QuantizedActivations;
use super::matmul::OutRows;
use super::packed::{PackedWeights, GROUP_ROWS, Q4_GROUP_BLOCK, Q8_GROUP_BLOCK};
use std::arch::x86_64::*;
use std::ops::Range;

/// The next token tile: the largest power of two up to `max_tile` that fits the tokens left.
#[inline(always)]
fn tile_len(left: usize, max_tile: usize) -> usize {
    match left.min(max_tile) {
        8.. => 8,
        4..=7 => 4,
        2..=3 => 2,
        _ => 1,
    }
}

/// Broadcasts activation values `4c .. 4c + 4` of a block (`*const i8`) to all 32-bit lanes.
macro_rules! bcast4 {
    ($xq:expr, $c:expr) => {
        _mm256_set1_epi32(std::ptr::read_unaligned($xq.add(4 * $c) as *const i32))
    };
}

/// Σ q·x per row for 8 unpacked Q4 vectors (AVX2): `vpmaddubsw` pair sums added in i16
/// (at most 16 products of 15 × 127 = 30480 per lane, no saturation), widened once.
macro_rules! q4_isum_avx2 {
    ($w:expr, $xq:expr, $qsum:expr) => {{
        let mut s16 = _mm256_maddubs_epi16($w[0], bcast4!($xq, 0));
        for c in 1..8 {
            s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16($w[c], bcast4!($xq, c)));
        }
        _mm256_madd_epi16(s16, _mm256_set1_epi16(1))
    }};
}

/// Σ q·x per row for 8 unpacked Q4 vectors with a VNNI `dpbusd` (two chains for latency).
macro_rules! q4_isum_vnni {
    ($dpbusd:ident, $w:expr, $xq:expr, $qsum:expr) => {{
        let mut s0 = _mm256_setzero_si256();
        let mut s1 = _mm256_setzero_si256();
        for c in 0..4 {
            s0 = $dpbusd(s0, $w[2 * c], bcast4!($xq, 2 * c));
            s1 = $dpbusd(s1, $w[2 * c + 1], bcast4!($xq, 2 * c + 1));
        }
        _mm256_add_epi32(s0, s1)
    }};
}

/// Σ q·x per row for 8 Q8 vectors stored as `q + 128` (AVX2): back to signed, then the
/// `|q| · sign(x, q)` trick since `vpmaddubsw` needs an unsigned operand.
macro_rules! q8_isum_avx2 {
    ($w:expr, $xq:expr, $qsum:expr) => {{
        let flip = _mm256_set1_epi8(-128);
        let ones = _mm256_set1_epi16(1);
        let mut s = _mm256_setzero_si256();
        for c in 0..8 {
            let q = _mm256_xor_si256($w[c], flip);
            let p = _mm256_maddubs_epi16(_mm256_abs_epi8(q), _mm256_sign_epi8(bcast4!($xq, c), q));
            s = _mm256_add_epi32(s, _mm256_madd_epi16(p, ones));
        }
        s
    }};
}

/// Σ q·x per row for 8 Q8 vectors stored as `q + 128` with a VNNI `dpbusd`:
/// Σ (q + 128)·x − 128 Σx, the correction preloaded into the accumulator.
macro_rules! q8_isum_vnni {
    ($dpbusd:ident, $w:expr, $xq:expr, $qsum:expr) => {{
        let mut s0 = _mm256_set1_epi32(-128 * $qsum);
        let mut s1 = _mm256_setzero_si256();
        for c in 0..4 {
            s0 = $dpbusd(s0, $w[2 * c], bcast4!($xq, 2 * c));
            s1 = $dpbusd(s1, $w[2 * c + 1], bcast4!($xq, 2 * c + 1));
        }
        _mm256_add_epi32(s0, s1)
    }};
}

/// Generates `q4` and `q8` group kernels compiled for one instruction set.
macro_rules! x86_kernels {
    ($(#[$doc:meta])* $name:ident, $features:literal, $max_tile:literal, $q4:ident, $q8:ident) => {
        $(#[$doc])*
        pub(super) mod $name {
            use super::*;

            /// Q4 rows of `groups` for every token.
            ///
            /// # Safety
            /// The CPU must support the module's features; `out` as for
            /// [`crate::layers::quantized::scalar`]'s `matmul_groups`.
            #[target_feature(enable = $features)]
            pub(in super::super) unsafe fn q4(w: &PackedWeights, act: &QuantizedActivations, groups: Range<usize>, out: OutRows) {
                for g in groups {
                    let mut t0 = 0;
                    while t0 < act.tokens {
                        let n = tile_len(act.tokens - t0, $max_tile);
                        // SAFETY: same features and contract as this function.
                        unsafe {
                            match n {
                                1 => q4_tile::<1>(w, act, g, t0, out),
                                2 => q4_tile::<2>(w, act, g, t0, out),
                                4 => q4_tile::<4>(w, act, g, t0, out),
                                _ => q4_tile::<8>(w, act, g, t0, out),
                            }
                        }
                        t0 += n;
                    }
                }
            }

            /// Q8 rows of `groups` for every token.
            ///
            /// # Safety
            /// As for [`q4`].
            #[target_feature(enable = $features)]
            pub(in super::super) unsafe fn q8(w: &PackedWeights, act: &QuantizedActivations, groups: Range<usize>, out: OutRows) {
                for g in groups {
                    let mut t0 = 0;
                    while t0 < act.tokens {
                        let n = tile_len(act.tokens - t0, $max_tile);
                        // SAFETY: same features and contract as this function.
                        unsafe {
                            match n {
                                1 => q8_tile::<1>(w, act, g, t0, out),
                                2 => q8_tile::<2>(w, act, g, t0, out),
                                4 => q8_tile::<4>(w, act, g, t0, out),
                                _ => q8_tile::<8>(w, act, g, t0, out),
                            }
                        }
                        t0 += n;
                    }
                }
            }

            /// Group `g` for tokens `t0 .. t0 + T`.
            #[target_feature(enable = $features)]
            #[inline]
            unsafe fn q4_tile<const T: usize>(w: &PackedWeights, act: &QuantizedActivations, g: usize, t0: usize, out: OutRows) {
                let group = w.group(g);
                let low = _mm256_set1_epi8(0x0F);
                let mut acc = [_mm256_setzero_ps(); T];
                for (k, blk) in group.chunks_exact(Q4_GROUP_BLOCK).enumerate() {
                    let p = blk.as_ptr();
                    // SAFETY: a Q4 group-block is 16 B of d, 16 B of m, 4 × 32 B of nibbles.
                    let (dw, mw, wv) = unsafe {
                        let dw = _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i));
                        let mw = _mm256_cvtph_ps(_mm_loadu_si128(p.add(16) as *const __m128i));
                        let mut wv = [_mm256_setzero_si256(); 8];
                        for c in 0..4 {
                            let packed = _mm256_loadu_si256(p.add(32 + 32 * c) as *const __m256i);
                            wv[c] = _mm256_and_si256(packed, low);
                            wv[c + 4] = _mm256_and_si256(_mm256_srli_epi16(packed, 4), low);
                        }
                        (dw, mw, wv)
                    };
                    let Some(xs) = act.tile::<T>(k, t0) else { break };
                    for (acc, x) in acc.iter_mut().zip(xs) {
                        // SAFETY: `x.qs` holds the 32 activation values read by the broadcasts.
                        let isum = unsafe { $q4!(wv, x.qs.as_ptr(), x.qsum) };
                        let scale = _mm256_mul_ps(dw, _mm256_set1_ps(x.d));
                        *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), scale, *acc);
                        *acc = _mm256_fmadd_ps(mw, _mm256_set1_ps(x.s), *acc);
                    }
                }
                for (t, acc) in acc.iter().enumerate() {
                    // SAFETY: `out` per the caller's contract; a full group has 8 rows to store.
                    unsafe {
                        match out.full_group(t0 + t, g) {
                            Some(p) => _mm256_storeu_ps(p, *acc),
                            None => {
                                let mut v = [0f32; GROUP_ROWS];
                                _mm256_storeu_ps(v.as_mut_ptr(), *acc);
                                out.write_group(t0 + t, g, &v);
                            }
                        }
                    }
                }
            }

            /// Group `g` for tokens `t0 .. t0 + T`.
            #[target_feature(enable = $features)]
            #[inline]
            unsafe fn q8_tile<const T: usize>(w: &PackedWeights, act: &QuantizedActivations, g: usize, t0: usize, out: OutRows) {
                let group = w.group(g);
                let mut acc = [_mm256_setzero_ps(); T];
                for (k, blk) in group.chunks_exact(Q8_GROUP_BLOCK).enumerate() {
                    let p = blk.as_ptr();
                    // SAFETY: a Q8 group-block is 16 B of d then 8 × 32 B of values.
                    let (dw, wv) = unsafe {
                        let dw = _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i));
                        let mut wv = [_mm256_setzero_si256(); 8];
                        for (c, v) in wv.iter_mut().enumerate() {
                            *v = _mm256_loadu_si256(p.add(16 + 32 * c) as *const __m256i);
                        }
                        (dw, wv)
                    };
                    let Some(xs) = act.tile::<T>(k, t0) else { break };
                    for (acc, x) in acc.iter_mut().zip(xs) {
                        // SAFETY: `x.qs` holds the 32 activation values read by the broadcasts.
                        let isum = unsafe { $q8!(wv, x.qs.as_ptr(), x.qsum) };
                        let scale = _mm256_mul_ps(dw, _mm256_set1_ps(x.d));
                        *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), scale, *acc);
                    }
                }
                for (t, acc) in acc.iter().enumerate() {
                    // SAFETY: `out` per the caller's contract; a full group has 8 rows to store.
                    unsafe {
                        match out.full_group(t0 + t, g) {
                            Some(p) => _mm256_storeu_ps(p, *acc),
                            None => {
                                let mut v = [0f32; GROUP_ROWS];
                                _mm256_storeu_ps(v.as_mut_ptr(), *acc);
                                out.write_group(t0 + t, g, &v);
                            }
                        }
                    }
                }
            }
        }
    };
}

/// `q4_isum_vnni!` with AVX-VNNI's VEX `vpdpbusd`.
macro_rules! q4_isum_avxvnni {
    ($w:expr, $xq:expr, $qsum:expr) => {
        q4_isum_vnni!(_mm256_dpbusd_avx_epi32, $w, $xq, $qsum)
    };
}

/// `q8_isum_vnni!` with AVX-VNNI's VEX `vpdpbusd`.
macro_rules! q8_isum_avxvnni {
    ($w:expr, $xq:expr, $qsum:expr) => {
        q8_isum_vnni!(_mm256_dpbusd_avx_epi32, $w, $xq, $qsum)
    };
}

/// `q4_isum_vnni!` with AVX-512 VNNI's EVEX `vpdpbusd` on 256-bit vectors.
macro_rules! q4_isum_avx512vnni {
    ($w:expr, $xq:expr, $qsum:expr) => {
        q4_isum_vnni!(_mm256_dpbusd_epi32, $w, $xq, $qsum)
    };
}

/// `q8_isum_vnni!` with AVX-512 VNNI's EVEX `vpdpbusd` on 256-bit vectors.
macro_rules! q8_isum_avx512vnni {
    ($w:expr, $xq:expr, $qsum:expr) => {
        q8_isum_vnni!(_mm256_dpbusd_epi32, $w, $xq, $qsum)
    };
}

x86_kernels!(
    /// AVX2 + FMA + F16C (x86-64-v3): `vpmaddubsw` / `vpmaddwd`.
    avx2,
    "avx2,fma,f16c",
    4,
    q4_isum_avx2,
    q8_isum_avx2
);

x86_kernels!(
    /// AVX-VNNI (VEX-encoded `vpdpbusd`, e.g. Alder Lake, Zen 4/5).
    avxvnni,
    "avx2,fma,f16c,avxvnni",
    4,
    q4_isum_avxvnni,
    q8_isum_avxvnni
);

x86_kernels!(
    /// AVX-512 VNNI on 256-bit vectors (Ice Lake and later Xeons, Zen 4/5); the EVEX encoding
    /// also gives the compiler 32 vector registers.
    avx512vnni,
    "avx2,fma,f16c,avx512f,avx512vl,avx512vnni",
    8,
    q4_isum_avx512vnni,
    q8_isum_avx512vnni
);
