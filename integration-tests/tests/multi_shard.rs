//! `--num-shard 2`: one shard process per rank with RANK/WORLD_SIZE/MASTER_* set.
//!
//! Until tensor parallelism lands the shard refuses WORLD_SIZE > 1; this test then asserts the
//! clean failure path (non-zero exit naming the shard and its error, nothing left). When the
//! shard stops refusing, the same test requires a working 2-shard deployment instead.

use integration_tests::{http, procs, tiny_model, Launcher};
use nix::sys::signal::Signal;
use std::time::{Duration, Instant};

/// The shard's refusal while tensor parallelism is not built in.
const REFUSAL: &str =
    "tensor parallelism across shard processes is not available in this build yet";

#[test]
fn two_shards_start_or_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let mut l = Launcher::start(&[
        "--model-id",
        model.to_str().unwrap(),
        "--num-shard",
        "2",
        "--max-batch-total-tokens",
        "4096",
    ]);
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut seen = Vec::new();
    loop {
        for p in procs::descendants(l.pid()) {
            if !seen.iter().any(|s: &procs::ProcInfo| s.pid == p.pid) {
                seen.push(p);
            }
        }
        if let Some(status) = l.try_status() {
            std::thread::sleep(Duration::from_millis(200));
            let out = l.output();
            assert!(
                out.contains(REFUSAL),
                "the 2-shard deployment failed for another reason ({status}):\n{out}"
            );
            assert!(!status.success());
            assert!(
                out.contains("Shard 0 failed to start") || out.contains("Shard 1 failed to start"),
                "{out}"
            );
            assert!(out.contains("WORLD_SIZE 2"), "{out}");
            // Both ranks were started before the failure.
            assert!(
                out.contains("Starting shard rank=1") || out.contains("rank=1"),
                "{out}"
            );
            l.assert_nothing_left(&seen);
            return;
        }
        if http::get_status_blocking(l.port, "/health") == Some(200) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "neither ready nor failed:\n{}",
            l.output()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Tensor parallelism is in: two shard processes serve one model.
    let children = procs::descendants(l.pid());
    let shards = children
        .iter()
        .filter(|p| p.cmdline.contains("text-generation-shard"))
        .count();
    assert_eq!(shards, 2, "{children:?}");
    assert_eq!(l.sockets().len(), 2);
    assert_eq!(http::get_status_blocking(l.port, "/info"), Some(200));
    l.signal(Signal::SIGTERM);
    let status = l
        .wait_exit(Duration::from_secs(30))
        .expect("launcher exits");
    assert!(status.success(), "{}", l.output());
    l.assert_nothing_left(&children);
}
