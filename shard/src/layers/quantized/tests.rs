//! Kernel tests: every kernel against an f64 matmul over candle's dequantized weights (with an
//! error bound derived from the activation quantization), SIMD against scalar, and against
//! candle's `QMatMul`.

use super::{Kernel, QuantizedMatmul};
use candle_core::quantized::{ggml_file::qtensor_from_ggml, GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor};
use half::f16;

const KERNELS: [Kernel; 4] = [
    Kernel::Scalar,
    Kernel::Avx2,
    Kernel::AvxVnni,
    Kernel::Avx512Vnni,
];
/// `in` = 576 is the model's hidden size (18 blocks, not a multiple of 256); out = 1 and 7 are
/// a lone padded group, 67 is 8 full groups and a partial one; 1003 is large enough to be
/// split across threads, with a partial last group.
const SHAPES: [(usize, usize); 5] = [(576, 1), (576, 7), (576, 67), (1536, 24), (576, 1003)];
const TOKENS: [usize; 3] = [1, 3, 16];

/// Relative f32 rounding allowance of the kernels' float part: per block a product of three
/// factors and up to two fused adds, summed over at most 48 blocks, each step ≤ 2^-24
/// relative: (48 + 4) · 2^-24 ≈ 3.1e-6, doubled for headroom.
const FLOAT_REL: f64 = 6.5e-6;

fn random(shape: (usize, usize)) -> Tensor {
    Tensor::randn(0f32, 1f32, shape, &Device::Cpu).unwrap()
}

fn quantized(out: usize, inn: usize, dtype: GgmlDType) -> QTensor {
    QTensor::quantize(&random((out, inn)), dtype).unwrap()
}

/// The exact result over the dequantized weights and, per element, how far a correct kernel
/// may be from it.
struct Reference {
    exact: Vec<f64>,
    /// Activation quantization: `|x - d q| ≤ d / 2` with `d = max|x_block| / 127`, so the
    /// error is at most `Σ_blocks d/2 · Σ |w|`; plus [`FLOAT_REL`] of `Σ 3 W_b (|x| + d)`,
    /// where `W_b = max |w|` over the block bounds `|q d| + |m|` for all three formats.
    bound: Vec<f64>,
    /// The float part of `bound` alone (what two correct kernels may differ by, halved).
    float: Vec<f64>,
    /// `sqrt(Σ w² x²)`: the typical size of a dot product of unrelated random vectors, a
    /// scale that does not depend on one draw's luck (a single output can be near zero).
    typical: Vec<f64>,
}

fn reference(q: &QTensor, x: &Tensor) -> Reference {
    let w = q
        .dequantize(&Device::Cpu)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    let x = x.to_vec2::<f32>().unwrap();
    let mut r = Reference {
        exact: vec![],
        bound: vec![],
        float: vec![],
        typical: vec![],
    };
    for xt in &x {
        for wr in &w {
            let (mut exact, mut quant, mut float, mut sq) = (0f64, 0f64, 0f64, 0f64);
            for (xb, wb) in xt.chunks(32).zip(wr.chunks(32)) {
                let d = xb.iter().fold(0f64, |a, &v| a.max(f64::from(v).abs())) / 127.0;
                let wmax = wb.iter().fold(0f64, |a, &v| a.max(f64::from(v).abs()));
                for (&xi, &wi) in xb.iter().zip(wb) {
                    exact += f64::from(xi) * f64::from(wi);
                    sq += (f64::from(xi) * f64::from(wi)).powi(2);
                    quant += d / 2.0 * f64::from(wi).abs();
                    float += FLOAT_REL * 3.0 * wmax * (f64::from(xi).abs() + d);
                }
            }
            r.exact.push(exact);
            r.bound.push(quant + float);
            r.float.push(float);
            r.typical.push(sq.sqrt());
        }
    }
    r
}

fn forward(m: &QuantizedMatmul, x: &Tensor) -> Vec<f32> {
    m.forward(x)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
}

fn rms(v: &[f64]) -> f64 {
    (v.iter().map(|a| a * a).sum::<f64>() / v.len() as f64).sqrt()
}

/// Every supported kernel is within the quantization bound of the exact result, and the
/// bound is tight enough to mean something (well under the output's size).
fn check_against_reference(dtype: GgmlDType) {
    for (inn, out) in SHAPES {
        let q = quantized(out, inn, dtype);
        let base = QuantizedMatmul::try_from_qtensor(&q).unwrap();
        for tokens in TOKENS {
            let x = random((tokens, inn));
            let r = reference(&q, &x);
            let scale = rms(&r.typical);
            assert!(
                scale > 1.0,
                "degenerate reference for {dtype:?} {inn}->{out}"
            );
            // The worst-case bound grows like `in`, the output like √in; a kernel that mixes up
            // values is off by about the output itself, far beyond it.
            assert!(
                rms(&r.bound) < 0.5 * scale,
                "bound too loose: {} vs {scale} ({inn}->{out} x{tokens})",
                rms(&r.bound)
            );
            for kernel in KERNELS.into_iter().filter(|k| k.is_supported()) {
                let m = base.clone().with_kernel(kernel).unwrap();
                let y = forward(&m, &x);
                assert_eq!(y.len(), tokens * out);
                // Typical error: rounding noise `d/√12` per value (`d ≈ 2.3σ/127`), about 0.6%
                // of the typical output; 4% stays above 6 standard deviations even for a
                // single output.
                let err: Vec<f64> = y
                    .iter()
                    .zip(&r.exact)
                    .map(|(&v, e)| f64::from(v) - e)
                    .collect();
                assert!(
                    rms(&err) < 0.04 * scale,
                    "{dtype:?} {kernel:?} {inn}->{out} x{tokens}: RMS error {}",
                    rms(&err)
                );
                for (i, &v) in y.iter().enumerate() {
                    let err = (f64::from(v) - r.exact[i]).abs();
                    assert!(
                        err <= r.bound[i],
                        "{dtype:?} {kernel:?} {inn}->{out} x{tokens} [{i}]: {v} vs {} (bound {})",
                        r.exact[i],
                        r.bound[i]
                    );
                }
            }
        }
    }
}

#[test]
fn q4_1_kernels_match_dequantized_reference() {
    check_against_reference(GgmlDType::Q4_1);
}

#[test]
fn q4_0_kernels_match_dequantized_reference() {
    check_against_reference(GgmlDType::Q4_0);
}

#[test]
fn q8_0_kernels_match_dequantized_reference() {
    check_against_reference(GgmlDType::Q8_0);
}

/// SIMD kernels compute the same integer sums as the scalar one; only the float order of
/// operations differs, so they agree to twice the float allowance.
#[test]
fn simd_kernels_match_scalar() {
    for dtype in [GgmlDType::Q4_0, GgmlDType::Q4_1, GgmlDType::Q8_0] {
        for (inn, out) in SHAPES {
            let q = quantized(out, inn, dtype);
            let base = QuantizedMatmul::try_from_qtensor(&q).unwrap();
            let scalar = base.clone().with_kernel(Kernel::Scalar).unwrap();
            for tokens in TOKENS {
                let x = random((tokens, inn));
                let r = reference(&q, &x);
                let want = forward(&scalar, &x);
                for kernel in KERNELS[1..].iter().copied().filter(|k| k.is_supported()) {
                    let got = forward(&base.clone().with_kernel(kernel).unwrap(), &x);
                    for (i, (&a, &b)) in got.iter().zip(&want).enumerate() {
                        let diff = f64::from(a - b).abs();
                        assert!(
                            diff <= 2.0 * r.float[i],
                            "{dtype:?} {kernel:?} {inn}->{out} x{tokens} [{i}]: {a} vs {b}"
                        );
                    }
                }
            }
        }
    }
}

/// candle quantizes activations the same way (but rounds scales and sums to f16), so each
/// result is off the exact one by activation quantization noise, about 0.3% RMS for Gaussian
/// inputs (rounding error `d/√12` per value, `d ≈ 2.5σ/127`); allow 2% of the output RMS.
#[test]
fn agrees_with_candle_qmatmul() {
    for dtype in [GgmlDType::Q4_0, GgmlDType::Q4_1, GgmlDType::Q8_0] {
        for tokens in TOKENS {
            let q = quantized(67, 576, dtype);
            let x = random((tokens, 576));
            let ours = forward(&QuantizedMatmul::try_from_qtensor(&q).unwrap(), &x);
            let theirs = QMatMul::from_qtensor(q).unwrap().forward(&x).unwrap();
            let theirs = theirs.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let diff: Vec<f64> = ours
                .iter()
                .zip(&theirs)
                .map(|(a, b)| f64::from(a - b))
                .collect();
            let scale: Vec<f64> = theirs.iter().map(|&b| f64::from(b)).collect();
            assert!(rms(&scale) > 1.0);
            assert!(
                rms(&diff) < 0.02 * rms(&scale),
                "{dtype:?} x{tokens}: {} vs {}",
                rms(&diff),
                rms(&scale)
            );
        }
    }
}

/// Extreme integer sums: all nibbles 15 (Q4) or all values -128 (Q8) against activations at
/// ±127, where a 16-bit pair sum would saturate if the kernels accumulated carelessly.
#[test]
fn extreme_values_do_not_saturate() {
    let (out, inn, tokens) = (9, 64, 2);
    let one = f16::from_f32(1.0).to_le_bytes();
    let mut q4 = Vec::new();
    let mut q8 = Vec::new();
    for _ in 0..out * inn / 32 {
        q4.extend_from_slice(&one);
        q4.extend_from_slice(&f16::from_f32(0.0).to_le_bytes());
        q4.extend_from_slice(&[0xFF; 16]);
        q8.extend_from_slice(&one);
        q8.extend_from_slice(&[0x80; 32]);
    }
    // Token 0: all +1 (q = 127); token 1: alternating sign.
    let xs: Vec<f32> = (0..tokens * inn)
        .map(|i| if i < inn || i % 2 == 0 { 1.0 } else { -1.0 })
        .collect();
    let x = Tensor::from_vec(xs, (tokens, inn), &Device::Cpu).unwrap();
    for (dtype, bytes, row_sum) in [
        (GgmlDType::Q4_1, q4, 15.0 * 64.0),
        (GgmlDType::Q8_0, q8, -128.0 * 64.0),
    ] {
        let q = qtensor_from_ggml(dtype, &bytes, vec![out, inn], &Device::Cpu).unwrap();
        let base = QuantizedMatmul::try_from_qtensor(&q).unwrap();
        for kernel in KERNELS.into_iter().filter(|k| k.is_supported()) {
            let y = forward(&base.clone().with_kernel(kernel).unwrap(), &x);
            for (i, &v) in y.iter().enumerate() {
                // Token 1's alternating signs cancel exactly.
                let want = if i < out { row_sum } else { 0.0 };
                assert!(
                    (f64::from(v) - want).abs() < 1e-3,
                    "{dtype:?} {kernel:?} [{i}]: {v} vs {want}"
                );
            }
        }
    }
}

#[test]
fn keeps_leading_dims_and_dtype() {
    let q = quantized(7, 576, GgmlDType::Q4_1);
    let m = QuantizedMatmul::try_from_qtensor(&q).unwrap();
    assert_eq!((m.in_features(), m.out_features()), (576, 7));
    let x = Tensor::randn(0f32, 1f32, (2, 3, 576), &Device::Cpu).unwrap();
    let y = m.forward(&x).unwrap();
    assert_eq!(y.dims(), &[2, 3, 7]);
    let flat = m.forward(&x.reshape((6, 576)).unwrap()).unwrap();
    let diff = (y.reshape((6, 7)).unwrap() - flat)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap();
    assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);
    let y16 = m.forward(&x.to_dtype(DType::F16).unwrap()).unwrap();
    assert_eq!(y16.dtype(), DType::F16);
    assert!(m
        .forward(&Tensor::zeros((2, 512), DType::F32, &Device::Cpu).unwrap())
        .is_err());
}

#[test]
fn unsupported_weights_are_declined() {
    let k_quant = QTensor::quantize(&random((4, 512)), GgmlDType::Q4K).unwrap();
    assert!(QuantizedMatmul::try_from_qtensor(&k_quant).is_none());
    let dense = QTensor::quantize(&random((4, 64)), GgmlDType::F32).unwrap();
    assert!(QuantizedMatmul::try_from_qtensor(&dense).is_none());
    let three_d = QTensor::quantize(
        &Tensor::randn(0f32, 1f32, (2, 4, 64), &Device::Cpu).unwrap(),
        GgmlDType::Q4_1,
    )
    .unwrap();
    assert!(QuantizedMatmul::try_from_qtensor(&three_d).is_none());
}
