//! Per-kernel timings at Llama-3-8B shapes with CUDA events (ignored test; run on a GPU:
//! `<test-bin> kernels::bench --ignored --nocapture`). Prints time and effective bandwidth
//! per op, so a forward's time can be accounted for op by op.

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

fn report(name: &str, (ms, host_us): (f32, f64), bytes: usize) {
    let gbs = bytes as f64 / (f64::from(ms) * 1e-3) / 1e9;
    eprintln!(
        "{name:<44} {:>9.1} us  {gbs:>7.0} GB/s  host {host_us:>6.1} us/call",
        ms * 1e3
    );
}

#[test]
#[ignore = "GPU timing table; run explicitly on a CUDA machine"]
fn kernel_timings_at_llama8b_shapes() -> Result<()> {
    let Ok(dev) = crate::device::select_device(0) else {
        return Ok(());
    };
    if !dev.is_cuda() {
        return Ok(());
    }
    let bf = DType::BF16;
    let rnd = |s: (usize, usize)| -> Result<Tensor> {
        Ok(Tensor::randn(0f32, 1.0, s, &dev)?.to_dtype(bf)?)
    };
    for m in [1usize, 32, 64] {
        for (what, n, k) in [
            ("qkv", 6144, 4096),
            ("o_proj", 4096, 4096),
            ("gate_up", 28672, 4096),
            ("down", 4096, 14336),
            ("lm_head", 128256, 4096),
        ] {
            let x = rnd((m, k))?;
            let w = rnd((n, k))?;
            let bytes = n * k * 2;
            report(
                &format!("linear (own) {what} m={m}"),
                time(&dev, 20, || linear(&x, &w))?,
                bytes,
            );
            report(
                &format!("candle matmul {what} m={m}"),
                time(&dev, 20, || Ok(x.matmul(&w.t()?)?))?,
                bytes,
            );
        }
        let x = rnd((m, 4096))?;
        let h = rnd((m, 4096))?;
        let wn = rnd((1, 4096))?.flatten_all()?;
        report(
            &format!("add_rms_norm m={m}"),
            time(&dev, 50, || Ok(add_rms_norm(&x, &h, &wn, 1e-5)?.1))?,
            m * 4096 * 8,
        );
        let gu = rnd((m, 28672))?;
        report(
            &format!("silu_mul m={m}"),
            time(&dev, 50, || silu_mul(&gu))?,
            m * 28672 * 3,
        );
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
            };
            report(
                &format!("paged_attention m={m} ctx={ctx}"),
                time(&dev, 50, || paged_attention(&q, &kc, &vc, &args))?,
                m * ctx * kvh * d * 2 * 2,
            );
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
