//! GPU tests of the NCCL communicator, ignored by default (they need a CUDA GPU and NCCL):
//! `cargo test --features nccl --lib parallel::nccl -- --ignored`.

use super::NcclCommunicator;
use crate::error::{Result, ShardError};
use crate::parallel::Communicator;
use candle_core::cuda_backend::cudarc::driver::CudaContext;
use candle_core::{DType, Device, Tensor};
use std::time::Duration;
use tempfile::TempDir;

const TIMEOUT: Duration = Duration::from_secs(60);
const DTYPES: [DType; 3] = [DType::F32, DType::F16, DType::BF16];

/// Small integers distinct per rank (`i % 16 + 16 * rank`): exact in every dtype, and so are
/// sums of up to 8 ranks in f32 and f16.
fn sample(dims: &[usize], rank: usize, dtype: DType, device: &Device) -> Result<Tensor> {
    let n: usize = dims.iter().product();
    let values: Vec<f32> = (0..n).map(|i| (i % 16 + 16 * rank) as f32).collect();
    Ok(Tensor::from_vec(values, dims, &Device::Cpu)?
        .to_dtype(dtype)?
        .to_device(device)?)
}

fn host(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
}

fn rendezvous() -> Result<TempDir> {
    tempfile::tempdir().map_err(|source| ShardError::Io {
        context: "creating a temporary directory".into(),
        source,
    })
}

#[test]
#[ignore = "needs a CUDA GPU and NCCL"]
fn one_rank_runs_every_collective_on_the_gpu() -> Result<()> {
    let device = Device::new_cuda(0)?;
    let dir = rendezvous()?;
    let comm = NcclCommunicator::connect(0, 1, &device, dir.path(), TIMEOUT)?;
    assert_eq!((comm.rank(), comm.world_size()), (0, 1));
    for dtype in DTYPES {
        let x = sample(&[3, 5, 4], 0, dtype, &device)?;
        let want = host(&x)?;
        let reduced = comm.all_reduce_sum(&x)?;
        assert_eq!((reduced.dims(), reduced.dtype()), (x.dims(), dtype));
        assert_eq!(host(&reduced)?, want, "{dtype:?} all_reduce_sum");
        for dim in 0..3 {
            let g = comm.all_gather(&x, dim)?;
            assert_eq!(g.dims(), x.dims(), "{dtype:?} all_gather dim {dim}");
            assert_eq!(host(&g)?, want, "{dtype:?} all_gather dim {dim}");
        }
        assert_eq!(host(&comm.broadcast(&x, 0)?)?, want, "{dtype:?} broadcast");
        // A strided input is made contiguous first.
        let t = x.transpose(0, 2)?;
        assert_eq!(host(&comm.all_reduce_sum(&t)?)?, host(&t.contiguous()?)?);
    }
    // Ordered with candle's kernels on the same stream: the collective sees the matmul's
    // result and the next kernel sees the collective's.
    let a = sample(&[64, 128], 0, DType::F32, &device)?;
    let y = a.matmul(&a.t()?)?;
    let z = (comm.all_reduce_sum(&y)? * 2.0)?;
    assert_eq!(host(&z)?, host(&(y * 2.0)?)?);
    comm.barrier()?;
    let empty = Tensor::zeros((0, 4), DType::F32, &device)?;
    assert_eq!(comm.all_reduce_sum(&empty)?.dims(), [0, 4]);
    Ok(())
}

#[test]
#[ignore = "needs a CUDA GPU and NCCL"]
fn a_tensor_on_another_device_is_refused() -> Result<()> {
    let device = Device::new_cuda(0)?;
    let dir = rendezvous()?;
    let comm = NcclCommunicator::connect(0, 1, &device, dir.path(), TIMEOUT)?;
    let x = Tensor::ones(4, DType::F32, &Device::Cpu)?;
    assert!(comm.all_reduce_sum(&x).is_err());
    assert!(comm.all_gather(&x, 0).is_err());
    assert!(comm.broadcast(&x, 0).is_err());
    assert!(comm.broadcast(&x.to_device(&device)?, 1).is_err());
    Ok(())
}

/// Every collective of one rank, as host values: per dtype, the sum, the gathers along
/// dims 0..3 and the broadcast from the last rank.
fn one_rank(rank: usize, world: usize, dir: &std::path::Path) -> Result<Vec<Vec<f32>>> {
    let device = Device::new_cuda(rank)?;
    let comm = NcclCommunicator::connect(rank, world, &device, dir, TIMEOUT)?;
    let dims = [2usize, 3, 4];
    let mut out = Vec::new();
    for dtype in DTYPES {
        let x = sample(&dims, rank, dtype, &device)?;
        out.push(host(&comm.all_reduce_sum(&x)?)?);
        for dim in 0..3 {
            let g = comm.all_gather(&x, dim)?;
            let mut want = dims.to_vec();
            want[dim] *= world;
            assert_eq!(g.dims(), want.as_slice(), "{dtype:?} all_gather dim {dim}");
            out.push(host(&g)?);
        }
        out.push(host(&comm.broadcast(&x, world - 1)?)?);
    }
    comm.barrier()?;
    Ok(out)
}

/// One rank per visible GPU, one thread each (NCCL wants a distinct GPU per rank).
#[test]
#[ignore = "needs at least two CUDA GPUs and NCCL"]
fn ranks_on_every_gpu_agree() -> Result<()> {
    let world = match CudaContext::device_count() {
        Ok(n) if n >= 2 => n.min(8) as usize,
        _ => {
            eprintln!("skipped: fewer than two GPUs");
            return Ok(());
        }
    };
    let dir = rendezvous()?;
    let handles: Vec<_> = (0..world)
        .map(|rank| {
            let dir = dir.path().to_path_buf();
            std::thread::spawn(move || one_rank(rank, world, &dir))
        })
        .collect();
    let mut results = Vec::new();
    for h in handles {
        match h.join() {
            Ok(r) => results.push(r?),
            Err(_) => panic!("a rank panicked"),
        }
    }
    let dims = [2usize, 3, 4];
    let parts: Vec<Tensor> = (0..world)
        .map(|r| sample(&dims, r, DType::F32, &Device::Cpu))
        .collect::<Result<_>>()?;
    let mut sum = parts[0].clone();
    for p in &parts[1..] {
        sum = sum.add(p)?;
    }
    let mut expected = vec![host(&sum)?];
    for dim in 0..3 {
        expected.push(host(&Tensor::cat(&parts, dim)?)?);
    }
    expected.push(host(&parts[world - 1])?);
    for (rank, got) in results.iter().enumerate() {
        assert_eq!(got.len(), DTYPES.len() * expected.len(), "rank {rank}");
        for (d, dtype) in DTYPES.iter().enumerate() {
            for (i, want) in expected.iter().enumerate() {
                let got = &got[d * expected.len() + i];
                // bf16 sums above 256 round; everything else is exact.
                let tol = if *dtype == DType::BF16 && i == 0 {
                    0.01
                } else {
                    0.0
                };
                let close = got.len() == want.len()
                    && got
                        .iter()
                        .zip(want)
                        .all(|(g, w)| (g - w).abs() <= tol * w.abs());
                assert!(
                    close,
                    "rank {rank} {dtype:?} result {i}: {got:?} != {want:?}"
                );
            }
        }
    }
    Ok(())
}
