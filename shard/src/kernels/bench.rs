//! Per-kernel timings at Llama-3-8B shapes with CUDA events (ignored test; run on a GPU:
//! `<test-bin> kernels::bench --ignored --nocapture`). Prints time and effective bandwidth
//! per op, so a forward's time can be accounted for op by op: queued one by one, and replayed
//! from a CUDA graph of back-to-back calls, as decode runs them (launch gaps included).

use super::*;
use candle_core::Device;
use std::time::Instant;

/// Mean GPU milliseconds of `f` over `iters` runs after 3 warm-up runs, and host
/// microseconds per call to queue them.
fn time(dev: &Device, iters: usize, mut f: impl FnMut() -> Result<Tensor>) -> Result<(f32, f64)> {
    let Device::Cuda(cuda) = dev else {
        return Ok((0.0, 0.0));
    };
    let stream = cuda.cuda_stream();
    for _ in 0..3 {
        f()?;
    }
    stream.synchronize().map_err(candle_core::Error::wrap)?;
    let flags =
        Some(candle_core::cuda_backend::cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT);
    let start = stream
        .record_event(flags)
        .map_err(candle_core::Error::wrap)?;
    let host = Instant::now();
    for _ in 0..iters {
        f()?;
    }
    let host_us = host.elapsed().as_secs_f64() * 1e6 / iters as f64;
    let end = stream
        .record_event(flags)
        .map_err(candle_core::Error::wrap)?;
    end.synchronize().map_err(candle_core::Error::wrap)?;
    let ms = start.elapsed_ms(&end).map_err(candle_core::Error::wrap)?;
    Ok((ms / iters as f32, host_us))
}

/// Mean GPU milliseconds of one of `calls` back-to-back calls of `f` recorded in a CUDA graph
/// (mean of 5 replays after one), or `None` when the calls cannot be recorded.
fn time_graph(dev: &Device, calls: usize, mut f: impl FnMut() -> Result<Tensor>) -> Option<f32> {
    use candle_core::cuda_backend::cudarc::driver::sys::{
        CUgraphInstantiate_flags, CUstreamCaptureMode,
    };
    let Device::Cuda(cuda) = dev else { return None };
    let stream = cuda.cuda_stream();
    f().ok()?; // fills the upload cache that the capture draws on
    let _uploads = cuda.enable_cuda_graph_htod_cache();
    stream
        .begin_capture(CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_RELAXED)
        .ok()?;
    // Each output is dropped inside the capture: its memory is a node of the graph.
    let recorded = (0..calls).try_for_each(|_| f().map(drop));
    let graph = stream.end_capture(CUgraphInstantiate_flags(0)).ok()??;
    recorded.ok()?;
    graph.upload().ok()?;
    graph.launch().ok()?;
    let flags =
        Some(candle_core::cuda_backend::cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT);
    let start = stream.record_event(flags).ok()?;
    for _ in 0..5 {
        graph.launch().ok()?;
    }
    let end = stream.record_event(flags).ok()?;
    end.synchronize().ok()?;
    Some(start.elapsed_ms(&end).ok()? / (5 * calls) as f32)
}

fn report(name: &str, (ms, host_us): (f32, f64), bytes: usize) {
    let gbs = bytes as f64 / (f64::from(ms) * 1e-3) / 1e9;
    eprintln!(
        "{name:<44} {:>9.1} us  {gbs:>7.0} GB/s  host {host_us:>6.1} us/call",
        ms * 1e3
    );
}

/// [`report`] of eager timings, then the in-graph time of the same calls.
fn report_both(
    dev: &Device,
    name: &str,
    bytes: usize,
    mut f: impl FnMut() -> Result<Tensor>,
) -> Result<()> {
    report(name, time(dev, 50, &mut f)?, bytes);
    match time_graph(dev, 50, f) {
        Some(ms) => {
            let gbs = bytes as f64 / (f64::from(ms) * 1e-3) / 1e9;
            eprintln!(
                "{:<44} {:>9.1} us  {gbs:>7.0} GB/s",
                format!("{name} (graph)"),
                ms * 1e3
            );
        }
        None => eprintln!("{name} (graph): capture failed"),
    }
    Ok(())
}

/// The linears of one Llama-3-8B layer, `(name, N, K)`.
const LAYER_LINEARS: [(&str, usize, usize); 4] = [
    ("qkv", 6144, 4096),
    ("o_proj", 4096, 4096),
    ("gate_up", 28672, 4096),
    ("down", 4096, 14336),
];

/// The CUDA device, or `None` (the timing tables then print nothing).
fn cuda() -> Option<Device> {
    crate::device::select_device(0).ok().filter(|d| d.is_cuda())
}

/// Random bf16 values of `shape` on `dev`.
fn rnd(dev: &Device, shape: (usize, usize)) -> Result<Tensor> {
    Ok(Tensor::randn(0f32, 1.0, shape, dev)?.to_dtype(DType::BF16)?)
}

fn report_tflops(name: &str, (ms, host_us): (f32, f64), flops: f64) {
    let tflops = flops / (f64::from(ms) * 1e-3) / 1e12;
    eprintln!(
        "{name}: {:>8.1} us {tflops:>6.0} TFLOP/s host {host_us:.0} us",
        ms * 1e3
    );
}

#[test]
#[ignore = "GPU timing table; run explicitly on a CUDA machine"]
fn kernel_timings_at_llama8b_shapes() -> Result<()> {
    let Some(dev) = cuda() else { return Ok(()) };
    let rnd = |s: (usize, usize)| rnd(&dev, s);
    for m in [1usize, 16, 32, 48, 64] {
        for (what, n, k) in LAYER_LINEARS.into_iter().chain([("lm_head", 128256, 4096)]) {
            let x = rnd((m, k))?;
            let w = rnd((n, k))?;
            let bytes = n * k * 2;
            report(
                &format!("linear (own) {what} m={m}"),
                time(&dev, 20, || linear(&x, &w))?,
                bytes,
            );
            if let Device::Cuda(cuda) = &dev {
                if skinny_gemm::skinny_gemm_supported(m, k, DType::BF16) {
                    report(
                        &format!("skinny GEMM {what} m={m}"),
                        time(&dev, 20, || skinny_gemm::skinny_gemm(cuda, &x, &w))?,
                        bytes,
                    );
                }
            }
            report(
                &format!("cuBLAS {what} m={m}"),
                time(&dev, 20, || gemm::cublas_linear(&x, &w))?,
                bytes,
            );
        }
        let x = rnd((m, 4096))?;
        let h = rnd((m, 4096))?;
        let wn = rnd((1, 4096))?.flatten_all()?;
        report_both(&dev, &format!("add_rms_norm m={m}"), m * 4096 * 8, || {
            Ok(add_rms_norm(&x, &h, &wn, 1e-5)?.1)
        })?;
        let gu = rnd((m, 28672))?;
        report_both(&dev, &format!("silu_mul m={m}"), m * 28672 * 3, || {
            silu_mul(&gu)
        })?;
        if m == 1 {
            // The batch-1 GEMVs as decode replays them (a graph of back-to-back calls).
            for (what, n, k) in LAYER_LINEARS {
                let x = rnd((m, k))?;
                let w = rnd((n, k))?;
                report_both(&dev, &format!("linear {what} m=1"), n * k * 2, || {
                    linear(&x, &w)
                })?;
            }
            // gate/up with its activation: one gated GEMV against GEMV then SiLU·mul.
            let x = rnd((m, 4096))?;
            let w = rnd((28672, 4096))?;
            report_both(&dev, "gate_up+silu_mul m=1 apart", 28672 * 4096 * 2, || {
                silu_mul(&linear(&x, &w)?)
            })?;
            report_both(&dev, "gate_up+silu_mul m=1 gated", 28672 * 4096 * 2, || {
                silu_gated_linear(&x, &w)?.ok_or_else(|| {
                    crate::error::ShardError::InvalidArgument("no gated GEMV".into())
                })
            })?;
        }
        for ctx in [256usize, 2048] {
            // Each sequence reads its own `ctx` slots; 32 heads over 8 KV heads of 128.
            let (heads, kvh, d) = (32, 8, 128);
            let kc = rnd((m * ctx, kvh * d))?.reshape((m * ctx, kvh, d))?;
            let vc = rnd((m * ctx, kvh * d))?.reshape((m * ctx, kvh, d))?;
            let q = rnd((m, heads * d))?.reshape((m, heads, d))?;
            let table: Vec<u32> = (0..(m * ctx) as u32).collect();
            let offsets: Vec<u32> = (0..m as u32).map(|s| s * ctx as u32).collect();
            let args = PagedAttentionArgs {
                token_seq: Tensor::new((0..m as u32).collect::<Vec<_>>().as_slice(), &dev)?,
                token_pos: Tensor::new(vec![ctx as u32 - 1; m].as_slice(), &dev)?,
                seq_off: Tensor::new(offsets.as_slice(), &dev)?,
                slot_table: Tensor::new(table.as_slice(), &dev)?,
                max_keys: ctx,
                window: 0,
                scale: 0.088,
                split_counters: attention::paged_attention_counters(m, heads, &dev)?,
            };
            for target in [264usize, 528, 1056] {
                report_both(
                    &dev,
                    &format!("paged_attention m={m} ctx={ctx} blocks={target}"),
                    m * ctx * kvh * d * 2 * 2,
                    || attention::paged_attention_tuned(&q, &kc, &vc, &args, target),
                )?;
            }
        }
        let tiny = rnd((1, 1))?;
        report(
            "tiny candle op (affine 1 elem)",
            time(&dev, 200, || Ok(tiny.affine(2.0, 1.0)?))?,
            0,
        );
    }
    Ok(())
}

#[test]
#[ignore = "GPU timing table; run explicitly on a CUDA machine"]
fn prefill_timings_at_llama8b_shapes() -> Result<()> {
    use crate::kv::{
        AttentionMetadata, CudaPagedCache, PagedAttention, TensorPagedCache, BLOCK_SIZE,
    };
    let Some(dev) = cuda() else { return Ok(()) };
    let bf = DType::BF16;
    let rnd = |s: (usize, usize)| rnd(&dev, s);
    let m = 2048;
    for (what, n, k) in LAYER_LINEARS {
        let x = rnd((m, k))?;
        let w = rnd((n, k))?;
        report_tflops(
            &format!("linear {what} m={m}"),
            time(&dev, 10, || linear(&x, &w))?,
            2.0 * (m * n * k) as f64,
        );
    }
    // One sequence's 2048-token prompt through the cache's prefill attention, layer after
    // layer so that the per-forward plan is built once.
    let (heads, kvh, d, layers) = (32, 8, 128, 32);
    let mut cache = CudaPagedCache::new(layers, m / BLOCK_SIZE + 1, kvh, d, bf, &dev)?;
    let slots: Vec<u32> = (BLOCK_SIZE as u32..(BLOCK_SIZE + m) as u32).collect();
    let meta = AttentionMetadata {
        token_slots: slots.clone(),
        token_seq: vec![0; m],
        token_pos: (0..m as u32).collect(),
        seq_slots: vec![slots],
        sliding_window: None,
        softmax_scale: 0.088,
    };
    let q = rnd((m, heads * d))?.reshape((m, heads, d))?;
    let kv = rnd((m, kvh * d))?.reshape((m, kvh, d))?;
    let flops = 4.0 * (m * m / 2 * heads * d) as f64;
    let mut layer = 0;
    let timed = time(&dev, layers, || {
        let out = cache.forward(layer % layers, &q, &kv, &kv, &meta);
        layer += 1;
        out
    })?;
    let path = cache.attention_path().unwrap_or("none");
    report_tflops(
        &format!("prefill attention ({path}) m={m}, per layer"),
        timed,
        flops,
    );
    // The matmul path over the same cache layout, for comparison.
    let mut reference = TensorPagedCache::new(layers, m / BLOCK_SIZE + 1, kvh, d, bf, &dev)?;
    let timed = time(&dev, layers, || {
        let out = reference.forward(layer % layers, &q, &kv, &kv, &meta);
        layer += 1;
        out
    })?;
    report_tflops(
        &format!("prefill attention (matmul) m={m}, per layer"),
        timed,
        flops,
    );
    Ok(())
}
