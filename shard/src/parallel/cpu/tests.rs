//! Tests of the CPU communicator: N ranks as threads of the test process.

use super::CpuCommunicator;
use crate::parallel::Communicator;
use candle_core::{DType, Device, Tensor};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const CONNECT: Duration = Duration::from_secs(20);

/// Runs `f` on `world` connected ranks, one thread each; results in rank order.
fn with_ranks<R: Send>(world: usize, f: impl Fn(CpuCommunicator) -> R + Sync) -> Vec<R> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("comm");
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..world)
            .map(|rank| {
                let (f, path) = (&f, &path);
                s.spawn(move || f(CpuCommunicator::connect(rank, world, path, CONNECT).unwrap()))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// Deterministic values of mixed magnitude, so the summation order shows in the last bits.
fn data(rank: usize, salt: usize, n: usize) -> Vec<f32> {
    let mut state = (rank as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt as u64;
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let unit = (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
            let scale = [1e-3f32, 1.0, 1e3][(state >> 20) as usize % 3];
            unit * scale
        })
        .collect()
}

fn input(rank: usize, dims: &[usize], dtype: DType) -> Tensor {
    let n = dims.iter().product();
    Tensor::from_vec(data(rank, 7, n), dims, &Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
}

/// The sum in rank order, in f32, rounded once to `dtype`.
fn rank_order_sum(world: usize, dims: &[usize], dtype: DType) -> Vec<u32> {
    let mut acc = input(0, dims, dtype).to_dtype(DType::F32).unwrap();
    for r in 1..world {
        acc = (acc + input(r, dims, dtype).to_dtype(DType::F32).unwrap()).unwrap();
    }
    bits(&acc.to_dtype(dtype).unwrap())
}

fn bits(t: &Tensor) -> Vec<u32> {
    let flat = t.flatten_all().unwrap();
    match t.dtype() {
        DType::F32 => flat
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .map(|v| v.to_bits())
            .collect(),
        DType::F16 => flat
            .to_vec1::<half::f16>()
            .unwrap()
            .iter()
            .map(|v| v.to_bits().into())
            .collect(),
        DType::BF16 => flat
            .to_vec1::<half::bf16>()
            .unwrap()
            .iter()
            .map(|v| v.to_bits().into())
            .collect(),
        other => panic!("no bits for {other:?}"),
    }
}

#[test]
fn all_reduce_is_the_rank_order_sum_bit_for_bit() {
    for world in [1, 2, 3, 4, 5, 8] {
        let dims = [3, 577];
        let expected = rank_order_sum(world, &dims, DType::F32);
        let got = with_ranks(world, |c| {
            bits(
                &c.all_reduce_sum(&input(c.rank(), &dims, DType::F32))
                    .unwrap(),
            )
        });
        for (rank, g) in got.iter().enumerate() {
            assert!(g == &expected, "world {world}, rank {rank} differs");
        }
        if world >= 3 {
            // The data is order-sensitive: summing in reverse gives other bits, so the
            // equality above really checks the order.
            let mut rev = input(world - 1, &dims, DType::F32);
            for r in (0..world - 1).rev() {
                rev = (rev + input(r, &dims, DType::F32)).unwrap();
            }
            assert!(
                bits(&rev) != expected,
                "world {world}: data not order-sensitive"
            );
        }
    }
}

#[test]
fn all_reduce_of_f16_and_bf16_sums_in_f32_and_rounds_once() {
    for dtype in [DType::F16, DType::BF16] {
        for world in [2, 3, 4] {
            let dims = [2, 5, 33];
            let expected = rank_order_sum(world, &dims, dtype);
            let got = with_ranks(world, |c| {
                let y = c.all_reduce_sum(&input(c.rank(), &dims, dtype)).unwrap();
                assert_eq!(y.dtype(), dtype);
                assert_eq!(y.dims(), &dims);
                bits(&y)
            });
            assert!(
                got.iter().all(|g| g == &expected),
                "{dtype:?} world {world}"
            );
        }
    }
}

#[test]
fn all_reduce_of_payloads_larger_than_a_round_does_not_deadlock() {
    // 1 MiB per rank: many lockstep rounds, every rank writing before it reads.
    let dims = [256, 1024];
    for world in [2, 3] {
        let expected = rank_order_sum(world, &dims, DType::F32);
        let got = with_ranks(world, |c| {
            bits(
                &c.all_reduce_sum(&input(c.rank(), &dims, DType::F32))
                    .unwrap(),
            )
        });
        assert!(got.iter().all(|g| g == &expected), "world {world}");
    }
}

#[test]
fn ranks_agree_on_the_smallest_round_size() {
    // Rank r proposes 4 KiB << r: rank 0's 4 KiB must win everywhere, or the ranks would cut
    // the 1 MiB payload into different rounds and desynchronise.
    let dims = [256, 1024];
    let world = 3;
    let expected = rank_order_sum(world, &dims, DType::F32);
    let dir = tempfile::tempdir().unwrap();
    let got = std::thread::scope(|s| {
        let handles: Vec<_> = (0..world)
            .map(|rank| {
                let path = dir.path();
                s.spawn(move || {
                    let c = CpuCommunicator::connect_proposing(
                        rank,
                        world,
                        path,
                        CONNECT,
                        4096 << rank,
                    )
                    .unwrap();
                    assert_eq!(c.lock().unwrap().chunk(), 4096, "rank {rank}");
                    bits(&c.all_reduce_sum(&input(rank, &dims, DType::F32)).unwrap())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect::<Vec<_>>()
    });
    assert!(got.iter().all(|g| g == &expected));
}

#[test]
fn all_reduce_accepts_non_contiguous_input() {
    let got = with_ranks(3, |c| {
        let x = input(c.rank(), &[6, 4], DType::F32).t().unwrap();
        assert!(!x.is_contiguous());
        bits(&c.all_reduce_sum(&x).unwrap())
    });
    let mut acc = input(0, &[6, 4], DType::F32).t().unwrap();
    for r in 1..3 {
        acc = (acc + input(r, &[6, 4], DType::F32).t().unwrap()).unwrap();
    }
    assert!(got.iter().all(|g| g == &bits(&acc)));
}

#[test]
fn all_gather_concatenates_in_rank_order_along_dim_0_and_1() {
    for world in [2, 3, 4, 8] {
        for dim in [0, 1] {
            let parts: Vec<Tensor> = (0..world).map(|r| input(r, &[2, 3], DType::F32)).collect();
            let expected = bits(&Tensor::cat(&parts, dim).unwrap());
            let got = with_ranks(world, |c| {
                let y = c
                    .all_gather(&input(c.rank(), &[2, 3], DType::F32), dim)
                    .unwrap();
                bits(&y)
            });
            assert!(
                got.iter().all(|g| g == &expected),
                "world {world} dim {dim}"
            );
        }
    }
}

#[test]
fn all_gather_allows_uneven_sizes_and_keeps_dtype() {
    let got = with_ranks(3, |c| {
        let rows = c.rank() + 1;
        let x = Tensor::full(c.rank() as u32, (rows, 2), &Device::Cpu).unwrap();
        c.all_gather(&x, 0).unwrap().to_vec2::<u32>().unwrap()
    });
    let expected = vec![
        vec![0, 0],
        vec![1, 1],
        vec![1, 1],
        vec![2, 2],
        vec![2, 2],
        vec![2, 2],
    ];
    assert!(got.iter().all(|g| g == &expected));
}

#[test]
fn broadcast_from_a_non_zero_root_reaches_every_rank() {
    for (world, root) in [(2, 1), (3, 1), (4, 2), (8, 5)] {
        let expected = bits(&input(root, &[4, 7], DType::BF16));
        let got = with_ranks(world, |c| {
            // Non-roots pass a placeholder: only the root's tensor matters.
            let x = if c.rank() == root {
                input(root, &[4, 7], DType::BF16)
            } else {
                Tensor::zeros(1, DType::F32, &Device::Cpu).unwrap()
            };
            bits(&c.broadcast(&x, root).unwrap())
        });
        assert!(
            got.iter().all(|g| g == &expected),
            "world {world} root {root}"
        );
    }
}

#[test]
fn barrier_waits_for_every_rank() {
    for world in [2, 4, 8] {
        let arrived = AtomicUsize::new(0);
        with_ranks(world, |c| {
            // The last rank arrives late; nobody may leave before it.
            if c.rank() == world - 1 {
                std::thread::sleep(Duration::from_millis(50));
            }
            arrived.fetch_add(1, Ordering::SeqCst);
            c.barrier().unwrap();
            assert_eq!(arrived.load(Ordering::SeqCst), world);
        });
    }
}

#[test]
fn a_thousand_mixed_collectives_stay_in_order() {
    for world in [3, 8] {
        with_ranks(world, |c| {
            let r = c.rank() as f32;
            for i in 0..1000 {
                let x = Tensor::full(r + i as f32, 8, &Device::Cpu).unwrap();
                let sum = c.all_reduce_sum(&x).unwrap().to_vec1::<f32>().unwrap();
                let n = world as f32;
                let expected = n * (n - 1.0) / 2.0 + n * i as f32;
                assert!(sum.iter().all(|&v| v == expected), "step {i}: {sum:?}");
                if i % 100 == 0 {
                    let g = c.all_gather(&x, 0).unwrap().to_vec1::<f32>().unwrap();
                    assert_eq!(g.len(), 8 * world);
                    assert_eq!(g[8 * (world - 1)], n - 1.0 + i as f32);
                    let b = c
                        .broadcast(&x, i % world)
                        .unwrap()
                        .to_vec1::<f32>()
                        .unwrap();
                    assert_eq!(b[0], (i % world) as f32 + i as f32);
                    c.barrier().unwrap();
                }
            }
        });
    }
}

#[test]
fn world_of_one_is_the_identity_without_sockets() {
    let dir = tempfile::tempdir().unwrap();
    let c = CpuCommunicator::connect(0, 1, dir.path(), CONNECT).unwrap();
    let x = input(0, &[3, 4], DType::F32);
    assert_eq!(bits(&c.all_reduce_sum(&x).unwrap()), bits(&x));
    assert_eq!(bits(&c.all_gather(&x, 1).unwrap()), bits(&x));
    assert_eq!(bits(&c.broadcast(&x, 0).unwrap()), bits(&x));
    c.barrier().unwrap();
}

#[test]
fn a_rank_that_drops_out_fails_the_others_promptly() {
    let timings = with_ranks(3, |c| {
        let c = c.with_io_timeout(Duration::from_secs(30)).unwrap();
        let x = Tensor::ones(16, DType::F32, &Device::Cpu).unwrap();
        c.all_reduce_sum(&x).unwrap();
        if c.rank() == 2 {
            drop(c); // the process "dies": its sockets close
            return None;
        }
        let start = Instant::now();
        let err = c.all_reduce_sum(&x).unwrap_err().to_string();
        let elapsed = start.elapsed();
        // Later calls fail at once too.
        assert!(c.barrier().unwrap_err().to_string().contains("unusable"));
        Some((err, elapsed))
    });
    for (err, elapsed) in timings.into_iter().flatten() {
        assert!(err.contains("closed its connection"), "{err}");
        assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    }
}

#[test]
fn a_silent_rank_times_out() {
    let got = with_ranks(2, |c| {
        let c = c.with_io_timeout(Duration::from_millis(300)).unwrap();
        if c.rank() == 1 {
            std::thread::sleep(Duration::from_secs(1));
            return None;
        }
        let start = Instant::now();
        let err = c
            .all_reduce_sum(&Tensor::ones(4, DType::F32, &Device::Cpu).unwrap())
            .unwrap_err();
        Some((err.to_string(), start.elapsed()))
    });
    let (err, elapsed) = got[0].clone().unwrap();
    assert!(err.contains("no progress with rank 1"), "{err}");
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
}

#[test]
fn ranks_calling_different_collectives_get_an_error() {
    let errs = with_ranks(2, |c| {
        let x = Tensor::ones(4, DType::F32, &Device::Cpu).unwrap();
        let res = if c.rank() == 0 {
            c.all_reduce_sum(&x).map(|_| ())
        } else {
            c.all_gather(&x, 0).map(|_| ())
        };
        res.unwrap_err().to_string()
    });
    assert!(errs[0].contains("all_gather #1"), "{}", errs[0]);
    assert!(errs[1].contains("all_reduce_sum #1"), "{}", errs[1]);
}

#[test]
fn rendezvous_timeout_names_the_missing_ranks() {
    let dir = tempfile::tempdir().unwrap();
    let errs: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = [0usize, 1]
            .into_iter()
            .map(|rank| {
                let path = dir.path();
                s.spawn(move || {
                    CpuCommunicator::connect(rank, 4, path, Duration::from_millis(300))
                        .unwrap_err()
                        .to_string()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for e in &errs {
        assert!(e.contains("[2, 3]"), "{e}");
    }
}

/// Set in the child process of `a_killed_rank_process_fails_the_others_promptly`.
const CHILD_DIR_ENV: &str = "TGI_CPU_COMM_TEST_RANK1_DIR";

/// Rank 1 as a separate process: ten all-reduces, then it hangs until it is killed.
#[test]
#[ignore = "run by a_killed_rank_process_fails_the_others_promptly as a child process"]
fn rank_one_process() {
    let Ok(dir) = std::env::var(CHILD_DIR_ENV) else {
        return;
    };
    let c = CpuCommunicator::connect(1, 2, std::path::Path::new(&dir), CONNECT).unwrap();
    for _ in 0..10 {
        c.all_reduce_sum(&Tensor::ones(64, DType::F32, &Device::Cpu).unwrap())
            .unwrap();
    }
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn a_killed_rank_process_fails_the_others_promptly() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "parallel::cpu::tests::rank_one_process",
            "--ignored",
        ])
        .env(CHILD_DIR_ENV, dir.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let c = CpuCommunicator::connect(0, 2, dir.path(), CONNECT).unwrap();
    let x = Tensor::ones(64, DType::F32, &Device::Cpu).unwrap();
    for _ in 0..10 {
        let y = c.all_reduce_sum(&x).unwrap().to_vec1::<f32>().unwrap();
        assert!(y.iter().all(|&v| v == 2.0));
    }
    // Rank 1 now hangs; kill it while rank 0 waits inside the 11th all-reduce.
    let start = Instant::now();
    let err = std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(200));
            child.kill().unwrap();
        });
        c.all_reduce_sum(&x).unwrap_err().to_string()
    });
    let elapsed = start.elapsed();
    let _ = child.wait();
    assert!(err.contains("rank 1 closed its connection"), "{err}");
    assert!(
        elapsed < Duration::from_secs(5),
        "took {elapsed:?} (timeout is 60 s)"
    );
}

#[test]
fn sockets_left_by_an_earlier_run_are_replaced() {
    let dir = tempfile::tempdir().unwrap();
    for rank in 0..3 {
        // Bound then dropped: the file stays, nobody listens (a crashed earlier run).
        drop(std::os::unix::net::UnixListener::bind(
            dir.path().join(format!("rank-{rank}.sock")),
        ));
    }
    let world = 3;
    let sums = std::thread::scope(|s| {
        let handles: Vec<_> = (0..world)
            .map(|rank| {
                let path = dir.path();
                s.spawn(move || {
                    let c = CpuCommunicator::connect(rank, world, path, CONNECT).unwrap();
                    let x = Tensor::full(1f32, 2, &Device::Cpu).unwrap();
                    c.all_reduce_sum(&x).unwrap().to_vec1::<f32>().unwrap()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect::<Vec<_>>()
    });
    assert!(sums.iter().all(|v| v == &[3.0, 3.0]));
    // Rendezvous sockets are removed once everyone is connected.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn bad_rank_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let err = CpuCommunicator::connect(2, 2, dir.path(), CONNECT).unwrap_err();
    assert!(err.to_string().contains("out of range"), "{err}");
}

#[test]
fn rendezvous_dir_sits_next_to_the_shard_sockets() {
    let dir = CpuCommunicator::rendezvous_dir(std::path::Path::new("/tmp/text-generation-server"));
    assert_eq!(
        dir,
        std::path::Path::new("/tmp/text-generation-server-comm")
    );
}

/// `cargo test -p text-generation-shard --lib --release parallel::cpu::tests::bench -- --ignored --nocapture`
#[test]
#[ignore = "micro-benchmark"]
fn bench_all_reduce_latency() {
    for (world, n) in [
        (2, 576),
        (2, 4096),
        (4, 576),
        (2, 576 * 16),
        (2, 576 * 64),
        (2, 576 * 256),
        (2, 576 * 1024),
    ] {
        let iters = if n > 10_000 { 200 } else { 20_000 };
        let times = with_ranks(world, |c| {
            let x = input(c.rank(), &[n], DType::F32);
            for _ in 0..100 {
                c.all_reduce_sum(&x).unwrap();
            }
            let start = Instant::now();
            for _ in 0..iters {
                c.all_reduce_sum(&x).unwrap();
            }
            start.elapsed()
        });
        let us = times[0].as_secs_f64() * 1e6 / iters as f64;
        println!("all_reduce_sum N={world} {n} f32: {us:.1} µs per call");
    }
}
