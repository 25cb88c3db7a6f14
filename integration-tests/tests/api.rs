//! The HTTP API end to end through the launcher, on the tiny model and on the default model.

use integration_tests::http::{client, get_json, post_json, post_sse};
use integration_tests::{procs, tiny_model, Launcher};
use nix::sys::signal::Signal;
use serde_json::{json, Value};
use std::time::Duration;

const STARTUP: Duration = Duration::from_secs(180);

/// /generate, /generate_stream and chat (stream and not) agree with each other.
async fn exercise_api(l: &Launcher, expect_model: &str, max_new: u64, chat: bool) {
    let c = client();
    let (status, health) = get_json(&c, &l.url("/health")).await;
    assert_eq!(status, 200, "{health}");
    let (status, info) = get_json(&c, &l.url("/info")).await;
    assert_eq!(status, 200);
    assert_eq!(info["router"], "text-generation-router");
    assert_eq!(info["model_id"], expect_model);
    assert!(
        info["max_input_tokens"].as_u64().unwrap() < info["max_total_tokens"].as_u64().unwrap()
    );
    assert_eq!(info["max_concurrent_requests"], 128);

    let req = json!({"inputs": "Hello there", "parameters": {"max_new_tokens": max_new, "details": true}});
    let (status, g) = post_json(&c, &l.url("/generate"), &req).await;
    assert_eq!(status, 200, "{g}");
    let n = g["details"]["generated_tokens"].as_u64().unwrap();
    assert!((1..=max_new).contains(&n), "{g}");
    assert!(g["generated_text"].is_string());

    let (status, events) = post_sse(&c, &l.url("/generate_stream"), &req).await;
    assert_eq!(status, 200);
    assert_eq!(events.len() as u64, n, "{events:?}");
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["index"], i as u64 + 1);
        assert_eq!(e["token"]["id"], g["details"]["tokens"][i]["id"]);
    }
    let last = events.last().unwrap();
    assert_eq!(last["generated_text"], g["generated_text"]);
    assert_eq!(
        last["details"]["finish_reason"],
        g["details"]["finish_reason"]
    );

    // SageMaker's routes on the same server.
    let (status, _) = get_json(&c, &l.url("/ping")).await;
    assert_eq!(status, 200);
    let (status, inv) = post_json(&c, &l.url("/invocations"), &req).await;
    assert_eq!(status, 200, "{inv}");
    // As TGI's `/` compat route: an array, the prompt included by default.
    let full = inv[0]["generated_text"].as_str().unwrap_or_default();
    assert!(
        full.ends_with(g["generated_text"].as_str().unwrap()),
        "{inv}"
    );

    if !chat {
        return;
    }
    let chat = json!({"model": "tgi", "messages": [{"role": "user", "content": "Say hi"}],
        "max_tokens": max_new, "temperature": 0.0});
    let (status, cr) = post_json(&c, &l.url("/v1/chat/completions"), &chat).await;
    assert_eq!(status, 200, "{cr}");
    assert_eq!(cr["object"], "chat.completion");
    let completion_tokens = cr["usage"]["completion_tokens"].as_u64().unwrap();
    assert!((1..=max_new).contains(&completion_tokens));
    let mut chat_stream = chat.clone();
    chat_stream["stream"] = json!(true);
    let (status, events) = post_sse(&c, &l.url("/v1/chat/completions"), &chat_stream).await;
    assert_eq!(status, 200);
    assert_eq!(events.last().unwrap(), &Value::String("[DONE]".into()));
    let chunks = &events[..events.len() - 1];
    assert_eq!(chunks.len() as u64, completion_tokens, "{events:?}");
    assert_eq!(chunks[0]["object"], "chat.completion.chunk");
    let streamed: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    if cr["choices"][0]["finish_reason"] == "length" {
        assert_eq!(
            streamed,
            cr["choices"][0]["message"]["content"].as_str().unwrap()
        );
    }
}

/// SIGTERM on an idle deployment: exit 0, every child gone, sockets removed.
fn stop_cleanly(mut l: Launcher) {
    let children = procs::descendants(l.pid());
    assert!(
        children
            .iter()
            .any(|p| p.cmdline.contains("text-generation-shard"))
            && children
                .iter()
                .any(|p| p.cmdline.contains("text-generation-router")),
        "expected a shard and a router under the launcher: {children:?}"
    );
    assert_eq!(l.sockets().len(), 1, "{:?}", l.sockets());
    l.signal(Signal::SIGTERM);
    let status = l
        .wait_exit(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("launcher still running 30 s after SIGTERM:\n{}", l.output()));
    assert!(status.success(), "{status}:\n{}", l.output());
    l.assert_nothing_left(&children);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiny_model_api_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let model_str = model.to_str().unwrap().to_string();
    let mut l = Launcher::start(&["--model-id", &model_str, "--max-batch-total-tokens", "4096"]);
    let l = tokio::task::spawn_blocking(move || {
        l.wait_ready(STARTUP);
        l
    })
    .await
    .unwrap();
    exercise_api(&l, &model_str, 8, true).await;
    tokio::task::spawn_blocking(move || stop_cleanly(l))
        .await
        .unwrap();
}

/// Starts the launcher without `--model-id` (it must find the default model itself); None
/// when the default model is missing (outside CI) or the binaries are a debug build, whose
/// unoptimized shard needs minutes to warm the 135M model up.
async fn start_default_model() -> Option<(Launcher, std::path::PathBuf)> {
    let model = integration_tests::default_model()?;
    if cfg!(debug_assertions) {
        eprintln!("SKIPPED: the default model needs optimized binaries: cargo build --release --bins && cargo test --release -p integration-tests");
        return None;
    }
    let mut l = Launcher::start_with(&[], |cmd, _| {
        cmd.env("TGI_DEFAULT_MODEL", &model).env_remove("MODEL_ID");
    });
    let l = tokio::task::spawn_blocking(move || {
        l.wait_ready(STARTUP);
        l
    })
    .await
    .unwrap();
    Some((l, model))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_model_chat_completions() {
    let Some((l, _)) = start_default_model().await else {
        return;
    };
    let c = client();
    let chat = json!({"messages": [{"role": "user", "content": "What is the capital of France?"}],
        "max_tokens": 8, "temperature": 0.0});
    let (status, cr) = post_json(&c, &l.url("/v1/chat/completions"), &chat).await;
    assert_eq!(status, 200, "{cr}");
    assert!(cr["choices"][0]["message"]["content"].is_string());
    tokio::task::spawn_blocking(move || stop_cleanly(l))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_model_api_end_to_end() {
    let Some((l, model)) = start_default_model().await else {
        return;
    };
    exercise_api(&l, model.to_str().unwrap(), 6, false).await;
    tokio::task::spawn_blocking(move || stop_cleanly(l))
        .await
        .unwrap();
}
