//! A gRPC client for one shard over its Unix socket, and a shard process started for a run.

use crate::error::BenchError;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use text_generation_proto::v3::text_generation_service_client::TextGenerationServiceClient;
use tonic::transport::{Channel, Endpoint, Uri};

/// Client type.
pub type ShardClient = TextGenerationServiceClient<Channel>;

/// Connects to the shard listening on `socket`.
pub async fn connect(socket: &Path) -> Result<ShardClient, BenchError> {
    let path = socket.to_path_buf();
    let channel = Endpoint::try_from("http://[::]:50051")
        .map_err(|e| BenchError::Connect(e.to_string()))?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(path).await?,
                ))
            }
        }))
        .await
        .map_err(|e| BenchError::Connect(format!("{}: {e}", socket.display())))?;
    Ok(TextGenerationServiceClient::new(channel)
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX))
}

/// A shard started by the benchmark; killed on drop.
pub struct SpawnedShard {
    child: Child,
    /// Its socket.
    pub socket: PathBuf,
    _dir: std::sync::Arc<tempfile::TempDir>,
}

impl Drop for SpawnedShard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `text-generation-shard` next to this executable, else on PATH.
fn shard_binary() -> PathBuf {
    let name = "text-generation-shard";
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join(name)))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// Starts `world` ranks of a shard on `model` with a KV budget of `kv_tokens` each and waits
/// for their sockets (rank order). With `SHARD_LOG_LEVEL` set (e.g. `debug`) the shards log at
/// that level to this process' stdout.
pub fn spawn(
    model: &Path,
    world: usize,
    kv_tokens: usize,
    extra: &[String],
) -> Result<Vec<SpawnedShard>, BenchError> {
    let dir =
        std::sync::Arc::new(tempfile::tempdir().map_err(|e| BenchError::Spawn(e.to_string()))?);
    let base = dir.path().join("bench");
    // SHARD_LOG_LEVEL=debug shows the shards' logs (per-forward timings among them).
    let shard_logs = std::env::var("SHARD_LOG_LEVEL").ok();
    let log_level = shard_logs.clone().unwrap_or_else(|| "warn".into());
    let mut children = Vec::new();
    for rank in 0..world {
        let mut cmd = Command::new(shard_binary());
        cmd.arg("serve")
            .arg(model)
            .arg("--uds-path")
            .arg(&base)
            .args([
                "--max-batch-total-tokens",
                &kv_tokens.to_string(),
                "--logger-level",
                &log_level,
            ])
            .args(extra)
            .env("RANK", rank.to_string())
            .env("WORLD_SIZE", world.to_string())
            .stdout(if shard_logs.is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .stderr(Stdio::inherit());
        if world > 1 {
            cmd.arg("--sharded");
        }
        let child = cmd
            .spawn()
            .map_err(|e| BenchError::Spawn(format!("text-generation-shard: {e}")))?;
        let socket = PathBuf::from(format!("{}-{rank}", base.display()));
        children.push(SpawnedShard {
            child,
            socket,
            _dir: dir.clone(),
        });
    }
    for s in &mut children {
        s.wait_ready()?;
    }
    Ok(children)
}

impl SpawnedShard {
    fn wait_ready(&mut self) -> Result<(), BenchError> {
        let deadline = Instant::now() + Duration::from_secs(300);
        while !self.socket.exists() {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(BenchError::Spawn(format!(
                    "shard exited with {status} before it was ready"
                )));
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return Err(BenchError::Spawn("shard not ready after 300 s".into()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }
}
