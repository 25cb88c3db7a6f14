//! End to end with the real `text-generation-shard` serving a tiny random Llama written by
//! `test-models`, and the real router binary on a free port.

mod common;

use common::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The shard binary next to the router's (built on demand), or `TGI_SHARD_BIN`.
fn shard_binary() -> PathBuf {
    if let Ok(path) = std::env::var("TGI_SHARD_BIN") {
        return PathBuf::from(path);
    }
    let router = Path::new(env!("CARGO_BIN_EXE_text-generation-router"));
    let dir = router.parent().expect("binary directory");
    let shard = dir.join("text-generation-shard");
    if !shard.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", "text-generation-shard"]);
        if dir.ends_with("release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build for the shard");
        assert!(status.success(), "building text-generation-shard failed");
    }
    shard
}

struct Shard(Child);

impl Drop for Shard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Deployment {
    _dir: tempfile::TempDir,
    _shard: Shard,
    router: RouterProcess,
}

async fn deploy() -> Deployment {
    deploy_with(&LIMITS).await
}

const LIMITS: [&str; 6] = [
    "--max-input-tokens",
    "256",
    "--max-total-tokens",
    "512",
    "--max-batch-prefill-tokens",
    "512",
];

async fn deploy_with(router_args: &[&str]) -> Deployment {
    let dir = tempfile::tempdir().unwrap();
    let model = write_tiny_model(dir.path());
    let base = dir.path().join("tgi");
    let mut child = Command::new(shard_binary())
        .arg("serve")
        .arg(&model)
        .arg("--uds-path")
        .arg(&base)
        .args([
            "--max-batch-total-tokens",
            "16384",
            "--logger-level",
            "WARN",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn shard");
    let socket = PathBuf::from(format!("{}-0", base.display()));
    let deadline = Instant::now() + Duration::from_secs(120);
    while !socket.exists() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("shard exited during startup: {status}");
        }
        assert!(Instant::now() < deadline, "shard socket never appeared");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let shard = Shard(child);
    let router = RouterProcess::start(&socket, &model, router_args).await;
    Deployment {
        _dir: dir,
        _shard: shard,
        router,
    }
}

fn parse(e: &str) -> Value {
    serde_json::from_str(e).unwrap_or_else(|err| panic!("{err}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_surface_with_real_shard() {
    let d = deploy().await;
    let c = client();
    let r = &d.router;

    let info: Value = c
        .get(r.url("/info"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["max_input_tokens"], 256);
    assert_eq!(info["max_total_tokens"], 512);
    assert_eq!(info["router"], "text-generation-router");
    let health = c.get(r.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);

    let req = json!({"inputs": "Hello there", "parameters": {"max_new_tokens": 8, "details": true, "decoder_input_details": true}});
    let (status, g) = post_json(&c, &r.url("/generate"), &req).await;
    assert_eq!(status, 200, "{g}");
    let d_ = &g["details"];
    let n = d_["generated_tokens"].as_u64().unwrap();
    assert!((1..=8).contains(&n));
    assert_eq!(d_["tokens"].as_array().unwrap().len() as u64, n);
    assert!(
        ["length", "eos_token", "stop_sequence"].contains(&d_["finish_reason"].as_str().unwrap())
    );
    assert!(d_["prefill"].is_array());
    assert!(g["generated_text"].is_string());

    // Stream event by event: the same greedy continuation as /generate.
    let (status, events) = post_sse(
        &c,
        &r.url("/generate_stream"),
        &json!({"inputs": "Hello there", "parameters": {"max_new_tokens": 8, "details": true}}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(events.len() as u64, n);
    let parsed: Vec<Value> = events.iter().map(|e| parse(e)).collect();
    for (i, e) in parsed.iter().enumerate() {
        assert_eq!(e["index"], i as u64 + 1);
        let (a, b) = (&e["token"], &d_["tokens"][i]);
        assert_eq!(
            (&a["id"], &a["text"], &a["special"]),
            (&b["id"], &b["text"], &b["special"])
        );
        let (la, lb) = (
            a["logprob"].as_f64().unwrap(),
            b["logprob"].as_f64().unwrap(),
        );
        assert!((la - lb).abs() < 1e-3, "logprob {la} vs {lb}");
        if i + 1 < parsed.len() {
            assert_eq!(e["generated_text"], Value::Null);
            assert_eq!(e["details"], Value::Null);
        }
    }
    let last = parsed.last().unwrap();
    assert_eq!(last["generated_text"], g["generated_text"]);
    assert_eq!(last["details"]["generated_tokens"], n);
    assert_eq!(last["details"]["finish_reason"], d_["finish_reason"]);
    assert_eq!(last["details"]["input_length"], 11);

    // Chat, non-stream and stream (ChatML template from tokenizer_config.json).
    let chat = json!({"model": "tgi", "messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 6, "temperature": 0.0});
    let (status, cr) = post_json(&c, &r.url("/v1/chat/completions"), &chat).await;
    assert_eq!(status, 200, "{cr}");
    assert_eq!(cr["object"], "chat.completion");
    let completion_tokens = cr["usage"]["completion_tokens"].as_u64().unwrap();
    assert!((1..=6).contains(&completion_tokens));
    let mut chat_stream = chat.clone();
    chat_stream["stream"] = json!(true);
    chat_stream["stream_options"] = json!({"include_usage": true});
    let (status, events) = post_sse(&c, &r.url("/v1/chat/completions"), &chat_stream).await;
    assert_eq!(status, 200);
    assert_eq!(events.last().unwrap(), " [DONE]");
    let usage = parse(&events[events.len() - 2]);
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"], cr["usage"]);
    let chunks: Vec<Value> = events[..events.len() - 2]
        .iter()
        .map(|e| parse(e))
        .collect();
    assert_eq!(chunks.len() as u64, completion_tokens);
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        cr["choices"][0]["finish_reason"]
    );
    if cr["choices"][0]["finish_reason"] == "length" {
        let streamed: String = chunks
            .iter()
            .map(|c| {
                c["choices"][0]["delta"]["content"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(
            streamed,
            cr["choices"][0]["message"]["content"].as_str().unwrap()
        );
    }

    // Completions and SageMaker.
    let (status, comp) = post_json(
        &c,
        &r.url("/v1/completions"),
        &json!({"prompt": ["Hello there", "Another"], "max_tokens": 8, "temperature": 0.0}),
    )
    .await;
    assert_eq!(status, 200, "{comp}");
    assert_eq!(comp["choices"].as_array().unwrap().len(), 2);
    assert_eq!(comp["choices"][0]["text"], g["generated_text"]);
    let (status, inv) = post_json(&c, &r.url("/invocations"), &json!({"inputs": "Hello there", "parameters": {"max_new_tokens": 8, "return_full_text": false}})).await;
    assert_eq!(status, 200);
    assert_eq!(inv, json!([{"generated_text": g["generated_text"]}]));
    let (status, inv) = post_json(&c, &r.url("/invocations"), &chat).await;
    assert_eq!(status, 200);
    assert_eq!(inv["choices"][0]["message"], cr["choices"][0]["message"]);

    // Tokenize: the byte-level test tokenizer gives one token per byte.
    let (status, toks) = post_json(&c, &r.url("/tokenize"), &json!({"inputs": "Hi!"})).await;
    assert_eq!(status, 200);
    assert_eq!(toks.as_array().unwrap().len(), 3);
    assert_eq!(toks[2]["text"], "!");

    // Validation reaches the client with TGI's text.
    let (status, err) = post_json(
        &c,
        &r.url("/generate"),
        &json!({"inputs": "x", "parameters": {"max_new_tokens": 600}}),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(err["error"], "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 512. Given: 1 `inputs` tokens and 600 `max_new_tokens`");

    let text = metrics_text(&c, r).await;
    for name in [
        "tgi_request_count",
        "tgi_request_success",
        "tgi_request_duration",
        "tgi_request_input_length",
        "tgi_request_generated_tokens",
        "tgi_queue_size",
        "tgi_batch_current_size",
        "tgi_batch_max_total_tokens",
        "tgi_batch_inference_count",
        "tgi_batch_inference_duration",
        "tgi_batch_forward_duration",
        "tgi_batch_next_size",
        "tgi_request_failure",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_streams_equal_solo_runs() {
    let d = deploy().await;
    let c = client();
    let url = d.router.url("/generate_stream");
    let body = |i: usize| json!({"inputs": format!("Request {i}: tell me something"), "parameters": {"max_new_tokens": 4 + (i * 5) % 29, "details": true}});
    let mut solo = Vec::new();
    for i in 0..64 {
        let (status, events) = post_sse(&c, &url, &body(i)).await;
        assert_eq!(status, 200);
        solo.push(events);
    }
    let before = metrics_text(&c, &d.router).await;
    let runs = (0..64).map(|i| {
        let (c, url, b) = (c.clone(), url.clone(), body(i));
        tokio::spawn(async move { post_sse(&c, &url, &b).await })
    });
    let together = futures::future::join_all(runs).await;
    for (i, r) in together.into_iter().enumerate() {
        let (status, events) = r.unwrap();
        assert_eq!(status, 200);
        let last = parse(events.last().unwrap());
        assert!(last.get("error").is_none(), "stream {i}: {last}");
        let n = last["details"]["generated_tokens"].as_u64().unwrap();
        assert_eq!(events.len() as u64, n, "stream {i} event count");
        assert!(n <= 4 + ((i * 5) % 29) as u64);
        if last["details"]["finish_reason"] == "length" {
            assert_eq!(n, 4 + ((i * 5) % 29) as u64);
        }
        let alone: Vec<Value> = solo[i].iter().map(|e| parse(e)).collect();
        let batched: Vec<Value> = events.iter().map(|e| parse(e)).collect();
        let ids = |v: &[Value]| {
            v.iter()
                .map(|e| e["token"]["id"].clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            ids(&batched),
            ids(&alone),
            "stream {i} differs from the same request alone"
        );
        assert_eq!(
            batched.last().unwrap()["generated_text"],
            alone.last().unwrap()["generated_text"]
        );
    }
    // The concurrent phase really ran batches of several requests.
    let after = metrics_text(&c, &d.router).await;
    let delta =
        |name: &str| series(&after, name).unwrap_or(0.0) - series(&before, name).unwrap_or(0.0);
    let (admitted, batches) = (
        delta("tgi_batch_next_size_sum"),
        delta("tgi_batch_next_size_count"),
    );
    assert_eq!(admitted, 64.0);
    assert!(
        batches < 64.0,
        "64 requests in {batches} prefills: no batching happened"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_cancelled_streams_return_to_idle() {
    let d = deploy().await;
    let c = client();
    let idle_text = metrics_text(&c, &d.router).await;
    let idle_free =
        metric(&idle_text, "tgi_block_allocator_free_blocks").expect("free-block gauge");
    let url = d.router.url("/generate_stream");
    let runs = (0..100).map(|i| {
        let (c, url) = (c.clone(), url.clone());
        tokio::spawn(async move {
            let r = c.post(&url).json(&json!({"inputs": format!("cancel {i}"), "parameters": {"max_new_tokens": 400}})).send().await.unwrap();
            let mut stream = futures::StreamExt::boxed(r.bytes_stream());
            let _ = futures::StreamExt::next(&mut stream).await;
        })
    });
    futures::future::join_all(runs).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = metrics_text(&c, &d.router).await;
        if metric(&text, "tgi_queue_size") == Some(0.0)
            && metric(&text, "tgi_batch_current_size") == Some(0.0)
            && metric(&text, "tgi_block_allocator_free_blocks") == Some(idle_free)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "router did not return to idle:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let text = metrics_text(&c, &d.router).await;
    let dropped = series(&text, "tgi_request_failure{err=\"dropped\"}").unwrap_or(0.0);
    let succeeded = series(&text, "tgi_request_success").unwrap_or(0.0);
    assert_eq!(
        dropped + succeeded,
        100.0,
        "every stream is either dropped or finished"
    );
    assert!(
        dropped >= 50.0,
        "only {dropped} of 100 streams were cancelled mid-way"
    );
    let (status, v) = post_json(
        &c,
        &d.router.url("/generate"),
        &json!({"inputs": "still there?", "parameters": {"max_new_tokens": 3}}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        c.get(d.router.url("/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_prefill_gives_the_same_tokens() {
    // The shard reports chunking support: a 48-token prefill budget splits these prompts.
    let chunked = deploy_with(&[
        "--max-input-tokens",
        "256",
        "--max-total-tokens",
        "512",
        "--max-batch-prefill-tokens",
        "48",
    ])
    .await;
    let whole = deploy().await;
    let c = client();
    let prompts: Vec<String> = (0..6)
        .map(|i| format!("{i}: {}", "a fairly long prompt, ".repeat(8)))
        .collect();
    let runs = prompts.iter().map(|p| {
        let (c, url, p) = (c.clone(), chunked.router.url("/generate"), p.clone());
        tokio::spawn(async move {
            post_json(
                &c,
                &url,
                &json!({"inputs": p, "parameters": {"max_new_tokens": 6, "details": true}}),
            )
            .await
        })
    });
    let results = futures::future::join_all(runs).await;
    for (p, r) in prompts.iter().zip(results) {
        let (status, chunked_answer) = r.unwrap();
        assert_eq!(status, 200, "{chunked_answer}");
        let (_, whole_answer) = post_json(
            &c,
            &whole.router.url("/generate"),
            &json!({"inputs": p, "parameters": {"max_new_tokens": 6, "details": true}}),
        )
        .await;
        let ids = |v: &Value| {
            v["details"]["tokens"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["id"].clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&chunked_answer), ids(&whole_answer), "prompt {p:?}");
    }
    let text = metrics_text(&c, &chunked.router).await;
    assert!(
        series(&text, "tgi_batch_concat{reason=\"chunking\"}").unwrap_or(0.0) >= 1.0,
        "no request joined a running batch:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_router_flags_start() {
    // No limits given: warmup prompts stay inside the model's 512 positions and the limits
    // come from the shard (total = min(KV, positions), input = total - 1).
    let d = deploy_with(&[]).await;
    let c = client();
    let info: Value = c
        .get(d.router.url("/info"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["max_total_tokens"], 512);
    assert_eq!(info["max_input_tokens"], 511);
    let (status, v) = post_json(
        &c,
        &d.router.url("/generate"),
        &json!({"inputs": "hi", "parameters": {"max_new_tokens": 2}}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
}
