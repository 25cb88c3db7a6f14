//! TGI's launcher flags (`text-generation-launcher --help`): names, env vars and defaults as in
//! TGI 3.3, so existing command lines, Docker env files and SageMaker configs keep working.

use clap::{Parser, ValueEnum};

/// Weight quantization methods TGI accepts (forwarded to the shard, which decides).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Quantization {
    Awq,
    CompressedTensors,
    Eetq,
    Exl2,
    Gptq,
    Marlin,
    Bitsandbytes,
    BitsandbytesNf4,
    BitsandbytesFp4,
    Fp8,
}

/// Compute dtypes (TGI has float16/bfloat16; float32 is the CPU default of our shard).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Dtype {
    Float16,
    Bfloat16,
    Float32,
}

/// KV cache dtypes TGI accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum KvCacheDtype {
    #[value(name = "fp8_e4m3fn")]
    Fp8e4m3fn,
    #[value(name = "fp8_e5m2")]
    Fp8e5m2,
}

/// RoPE scaling kinds TGI accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RopeScaling {
    Linear,
    Dynamic,
}

/// Usage-statistics modes (this build never sends anything; forwarded to the router).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum UsageStats {
    On,
    Off,
    NoStack,
}

impl Quantization {
    /// The name TGI uses on the command line.
    pub fn as_str(self) -> String {
        self.to_possible_value()
            .map(|v| v.get_name().to_string())
            .unwrap_or_default()
    }
}

/// `--help` text of `--model-id`.
const MODEL_ID_HELP: &str = "The model to serve: a local HF model directory, a .gguf file, or a \
hub id already in the local Hugging Face cache (nothing is downloaded). Default: the embedded \
SmolLM2-135M-Instruct Q4_1 model, `$TGI_DEFAULT_MODEL` if set, else \
`models/SmolLM2-135M-Instruct.Q4_1.gguf` in the current directory or the repository root \
(fetch it with `scripts/fetch-default-model.sh`)";

/// Every flag of TGI's launcher; each also reads its UPPER_SNAKE env var.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "text-generation-launcher",
    version,
    about = "Starts one model shard per rank and the HTTP router, and supervises them (TGI-compatible)"
)]
pub struct Args {
    #[arg(long, env, help = MODEL_ID_HELP)]
    pub model_id: Option<String>,
    /// Model revision (a snapshot of the local Hugging Face cache).
    #[arg(long, env)]
    pub revision: Option<String>,
    /// Tokenizer workers in the router; must be > 0.
    #[arg(long, env, default_value_t = 2)]
    pub validation_workers: usize,
    /// Shard the model over several processes (`true`/`false`).
    #[arg(long, env)]
    pub sharded: Option<bool>,
    /// Number of shards; defaults to the visible GPU count (CUDA_VISIBLE_DEVICES, NVIDIA_VISIBLE_DEVICES, ZE_AFFINITY_MASK), else 1.
    #[arg(long, env)]
    pub num_shard: Option<usize>,
    /// Weight quantization; forwarded to the shard.
    #[arg(long, env, value_enum)]
    pub quantize: Option<Quantization>,
    /// Speculative decoding tokens; forwarded to the shard.
    #[arg(long, env)]
    pub speculate: Option<usize>,
    /// Compute dtype; forwarded to the shard.
    #[arg(long, env, value_enum)]
    pub dtype: Option<Dtype>,
    /// KV cache dtype; forwarded to the shard.
    #[arg(long, env, value_enum)]
    pub kv_cache_dtype: Option<KvCacheDtype>,
    /// Accepted for compatibility; no remote code is ever run.
    #[arg(long, env)]
    pub trust_remote_code: bool,
    /// Simultaneous requests; beyond it requests get 429.
    #[arg(long, env, default_value_t = 128)]
    pub max_concurrent_requests: usize,
    /// Largest accepted `best_of`.
    #[arg(long, env, default_value_t = 2)]
    pub max_best_of: usize,
    /// Largest accepted number of stop sequences.
    #[arg(long, env, default_value_t = 4)]
    pub max_stop_sequences: usize,
    /// Largest accepted `top_n_tokens`.
    #[arg(long, env, default_value_t = 5)]
    pub max_top_n_tokens: u32,
    /// Longest prompt in tokens; derived from warmup when unset.
    #[arg(long, env)]
    pub max_input_tokens: Option<usize>,
    /// Deprecated alias of `--max-input-tokens`.
    #[arg(long, env)]
    pub max_input_length: Option<usize>,
    /// Longest prompt + generation in tokens; derived from warmup when unset.
    #[arg(long, env)]
    pub max_total_tokens: Option<usize>,
    /// Waiting/running ratio that triggers a new prefill (ignored with chunked prefill).
    #[arg(long, env, default_value_t = 0.3)]
    pub waiting_served_ratio: f32,
    /// Token budget of one prefill; computed when unset.
    #[arg(long, env)]
    pub max_batch_prefill_tokens: Option<u32>,
    /// Token capacity of all running requests. On CPU it is the shard's KV cache size.
    #[arg(long, env)]
    pub max_batch_total_tokens: Option<u32>,
    /// Decode steps after which waiting requests are forced in (ignored with chunked prefill).
    #[arg(long, env, default_value_t = 20)]
    pub max_waiting_tokens: usize,
    /// Maximum requests in a batch.
    #[arg(long, env)]
    pub max_batch_size: Option<usize>,
    /// CUDA graph batch sizes (comma list, 0 disables); passed to shards as CUDA_GRAPHS.
    #[arg(long, env, value_delimiter = ',')]
    pub cuda_graphs: Option<Vec<usize>>,
    /// Address the router listens on.
    #[arg(long, env, default_value = "0.0.0.0")]
    pub hostname: String,
    /// HTTP port.
    #[arg(short, long, env, default_value_t = 3000)]
    pub port: u16,
    /// Port of the separate Prometheus listener.
    #[arg(long, env, default_value_t = 9000)]
    pub prometheus_port: u16,
    /// Base path of the shard sockets; shard N listens on `<path>-N`.
    #[arg(long, env, default_value = "/tmp/text-generation-server")]
    pub shard_uds_path: String,
    /// Rendezvous address of the shards.
    #[arg(long, env, default_value = "localhost")]
    pub master_addr: String,
    /// Rendezvous port of the shards.
    #[arg(long, env, default_value_t = 29500)]
    pub master_port: u16,
    /// Hugging Face cache where `--model-id` hub ids are looked up.
    #[arg(long, env)]
    pub huggingface_hub_cache: Option<String>,
    /// Passed to the shards as WEIGHTS_CACHE_OVERRIDE.
    #[arg(long, env)]
    pub weights_cache_override: Option<String>,
    /// Passed to the shards as DISABLE_CUSTOM_KERNELS.
    #[arg(long, env)]
    pub disable_custom_kernels: bool,
    /// Fraction of GPU memory a shard may use; passed as CUDA_MEMORY_FRACTION.
    #[arg(long, env, default_value_t = 1.0)]
    pub cuda_memory_fraction: f32,
    /// RoPE scaling override (not supported yet: set `rope_scaling` in config.json).
    #[arg(long, env, value_enum)]
    pub rope_scaling: Option<RopeScaling>,
    /// RoPE scaling factor (not supported yet: set `rope_scaling` in config.json).
    #[arg(long, env)]
    pub rope_factor: Option<f32>,
    /// Log as JSON lines.
    #[arg(long, env)]
    pub json_output: bool,
    /// OpenTelemetry endpoint; forwarded.
    #[arg(long, env)]
    pub otlp_endpoint: Option<String>,
    /// OpenTelemetry service name of the router.
    #[arg(long, env, default_value = "text-generation-inference.router")]
    pub otlp_service_name: String,
    /// Allowed CORS origin (repeat for several).
    #[arg(long, env)]
    pub cors_allow_origin: Vec<String>,
    /// Bearer key required on generation routes.
    #[arg(long, env)]
    pub api_key: Option<String>,
    /// Watermark gamma; passed to the shards as WATERMARK_GAMMA.
    #[arg(long, env)]
    pub watermark_gamma: Option<f32>,
    /// Watermark delta; passed to the shards as WATERMARK_DELTA.
    #[arg(long, env)]
    pub watermark_delta: Option<f32>,
    /// Not supported (also non-functional in TGI); use a reverse proxy.
    #[arg(long, env)]
    pub ngrok: bool,
    /// Not supported.
    #[arg(long, env)]
    pub ngrok_authtoken: Option<String>,
    /// Not supported.
    #[arg(long, env)]
    pub ngrok_edge: Option<String>,
    /// Alternative tokenizer_config.json (chat template, special tokens).
    #[arg(long, env)]
    pub tokenizer_config_path: Option<String>,
    /// Reject requests that carry a grammar.
    #[arg(long, env)]
    pub disable_grammar_support: bool,
    /// Print the runtime environment (for bug reports), then start.
    #[arg(short, long)]
    pub env: bool,
    /// Maximum prompts in one `/v1/completions` request.
    #[arg(long, env, default_value_t = 4)]
    pub max_client_batch_size: usize,
    /// LoRA adapters (not supported yet).
    #[arg(long, env)]
    pub lora_adapters: Option<String>,
    /// Usage statistics mode; this build never sends any.
    #[arg(long, env, value_enum, default_value = "on")]
    pub usage_stats: UsageStats,
    /// Maximum request body in bytes.
    #[arg(long, env, default_value_t = 2_000_000)]
    pub payload_limit: usize,
    /// Return prompt logprobs; passed to the shards as REQUEST_LOGPROBS=1.
    #[arg(long, env)]
    pub enable_prefill_logprobs: bool,
    /// Seconds the router may take to drain in-flight requests, and each shard to stop, before SIGKILL.
    #[arg(short, long, env, default_value_t = 90)]
    pub graceful_termination_timeout: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &[&str]) -> Args {
        let mut v = vec!["text-generation-launcher"];
        v.extend_from_slice(extra);
        Args::try_parse_from(v).unwrap()
    }

    #[test]
    fn defaults_are_tgis() {
        let a = parse(&[]);
        assert_eq!(a.port, 3000);
        assert_eq!(a.prometheus_port, 9000);
        assert_eq!(a.max_concurrent_requests, 128);
        assert_eq!(a.max_best_of, 2);
        assert_eq!(a.max_stop_sequences, 4);
        assert_eq!(a.max_top_n_tokens, 5);
        assert!((a.waiting_served_ratio - 0.3).abs() < 1e-6);
        assert_eq!(a.max_waiting_tokens, 20);
        assert_eq!(a.shard_uds_path, "/tmp/text-generation-server");
        assert_eq!(a.master_addr, "localhost");
        assert_eq!(a.master_port, 29500);
        assert_eq!(a.payload_limit, 2_000_000);
        assert_eq!(a.graceful_termination_timeout, 90);
        assert_eq!(a.max_client_batch_size, 4);
        assert_eq!(a.validation_workers, 2);
        assert_eq!(a.usage_stats, UsageStats::On);
        assert_eq!(a.otlp_service_name, "text-generation-inference.router");
    }

    #[test]
    fn tgi_style_values_parse() {
        let a = parse(&[
            "--sharded",
            "true",
            "--num-shard",
            "2",
            "--quantize",
            "bitsandbytes-nf4",
            "--kv-cache-dtype",
            "fp8_e5m2",
            "--cors-allow-origin",
            "http://a",
            "--cors-allow-origin",
            "http://b",
            "--cuda-graphs",
            "1,2,4",
            "-p",
            "8080",
            "-g",
            "5",
            "-e",
        ]);
        assert_eq!(a.sharded, Some(true));
        assert_eq!(a.quantize, Some(Quantization::BitsandbytesNf4));
        assert_eq!(
            a.quantize.map(|q| q.as_str()).as_deref(),
            Some("bitsandbytes-nf4")
        );
        assert_eq!(a.kv_cache_dtype, Some(KvCacheDtype::Fp8e5m2));
        assert_eq!(a.cors_allow_origin, vec!["http://a", "http://b"]);
        assert_eq!(a.cuda_graphs, Some(vec![1, 2, 4]));
        assert_eq!(a.port, 8080);
        assert_eq!(a.graceful_termination_timeout, 5);
        assert!(a.env);
    }

    #[test]
    fn unknown_flag_is_rejected() {
        assert!(Args::try_parse_from(["text-generation-launcher", "--no-such-flag"]).is_err());
        assert!(Args::try_parse_from(["text-generation-launcher", "--quantize", "q3"]).is_err());
    }
}
