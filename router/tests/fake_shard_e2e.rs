//! The router binary against in-process fake shards over Unix sockets: startup, batching,
//! concurrency, cancellation, multi-shard merging, chunked prefill and shard failures.

mod common;

use common::fake_shard::{expected_text, FakeShard, FakeShardConfig};
use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

struct Setup {
    _dir: tempfile::TempDir,
    shards: Vec<FakeShard>,
    router: RouterProcess,
}

async fn setup(world: usize, chunking: bool, delay_ms: u64, extra: &[&str]) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let model = write_tiny_model(dir.path());
    let base = dir.path().join("shard");
    let urls: Vec<String> = (0..world)
        .map(|r| format!("{}-{r}", base.display()))
        .collect();
    let mut shards = Vec::new();
    for rank in 0..world {
        let config = FakeShardConfig {
            rank: rank as u32,
            urls: urls.clone(),
            block_size: 16,
            num_blocks: 512,
            support_chunking: chunking,
            step_delay: Duration::from_millis(delay_ms),
        };
        shards.push(FakeShard::spawn(std::path::Path::new(&urls[rank]), config).await);
    }
    let router = RouterProcess::start(std::path::Path::new(&urls[0]), &model, extra).await;
    Setup {
        _dir: dir,
        shards,
        router,
    }
}

async fn wait_until<F: Fn() -> bool>(what: &str, f: F) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn parse(e: &str) -> Value {
    serde_json::from_str(e).unwrap_or_else(|err| panic!("{err}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_stream_info_metrics() {
    let s = setup(1, false, 0, &[]).await;
    let c = client();
    let (status, info) = post_json(
        &c,
        &s.router.url("/generate"),
        &json!({"inputs": "hello", "parameters": {"max_new_tokens": 5, "details": true}}),
    )
    .await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["generated_text"], expected_text("hello", 5));
    assert_eq!(info["details"]["generated_tokens"], 5);
    assert_eq!(info["details"]["finish_reason"], "length");
    assert_eq!(info["details"]["tokens"].as_array().unwrap().len(), 5);

    let (status, events) = post_sse(&c, &s.router.url("/generate_stream"), &json!({"inputs": "hello", "parameters": {"max_new_tokens": 5, "details": true, "top_n_tokens": 2}})).await;
    assert_eq!(status, 200);
    assert_eq!(events.len(), 5);
    let parsed: Vec<Value> = events.iter().map(|e| parse(e)).collect();
    let text: String = parsed
        .iter()
        .map(|e| e["token"]["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(text, expected_text("hello", 5));
    for (i, e) in parsed.iter().enumerate() {
        assert_eq!(e["index"], i as u64 + 1);
        assert_eq!(e["top_tokens"].as_array().unwrap().len(), 2);
    }
    assert_eq!(parsed[4]["generated_text"], expected_text("hello", 5));
    assert_eq!(
        parsed[4]["details"],
        json!({"finish_reason": "length", "generated_tokens": 5, "seed": null, "input_length": 5})
    );

    // Stop sequence: the third and fourth letters of the known continuation.
    let full = expected_text("hello", 10);
    let stop = &full[2..4];
    let (_, r) = post_json(&c, &s.router.url("/generate"), &json!({"inputs": "hello", "parameters": {"max_new_tokens": 10, "stop": [stop], "details": true}})).await;
    assert_eq!(r["details"]["finish_reason"], "stop_sequence");
    assert!(r["generated_text"].as_str().unwrap().ends_with(stop));

    let info: Value = c
        .get(s.router.url("/info"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["max_total_tokens"], 512);
    assert_eq!(info["max_input_tokens"], 511);
    assert_eq!(
        c.get(s.router.url("/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let text = metrics_text(&c, &s.router).await;
    for name in [
        "tgi_request_count",
        "tgi_request_success",
        "tgi_queue_size",
        "tgi_batch_max_total_tokens",
        "tgi_batch_inference_count",
        "tgi_batch_inference_success",
        "tgi_request_duration_bucket",
        "tgi_request_generated_tokens_bucket",
        "tgi_batch_next_size_bucket",
        "tgi_batch_current_size",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics");
    }
    assert_eq!(metric(&text, "tgi_batch_max_total_tokens"), Some(8192.0));
    let prom = c
        .get(format!(
            "http://127.0.0.1:{}/metrics",
            s.router.prometheus_port
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(prom.contains("tgi_request_count"));
    assert!(s.shards[0].stats().prefills >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_concurrent_streams_match_solo_runs() {
    let s = setup(1, false, 2, &[]).await;
    let c = client();
    let body = |i: usize| json!({"inputs": format!("prompt number {i}"), "parameters": {"max_new_tokens": 3 + (i * 7) % 40, "details": true}});
    let url = s.router.url("/generate_stream");
    let runs = (0..64).map(|i| {
        let (c, url, b) = (c.clone(), url.clone(), body(i));
        tokio::spawn(async move { post_sse(&c, &url, &b).await })
    });
    let results = futures::future::join_all(runs).await;
    for (i, r) in results.into_iter().enumerate() {
        let (status, events) = r.unwrap();
        assert_eq!(status, 200);
        let n = 3 + (i * 7) % 40;
        assert_eq!(events.len(), n, "stream {i}");
        let last = parse(events.last().unwrap());
        assert_eq!(last["details"]["generated_tokens"], n as u64);
        let streamed: String = events
            .iter()
            .map(|e| parse(e)["token"]["text"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(streamed, expected_text(&format!("prompt number {i}"), n));
        assert_eq!(last["generated_text"], streamed);
    }
    // The same request alone gives the same text.
    for i in [0usize, 17, 63] {
        let (_, solo) = post_json(&c, &s.router.url("/generate"), &body(i)).await;
        assert_eq!(
            solo["generated_text"],
            expected_text(&format!("prompt number {i}"), 3 + (i * 7) % 40)
        );
    }
    let stats = s.shards[0].stats();
    assert!(
        stats.max_batch_size > 1,
        "requests were never batched: {stats:?}"
    );
    assert!(
        stats.filters > 0,
        "finished requests were never filtered out: {stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_streams_free_blocks_and_queue() {
    let s = setup(1, false, 3, &[]).await;
    let c = client();
    let idle = metric(
        &metrics_text(&c, &s.router).await,
        "tgi_block_allocator_free_blocks",
    );
    assert_eq!(idle, Some(511.0), "block 0 is reserved out of 512");
    let url = s.router.url("/generate_stream");
    let runs = (0..100).map(|i| {
        let (c, url) = (c.clone(), url.clone());
        tokio::spawn(async move {
            let r = c.post(&url).json(&json!({"inputs": format!("cancel me {i}"), "parameters": {"max_new_tokens": 300}})).send().await.unwrap();
            let mut stream = futures::StreamExt::boxed(r.bytes_stream());
            // Read a little, then hang up.
            let _ = futures::StreamExt::next(&mut stream).await;
            drop(stream);
        })
    });
    futures::future::join_all(runs).await;
    let shard = s.shards[0].clone();
    wait_until("the shard to hold no request", || {
        let st = shard.stats();
        st.live_requests == 0 && st.cached_batches == 0 && st.blocks_in_use == 0
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = metrics_text(&c, &s.router).await;
        let ok = metric(&text, "tgi_queue_size") == Some(0.0)
            && metric(&text, "tgi_block_allocator_free_blocks") == idle
            && metric(&text, "tgi_batch_current_size") == Some(0.0);
        if ok {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "router did not return to idle:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, r) = post_json(
        &c,
        &s.router.url("/generate"),
        &json!({"inputs": "still alive", "parameters": {"max_new_tokens": 4}}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(r["generated_text"], expected_text("still alive", 4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_shards_merge_generations() {
    let s = setup(2, false, 1, &[]).await;
    let c = client();
    let runs = (0..8).map(|i| {
        let (c, url) = (c.clone(), s.router.url("/generate"));
        tokio::spawn(async move { (i, post_json(&c, &url, &json!({"inputs": format!("shard test {i}"), "parameters": {"max_new_tokens": 6}})).await) })
    });
    for r in futures::future::join_all(runs).await {
        let (i, (status, v)) = r.unwrap();
        assert_eq!(status, 200);
        assert_eq!(
            v["generated_text"],
            expected_text(&format!("shard test {i}"), 6)
        );
    }
    assert!(
        s.shards.iter().all(|sh| sh.stats().prefills > 0),
        "every shard must get every RPC"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_prefill_when_shard_supports_it() {
    let s = setup(1, true, 1, &["--max-batch-prefill-tokens", "32"]).await;
    let c = client();
    let prompts: Vec<String> = (0..4)
        .map(|i| format!("{i} {}", "long prompt ".repeat(8)))
        .collect();
    let runs = prompts.iter().map(|p| {
        let (c, url, p) = (c.clone(), s.router.url("/generate"), p.clone());
        tokio::spawn(async move {
            (
                p.clone(),
                post_json(
                    &c,
                    &url,
                    &json!({"inputs": p, "parameters": {"max_new_tokens": 5}}),
                )
                .await,
            )
        })
    });
    for r in futures::future::join_all(runs).await {
        let (p, (status, v)) = r.unwrap();
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["generated_text"], expected_text(&p, 5));
    }
    assert!(s.shards[0].stats().chunked_prefills > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shard_error_fails_with_424_and_server_recovers() {
    let s = setup(1, false, 0, &[]).await;
    let c = client();
    let (status, v) = post_json(
        &c,
        &s.router.url("/generate"),
        &json!({"inputs": "please explode", "parameters": {"max_new_tokens": 3}}),
    )
    .await;
    assert_eq!(status, 424);
    assert_eq!(
        v,
        json!({"error": "Request failed during generation: Server error: CUDA out of memory (simulated)", "error_type": "generation"})
    );
    let (_, events) = post_sse(
        &c,
        &s.router.url("/generate_stream"),
        &json!({"inputs": "explode again", "parameters": {"max_new_tokens": 3}}),
    )
    .await;
    assert_eq!(parse(&events[0])["error_type"], "generation");
    // Unhealthy now: /health runs the liveness prefill in block 0, which succeeds.
    assert_eq!(
        c.get(s.router.url("/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let (status, v) = post_json(
        &c,
        &s.router.url("/generate"),
        &json!({"inputs": "fine", "parameters": {"max_new_tokens": 3}}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(v["generated_text"], expected_text("fine", 3));
    let text = metrics_text(&c, &s.router).await;
    assert!(
        text.contains("tgi_request_failure{err=\"generation\"}"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_and_sagemaker_routes_through_the_scheduler() {
    let s = setup(1, false, 0, &[]).await;
    let c = client();
    let templated = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n";
    let chat = json!({"model": "tgi", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, "temperature": 0.0});
    let (status, v) = post_json(&c, &s.router.url("/v1/chat/completions"), &chat).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        expected_text(templated, 4)
    );
    assert_eq!(v["usage"]["completion_tokens"], 4);
    let mut stream_req = chat.clone();
    stream_req["stream"] = json!(true);
    let (_, events) = post_sse(&c, &s.router.url("/v1/chat/completions"), &stream_req).await;
    assert_eq!(events.last().unwrap(), " [DONE]");
    let content: String = events[..events.len() - 1]
        .iter()
        .map(|e| {
            parse(e)["choices"][0]["delta"]["content"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(content, expected_text(templated, 4));
    let (_, v) = post_json(
        &c,
        &s.router.url("/v1/completions"),
        &json!({"prompt": "abc", "max_tokens": 3, "temperature": 0.0}),
    )
    .await;
    assert_eq!(v["choices"][0]["text"], expected_text("abc", 3));
    let (_, v) = post_json(
        &c,
        &s.router.url("/invocations"),
        &json!({"inputs": "abc", "parameters": {"max_new_tokens": 3, "return_full_text": false}}),
    )
    .await;
    assert_eq!(v, json!([{"generated_text": expected_text("abc", 3)}]));
    let (_, v) = post_json(&c, &s.router.url("/tokenize"), &json!({"inputs": "abc"})).await;
    assert_eq!(v.as_array().unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_streams() {
    let mut s = setup(1, false, 5, &[]).await;
    let c = client();
    let url = s.router.url("/generate_stream");
    let stream = tokio::spawn({
        let c = c.clone();
        async move {
            post_sse(
                &c,
                &url,
                &json!({"inputs": "drain me", "parameters": {"max_new_tokens": 60}}),
            )
            .await
        }
    });
    // Let the request start, then ask the router to stop.
    let shard = s.shards[0].clone();
    wait_until("the request to reach the shard", || {
        shard.stats().prefills > 0
    })
    .await;
    s.router.terminate();
    let (status, events) = stream.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(events.len(), 60, "the in-flight stream was cut");
    assert_eq!(
        parse(events.last().unwrap())["generated_text"],
        expected_text("drain me", 60)
    );
    assert_eq!(
        s.router.wait_exit(Duration::from_secs(20)).await,
        Some(true)
    );
    assert!(tokio::net::TcpStream::connect(("127.0.0.1", s.router.port))
        .await
        .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_and_api_key_through_the_binary() {
    let s = setup(
        1,
        false,
        5,
        &["--max-concurrent-requests", "1", "--api-key", "k"],
    )
    .await;
    let c = client();
    let url = s.router.url("/generate_stream");
    let auth = |r: reqwest::RequestBuilder| r.header("Authorization", "Bearer k");
    let long = {
        let (c, url) = (c.clone(), url.clone());
        tokio::spawn(async move {
            let r = c
                .post(&url)
                .header("Authorization", "Bearer k")
                .json(&json!({"inputs": "long", "parameters": {"max_new_tokens": 100}}))
                .send()
                .await
                .unwrap();
            r.text().await.unwrap()
        })
    };
    let shard = s.shards[0].clone();
    wait_until("the long request to start", || shard.stats().prefills > 0).await;
    let r = auth(c.post(s.router.url("/generate")))
        .json(&json!({"inputs": "x", "parameters": {"max_new_tokens": 1}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"error": "Model is overloaded", "error_type": "overloaded"})
    );
    let r = c
        .post(s.router.url("/generate"))
        .json(&json!({"inputs": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    long.await.unwrap();
    let r = auth(c.post(s.router.url("/generate")))
        .json(&json!({"inputs": "x", "parameters": {"max_new_tokens": 1}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}
