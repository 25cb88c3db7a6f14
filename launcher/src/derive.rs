//! Values the user left unset, derived as TGI's launcher does (§3.3), with its cross-checks
//! and error texts.

use crate::args::{Args, Quantization};
use crate::error::LauncherError;
use std::path::{Path, PathBuf};

/// Prefill budget when no GPU is visible. TGI's device-less fallback (4096) makes the shard's
/// warmup prefill take minutes on a small CPU (5.5 min for the default model on 2 loaded
/// cores, 12 s at 512); chunked prefill keeps longer prompts working.
pub const CPU_PREFILL_TOKENS: u32 = 512;

/// The launcher's decisions, computed once before anything is spawned.
#[derive(Debug, Clone, PartialEq)]
pub struct Derived {
    /// Resolved model location handed to the shards and the router.
    pub model: PathBuf,
    pub num_shard: usize,
    /// `--max-input-tokens` or its deprecated alias.
    pub max_input_tokens: Option<usize>,
    pub max_batch_prefill_tokens: u32,
}

/// TGI's `find_num_shards`: combine `--sharded`, `--num-shard` and the visible device count.
pub fn find_num_shards(
    sharded: Option<bool>,
    num_shard: Option<usize>,
    devices: impl FnOnce() -> Option<usize>,
) -> Result<usize, LauncherError> {
    let n = match (sharded, num_shard) {
        (Some(true), None) => {
            let n = devices().ok_or_else(|| {
                LauncherError::ArgumentValidation(
                    "--num-shard and CUDA_VISIBLE_DEVICES/NVIDIA_VISIBLE_DEVICES/ZE_AFFINITY_MASK are not set".into(),
                )
            })?;
            if n <= 1 {
                return Err(LauncherError::ArgumentValidation(format!(
                    "`sharded` is true but only found {n} CUDA devices"
                )));
            }
            n
        }
        (Some(true), Some(n)) => {
            if n <= 1 {
                return Err(LauncherError::ArgumentValidation(
                    "`sharded` is true but `num_shard` <= 1".into(),
                ));
            }
            n
        }
        (Some(false), Some(n)) | (None, Some(n)) => n,
        (Some(false), None) => 1,
        (None, None) => devices().unwrap_or(1),
    };
    if n < 1 {
        return Err(LauncherError::ArgumentValidation(
            "`num_shard` cannot be < 1".into(),
        ));
    }
    Ok(n)
}

/// Visible devices as TGI counts them: CUDA_VISIBLE_DEVICES, then NVIDIA_VISIBLE_DEVICES
/// (`all`/`void` ask nvidia-smi), then ZE_AFFINITY_MASK.
pub fn visible_devices(env: impl Fn(&str) -> Option<String>) -> Option<usize> {
    let count = |s: &str| s.split(',').filter(|x| !x.trim().is_empty()).count();
    if let Some(v) = env("CUDA_VISIBLE_DEVICES") {
        return Some(count(&v));
    }
    if let Some(v) = env("NVIDIA_VISIBLE_DEVICES") {
        if v == "all" || v == "void" {
            return nvidia_smi_gpu_count();
        }
        return Some(count(&v));
    }
    env("ZE_AFFINITY_MASK").map(|v| count(&v))
}

fn nvidia_smi_gpu_count() -> Option<usize> {
    let out = std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=uuid", "--format=csv,noheader"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    Some(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .count(),
    )
}

/// `max_position_embeddings` (or `max_seq_len`/`n_positions`) of a model directory's config.json.
pub fn max_position_embeddings(model: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(model.join("config.json")).ok()?;
    let config: serde_json::Value = serde_json::from_str(&text).ok()?;
    ["max_position_embeddings", "max_seq_len", "n_positions"]
        .iter()
        .find_map(|k| config.get(*k).and_then(|v| v.as_u64()))
        .map(|v| v.min(u32::MAX as u64) as u32)
}

/// TGI's checks and defaults over the parsed flags; `devices` counts visible GPUs.
pub fn derive(
    args: &Args,
    model: PathBuf,
    devices: impl FnOnce() -> Option<usize>,
) -> Result<Derived, LauncherError> {
    let max_input_tokens = match (args.max_input_tokens, args.max_input_length) {
        (Some(tokens), Some(length)) => {
            return Err(LauncherError::ArgumentValidation(format!(
                "Both `max_input_tokens` ({tokens}) and `max_input_length` ({length}) are set. Please define only `max_input_tokens` as `max_input_length is deprecated for naming consistency."
            )))
        }
        (Some(v), None) | (None, Some(v)) => Some(v),
        (None, None) => None,
    };
    let devices = devices();
    let num_shard = find_num_shards(args.sharded, args.num_shard, || devices)?;
    if args.quantize == Some(Quantization::Exl2) && num_shard > 1 {
        return Err(LauncherError::ArgumentValidation(
            "Sharding is currently not supported with `exl2` quantization".into(),
        ));
    }
    if let (Some(input), Some(total)) = (max_input_tokens, args.max_total_tokens) {
        if input >= total {
            return Err(LauncherError::ArgumentValidation(format!(
                "`max_input_tokens`({input}) must be < `max_total_tokens`({total})"
            )));
        }
    }
    if args.validation_workers == 0 {
        return Err(LauncherError::ArgumentValidation(
            "`validation_workers` must be > 0".into(),
        ));
    }
    let max_batch_prefill_tokens = match args.max_batch_prefill_tokens {
        Some(v) => v,
        None => {
            // No GPU FLOPS estimate here: TGI's fallback of 4096 (512 without a GPU), capped
            // by the context and by a user-given `--max-batch-total-tokens` (the KV budget).
            let fallback = if devices.unwrap_or(0) > 0 {
                4096
            } else {
                CPU_PREFILL_TOKENS
            };
            let value = max_position_embeddings(&model).map_or(fallback, |p| p.min(fallback));
            let value = args.max_batch_total_tokens.map_or(value, |t| value.min(t));
            tracing::info!("Default `max_batch_prefill_tokens` to {value}");
            value
        }
    };
    if let Some(total_budget) = args.max_batch_total_tokens {
        if max_batch_prefill_tokens > total_budget {
            return Err(LauncherError::ArgumentValidation(format!(
                "`max_batch_prefill_tokens` must be <= `max_batch_total_tokens`. Given: {max_batch_prefill_tokens} and {total_budget}"
            )));
        }
        if let Some(total) = args.max_total_tokens {
            if total as u64 > total_budget as u64 {
                return Err(LauncherError::ArgumentValidation(format!(
                    "`max_total_tokens` must be <= `max_batch_total_tokens`. Given: {total} and {total_budget}"
                )));
            }
        }
    }
    check_unsupported(args)?;
    Ok(Derived {
        model,
        num_shard,
        max_input_tokens,
        max_batch_prefill_tokens,
    })
}

/// Flags that are accepted (TGI has them) but would silently change nothing here.
fn check_unsupported(args: &Args) -> Result<(), LauncherError> {
    if args.ngrok || args.ngrok_authtoken.is_some() || args.ngrok_edge.is_some() {
        return Err(LauncherError::Unsupported {
            flag: "--ngrok",
            hint: "put a reverse proxy or tunnel in front of --port instead".into(),
        });
    }
    if args.lora_adapters.is_some() {
        return Err(LauncherError::Unsupported {
            flag: "--lora-adapters",
            hint: "merge the adapter into the base weights and serve the merged model".into(),
        });
    }
    if args.rope_scaling.is_some() || args.rope_factor.is_some() {
        return Err(LauncherError::Unsupported {
            flag: "--rope-scaling/--rope-factor",
            hint: "set `rope_scaling` in the model's config.json instead".into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(extra: &[&str]) -> Args {
        let mut v = vec!["text-generation-launcher"];
        v.extend_from_slice(extra);
        Args::try_parse_from(v).unwrap()
    }

    fn derive_cpu(extra: &[&str]) -> Result<Derived, LauncherError> {
        derive(&args(extra), PathBuf::from("/nonexistent"), || None)
    }

    #[test]
    fn num_shards_follow_tgi() {
        assert_eq!(find_num_shards(None, None, || None).unwrap(), 1);
        assert_eq!(find_num_shards(None, None, || Some(4)).unwrap(), 4);
        assert_eq!(find_num_shards(None, Some(2), || Some(8)).unwrap(), 2);
        assert_eq!(find_num_shards(Some(false), None, || Some(8)).unwrap(), 1);
        assert_eq!(find_num_shards(Some(true), None, || Some(2)).unwrap(), 2);
        assert_eq!(
            find_num_shards(Some(true), None, || Some(1))
                .unwrap_err()
                .to_string(),
            "Argument validation error: `sharded` is true but only found 1 CUDA devices"
        );
        assert_eq!(
            find_num_shards(Some(true), Some(1), || None)
                .unwrap_err()
                .to_string(),
            "Argument validation error: `sharded` is true but `num_shard` <= 1"
        );
        assert!(find_num_shards(Some(true), None, || None).is_err());
        assert!(find_num_shards(None, Some(0), || None).is_err());
    }

    #[test]
    fn devices_from_env() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(
            visible_devices(env(&[("CUDA_VISIBLE_DEVICES", "0,1")])),
            Some(2)
        );
        assert_eq!(
            visible_devices(env(&[("NVIDIA_VISIBLE_DEVICES", "3")])),
            Some(1)
        );
        assert_eq!(
            visible_devices(env(&[("ZE_AFFINITY_MASK", "0,1,2")])),
            Some(3)
        );
        assert_eq!(visible_devices(env(&[])), None);
    }

    #[test]
    fn input_alias_and_cross_checks() {
        assert_eq!(
            derive_cpu(&["--max-input-length", "100"])
                .unwrap()
                .max_input_tokens,
            Some(100)
        );
        assert!(
            derive_cpu(&["--max-input-length", "1", "--max-input-tokens", "2"])
                .unwrap_err()
                .to_string()
                .contains("Both `max_input_tokens` (2) and `max_input_length` (1) are set")
        );
        assert_eq!(
            derive_cpu(&["--max-input-tokens", "10", "--max-total-tokens", "10"])
                .unwrap_err()
                .to_string(),
            "Argument validation error: `max_input_tokens`(10) must be < `max_total_tokens`(10)"
        );
        assert_eq!(
            derive_cpu(&["--max-total-tokens", "5000", "--max-batch-total-tokens", "4096"])
                .unwrap_err()
                .to_string(),
            "Argument validation error: `max_total_tokens` must be <= `max_batch_total_tokens`. Given: 5000 and 4096"
        );
        assert_eq!(
            derive_cpu(&["--max-batch-total-tokens", "1000", "--max-batch-prefill-tokens", "4096"])
                .unwrap_err()
                .to_string(),
            "Argument validation error: `max_batch_prefill_tokens` must be <= `max_batch_total_tokens`. Given: 4096 and 1000"
        );
        assert_eq!(
            derive_cpu(&["--validation-workers", "0"])
                .unwrap_err()
                .to_string(),
            "Argument validation error: `validation_workers` must be > 0"
        );
        assert!(derive_cpu(&["--quantize", "exl2", "--num-shard", "2"]).is_err());
    }

    #[test]
    fn prefill_default_capped_by_context() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"max_position_embeddings": 2048}"#,
        )
        .unwrap();
        let d = derive(&args(&[]), dir.path().to_path_buf(), || Some(1)).unwrap();
        assert_eq!(d.max_batch_prefill_tokens, 2048);
        assert_eq!(d.num_shard, 1);
        let gpu = derive(&args(&[]), PathBuf::from("/nonexistent"), || Some(1)).unwrap();
        assert_eq!(gpu.max_batch_prefill_tokens, 4096);
        assert_eq!(derive_cpu(&[]).unwrap().max_batch_prefill_tokens, 512);
        let small_kv = derive_cpu(&["--max-batch-total-tokens", "300"]).unwrap();
        assert_eq!(small_kv.max_batch_prefill_tokens, 300);
    }

    #[test]
    fn unsupported_flags_fail_clearly() {
        let e = derive_cpu(&["--lora-adapters", "a/b"]).unwrap_err();
        assert!(e
            .to_string()
            .starts_with("--lora-adapters is not supported by tgi-rs"));
        assert!(derive_cpu(&["--ngrok"]).is_err());
        assert!(derive_cpu(&["--rope-factor", "2.0"]).is_err());
    }
}
