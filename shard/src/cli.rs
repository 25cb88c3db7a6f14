//! Command line of `text-generation-shard`, flag-compatible with TGI's
//! `text-generation-server serve`.

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// tgi-rs model shard.
#[derive(Debug, Parser)]
#[command(
    name = "text-generation-shard",
    version,
    about = "tgi-rs model shard: serves TGI's v3 gRPC protocol on a Unix socket"
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load a model and serve it on `<UDS_PATH>-<RANK>`.
    Serve(ServeArgs),
}

/// Compute dtypes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DtypeArg {
    /// IEEE half.
    Float16,
    /// bfloat16.
    Bfloat16,
    /// float32 (CPU default).
    Float32,
}

/// `serve` arguments.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// A local HF model directory (config.json, *.safetensors, tokenizer.json) or a .gguf file.
    pub model_id: PathBuf,
    /// Revision (accepted for TGI compatibility; local models have none).
    #[arg(long)]
    pub revision: Option<String>,
    /// Set by the launcher when the model is split over several shards. On a GPU with
    /// `WORLD_SIZE=1` it still runs the NCCL collectives (builds with the `nccl` feature).
    #[arg(long)]
    pub sharded: bool,
    /// Weight quantization (TGI names). Not supported yet: the shard refuses to start with it.
    #[arg(long)]
    pub quantize: Option<String>,
    /// Speculative tokens (only 0 is supported).
    #[arg(long)]
    pub speculate: Option<u32>,
    /// Compute dtype; default float32 on CPU, the checkpoint's half type on GPU.
    #[arg(long, value_enum)]
    pub dtype: Option<DtypeArg>,
    /// KV cache dtype (accepted for TGI compatibility; the cache uses the compute dtype).
    #[arg(long)]
    pub kv_cache_dtype: Option<String>,
    /// Accepted for TGI compatibility (no remote code is ever run).
    #[arg(long)]
    pub trust_remote_code: bool,
    /// Base path of the Unix sockets; this shard listens on `<UDS_PATH>-<RANK>`.
    #[arg(long, default_value = "/tmp/text-generation-server")]
    pub uds_path: String,
    /// Log level: trace, debug, info, warn, error.
    #[arg(long, default_value = "INFO")]
    pub logger_level: String,
    /// Log as JSON lines.
    #[arg(long)]
    pub json_output: bool,
    /// OpenTelemetry endpoint (accepted; traces are not exported yet).
    #[arg(long)]
    pub otlp_endpoint: Option<String>,
    /// OpenTelemetry service name.
    #[arg(long, default_value = "text-generation-inference.server")]
    pub otlp_service_name: String,
    /// Longest accepted prompt in tokens (after truncation).
    #[arg(long)]
    pub max_input_tokens: Option<u32>,
    /// KV cache size in tokens. On CPU this is the KV budget; when unset the cache takes
    /// `--kv-cache-memory-fraction` of the available host memory.
    #[arg(long, env = "MAX_BATCH_TOTAL_TOKENS")]
    pub max_batch_total_tokens: Option<usize>,
    /// Fraction of available host memory for the KV cache when `--max-batch-total-tokens` is
    /// not given (CPU).
    #[arg(long, env = "KV_CACHE_MEMORY_FRACTION", default_value_t = 0.1)]
    pub kv_cache_memory_fraction: f64,
    /// Fraction of the GPU's memory the shard may use (model + KV cache), TGI's
    /// `--cuda-memory-fraction`; the KV cache takes what the model leaves (CUDA builds).
    #[arg(long, env = "CUDA_MEMORY_FRACTION", default_value_t = 1.0)]
    pub cuda_memory_fraction: f64,
    /// This shard's rank.
    #[arg(long, env = "RANK", default_value_t = 0)]
    pub rank: usize,
    /// Number of shards.
    #[arg(long, env = "WORLD_SIZE", default_value_t = 1)]
    pub world_size: usize,
    /// Seconds to wait for the other shards at startup (tensor parallelism): for the CPU
    /// communicator's connections, or for rank 0's NCCL unique id on GPUs.
    #[arg(long, env = "SHARD_RENDEZVOUS_TIMEOUT", default_value_t = 300)]
    pub rendezvous_timeout: u64,
    /// Rendezvous address for tensor parallelism.
    #[arg(long, env = "MASTER_ADDR", default_value = "localhost")]
    pub master_addr: String,
    /// Decode batch sizes run as CUDA graphs (TGI's `CUDA_GRAPHS`, comma list; `0` disables).
    /// Used on a GPU with one shard; ignored on the CPU.
    #[arg(
        long,
        env = "CUDA_GRAPHS",
        value_delimiter = ',',
        default_value = "1,2,4,8,16,32"
    )]
    pub cuda_graphs: Vec<usize>,
    /// Queue a batch's next decode forward on the GPU before answering a step, so the device
    /// works while the answer and the next Decode travel (`false` turns it off). Used on a
    /// GPU with one shard; ignored on the CPU.
    #[arg(long, env = "RUN_AHEAD", default_value_t = true, action = clap::ArgAction::Set)]
    pub run_ahead: bool,
    /// Rendezvous port for tensor parallelism.
    #[arg(long, env = "MASTER_PORT", default_value_t = 29500)]
    pub master_port: u16,
}
