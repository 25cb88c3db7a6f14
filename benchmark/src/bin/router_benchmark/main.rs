//! `text-generation-router-benchmark`: load-tests the whole HTTP stack (router + shard) with
//! concurrent `/generate_stream` clients and compares the inter-token latency they see with the
//! shard's decode step measured directly over gRPC at the same batch size. The difference is
//! what the router, HTTP and SSE add per token.
//!
//! Either starts `text-generation-launcher` on `--model-id` (private ports and sockets) or
//! connects to a running router with `--url` (pass its shard sockets with `--uds-path` for the
//! direct comparison). Prints a Markdown table, plus JSON lines with `--json`.

mod direct;
mod load;
mod metrics;
mod report;
mod sse;
mod stack;

use clap::Parser;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use text_generation_benchmark::error::BenchError;
use text_generation_benchmark::stats::Summary;
use text_generation_benchmark::{decode, shard_client};

/// Router benchmark.
#[derive(Debug, Parser)]
#[command(name = "text-generation-router-benchmark", version, about)]
struct Args {
    /// Model to serve with a launcher started for the run (HF directory, hub id or .gguf).
    #[arg(long, conflicts_with = "url")]
    model_id: Option<String>,
    /// Extra launcher argument (repeatable), e.g. `--launcher-arg=--max-batch-size=64`.
    #[arg(long = "launcher-arg", allow_hyphen_values = true)]
    launcher_args: Vec<String>,
    /// Write the launcher's output to this file (default: a temporary file, shown on failure).
    #[arg(long)]
    launcher_log: Option<PathBuf>,
    /// Base URL of an already running router instead, e.g. `http://127.0.0.1:3000`.
    #[arg(long)]
    url: Option<String>,
    /// With --url: the shard sockets (`<--shard-uds-path>-<rank>`, repeatable, rank order) for
    /// the direct decode measurement. Without them that column stays empty.
    #[arg(long, requires = "url")]
    uds_path: Vec<PathBuf>,
    /// Simultaneous streams per level (repeatable).
    #[arg(long = "streams", default_values_t = vec![1usize, 64, 256])]
    streams: Vec<usize>,
    /// Prompt length in tokens (the prompt is left-truncated to exactly this). Short by
    /// default so that a whole 256-stream round fits the 512-token prefill budget the launcher
    /// picks without a GPU: the round is then prefilled in one step and decoded as one batch,
    /// and its inter-token latency compares with the shard's decode step at that batch. With
    /// longer prompts the router ramps the batch up over several (chunked) prefill steps.
    #[arg(long, default_value_t = 2)]
    prompt_tokens: u32,
    /// Tokens generated per request (greedy; the run checks none stopped early).
    #[arg(long, default_value_t = 32)]
    max_new_tokens: u32,
    /// Timed rounds per level; a round sends every stream's request at once and waits for all.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Keep running timed rounds until at least this many seconds have passed.
    #[arg(long, default_value_t = 10.0)]
    min_duration_s: f64,
    /// Untimed rounds before each level (connections, allocator and caches warm up).
    #[arg(long, default_value_t = 1)]
    warmup_rounds: usize,
    /// Skip the direct shard measurement (by default one direct run follows each round).
    #[arg(long)]
    no_shard: bool,
    /// Interval between samples of the router's batch size gauge, in milliseconds.
    #[arg(long, default_value_t = 50)]
    sample_ms: u64,
    /// Per-request timeout in seconds.
    #[arg(long, default_value_t = 600)]
    request_timeout_s: u64,
    /// How long to wait for a started launcher's router, in seconds.
    #[arg(long, default_value_t = 900)]
    startup_timeout_s: u64,
    /// Open a new connection for every request instead of reusing kept-alive ones.
    #[arg(long)]
    fresh_connections: bool,
    /// Also print each level's results as a JSON line (after the table).
    #[arg(long)]
    json: bool,
}

// One thread for the client: it shares the machine with the server it measures, so it should
// not take more than one core.
#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = Args::parse();
    if let Err(e) = run(args).await {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

/// Batch ids of the direct measurement: far above the router's (which count from 0), since the
/// shard keys cached batches by id.
const DIRECT_BATCH_IDS: u64 = 1 << 32;

async fn run(args: Args) -> Result<(), BenchError> {
    if args.streams.is_empty() || args.streams.contains(&0) || args.rounds == 0 {
        return Err(BenchError::Usage(
            "--streams must be positive and --rounds at least 1".into(),
        ));
    }
    let max_streams = args.streams.iter().copied().max().unwrap_or(1);
    let client = load::client(
        max_streams,
        Duration::from_secs(args.request_timeout_s),
        !args.fresh_connections,
    )?;
    let (stack, base) = match (&args.model_id, &args.url) {
        (Some(model), None) => {
            // TGI's default of 128 concurrent requests would turn the 256-stream level into 429s.
            let defaults = [("--max-concurrent-requests", max_streams.to_string())];
            let mut s = stack::Stack::start(
                model,
                &args.launcher_args,
                &defaults,
                args.launcher_log.as_deref(),
            )?;
            s.wait_ready(&client, Duration::from_secs(args.startup_timeout_s))
                .await?;
            let base = s.base_url.clone();
            (Some(s), base)
        }
        (None, Some(url)) => (None, url.trim_end_matches('/').to_string()),
        _ => return Err(BenchError::Usage("pass --model-id or --url".into())),
    };
    describe_router(&client, &base).await;

    let sockets = match &stack {
        _ if args.no_shard => Vec::new(),
        Some(s) => s.shard_sockets(),
        None => args.uds_path.clone(),
    };
    let mut shard_clients = Vec::new();
    for s in &sockets {
        shard_clients.push(shard_client::connect(s).await?);
    }
    let shards = (!shard_clients.is_empty()).then(|| decode::Shards(shard_clients));
    if shards.is_none() && !args.no_shard {
        eprintln!("no shard sockets: the direct decode column stays empty");
    }

    let spec = Arc::new(load::RequestSpec {
        url: format!("{base}/generate_stream"),
        // As text-generation-benchmark: a long text left-truncated to exactly the length.
        inputs: "_test ".repeat(args.prompt_tokens as usize * 2),
        truncate: args.prompt_tokens,
        max_new_tokens: args.max_new_tokens,
    });
    println!("{}", report::header());
    let mut results = Vec::new();
    for (level, &n) in args.streams.iter().enumerate() {
        let first_id = DIRECT_BATCH_IDS + level as u64 * 1000;
        let r = level_run(&args, &client, &base, &spec, n, shards.as_ref(), first_id).await?;
        println!("{}", report::row(&r));
        if let Some(e) = &r.first_error {
            eprintln!("streams {n}: {} failed requests; first: {e}", r.errors);
        }
        if r.short_requests > 0 {
            eprintln!(
                "streams {n}: {} requests stopped before {} tokens (EOS?)",
                r.short_requests, args.max_new_tokens
            );
        }
        results.push(r);
    }
    println!();
    println!(
        "Latencies in ms; prompt {} tokens, {} new tokens, {} timed round(s) per level. \
         ITL: gaps between token events at the client. Added per token: ITL p50 minus the \
         p50 decode step of the shard measured directly over gRPC, at the batch size the \
         router reached, in runs alternating with the HTTP rounds.",
        results
            .first()
            .map_or(args.prompt_tokens, |r| r.prompt_tokens),
        args.max_new_tokens,
        args.rounds
    );
    if args.json {
        for r in &results {
            println!("{}", serde_json::to_string(r).unwrap_or_default());
        }
    }
    drop(stack);
    Ok(())
}

/// Prints the router's limits that decide batching (from `/info` and `/metrics`) to stderr.
async fn describe_router(client: &reqwest::Client, base: &str) {
    if let Ok(r) = client.get(format!("{base}/info")).send().await {
        if let Ok(info) = r.json::<serde_json::Value>().await {
            eprintln!(
                "router: model {} max_concurrent_requests {} max_input_tokens {} max_total_tokens {}",
                info["model_id"], info["max_concurrent_requests"], info["max_input_tokens"],
                info["max_total_tokens"]
            );
        }
    }
    if let Some(text) = metrics::scrape(client, base).await {
        if let Some(v) = metrics::value(&text, "tgi_batch_max_total_tokens", &[]) {
            eprintln!("router: max_batch_total_tokens {v}");
        }
    }
}

/// One concurrency level: warm-up rounds, then timed rounds with the batch size sampled, each
/// followed by one direct shard run at the largest batch size seen.
async fn level_run(
    args: &Args,
    client: &reqwest::Client,
    base: &str,
    spec: &Arc<load::RequestSpec>,
    n: usize,
    shards: Option<&decode::Shards>,
    first_batch_id: u64,
) -> Result<report::LevelResult, BenchError> {
    let sample_every = Duration::from_millis(args.sample_ms.max(1));
    let sampler = metrics::BatchSampler::start(client.clone(), base.to_string(), sample_every);
    for i in 0..args.warmup_rounds {
        eprintln!("streams {n}: warm-up round {}", i + 1);
        load::round(client, spec, n).await?;
    }
    let warm_max = sampler.finish().await.into_iter().reduce(f64::max);

    let before = metrics::scrape(client, base).await;
    let sampler = metrics::BatchSampler::start(client.clone(), base.to_string(), sample_every);
    let mut direct: Option<direct::Direct> = None;
    let mut direct_failed = shards.is_none();
    let mut records = Vec::new();
    let mut wall = Duration::ZERO;
    let mut rounds = 0;
    while rounds < args.rounds || wall.as_secs_f64() < args.min_duration_s {
        let (recs, took) = load::round(client, spec, n).await?;
        records.extend(recs);
        wall += took;
        rounds += 1;
        // The router is idle between rounds, so the shard serves only this run.
        if let (Some(s), None, false) = (shards, &direct, direct_failed) {
            // Most tokens of a round come from its full batch, the largest size sampled so
            // far (one round is enough to reach it); a round too short for a sample is taken
            // to have batched all its streams.
            let seen = warm_max.map(|m| m.round() as u64).max(sampler.max_so_far());
            let batch = seen.map_or(n as u32, |m| m as u32).max(1);
            eprintln!("streams {n}: direct shard runs at batch {batch}");
            let start = direct::Direct::start(
                s,
                batch,
                args.prompt_tokens,
                args.max_new_tokens,
                first_batch_id,
            );
            match start.await {
                Ok(d) => direct = Some(d),
                Err(e) => {
                    eprintln!("streams {n}: direct shard measurement failed: {e}");
                    direct_failed = true;
                }
            }
        }
        if let Some(d) = &mut direct {
            if let Err(e) = d.timed_run().await {
                eprintln!("streams {n}: direct shard measurement failed: {e}");
                direct = None;
                direct_failed = true;
            }
        }
    }
    eprintln!(
        "streams {n}: {rounds} timed rounds in {:.1} s",
        wall.as_secs_f64()
    );
    let samples = sampler.finish().await;
    let after = metrics::scrape(client, base).await;
    let mut r = report::summarize(n, args.max_new_tokens, &records, rounds, wall.as_secs_f64());
    r.batch_max = samples.iter().copied().reduce(f64::max);
    r.batch_at_max_share = r
        .batch_max
        .map(|m| samples.iter().filter(|&&s| s == m).count() as f64 / samples.len() as f64);
    if let (Some(b), Some(a)) = (before, after) {
        let d = metrics::StepCounters::read(&b).since(&metrics::StepCounters::read(&a));
        r.router_decode_step_ms = d.router_step_ms;
        r.shard_forward_ms = d.forward_ms;
        let steps = d.decode_steps + d.prefill_steps;
        // Every step gives each request in the batch one token (prompts fit in one chunk).
        r.batch_mean = (steps > 0.0).then(|| r.tokens as f64 / steps);
    }
    if let (Some(m), Some(d)) = (r.batch_max, &direct) {
        if m.round() as u32 != d.batch {
            eprintln!(
                "streams {n}: the timed rounds reached batch {m}, the direct runs used {}",
                d.batch
            );
        }
    }
    if r.prompt_tokens != 0 && r.prompt_tokens != args.prompt_tokens {
        eprintln!(
            "streams {n}: the router reported {} prompt tokens, the direct runs used {}",
            r.prompt_tokens, args.prompt_tokens
        );
    }
    if let Some(d) = direct.filter(|d| !d.steps_ms.is_empty()) {
        let step = Summary::of(&d.steps_ms).p50;
        r.shard_batch = Some(d.batch);
        r.shard_decode_step_ms = Some(step);
        r.added_ms_per_token = Some(r.itl_ms.p50 - step);
    }
    Ok(r)
}
