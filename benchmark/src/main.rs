//! `text-generation-benchmark`: measures a shard's prefill and decode directly over gRPC, the
//! way TGI's benchmark tool does, and prints a Markdown table (plus JSON lines with --json).

use clap::Parser;
use std::path::PathBuf;
use text_generation_benchmark::error::BenchError;
use text_generation_benchmark::{decode, shard_client};

/// Shard benchmark.
#[derive(Debug, Parser)]
#[command(name = "text-generation-benchmark", version, about)]
struct Args {
    /// Model to serve with a shard started for the run (HF directory or .gguf).
    #[arg(long, conflicts_with = "uds_path")]
    model: Option<PathBuf>,
    /// Socket of an already running, warmed-up shard instead.
    #[arg(long)]
    uds_path: Option<PathBuf>,
    /// Batch sizes to measure (repeatable).
    #[arg(long = "batch-size", default_values_t = vec![1u32, 8, 16])]
    batch_sizes: Vec<u32>,
    /// Prompt tokens per request.
    #[arg(long, default_value_t = 32)]
    sequence_length: u32,
    /// Decode steps per run.
    #[arg(long, default_value_t = 128)]
    decode_length: u32,
    /// Timed runs per batch size (medians are reported).
    #[arg(long, default_value_t = 3)]
    runs: u32,
    /// Ranks (tensor-parallel shards) to spawn with --model.
    #[arg(long, default_value_t = 1)]
    num_shard: usize,
    /// KV budget in tokens for a spawned shard.
    #[arg(long, default_value_t = 65536)]
    kv_tokens: usize,
    /// Extra arguments for a spawned shard (e.g. --dtype=bfloat16).
    #[arg(long = "shard-arg", allow_hyphen_values = true)]
    shard_args: Vec<String>,
    /// Also print each result as a JSON line.
    #[arg(long)]
    json: bool,
    /// Write the first request's generated token ids and logprobs per batch size to this JSON
    /// file (to compare runs, e.g. 1 vs 2 tensor-parallel shards).
    #[arg(long)]
    dump_tokens: Option<PathBuf>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = Args::parse();
    if let Err(e) = run(args).await {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> Result<(), BenchError> {
    let (_spawned, sockets, warm) = match (&args.model, &args.uds_path) {
        (Some(model), _) => {
            let s = shard_client::spawn(
                model,
                args.num_shard.max(1),
                args.kv_tokens,
                &args.shard_args,
            )?;
            let sockets: Vec<PathBuf> = s.iter().map(|s| s.socket.clone()).collect();
            (s, sockets, true)
        }
        (None, Some(p)) => (Vec::new(), vec![p.clone()], false),
        (None, None) => return Err(BenchError::Spawn("pass --model or --uds-path".into())),
    };
    let mut clients = Vec::new();
    for s in &sockets {
        clients.push(shard_client::connect(s).await?);
    }
    let client = decode::Shards(clients);
    if warm {
        let max_batch = args.batch_sizes.iter().copied().max().unwrap_or(1);
        decode::warmup(&client, max_batch * args.sequence_length).await?;
    }
    println!("| batch | prompt | steps | prefill ms | prefill tok/s | decode ms/step (p50) | p90 | decode tok/s | RPC overhead ms/step |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut dumped = serde_json::Map::new();
    for &b in &args.batch_sizes {
        let r = decode::bench(
            &client,
            b,
            args.sequence_length,
            args.decode_length,
            args.runs,
            u64::from(b) * 100,
        )
        .await?;
        println!(
            "| {} | {} | {} | {:.1} | {:.0} | {:.2} | {:.2} | {:.1} | {:.3} |",
            r.batch_size,
            r.sequence_length,
            r.decode_length,
            r.prefill_ms,
            r.prefill_tokens_per_s,
            r.decode_step_ms,
            r.decode_step_p90_ms,
            r.decode_tokens_per_s,
            r.decode_overhead_ms
        );
        if args.json {
            println!("{}", serde_json::to_string(&r).unwrap_or_default());
        }
        let (ids, logprobs): (Vec<u32>, Vec<f32>) = r.first_request.iter().copied().unzip();
        dumped.insert(
            b.to_string(),
            serde_json::json!({"ids": ids, "logprobs": logprobs}),
        );
    }
    if let Some(path) = &args.dump_tokens {
        let text = serde_json::to_string_pretty(&dumped).unwrap_or_default();
        std::fs::write(path, text)
            .map_err(|e| BenchError::Usage(format!("writing {}: {e}", path.display())))?;
    }
    Ok(())
}
