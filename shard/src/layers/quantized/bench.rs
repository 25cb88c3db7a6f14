//! Micro benchmark (ignored test): ns per matmul at the default model's shapes, ours vs candle.
//!
//! `RAYON_NUM_THREADS=2 cargo test -p text-generation-shard --release --lib
//! layers::quantized::bench -- --ignored --nocapture`
//!
//! "cold": each case cycles through enough copies of the matrix (≥ 96 MB, the model's weight
//! bytes per token) that the weights come from memory, as in a decode step; median of 5
//! rounds. "hot": one copy, cache-resident, fastest single call (robust to a busy machine).

use super::{Kernel, QuantizedMatmul};
use candle_core::quantized::{ggml_file::qtensor_from_ggml, GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};
use std::time::{Duration, Instant};

/// Bytes of weights cycled through per case.
const COLD_BYTES: usize = 96 << 20;
/// Measuring time per implementation and case.
const BUDGET: Duration = Duration::from_millis(300);

/// Fastest single call on copy 0 over [`BUDGET`].
fn hot_min_ns(mut call: impl FnMut(usize)) -> f64 {
    call(0);
    let start = Instant::now();
    let mut best = f64::INFINITY;
    while start.elapsed() < BUDGET {
        let t = Instant::now();
        call(0);
        best = best.min(t.elapsed().as_nanos() as f64);
    }
    best
}

/// Median over 5 rounds of the mean ns per call, cycling through the copies.
fn time_ns(copies: usize, mut call: impl FnMut(usize)) -> f64 {
    for i in 0..copies.min(4) {
        call(i);
    }
    let mut rounds = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        let mut n = 0;
        while n < copies || start.elapsed() < BUDGET / 5 {
            call(n % copies);
            n += 1;
        }
        rounds.push(start.elapsed().as_nanos() as f64 / n as f64);
    }
    rounds.sort_by(f64::total_cmp);
    rounds[2]
}

#[test]
#[ignore = "benchmark; run in release with --ignored --nocapture"]
fn quantized_matmul_ns_per_call() {
    let cases = [
        ("q_proj/o_proj", GgmlDType::Q4_1, 576, 576),
        ("k_proj/v_proj", GgmlDType::Q4_1, 576, 192),
        ("qkv fused", GgmlDType::Q4_1, 576, 960),
        ("gate/up", GgmlDType::Q4_1, 576, 1536),
        ("gate+up fused", GgmlDType::Q4_1, 576, 3072),
        ("down", GgmlDType::Q4_1, 1536, 576),
        ("lm_head", GgmlDType::Q8_0, 576, 49152),
    ];
    println!(
        "threads: {}, best kernel: {:?}",
        rayon::current_num_threads(),
        Kernel::best()
    );
    println!(
        "| matrix | dtype | in→out | tokens | candle cold | candle hot | ours AVX2 cold | ours {:?} cold | ours {:?} hot | speed-up cold |",
        Kernel::best(),
        Kernel::best()
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (name, dtype, inn, out) in cases {
        let weights = Tensor::randn(0f32, 1f32, (out, inn), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&weights, dtype).unwrap();
        let bytes = q.data().unwrap().into_owned();
        let copies = COLD_BYTES.div_ceil(bytes.len()).clamp(2, 512);
        let qs: Vec<QTensor> = (0..copies)
            .map(|_| qtensor_from_ggml(dtype, &bytes, vec![out, inn], &Device::Cpu).unwrap())
            .collect();
        let ours: Vec<QuantizedMatmul> = qs
            .iter()
            .map(|q| QuantizedMatmul::try_from_qtensor(q).unwrap())
            .collect();
        let avx2: Vec<QuantizedMatmul> = ours
            .iter()
            .filter_map(|m| m.clone().with_kernel(Kernel::Avx2))
            .collect();
        let candle: Vec<QMatMul> = qs
            .into_iter()
            .map(|q| QMatMul::from_qtensor(q).unwrap())
            .collect();
        for tokens in [1, 16] {
            let x = Tensor::randn(0f32, 1f32, (tokens, inn), &Device::Cpu).unwrap();
            let t_candle = time_ns(copies, |i| {
                candle[i].forward(&x).unwrap();
            });
            let t_avx2 = if avx2.is_empty() {
                f64::NAN
            } else {
                time_ns(copies, |i| {
                    avx2[i].forward(&x).unwrap();
                })
            };
            let t_best = time_ns(copies, |i| {
                ours[i].forward(&x).unwrap();
            });
            let hot_candle = hot_min_ns(|i| {
                candle[i].forward(&x).unwrap();
            });
            let hot_best = hot_min_ns(|i| {
                ours[i].forward(&x).unwrap();
            });
            println!(
                "| {name} | {dtype:?} | {inn}→{out} | {tokens} | {t_candle:.0} | {hot_candle:.0} | {t_avx2:.0} | {t_best:.0} | {hot_best:.0} | {:.1}× |",
                t_candle / t_best
            );
        }
    }
}
