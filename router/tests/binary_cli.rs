//! The router binary without shards: schema printing and startup failures.

use std::process::Command;

fn router() -> Command {
    Command::new(env!("CARGO_BIN_EXE_text-generation-router"))
}

#[test]
fn print_schema_outputs_the_openapi_document() {
    let out = router().arg("print-schema").output().unwrap();
    assert!(out.status.success());
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for path in [
        "/generate",
        "/generate_stream",
        "/v1/chat/completions",
        "/v1/completions",
        "/invocations",
        "/tokenize",
        "/info",
        "/health",
        "/metrics",
        "/vertex",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} missing");
    }
}

#[test]
fn argument_errors_use_tgis_text_and_fail() {
    let out = router()
        .args(["--validation-workers", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("Argument validation error: `validation_workers` must be > 0"),
        "{text}"
    );
}

#[test]
fn missing_shard_fails_startup_with_json_logs() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("nothing-0");
    let out = router()
        .arg("--master-shard-uds-path")
        .arg(&socket)
        .args([
            "--tokenizer-name",
            "/nonexistent",
            "--json-output",
            "--port",
            "0",
            "--prometheus-port",
            "0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let error_line = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["level"] == "ERROR")
        .unwrap_or_else(|| panic!("no JSON error line in {stdout}"));
    let message = error_line["message"].as_str().unwrap();
    assert!(
        message.starts_with("Unable to connect to the Python model shards"),
        "{message}"
    );
}
