//! `sagemaker-entrypoint.sh`: SageMaker's variables map to the launcher's env vars exactly as
//! in TGI, and the launcher is started on port 8080. A stand-in launcher on PATH records what
//! it was given (the real one on 8080 could clash with whatever else uses that port), and the
//! real launcher is then shown to read those env vars.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../sagemaker-entrypoint.sh")
}

/// Runs the entrypoint with `env` and a recording launcher; returns (exit code, output, record).
fn run(env: &[(&str, &str)]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("record");
    let fake = dir.path().join("text-generation-launcher");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/bash\n{{ echo \"ARGS=$*\"; env | grep -E '^(MODEL_ID|REVISION|NUM_SHARD|QUANTIZE|TRUST_REMOTE_CODE)=' | sort; }} > {}\n",
            record.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut cmd = Command::new("bash");
    cmd.arg(script())
        .env_clear()
        .env("PATH", format!("{}:/usr/bin:/bin", dir.path().display()));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (
        out.status.code().unwrap_or(-1),
        text,
        std::fs::read_to_string(&record).unwrap_or_default(),
    )
}

#[test]
fn maps_sagemaker_env_like_tgi() {
    let (code, out, record) = run(&[
        ("HF_MODEL_ID", "/opt/ml/model"),
        ("HF_MODEL_REVISION", "abc"),
        ("SM_NUM_GPUS", "4"),
        ("HF_MODEL_QUANTIZE", "gptq"),
        ("HF_MODEL_TRUST_REMOTE_CODE", "true"),
    ]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        record,
        "ARGS=--port 8080\nMODEL_ID=/opt/ml/model\nNUM_SHARD=4\nQUANTIZE=gptq\nREVISION=abc\nTRUST_REMOTE_CODE=true\n"
    );
    // Optional variables stay unset when SageMaker does not give them.
    let (code, _, record) = run(&[("HF_MODEL_ID", "/opt/ml/model")]);
    assert_eq!(code, 0);
    assert_eq!(record, "ARGS=--port 8080\nMODEL_ID=/opt/ml/model\n");
}

#[test]
fn requires_hf_model_id() {
    let (code, out, record) = run(&[]);
    assert_eq!(code, 1);
    assert!(out.contains("HF_MODEL_ID must be set"), "{out}");
    assert!(record.is_empty(), "launcher started without a model");
}

#[test]
fn launcher_reads_the_mapped_env_vars() {
    // The real launcher with the mapped variables: its validation sees NUM_SHARD, QUANTIZE and
    // MODEL_ID (exl2 with 2 shards is refused before anything is spawned).
    let out = Command::new(integration_tests::bin_dir().join(integration_tests::LAUNCHER))
        .env("MODEL_ID", env!("CARGO_MANIFEST_DIR"))
        .env("NUM_SHARD", "2")
        .env("QUANTIZE", "exl2")
        .env("TRUST_REMOTE_CODE", "true")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Sharding is currently not supported with `exl2` quantization"),
        "{err}"
    );
}
