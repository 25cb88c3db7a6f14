//! SIGTERM to the launcher while streams are in flight: the router drains them (each stream
//! ends with its final event or a clean error event, never cut mid-way), then the shards stop;
//! the launcher exits 0 and leaves nothing behind.

use integration_tests::http::{client, post_sse_with};
use integration_tests::{procs, tiny_model, Launcher};
use nix::sys::signal::Signal;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_active_streams_then_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let model = model.to_str().unwrap().to_string();
    let mut l = Launcher::start(&["--model-id", &model, "--max-batch-total-tokens", "4096"]);
    let l = tokio::task::spawn_blocking(move || {
        l.wait_ready(Duration::from_secs(180));
        l
    })
    .await
    .unwrap();
    let children = procs::descendants(l.pid());

    const STREAMS: usize = 4;
    let started = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..STREAMS {
        let url = l.url("/generate_stream");
        let started = started.clone();
        tasks.push(tokio::spawn(async move {
            let body = json!({"inputs": format!("stream {i}"),
                "parameters": {"max_new_tokens": 200, "do_sample": true, "seed": i, "details": true}});
            let mut first = true;
            post_sse_with(&client(), &url, &body, move |_| {
                if first {
                    started.fetch_add(1, Ordering::SeqCst);
                    first = false;
                }
            })
            .await
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while started.load(Ordering::SeqCst) < STREAMS {
        assert!(
            Instant::now() < deadline,
            "streams did not start:\n{}",
            l.output()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    l.signal(Signal::SIGTERM);

    let mut completed = 0;
    for t in tasks {
        let out = tokio::time::timeout(Duration::from_secs(180), t)
            .await
            .expect("stream did not end after SIGTERM")
            .unwrap();
        assert_eq!(out.status, 200, "{out:?}");
        assert!(out.transport_error.is_none(), "stream cut: {out:?}");
        assert!(out.trailing.is_empty(), "stream cut mid-event: {out:?}");
        let last: Value = serde_json::from_str(out.events.last().expect("no event")).unwrap();
        if last["generated_text"].is_string() {
            completed += 1;
            assert_eq!(
                last["details"]["generated_tokens"].as_u64().unwrap() as usize,
                out.events.len(),
                "{out:?}"
            );
        } else {
            assert!(
                last["error"].is_string(),
                "neither final nor error event: {last}"
            );
        }
    }
    eprintln!("{completed}/{STREAMS} streams completed, the rest ended with an error event");

    let mut l = l;
    let status = tokio::task::spawn_blocking(move || {
        let s = l.wait_exit(Duration::from_secs(60));
        (s, l)
    })
    .await
    .unwrap();
    let (status, l) = status;
    let status = status.unwrap_or_else(|| panic!("launcher did not exit:\n{}", l.output()));
    assert!(status.success(), "{status}:\n{}", l.output());
    let out = l.output();
    let drained = out.find("Webserver terminated").expect("router stopped");
    let shards = out.find("Shutting down shards").expect("shards stopped");
    assert!(
        drained < shards,
        "shards stopped before the router drained:\n{out}"
    );
    l.assert_nothing_left(&children);
}
