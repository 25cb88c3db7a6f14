//! Command-line flags of `text-generation-router`: TGI's names, defaults and env vars.

use clap::Parser;

/// Every router flag TGI's launcher passes (§1.5), each also readable from its env var.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "text-generation-router",
    version,
    about = "TGI-compatible HTTP router"
)]
pub struct Args {
    /// Maximum simultaneous requests; beyond it requests get 429 "Model is overloaded".
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
    /// Maximum prompt tokens; derived from warmup when unset.
    #[arg(long, env)]
    pub max_input_tokens: Option<usize>,
    /// Maximum prompt + generated tokens; derived from warmup when unset.
    #[arg(long, env)]
    pub max_total_tokens: Option<usize>,
    /// Ratio of waiting to running requests that triggers a new prefill (ignored with chunking).
    #[arg(long, env, default_value_t = 1.2)]
    pub waiting_served_ratio: f32,
    /// Token budget of one prefill.
    #[arg(long, env, default_value_t = 4096)]
    pub max_batch_prefill_tokens: u32,
    /// Token capacity of a batch; taken from warmup for paged models.
    #[arg(long, env)]
    pub max_batch_total_tokens: Option<u32>,
    /// Decode steps after which waiting requests are forced in (ignored with chunking).
    #[arg(long, env, default_value_t = 20)]
    pub max_waiting_tokens: usize,
    /// Maximum number of requests in a batch.
    #[arg(long, env)]
    pub max_batch_size: Option<usize>,
    /// Address to listen on.
    #[arg(long, env, default_value = "0.0.0.0")]
    pub hostname: String,
    /// HTTP port.
    #[arg(short, long, env, default_value_t = 3000)]
    pub port: u16,
    /// Port of the standalone Prometheus listener.
    #[arg(long, env, default_value_t = 9000)]
    pub prometheus_port: u16,
    /// Unix socket of shard 0.
    #[arg(long, env, default_value = "/tmp/text-generation-server-0")]
    pub master_shard_uds_path: String,
    /// Model directory (or hub id found in the local cache) holding the tokenizer.
    #[arg(long, env, default_value = "bigscience/bloom")]
    pub tokenizer_name: String,
    /// Alternative `tokenizer_config.json` (chat template, bos/eos tokens).
    #[arg(long, env)]
    pub tokenizer_config_path: Option<String>,
    /// Model revision (informational; weights are local).
    #[arg(long, env)]
    pub revision: Option<String>,
    /// Accepted for compatibility; nothing is downloaded.
    #[arg(long, env, default_value_t = false)]
    pub trust_remote_code: bool,
    /// Number of tokenizer workers.
    #[arg(long, env, default_value_t = 2)]
    pub validation_workers: usize,
    /// Bearer key required on generation routes.
    #[arg(long, env)]
    pub api_key: Option<String>,
    /// Allowed CORS origins (any when empty).
    #[arg(long, env, value_delimiter = ',')]
    pub cors_allow_origin: Option<Vec<String>>,
    /// Maximum request body in bytes.
    #[arg(long, env, default_value_t = 2_000_000)]
    pub payload_limit: usize,
    /// Log as JSON lines.
    #[arg(long, env, default_value_t = false)]
    pub json_output: bool,
    /// OpenTelemetry endpoint (accepted; traces are not exported by this build).
    #[arg(long, env)]
    pub otlp_endpoint: Option<String>,
    /// OpenTelemetry service name.
    #[arg(long, env, default_value = "text-generation-inference.router")]
    pub otlp_service_name: String,
    /// Maximum prompts in one `/v1/completions` request.
    #[arg(long, env, default_value_t = 4)]
    pub max_client_batch_size: usize,
    /// Reject requests that carry a grammar.
    #[arg(long, env, default_value_t = false)]
    pub disable_grammar_support: bool,
    /// Usage statistics mode (`on`, `off`, `no-stack`); nothing is ever sent by this build.
    #[arg(long, env, default_value = "on")]
    pub usage_stats: String,
    /// Maximum image size fetched for multimodal inputs.
    #[arg(long, env, default_value_t = 1_073_741_824)]
    pub max_image_fetch_size: usize,
    /// Accepted for compatibility; ngrok is not supported.
    #[arg(long, env, default_value_t = false)]
    pub ngrok: bool,
    /// Accepted for compatibility.
    #[arg(long, env)]
    pub ngrok_authtoken: Option<String>,
    /// Accepted for compatibility.
    #[arg(long, env)]
    pub ngrok_edge: Option<String>,
    /// Optional subcommand.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Router subcommands.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum Command {
    /// Print the OpenAPI schema and exit.
    PrintSchema,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_tgi_router() {
        let args = Args::try_parse_from(["text-generation-router"]).unwrap();
        assert_eq!(args.max_concurrent_requests, 128);
        assert_eq!(args.max_batch_prefill_tokens, 4096);
        assert!((args.waiting_served_ratio - 1.2).abs() < 1e-6);
        assert_eq!(args.port, 3000);
        assert_eq!(args.prometheus_port, 9000);
        assert_eq!(args.payload_limit, 2_000_000);
        assert_eq!(args.master_shard_uds_path, "/tmp/text-generation-server-0");
    }

    #[test]
    fn launcher_style_flags_parse() {
        let args = Args::try_parse_from([
            "text-generation-router",
            "--max-input-tokens",
            "100",
            "--cors-allow-origin",
            "http://a",
            "--cors-allow-origin",
            "http://b",
            "--json-output",
            "--usage-stats",
            "off",
        ])
        .unwrap();
        assert_eq!(args.max_input_tokens, Some(100));
        assert_eq!(
            args.cors_allow_origin,
            Some(vec!["http://a".to_string(), "http://b".to_string()])
        );
        assert!(args.json_output);
    }
}
