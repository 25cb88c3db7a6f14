//! Shard processes: TGI's `serve` command line and environment for each rank (§1.3), stale
//! socket removal, and readiness (the socket file `<base>-<rank>` exists).

use crate::args::Args;
use crate::derive::Derived;
use crate::error::LauncherError;
use crate::logging;
use crate::process::{describe, Supervised};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Command line and extra environment of one shard.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardSpec {
    pub rank: usize,
    pub args: Vec<OsString>,
    pub env: Vec<(String, String)>,
}

/// The socket shard `rank` listens on.
pub fn socket_path(base: &str, rank: usize) -> PathBuf {
    PathBuf::from(format!("{base}-{rank}"))
}

/// TGI's shard arguments and env for `rank`; `env` reads the launcher's environment.
pub fn spec(
    args: &Args,
    derived: &Derived,
    rank: usize,
    env: impl Fn(&str) -> Option<String>,
) -> ShardSpec {
    let mut a: Vec<OsString> = vec![
        "serve".into(),
        derived.model.clone().into_os_string(),
        "--uds-path".into(),
        args.shard_uds_path.clone().into(),
        "--logger-level".into(),
        logging::shard_logger_level(env("LOG_LEVEL").as_deref()).into(),
        "--json-output".into(),
    ];
    let mut push = |flag: &str, value: Option<String>| {
        a.push(flag.into());
        if let Some(v) = value {
            a.push(v.into());
        }
    };
    if args.trust_remote_code {
        push("--trust-remote-code", None);
    }
    if derived.num_shard > 1 {
        push("--sharded", None);
    }
    if let Some(q) = args.quantize {
        push("--quantize", Some(q.as_str()));
    }
    if let Some(s) = args.speculate {
        push("--speculate", Some(s.to_string()));
    }
    if let Some(d) = args.dtype {
        push("--dtype", Some(value_name(d)));
    }
    if let Some(k) = args.kv_cache_dtype {
        push("--kv-cache-dtype", Some(value_name(k)));
    }
    if let Some(r) = &args.revision {
        push("--revision", Some(r.clone()));
    }
    if let Some(o) = &args.otlp_endpoint {
        push("--otlp-endpoint", Some(o.clone()));
    }
    push("--otlp-service-name", Some(args.otlp_service_name.clone()));
    if let Some(m) = derived.max_input_tokens {
        push("--max-input-tokens", Some(m.to_string()));
    }
    // On CPU the batch token capacity is the shard's KV cache size.
    if let Some(t) = args.max_batch_total_tokens {
        push("--max-batch-total-tokens", Some(t.to_string()));
    }

    let mut e: Vec<(String, String)> = vec![
        ("RANK".into(), rank.to_string()),
        ("WORLD_SIZE".into(), derived.num_shard.to_string()),
        ("MASTER_ADDR".into(), args.master_addr.clone()),
        ("MASTER_PORT".into(), args.master_port.to_string()),
        ("TORCH_NCCL_AVOID_RECORD_STREAMS".into(), "1".into()),
        (
            "CUDA_MEMORY_FRACTION".into(),
            args.cuda_memory_fraction.to_string(),
        ),
        ("SAFETENSORS_FAST_GPU".into(), "1".into()),
        ("HF_HUB_DISABLE_PROGRESS_BARS".into(), "1".into()),
        (
            "HF_HUB_ENABLE_HF_TRANSFER".into(),
            env("HF_HUB_ENABLE_HF_TRANSFER").unwrap_or_else(|| "1".into()),
        ),
    ];
    let mut set = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            e.push((k.into(), v));
        }
    };
    set("HF_TOKEN", env("HF_API_TOKEN"));
    set(
        "MAX_TOTAL_TOKENS",
        args.max_total_tokens.map(|v| v.to_string()),
    );
    set("MAX_BATCH_SIZE", args.max_batch_size.map(|v| v.to_string()));
    set(
        "REQUEST_LOGPROBS",
        args.enable_prefill_logprobs.then(|| "1".into()),
    );
    set("HUGGINGFACE_HUB_CACHE", args.huggingface_hub_cache.clone());
    set(
        "WEIGHTS_CACHE_OVERRIDE",
        args.weights_cache_override.clone(),
    );
    set(
        "CUDA_GRAPHS",
        args.cuda_graphs
            .as_ref()
            .filter(|g| !g.is_empty())
            .map(|g| {
                g.iter()
                    .map(|v| v.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            }),
    );
    set(
        "DISABLE_CUSTOM_KERNELS",
        args.disable_custom_kernels.then(|| "True".into()),
    );
    set(
        "WATERMARK_GAMMA",
        args.watermark_gamma.map(|v| v.to_string()),
    );
    set(
        "WATERMARK_DELTA",
        args.watermark_delta.map(|v| v.to_string()),
    );
    ShardSpec {
        rank,
        args: a,
        env: e,
    }
}

fn value_name(v: impl clap::ValueEnum) -> String {
    v.to_possible_value()
        .map(|p| p.get_name().to_string())
        .unwrap_or_default()
}

/// Removes a stale socket of a previous run; then spawns the shard.
pub fn spawn(program: &Path, spec: &ShardSpec, base: &str) -> Result<Supervised, LauncherError> {
    let socket = socket_path(base, spec.rank);
    remove_socket(&socket)?;
    let mut cmd = Command::new(program);
    cmd.args(&spec.args).env_remove("LOG_LEVEL");
    for (k, v) in &spec.env {
        cmd.env(k, v);
    }
    tracing::info!(rank = spec.rank, "Starting shard");
    Supervised::spawn(
        format!("shard {}", spec.rank),
        cmd,
        logging::shard_handler(spec.rank),
    )
}

/// The shards' CPU-communicator rendezvous directory (`<base>-comm`, holding
/// `rank-<r>.sock`): part of the launcher/shard contract so that a rank killed hard leaves
/// nothing behind either.
pub fn rendezvous_dir(base: &str) -> PathBuf {
    PathBuf::from(format!("{base}-comm"))
}

/// Removes every socket of a deployment of `num_shard` ranks: `<base>-<rank>` and the
/// rendezvous sockets (the directory too once empty).
pub fn remove_all_sockets(base: &str, num_shard: usize) -> Result<(), LauncherError> {
    for rank in 0..num_shard {
        remove_socket(&socket_path(base, rank))?;
    }
    let dir = rendezvous_dir(base);
    if dir.is_dir() {
        for rank in 0..num_shard {
            remove_socket(&dir.join(format!("rank-{rank}.sock")))?;
        }
        // Only when empty: never delete what is not ours.
        let _ = std::fs::remove_dir(&dir);
    }
    Ok(())
}

/// Deletes `socket` if it exists.
pub fn remove_socket(socket: &Path) -> Result<(), LauncherError> {
    match std::fs::remove_file(socket) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(LauncherError::Io {
            context: format!("removing the stale socket {}", socket.display()),
            source,
        }),
    }
}

/// How waiting for the shards ended.
pub enum Readiness {
    /// Every socket exists.
    Ready,
    /// The launcher was asked to stop first.
    Interrupted,
}

/// Polls every 100 ms until every shard's socket exists (TGI's readiness), a shard exits
/// (`ShardCannotStart`), or `stop_requested` says the launcher got a signal.
pub fn wait_ready(
    shards: &mut [Supervised],
    base: &str,
    stop_requested: impl Fn() -> bool,
) -> Result<Readiness, LauncherError> {
    let started = Instant::now();
    let mut ready = vec![false; shards.len()];
    let mut last_notice = Instant::now();
    while ready.iter().any(|r| !r) {
        if stop_requested() {
            return Ok(Readiness::Interrupted);
        }
        for (rank, shard) in shards.iter_mut().enumerate() {
            if let Some(status) = shard.try_exit() {
                tracing::error!(rank, "Shard {rank} failed to start");
                return Err(LauncherError::ShardCannotStart {
                    rank,
                    status: describe(status),
                    stderr: shard.last_lines(),
                });
            }
            if !ready[rank] && socket_path(base, rank).exists() {
                ready[rank] = true;
                tracing::info!(rank, "Shard ready in {:.2?}", started.elapsed());
            }
        }
        if last_notice.elapsed() >= Duration::from_secs(10) {
            tracing::info!("Waiting for shard to be ready...");
            last_notice = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(Readiness::Ready)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn spec_for(extra: &[&str], num_shard: usize, rank: usize) -> ShardSpec {
        let mut v = vec!["text-generation-launcher"];
        v.extend_from_slice(extra);
        let args = Args::try_parse_from(v).unwrap();
        let derived = Derived {
            model: "/m".into(),
            num_shard,
            max_input_tokens: args.max_input_tokens,
            max_batch_prefill_tokens: 4096,
        };
        spec(&args, &derived, rank, |k| {
            (k == "HF_API_TOKEN").then(|| "tok".to_string())
        })
    }

    fn env_of<'a>(s: &'a ShardSpec, k: &str) -> Option<&'a str> {
        s.env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }

    #[test]
    fn tgi_command_line() {
        let s = spec_for(
            &[
                "--shard-uds-path",
                "/tmp/x",
                "--dtype",
                "bfloat16",
                "--max-input-tokens",
                "100",
                "--max-batch-total-tokens",
                "8192",
            ],
            2,
            1,
        );
        let args: Vec<String> = s.args.iter().map(|a| a.to_string_lossy().into()).collect();
        assert_eq!(
            args,
            [
                "serve",
                "/m",
                "--uds-path",
                "/tmp/x",
                "--logger-level",
                "INFO",
                "--json-output",
                "--sharded",
                "--dtype",
                "bfloat16",
                "--otlp-service-name",
                "text-generation-inference.router",
                "--max-input-tokens",
                "100",
                "--max-batch-total-tokens",
                "8192"
            ]
        );
        assert_eq!(env_of(&s, "RANK"), Some("1"));
        assert_eq!(env_of(&s, "WORLD_SIZE"), Some("2"));
        assert_eq!(env_of(&s, "MASTER_ADDR"), Some("localhost"));
        assert_eq!(env_of(&s, "MASTER_PORT"), Some("29500"));
        assert_eq!(env_of(&s, "HF_TOKEN"), Some("tok"));
        assert_eq!(env_of(&s, "MAX_TOTAL_TOKENS"), None);
    }

    #[test]
    fn single_shard_is_not_sharded() {
        let s = spec_for(&["--max-batch-size", "8", "--watermark-gamma", "0.4"], 1, 0);
        assert!(!s.args.iter().any(|a| a == "--sharded"));
        assert_eq!(env_of(&s, "MAX_BATCH_SIZE"), Some("8"));
        assert_eq!(env_of(&s, "WATERMARK_GAMMA"), Some("0.4"));
        assert_eq!(socket_path("/tmp/x", 3), PathBuf::from("/tmp/x-3"));
    }

    #[test]
    fn removes_shard_and_rendezvous_sockets() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("tgi").to_string_lossy().into_owned();
        std::fs::write(socket_path(&base, 0), "").unwrap();
        std::fs::create_dir(rendezvous_dir(&base)).unwrap();
        std::fs::write(rendezvous_dir(&base).join("rank-1.sock"), "").unwrap();
        remove_all_sockets(&base, 2).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
