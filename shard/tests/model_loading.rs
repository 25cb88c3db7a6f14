//! Model loading: stored dtypes, split checkpoints with an index, compute dtypes, and clear
//! startup errors (never a panic) for broken model directories.

mod common;

use common::*;
use std::process::Command;
use test_models::{write_model, Arch, StoredDtype, TinyModel};

async fn greedy(model: &std::path::Path, extra: &[&str]) -> Vec<u32> {
    let shard = start_shard(model, extra);
    let mut c = connect(&shard.socket).await;
    warmup(&mut c, 256).await;
    let out = generate_all(
        &mut c,
        batch(1, vec![request(1, "The quick brown fox", 10)]),
    )
    .await;
    out[&1].0.clone()
}

#[tokio::test]
async fn split_checkpoint_with_index_equals_single_file() {
    let single = tempfile::tempdir().expect("dir");
    write_model(single.path(), &TinyModel::new(Arch::Mistral)).expect("write");
    let split = tempfile::tempdir().expect("dir");
    let mut spec = TinyModel::new(Arch::Mistral);
    spec.files = 3;
    write_model(split.path(), &spec).expect("write");
    assert!(split.path().join("model.safetensors.index.json").exists());
    assert_eq!(
        greedy(single.path(), &[]).await,
        greedy(split.path(), &[]).await
    );
}

#[tokio::test]
async fn half_precision_checkpoints_load_and_generate() {
    for dtype in [StoredDtype::F16, StoredDtype::BF16] {
        let dir = tempfile::tempdir().expect("dir");
        let mut spec = TinyModel::new(Arch::Llama);
        spec.dtype = dtype;
        write_model(dir.path(), &spec).expect("write");
        // Stored half, computed in f32 (CPU default) and in the stored dtype.
        let f32_ids = greedy(dir.path(), &[]).await;
        assert_eq!(f32_ids.len(), 10);
        let flag = if dtype == StoredDtype::F16 {
            "float16"
        } else {
            "bfloat16"
        };
        let half_ids = greedy(dir.path(), &["--dtype", flag]).await;
        assert_eq!(half_ids.len(), 10);
        // Same weights, lower-precision arithmetic: the first tokens agree.
        assert_eq!(half_ids[..3], f32_ids[..3], "{flag}");
    }
}

fn start_error(model: &std::path::Path) -> String {
    let dir = tempfile::tempdir().expect("dir");
    let out = Command::new(env!("CARGO_BIN_EXE_text-generation-shard"))
        .arg("serve")
        .arg(model)
        .arg("--uds-path")
        .arg(dir.path().join("s"))
        .output()
        .expect("run shard");
    assert!(!out.status.success(), "the shard must refuse to start");
    assert!(
        !dir.path().join("s-0").exists(),
        "no socket for a shard that failed to load"
    );
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !stderr.contains("panicked"),
        "must fail with an error, not a panic: {stderr}"
    );
    stderr
}

#[test]
fn broken_model_directories_fail_with_clear_errors() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path();
    assert!(start_error(&path.join("nope")).contains("not found"));

    write_model(path, &TinyModel::new(Arch::Llama)).expect("write");
    let config = path.join("config.json");
    let original = std::fs::read_to_string(&config).expect("config");

    std::fs::write(
        &config,
        original.replace("LlamaForCausalLM", "GPTNeoXForCausalLM"),
    )
    .expect("w");
    let e = start_error(path);
    assert!(
        e.contains("unsupported model architecture `GPTNeoXForCausalLM`"),
        "{e}"
    );

    std::fs::write(
        &config,
        original.replace("\"hidden_size\": 128", "\"hidden_size\": 96"),
    )
    .expect("w");
    let e = start_error(path);
    assert!(e.contains("has shape") && e.contains("expected"), "{e}");

    std::fs::write(&config, "{ not json").expect("w");
    assert!(start_error(path).contains("config.json"));

    std::fs::write(&config, &original).expect("w");
    std::fs::remove_file(path.join("tokenizer.json")).expect("rm");
    assert!(start_error(path).contains("tokenizer.json not found"));

    let gguf = path.join("bad.gguf");
    std::fs::write(&gguf, b"definitely not gguf").expect("w");
    assert!(start_error(&gguf).contains("not a readable GGUF file"));
}
