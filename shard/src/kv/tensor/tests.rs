//! Tests of `TensorPagedCache` against an f64 reference and `CpuPagedCache` on fresh random inputs.

use super::*;
use crate::kv::test_layout::ScheduleLayout;
use crate::kv::CpuPagedCache;

/// Heads, dtype, window and device of one test problem.
struct Case {
    h: usize,
    kvh: usize,
    d: usize,
    window: Option<usize>,
    dtype: DType,
    device: Device,
}

const F32: Case = Case {
    h: 8,
    kvh: 2,
    d: 16,
    window: None,
    dtype: DType::F32,
    device: Device::Cpu,
};

/// One sequence's Q/K/V at every position of one layer, already rounded through the dtype.
struct Seq {
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
}

fn host(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
}

/// Fresh normal values rounded through `dtype`, so the reference sees what the cache holds.
fn rand(n: usize, dtype: DType) -> Result<Vec<f32>> {
    host(&Tensor::randn(0f32, 1.0, n, &Device::Cpu)?.to_dtype(dtype)?)
}

/// Dense causal attention with GQA and window in f64 for the token at `pos`.
fn reference(c: &Case, s: &Seq, pos: usize) -> Vec<f32> {
    let (h, kvh, d) = (c.h, c.kvh, c.d);
    let lo = c.window.map_or(0, |w| (pos + 1).saturating_sub(w));
    let mut out = vec![0f32; h * d];
    for hh in 0..h {
        let g = hh / (h / kvh);
        let at = |x: &[f32], j: usize, e: usize| f64::from(x[(j * kvh + g) * d + e]);
        let qe = |e: usize| f64::from(s.q[(pos * h + hh) * d + e]);
        let sc: Vec<f64> = (lo..=pos)
            .map(|j| (0..d).map(|e| qe(e) * at(&s.k, j, e)).sum::<f64>() / (d as f64).sqrt())
            .collect();
        let m = sc.iter().copied().fold(f64::MIN, f64::max);
        let z: f64 = sc.iter().map(|x| (x - m).exp()).sum();
        for e in 0..d {
            let o = (lo..=pos).map(|j| (sc[j - lo] - m).exp() / z * at(&s.v, j, e));
            out[hh * d + e] = o.sum::<f64>() as f32;
        }
    }
    out
}

/// Runs `steps` (each a list of `(sequence, new tokens)`) over two layers through a
/// `TensorPagedCache` in `c.dtype` and a `CpuPagedCache`; returns the relative error of the
/// tensor cache against the f64 reference and against the CPU cache.
fn run(
    c: &Case,
    steps: &[&[(usize, usize)]],
    reverse: bool,
    budget: usize,
    copy_runs: usize,
) -> Result<(f32, f32)> {
    let (h, kvh, d, layers) = (c.h, c.kvh, c.d, 2);
    let layout = ScheduleLayout::new(steps);
    let (nseq, len, nb) = (layout.nseq, &layout.lens, layout.num_blocks);
    let slot = |s: usize, p: usize| layout.slot(s, p);
    let seqs = (0..layers * nseq)
        .map(|i| {
            let n = len[i % nseq];
            Ok(Seq {
                q: rand(n * h * d, c.dtype)?,
                k: rand(n * kvh * d, c.dtype)?,
                v: rand(n * kvh * d, c.dtype)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let mut cache = TensorPagedCache::new(layers, nb, kvh, d, c.dtype, &c.device)?;
    (cache.score_budget, cache.max_copy_runs) = (budget, copy_runs);
    let mut cpu = CpuPagedCache::new(layers, nb, kvh, d);
    let mut done = vec![0; nseq];
    let (mut err, mut err_cpu, mut max) = (0f32, 0f32, 0f32);
    for step in steps {
        let mut toks: Vec<(usize, usize, usize)> = Vec::new();
        for (si, &(s, n)) in step.iter().enumerate() {
            toks.extend((done[s]..done[s] + n).map(|p| (si, s, p)));
        }
        if reverse {
            toks.reverse();
        }
        let meta = AttentionMetadata {
            token_slots: toks.iter().map(|&(_, s, p)| slot(s, p)).collect(),
            token_seq: toks.iter().map(|&(si, _, _)| si as u32).collect(),
            token_pos: toks.iter().map(|&(_, _, p)| p as u32).collect(),
            seq_slots: step
                .iter()
                .map(|&(s, n)| (0..done[s] + n).map(|p| slot(s, p)).collect())
                .collect(),
            sliding_window: c.window,
            softmax_scale: 1.0 / (d as f32).sqrt(),
        };
        for l in 0..layers {
            let sq = |s: usize| &seqs[l * nseq + s];
            let rows = |f: &dyn Fn(&Seq) -> &[f32], w: usize| -> Result<Tensor> {
                let v: Vec<f32> = toks
                    .iter()
                    .flat_map(|&(_, s, p)| f(sq(s))[p * w * d..(p + 1) * w * d].to_vec())
                    .collect();
                Ok(Tensor::from_vec(v, (toks.len(), w, d), &Device::Cpu)?)
            };
            let (q, k, v) = (
                rows(&|s| &s.q, h)?,
                rows(&|s| &s.k, kvh)?,
                rows(&|s| &s.v, kvh)?,
            );
            let half = |t: &Tensor| t.to_dtype(c.dtype)?.to_device(&c.device);
            let got = host(&cache.forward(l, &half(&q)?, &half(&k)?, &half(&v)?, &meta)?)?;
            let want_cpu = host(&cpu.forward(l, &q, &k, &v, &meta)?)?;
            for (i, &(_, s, p)) in toks.iter().enumerate() {
                let want = reference(c, sq(s), p);
                for (e, w) in want.iter().enumerate() {
                    let g = got[i * h * d + e];
                    err = err.max((g - w).abs());
                    err_cpu = err_cpu.max((g - want_cpu[i * h * d + e]).abs());
                    max = max.max(w.abs());
                }
            }
        }
        step.iter().for_each(|&(s, n)| done[s] += n);
    }
    Ok((err / max, err_cpu / max))
}

/// Both slot-write paths (contiguous copies where possible, scatter always) must agree.
fn check(c: &Case, steps: &[&[(usize, usize)]], reverse: bool, budget: usize) -> Result<()> {
    let tol = if c.dtype == DType::F32 { 1e-5 } else { 1e-2 };
    for copy_runs in [MAX_COPY_RUNS, 0] {
        let (rel, rel_cpu) = run(c, steps, reverse, budget, copy_runs)?;
        assert!(rel < tol, "relative error {rel} against the f64 reference");
        assert!(
            rel_cpu < tol,
            "relative error {rel_cpu} against CpuPagedCache"
        );
    }
    Ok(())
}

/// Three sequences prefilled together, then decode steps with one chunk in between.
const RAGGED: &[&[(usize, usize)]] = &[
    &[(0, 5), (1, 23), (2, 40)],
    &[(0, 1), (1, 1), (2, 1)],
    &[(1, 1), (0, 9), (2, 1)],
    &[(2, 1), (0, 1), (1, 1)],
];

#[test]
fn matches_the_reference_in_one_prefill() -> Result<()> {
    check(&F32, &[&[(0, 40)]], false, SCORE_BUDGET)
}

#[test]
fn matches_over_chunked_prefill_and_decode_steps() -> Result<()> {
    let steps: Vec<&[(usize, usize)]> = [17, 9, 1, 1, 1, 5]
        .iter()
        .map(|&n| match n {
            17 => &[(0, 17)][..],
            9 => &[(0, 9)][..],
            5 => &[(0, 5)][..],
            _ => &[(0, 1)][..],
        })
        .collect();
    check(&F32, &steps, false, SCORE_BUDGET)
}

#[test]
fn matches_a_ragged_batch_with_scattered_blocks() -> Result<()> {
    check(&F32, RAGGED, false, SCORE_BUDGET)
}

#[test]
fn matches_with_tokens_out_of_sequence_order() -> Result<()> {
    check(&F32, RAGGED, true, SCORE_BUDGET)
}

#[test]
fn matches_when_work_is_split_to_a_small_score_budget() -> Result<()> {
    check(&F32, RAGGED, false, 300)?;
    check(&F32, RAGGED, true, 1)
}

#[test]
fn honours_the_sliding_window() -> Result<()> {
    let c = Case {
        window: Some(6),
        ..F32
    };
    check(
        &c,
        &[&[(0, 20)], &[(0, 1)], &[(0, 1)], &[(0, 3)]],
        false,
        SCORE_BUDGET,
    )?;
    check(&c, RAGGED, true, 500)
}

#[test]
fn handles_multi_query_and_multi_head_attention() -> Result<()> {
    check(&Case { kvh: 1, ..F32 }, RAGGED, false, SCORE_BUDGET)?;
    check(&Case { kvh: 8, ..F32 }, RAGGED, false, SCORE_BUDGET)
}

#[test]
fn half_dtypes_stay_within_one_percent() -> Result<()> {
    for dtype in [DType::BF16, DType::F16] {
        let c = Case { dtype, ..F32 };
        check(&c, RAGGED, true, SCORE_BUDGET)?;
        check(
            &Case {
                window: Some(7),
                ..c
            },
            RAGGED,
            false,
            400,
        )?;
    }
    Ok(())
}

/// Two prompts of 150 and 300 tokens, then two decode steps.
const LLAMA_STEPS: &[&[(usize, usize)]] =
    &[&[(0, 150), (1, 300)], &[(0, 1), (1, 1)], &[(1, 1), (0, 1)]];

/// Llama-3-8B's head layout: 32 heads, 8 KV heads, head dim 128.
fn llama(dtype: DType, device: Device) -> Case {
    Case {
        h: 32,
        kvh: 8,
        d: 128,
        window: None,
        dtype,
        device,
    }
}

/// Built with `--features cuda` and run on a GPU machine: the same checks on the device,
/// plus a Llama-3-8B-shaped head layout (32 heads, 8 KV heads, head dim 128).
#[test]
#[cfg(feature = "cuda")]
fn matches_on_the_gpu() -> Result<()> {
    let device = crate::device::select_device(0)?;
    for dtype in [DType::F32, DType::BF16, DType::F16] {
        let c = Case {
            dtype,
            device: device.clone(),
            ..F32
        };
        check(&c, RAGGED, true, SCORE_BUDGET)?;
        check(
            &Case {
                window: Some(7),
                ..c
            },
            RAGGED,
            false,
            400,
        )?;
        check(
            &llama(dtype, device.clone()),
            LLAMA_STEPS,
            false,
            SCORE_BUDGET,
        )?;
    }
    Ok(())
}

#[test]
fn picks_copies_for_runs_and_scatter_for_scattered_slots() -> Result<()> {
    let cache = TensorPagedCache::new(1, 64, 2, 4, DType::F32, &Device::Cpu)?;
    let runs: Vec<u32> = (32..72).chain(160..176).collect();
    assert!(matches!(cache.slot_write(&runs)?, SlotWrite::Runs(r) if r.len() == 2));
    let scattered: Vec<u32> = (0..20).map(|i| i * 17 % 1000).collect();
    assert!(matches!(
        cache.slot_write(&scattered)?,
        SlotWrite::Scatter(_)
    ));
    Ok(())
}

#[test]
fn writes_only_the_new_slots_in_place() -> Result<()> {
    let (kvh, d) = (2, 4);
    let mut cache = TensorPagedCache::new(1, 4, kvh, d, DType::F32, &Device::Cpu)?;
    let slots: Vec<u32> = (0..12).map(|i| i * 5 % 64).collect();
    let n = slots.len();
    let q = Tensor::randn(0f32, 1.0, (n, kvh, d), &Device::Cpu)?;
    let k = Tensor::randn(0f32, 1.0, (n, kvh, d), &Device::Cpu)?;
    let meta = AttentionMetadata {
        token_slots: slots.clone(),
        token_seq: (0..n as u32).collect(),
        token_pos: vec![0; n],
        seq_slots: slots.iter().map(|&s| vec![s]).collect(),
        sliding_window: None,
        softmax_scale: 0.5,
    };
    let out = cache.forward(0, &q, &k, &k, &meta)?;
    // A query alone with its own key returns its value.
    assert_eq!(host(&out)?, host(&k)?);
    let ids = Tensor::new(slots.as_slice(), &Device::Cpu)?;
    assert_eq!(host(&cache.keys[0].index_select(&ids, 0)?)?, host(&k)?);
    let written = host(&cache.keys[0].abs()?.sum((1, 2))?)?;
    let untouched = written
        .iter()
        .enumerate()
        .filter(|(s, _)| !slots.contains(&(*s as u32)));
    assert!(untouched.into_iter().all(|(_, &x)| x == 0.0));
    Ok(())
}

#[test]
fn rejects_bad_slots_and_metadata() -> Result<()> {
    let mut cache = TensorPagedCache::new(1, 1, 1, 2, DType::F32, &Device::Cpu)?;
    let x = Tensor::randn(0f32, 1.0, (1, 1, 2), &Device::Cpu)?;
    let meta = AttentionMetadata {
        token_slots: vec![999],
        token_seq: vec![0],
        token_pos: vec![0],
        seq_slots: vec![vec![999]],
        sliding_window: None,
        softmax_scale: 1.0,
    };
    assert!(cache.forward(0, &x, &x, &x, &meta).is_err());
    let past_end = AttentionMetadata {
        token_slots: vec![3],
        token_pos: vec![4],
        seq_slots: vec![vec![3]],
        ..meta.clone()
    };
    assert!(cache.forward(0, &x, &x, &x, &past_end).is_err());
    let ok = AttentionMetadata {
        token_slots: vec![3],
        seq_slots: vec![vec![3]],
        ..meta
    };
    assert!(
        cache.forward(1, &x, &x, &x, &ok).is_err(),
        "layer out of range"
    );
    assert!(cache.forward(0, &x, &x, &x, &ok).is_ok());
    Ok(())
}

#[test]
fn sizes_tokens_by_dtype() {
    assert_eq!(
        TensorPagedCache::bytes_per_token(32, 8, 128, DType::BF16),
        131072
    );
    assert_eq!(TensorPagedCache::bytes_per_token(2, 1, 4, DType::F32), 64);
}

/// The GPU test's Llama-3-8B head layout on the CPU (slow in debug builds).
#[test]
#[ignore = "slow: f64 reference over 450 tokens of 32 heads"]
fn matches_with_llama_shaped_heads() -> Result<()> {
    for dtype in [DType::F32, DType::BF16, DType::F16] {
        check(&llama(dtype, Device::Cpu), LLAMA_STEPS, false, SCORE_BUDGET)?;
    }
    Ok(())
}
