//! Bad command lines: a clear message, a non-zero exit, and nothing left running.

use integration_tests::{free_port, procs, tiny_model, Launcher};
use std::time::Duration;

/// Runs the launcher to completion and returns (exit code, output).
fn run_to_exit(args: &[&str], timeout: Duration) -> (i32, String, Launcher) {
    let mut l = Launcher::start(args);
    let status = l
        .wait_exit(timeout)
        .unwrap_or_else(|| panic!("launcher still running after {timeout:?}:\n{}", l.output()));
    let out = l.output();
    (status.code().unwrap_or(-1), out, l)
}

fn assert_clean(l: &Launcher) {
    l.assert_nothing_left(&[]);
    assert!(
        procs::with_cmdline_containing(&l.dir.path().to_string_lossy()).is_empty(),
        "processes left behind"
    );
}

#[test]
fn unknown_flag_is_a_usage_error() {
    let (code, out, l) = run_to_exit(&["--no-such-flag"], Duration::from_secs(10));
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("unexpected argument '--no-such-flag'"),
        "{out}"
    );
    assert_clean(&l);
}

#[test]
fn bad_value_is_a_usage_error() {
    let (code, out, l) = run_to_exit(&["--quantize", "q3"], Duration::from_secs(10));
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("invalid value 'q3' for '--quantize"), "{out}");
    assert_clean(&l);
}

#[test]
fn tgi_cross_checks_fail_before_spawning() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let model = model.to_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (
            &["--max-input-tokens", "10", "--max-total-tokens", "10"],
            "Argument validation error: `max_input_tokens`(10) must be < `max_total_tokens`(10)",
        ),
        (
            &["--max-input-tokens", "10", "--max-input-length", "10"],
            "Both `max_input_tokens` (10) and `max_input_length` (10) are set",
        ),
        (
            &[
                "--max-total-tokens",
                "5000",
                "--max-batch-total-tokens",
                "4096",
            ],
            "`max_total_tokens` must be <= `max_batch_total_tokens`. Given: 5000 and 4096",
        ),
        (
            &["--sharded", "true", "--num-shard", "1"],
            "`sharded` is true but `num_shard` <= 1",
        ),
        (
            &["--validation-workers", "0"],
            "`validation_workers` must be > 0",
        ),
        (&["--ngrok"], "--ngrok is not supported by tgi-rs"),
        (
            &["--lora-adapters", "org/adapter"],
            "--lora-adapters is not supported by tgi-rs",
        ),
    ];
    for (args, expected) in cases {
        let mut full = vec!["--model-id", model];
        full.extend_from_slice(args);
        let (code, out, l) = run_to_exit(&full, Duration::from_secs(10));
        assert_eq!(code, 1, "{args:?}: {out}");
        assert!(
            out.contains(expected),
            "{args:?}: expected {expected:?} in:\n{out}"
        );
        assert!(
            !out.contains("Starting shard"),
            "{args:?} spawned a shard:\n{out}"
        );
        assert_clean(&l);
    }
}

#[test]
fn missing_model_is_explained() {
    let (code, out, l) = run_to_exit(
        &["--model-id", "/nonexistent/model"],
        Duration::from_secs(10),
    );
    assert_eq!(code, 1);
    assert!(
        out.contains("model `/nonexistent/model` not found")
            && out.contains("does not download weights"),
        "{out}"
    );
    assert_clean(&l);
    // Without --model-id and without the default model: say how to fetch it.
    let mut l = Launcher::start_with(&[], |cmd, _| {
        cmd.env("TGI_DEFAULT_MODEL", "/nonexistent/default.gguf")
            .env_remove("MODEL_ID");
    });
    let status = l
        .wait_exit(Duration::from_secs(10))
        .expect("launcher exits");
    assert_eq!(status.code(), Some(1));
    let out = l.output();
    assert!(
        out.contains("no --model-id given and the default model is missing")
            && out.contains("scripts/fetch-default-model.sh"),
        "{out}"
    );
    assert_clean(&l);
}

#[test]
fn flag_the_shard_refuses_fails_startup_naming_the_shard() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let (code, out, l) = run_to_exit(
        &["--model-id", model.to_str().unwrap(), "--quantize", "awq"],
        Duration::from_secs(60),
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("Shard 0 failed to start (exit code 1)"),
        "{out}"
    );
    assert!(out.contains("--quantize awq is not supported"), "{out}");
    assert_clean(&l);
}

#[test]
fn port_in_use_fails_with_the_routers_error() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let _ = free_port();
    let (code, out, l) = run_to_exit(
        &[
            "--model-id",
            model.to_str().unwrap(),
            "--max-batch-total-tokens",
            "4096",
            "--port",
            &port,
        ],
        Duration::from_secs(180),
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("Webserver Crashed"), "{out}");
    assert!(
        out.contains(&format!("cannot bind 127.0.0.1:{port}")),
        "{out}"
    );
    assert_clean(&l);
}
