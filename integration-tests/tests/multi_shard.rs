//! `--num-shard 2`: one shard process per rank (RANK/WORLD_SIZE/MASTER_* set), the router on
//! rank 0's socket, answers through both ranks; and a rank killed mid-deployment tears
//! everything down (no hang in a collective, nothing left).

use integration_tests::{http, procs, tiny_model, Launcher};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::json;
use std::time::{Duration, Instant};

fn start_two_shards(dir: &std::path::Path) -> Launcher {
    let model = tiny_model(dir);
    let mut l = Launcher::start(&[
        "--model-id",
        model.to_str().unwrap(),
        "--num-shard",
        "2",
        "--max-batch-total-tokens",
        "4096",
    ]);
    l.wait_ready(Duration::from_secs(180));
    l
}

fn shards_of(children: &[procs::ProcInfo]) -> Vec<procs::ProcInfo> {
    children
        .iter()
        .filter(|p| p.cmdline.contains("text-generation-shard"))
        .cloned()
        .collect()
}

#[test]
fn two_shards_serve_and_stop_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut l = start_two_shards(dir.path());
    let children = procs::descendants(l.pid());
    let shards = shards_of(&children);
    assert_eq!(shards.len(), 2, "{children:?}");
    for s in &shards {
        assert!(s.cmdline.contains("--sharded"), "{}", s.cmdline);
        let env = std::fs::read(format!("/proc/{}/environ", s.pid)).unwrap_or_default();
        let env = String::from_utf8_lossy(&env);
        assert!(env.split('\0').any(|v| v == "WORLD_SIZE=2"), "{env}");
        assert!(env.split('\0').any(|v| v.starts_with("MASTER_PORT=")));
    }
    assert_eq!(l.sockets().len(), 2, "{:?}", l.sockets());
    let (status, g) = http::post_json_blocking(
        l.port,
        "/generate",
        &json!({"inputs": "Hello there", "parameters": {"max_new_tokens": 8, "details": true}}),
    )
    .expect("generate answered");
    assert_eq!(status, 200, "{g}");
    assert!(g["details"]["generated_tokens"].as_u64().unwrap() >= 1);
    l.signal(Signal::SIGTERM);
    let status = l
        .wait_exit(Duration::from_secs(30))
        .expect("launcher exits");
    assert!(status.success(), "{}", l.output());
    l.assert_nothing_left(&children);
}

#[test]
fn rank_killed_tears_two_shards_down_within_2s() {
    let dir = tempfile::tempdir().unwrap();
    let mut l = start_two_shards(dir.path());
    let children = procs::descendants(l.pid());
    let rank1 = shards_of(&children)
        .into_iter()
        .find(|s| {
            let env = std::fs::read(format!("/proc/{}/environ", s.pid)).unwrap_or_default();
            String::from_utf8_lossy(&env)
                .split('\0')
                .any(|v| v == "RANK=1")
        })
        .expect("rank 1 process");
    kill(Pid::from_raw(rank1.pid as i32), Signal::SIGKILL).unwrap();
    let killed = Instant::now();
    let status = l.wait_exit(Duration::from_secs(2)).unwrap_or_else(|| {
        panic!(
            "launcher still running 2 s after rank 1 died:\n{}",
            l.output()
        )
    });
    assert!(killed.elapsed() < Duration::from_secs(2));
    assert!(!status.success());
    assert!(
        l.output()
            .contains("Shard 1 crashed (killed by signal 9 (SIGKILL))"),
        "{}",
        l.output()
    );
    l.assert_nothing_left(&children);
}
