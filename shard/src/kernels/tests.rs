//! GPU checks of the kernels against candle-ops references on fresh random inputs. They need
//! a CUDA device (run the CUDA test binary on a GPU machine: `<test-bin> kernels::tests`);
//! without one each test says so and returns.

use super::*;
use crate::kv::test_layout::ScheduleLayout;
use crate::kv::{AttentionMetadata, CudaPagedCache, PagedAttention, QkvLayout, TensorPagedCache};
use crate::layers::rotary::Rope;
use candle_core::Device;
use std::collections::BTreeSet;

fn gpu() -> Option<Device> {
    match crate::device::select_device(0) {
        Ok(d) if d.is_cuda() => Some(d),
        _ => {
            eprintln!("no CUDA device: skipped");
            None
        }
    }
}

/// max |a - b| / max |b|.
fn rel_err(a: &Tensor, b: &Tensor) -> Result<f32> {
    let a = a.to_dtype(DType::F32)?.flatten_all()?;
    let b = b.to_dtype(DType::F32)?.flatten_all()?;
    let diff = (&a - &b)?.abs()?.max(0)?.to_scalar::<f32>()?;
    let scale = b.abs()?.max(0)?.to_scalar::<f32>()?;
    assert!(
        scale > 0.0,
        "reference is all zeros: the check would prove nothing"
    );
    Ok(diff / scale)
}

/// Tolerance per dtype: f32 far under 1e-3; half types at their rounding level.
fn tol(dtype: DType) -> f32 {
    match dtype {
        DType::F32 => 1e-5,
        DType::F16 => 3e-3,
        _ => 1.5e-2,
    }
}

fn randn<S: Into<candle_core::Shape>>(shape: S, dtype: DType, dev: &Device) -> Result<Tensor> {
    Ok(Tensor::randn(0f32, 1.0, shape, dev)?.to_dtype(dtype)?)
}

const DTYPES: [DType; 3] = [DType::F32, DType::F16, DType::BF16];

#[test]
fn add_rms_norm_matches_add_then_norm() -> Result<()> {
    let Some(dev) = gpu() else { return Ok(()) };
    for dtype in DTYPES {
        // 16-byte loads (one chunk a thread, several a thread), scalar for widths that are
        // not a multiple of a vector, and for rows that start off a 16-byte boundary.
        for (rows, cols, offset) in [
            (1, 4096, 0),
            (7, 4096, 0),
            (2, 16384, 0),
            (3, 100, 0),
            (2, 4096, 4),
        ] {
            let x = randn(offset + rows * cols, dtype, &dev)?
                .narrow(0, offset, rows * cols)?
                .reshape((rows, cols))?;
            let h = randn((rows, cols), dtype, &dev)?;
            let w = Tensor::randn(1f32, 0.5, cols, &dev)?.to_dtype(dtype)?;
            let (sum, norm) = add_rms_norm(&x, &h, &w, 1e-5)?;
            let want_sum = (&x + &h)?;
            let want_norm = candle_nn::ops::rms_norm(&want_sum, &w, 1e-5)?;
            let (e1, e2) = (rel_err(&sum, &want_sum)?, rel_err(&norm, &want_norm)?);
            eprintln!("add_rms_norm {dtype:?} {rows}x{cols}: sum {e1:.2e} norm {e2:.2e}");
            assert!(e1 <= tol(dtype) && e2 <= tol(dtype));
        }
    }
    Ok(())
}

#[test]
fn silu_mul_matches_candle_ops() -> Result<()> {
    let Some(dev) = gpu() else { return Ok(()) };
    for dtype in DTYPES {
        for (rows, n) in [(1, 14336), (5, 1000), (2, 1001)] {
            let gu = randn((rows, 2 * n), dtype, &dev)?;
            let got = silu_mul(&gu)?;
            let want = (candle_nn::ops::silu(&gu.narrow(1, 0, n)?)? * gu.narrow(1, n, n)?)?;
            let e = rel_err(&got, &want)?;
            eprintln!("silu_mul {dtype:?} {rows}x{n}: {e:.2e}");
            assert!(e <= tol(dtype));
        }
    }
    Ok(())
}

/// Rotary tables at `pos` for head dim `d`, `[T, 1, d/2]`.
fn rope_at(pos: &[u32], d: usize, interleaved: bool, dtype: DType, dev: &Device) -> Result<Rope> {
    let half = d / 2;
    let (mut cos, mut sin) = (Vec::new(), Vec::new());
    for &p in pos {
        for i in 0..half {
            let a = p as f32 / 10000f32.powf(2.0 * i as f32 / d as f32);
            cos.push(a.cos());
            sin.push(a.sin());
        }
    }
    let t = pos.len();
    Ok(Rope {
        cos: Tensor::from_vec(cos, (t, 1, half), dev)?.to_dtype(dtype)?,
        sin: Tensor::from_vec(sin, (t, 1, half), dev)?.to_dtype(dtype)?,
        interleaved,
    })
}

/// Runs `steps` (lists of `(sequence, new tokens)`) through a `CudaPagedCache` in `dtype`
/// (fused rotary and cache write, kernel or matmul attention) and an f32 `TensorPagedCache`
/// (candle rotary and attention) with the same random QKV; returns the worst relative error of the outputs and
/// of the cache contents, and which attention paths the CUDA cache took.
fn compare(
    layout: QkvLayout,
    window: Option<usize>,
    interleaved: bool,
    dtype: DType,
    steps: &[&[(usize, usize)]],
    dev: &Device,
) -> Result<(f32, BTreeSet<&'static str>)> {
    let schedule = ScheduleLayout::new(steps);
    let (nseq, nb) = (schedule.nseq, schedule.num_blocks);
    let slot = |s: usize, p: usize| schedule.slot(s, p);
    let (l, kvh, d) = (2, layout.kv_heads, layout.head_dim);
    let mut fused = CudaPagedCache::new(l, nb, kvh, d, dtype, dev)?;
    // The reference computes in f32 from the same (rounded) inputs, so the error measured is
    // the kernels' own, not the sum of two half-precision paths'.
    let mut reference = TensorPagedCache::new(l, nb, kvh, d, DType::F32, dev)?;
    let mut done = vec![0usize; nseq];
    let mut worst = 0f32;
    let mut paths = BTreeSet::new();
    for step in steps {
        let mut meta = AttentionMetadata {
            sliding_window: window,
            softmax_scale: 1.0 / (d as f32).sqrt(),
            ..Default::default()
        };
        for (si, &(s, n)) in step.iter().enumerate() {
            for p in done[s]..done[s] + n {
                meta.token_slots.push(slot(s, p));
                meta.token_seq.push(si as u32);
                meta.token_pos.push(p as u32);
            }
            meta.seq_slots
                .push((0..done[s] + n).map(|p| slot(s, p)).collect());
        }
        let t = meta.num_tokens();
        let rope = rope_at(&meta.token_pos, d, interleaved, dtype, dev)?;
        let rope32 = rope_at(&meta.token_pos, d, interleaved, DType::F32, dev)?;
        for layer in 0..l {
            let qkv = randn((t, layout.width()), dtype, dev)?;
            let got = fused.forward_qkv(layer, &qkv, layout, &rope, &meta)?;
            paths.extend(fused.attention_path());
            let qkv32 = qkv.to_dtype(DType::F32)?;
            let want = reference.forward_qkv(layer, &qkv32, layout, &rope32, &meta)?;
            worst = worst.max(rel_err(&got, &want)?);
            let (gk, gv) = fused_layer(&fused, layer)?;
            let (wk, wv) = reference.layer(layer)?;
            worst = worst.max(rel_err(&gk, wk)?).max(rel_err(&gv, wv)?);
        }
        for &(s, n) in step.iter() {
            done[s] += n;
        }
    }
    Ok((worst, paths))
}

fn fused_layer(c: &CudaPagedCache, layer: usize) -> Result<(Tensor, Tensor)> {
    let (k, v) = c.layer(layer)?;
    Ok((k.clone(), v.clone()))
}

#[test]
fn paged_attention_matches_the_matmul_path() -> Result<()> {
    let Some(dev) = gpu() else { return Ok(()) };
    let small = QkvLayout {
        heads: 8,
        kv_heads: 2,
        head_dim: 64,
    };
    let llama = QkvLayout {
        heads: 32,
        kv_heads: 8,
        head_dim: 128,
    };
    let mqa = QkvLayout {
        heads: 16,
        kv_heads: 1,
        head_dim: 64,
    };
    let mha = QkvLayout {
        heads: 4,
        kv_heads: 4,
        head_dim: 32,
    };
    // Prefill (long chunks: prefill kernel in f16/bf16 at head dims 64 and 128, matmul
    // attention otherwise), then decode steps (paged kernel, several splits for the
    // 1300-token sequence), a short chunk mixed with decodes (paged kernel, causal queries)
    // and prompt chunks beside a decode token (prefill kernel, one-row tile).
    let steps: &[&[(usize, usize)]] = &[
        &[(0, 1), (1, 37), (2, 600), (3, 1300)],
        &[(0, 1), (1, 1), (2, 1), (3, 1)],
        &[(3, 1), (1, 1)],
        &[(0, 5), (2, 1), (3, 1)],
        &[(0, 40), (1, 200), (3, 1)],
    ];
    for dtype in DTYPES {
        for (layout, window, interleaved) in [
            (small, None, false),
            (small, Some(100), true),
            (small, Some(700), false),
            (llama, None, false),
            (mqa, None, false),
            (mha, Some(300), false),
        ] {
            let (e, paths) = compare(layout, window, interleaved, dtype, steps, &dev)?;
            eprintln!("paged attention {dtype:?} {layout:?} window {window:?} interleaved {interleaved}: {e:.2e} via {paths:?}");
            assert!(e <= tol(dtype), "{e} > {}", tol(dtype));
            let prefill = if flash_prefill_supported(layout.head_dim, dtype) {
                "flash"
            } else {
                "matmul"
            };
            assert!(
                paths.contains("paged") && paths.contains(prefill),
                "{paths:?}"
            );
        }
    }
    Ok(())
}

/// `product(x, w)` against candle's `x . w^T` for each dtype and `(m, n, k)`.
fn check_products(
    dev: &Device,
    what: &str,
    dtypes: &[DType],
    shapes: &[(usize, usize, usize)],
    product: impl Fn(&Tensor, &Tensor) -> Result<Tensor>,
) -> Result<()> {
    for &dtype in dtypes {
        for &(m, n, k) in shapes {
            let x = randn((m, k), dtype, dev)?;
            let w = randn((n, k), dtype, dev)?;
            let e = rel_err(&product(&x, &w)?, &x.matmul(&w.t()?)?)?;
            eprintln!("{what} {dtype:?} {m}x{n}x{k}: {e:.2e}");
            assert!(e <= tol(dtype), "{e}");
        }
    }
    Ok(())
}

#[test]
fn linear_matches_candle_matmul() -> Result<()> {
    let Some(dev) = gpu() else { return Ok(()) };
    let shapes = [
        (1, 1000, 4096),
        (3, 512, 14336),
        (8, 4096, 4096),
        (9, 300, 256),
        (40, 1024, 4096),
        (32, 28672, 4096),
        (64, 28672, 4096),
    ];
    check_products(&dev, "linear", &DTYPES, &shapes, linear)
}

#[test]
fn silu_gated_linear_matches_product_then_silu_mul() -> Result<()> {
    let Some(dev) = gpu() else { return Ok(()) };
    for dtype in DTYPES {
        for (m, n, k) in [(1, 14336, 4096), (3, 1000, 512), (8, 512, 4096)] {
            let x = randn((m, k), dtype, &dev)?;
            let w = randn((2 * n, k), dtype, &dev)?;
            let got = silu_gated_linear(&x, &w)?.expect("the gated GEMV applies");
            // Reference in f32 from the same (rounded) inputs.
            let gu = x
                .to_dtype(DType::F32)?
                .matmul(&w.to_dtype(DType::F32)?.t()?)?;
            let want = (candle_nn::ops::silu(&gu.narrow(1, 0, n)?)? * gu.narrow(1, n, n)?)?;
            let e = rel_err(&got, &want)?;
            eprintln!("silu_gated_linear {dtype:?} {m}x{n}x{k}: {e:.2e}");
            assert!(e <= tol(dtype), "{e}");
        }
        // Beyond the GEMV's rows the caller multiplies and activates apart.
        let x = randn((9, 256), dtype, &dev)?;
        assert!(silu_gated_linear(&x, &randn((64, 256), dtype, &dev)?)?.is_none());
    }
    Ok(())
}

/// The skinny GEMM itself, also at the split-K shapes `linear` sends to cuBLAS.
#[test]
fn skinny_gemm_matches_candle_matmul() -> Result<()> {
    let Some(dev) = gpu() else { return Ok(()) };
    let cuda = dev.as_cuda_device()?.clone();
    let shapes = [
        (9, 300, 256),
        (17, 6144, 4096),
        (40, 1024, 4096),
        (64, 4096, 14336),
        (32, 28672, 4096),
    ];
    let dtypes = [DType::F16, DType::BF16];
    let all = shapes
        .iter()
        .flat_map(|&(m, _, k)| dtypes.map(|d| (m, k, d)));
    for (m, k, dtype) in all {
        assert!(skinny_gemm::skinny_gemm_supported(m, k, dtype));
    }
    check_products(&dev, "skinny", &dtypes, &shapes, |x, w| {
        skinny_gemm::skinny_gemm(&cuda, x, w)
    })
}

#[test]
fn logits_stats_match_the_host() -> Result<()> {
    let Some(dev) = gpu() else { return Ok(()) };
    let (rows, vocab) = (6, 128_256);
    let mut host = Tensor::randn(0f32, 3.0, (rows, vocab), &Device::Cpu)?.to_vec2::<f32>()?;
    // Row 1: the maximum twice (the lowest index must win); row 2: a NaN; row 3: +inf.
    let top = host[1].iter().cloned().fold(f32::MIN, f32::max) + 1.0;
    host[1][700] = top;
    host[1][90_000] = top;
    host[2][5] = f32::NAN;
    host[3][77] = f32::INFINITY;
    let asked: Vec<u32> = vec![3, 700, 0, 1, vocab as u32 - 1, 12_345];
    let logits = Tensor::new(host.clone(), &dev)?;
    let stats = logits_stats(&logits, &Tensor::new(asked.as_slice(), &dev)?)?.to_vec2::<f32>()?;
    for (r, row) in host.iter().enumerate() {
        let [id, lp, lp_asked, ties] = [stats[r][0], stats[r][1], stats[r][2], stats[r][3]];
        if r == 2 || r == 3 {
            assert!(lp.is_nan() && lp_asked.is_nan(), "row {r}: {:?}", stats[r]);
            continue;
        }
        let mut lsm = row.clone();
        crate::sampling::log_softmax_in_place(&mut lsm);
        let best = crate::sampling::argmax(row).expect("argmax") as usize;
        assert_eq!(id as usize, best, "row {r}");
        assert_eq!(ties, if r == 1 { 2.0 } else { 1.0 }, "row {r}");
        assert!(
            (lp - lsm[best]).abs() < 1e-5,
            "row {r}: {lp} vs {}",
            lsm[best]
        );
        let want = lsm[asked[r] as usize];
        assert!(
            (lp_asked - want).abs() < 1e-5,
            "row {r}: {lp_asked} vs {want}"
        );
    }
    Ok(())
}
