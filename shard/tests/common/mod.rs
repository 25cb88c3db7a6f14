//! Test harness: a real shard process on a real Unix socket, driven by a real tonic client.

#![allow(dead_code)]

pub mod engine;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use text_generation_proto::v3 as pb;
use text_generation_proto::v3::text_generation_service_client::TextGenerationServiceClient;
use tonic::transport::{Channel, Endpoint, Uri};

/// A running shard; killed and its socket removed on drop.
pub struct ShardProcess {
    pub child: Child,
    pub socket: PathBuf,
    pub dir: Option<tempfile::TempDir>,
}

impl Drop for ShardProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes a tiny model of `arch` into a new temp dir.
pub fn tiny_model(arch: test_models::Arch) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    test_models::write_model(dir.path(), &test_models::TinyModel::new(arch)).expect("write model");
    dir
}

/// Starts `text-generation-shard serve <model>` and waits for its socket.
pub fn start_shard(model: &Path, extra: &[&str]) -> ShardProcess {
    start_shards(model, 1, extra).pop().expect("one shard")
}

/// Starts `world` ranks of one model (RANK/WORLD_SIZE, `--sharded`) on one socket base and
/// waits for every socket.
pub fn start_shards(model: &Path, world: usize, extra: &[&str]) -> Vec<ShardProcess> {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = dir.path().join("shard");
    let mut children = Vec::new();
    for rank in 0..world {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_text-generation-shard"));
        cmd.arg("serve")
            .arg(model)
            .arg("--uds-path")
            .arg(&base)
            .args([
                "--max-batch-total-tokens",
                "16384",
                "--logger-level",
                "warn",
            ])
            .args(extra)
            .env("RANK", rank.to_string())
            .env("WORLD_SIZE", world.to_string())
            .env("RAYON_NUM_THREADS", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if world > 1 {
            cmd.arg("--sharded");
        }
        children.push(cmd.spawn().expect("spawn shard"));
    }
    let mut dir = Some(dir);
    let mut out = Vec::new();
    for (rank, mut child) in children.into_iter().enumerate() {
        let socket = PathBuf::from(format!("{}-{rank}", base.display()));
        let deadline = Instant::now() + Duration::from_secs(120);
        while !socket.exists() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("shard {rank} exited before its socket appeared: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "shard {rank} socket did not appear"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // The temp dir lives with rank 0 (dropped last, after every child is killed).
        let d = if rank == 0 { dir.take() } else { None };
        out.push(ShardProcess {
            child,
            socket,
            dir: d,
        });
    }
    out.reverse();
    out
}

/// A tonic client over the shard's Unix socket.
pub async fn connect(socket: &Path) -> TextGenerationServiceClient<Channel> {
    let path = socket.to_path_buf();
    let channel = Endpoint::try_from("http://[::]:50051")
        .expect("endpoint")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(path).await?,
                ))
            }
        }))
        .await
        .expect("connect");
    TextGenerationServiceClient::new(channel)
}

/// A greedy request for `inputs` generating `max_new_tokens`.
pub fn request(id: u64, inputs: &str, max_new_tokens: u32) -> pb::Request {
    pb::Request {
        id,
        inputs: inputs.to_string(),
        truncate: 1000,
        parameters: Some(pb::NextTokenChooserParameters {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            typical_p: 1.0,
            do_sample: false,
            seed: 0,
            repetition_penalty: 1.0,
            frequency_penalty: 0.0,
            watermark: false,
            grammar: String::new(),
            grammar_type: 0,
        }),
        stopping_parameters: Some(pb::StoppingCriteriaParameters {
            max_new_tokens,
            stop_sequences: vec![],
            ignore_eos_token: false,
        }),
        add_special_tokens: true,
        ..Default::default()
    }
}

/// A batch of `requests`.
pub fn batch(id: u64, requests: Vec<pb::Request>) -> pb::Batch {
    let size = requests.len() as u32;
    pb::Batch {
        id,
        requests,
        size,
        max_tokens: 0,
        max_blocks: 0,
    }
}

/// Warms the shard up with a small prefill budget.
pub async fn warmup(
    client: &mut TextGenerationServiceClient<Channel>,
    max_prefill_tokens: u32,
) -> pb::WarmupResponse {
    client
        .warmup(pb::WarmupRequest {
            batch: Some(batch(
                u64::MAX - 1,
                vec![request(u64::MAX - 1, &"_test ".repeat(8), 2)],
            )),
            max_input_tokens: None,
            max_prefill_tokens,
            max_total_tokens: None,
        })
        .await
        .expect("warmup")
        .into_inner()
}

/// Runs `batch` to completion (Prefill then Decode until empty); returns every generation in
/// the order the shard sent them.
pub async fn run_to_end(
    client: &mut TextGenerationServiceClient<Channel>,
    b: pb::Batch,
) -> Vec<pb::Generation> {
    let resp = client
        .prefill(pb::PrefillRequest {
            batch: Some(b),
            cached_batch: None,
        })
        .await
        .expect("prefill")
        .into_inner();
    let mut all = resp.generations;
    let mut cached = resp.batch;
    while let Some(c) = cached {
        let resp = client
            .decode(pb::DecodeRequest { batches: vec![c] })
            .await
            .expect("decode")
            .into_inner();
        all.extend(resp.generations);
        cached = resp.batch;
    }
    all
}

/// Runs `batch` to completion; returns generated ids and last generation per request id.
pub async fn generate_all(
    client: &mut TextGenerationServiceClient<Channel>,
    b: pb::Batch,
) -> std::collections::BTreeMap<u64, (Vec<u32>, pb::Generation)> {
    let mut out: std::collections::BTreeMap<u64, (Vec<u32>, pb::Generation)> = Default::default();
    for g in run_to_end(client, b).await {
        let e = out
            .entry(g.request_id)
            .or_insert_with(|| (vec![], g.clone()));
        e.0.extend(g.tokens.as_ref().map(|t| t.ids.clone()).unwrap_or_default());
        e.1 = g;
    }
    out
}
