//! One concurrency level's results, summarized from the client records, the router's metrics
//! and the direct shard measurement, and printed as a Markdown table row or a JSON line.

use crate::load::StreamRecord;
use text_generation_benchmark::stats::Summary;

/// Results of one concurrency level. Latencies in milliseconds.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LevelResult {
    /// Simultaneous streams.
    pub streams: usize,
    /// Timed rounds.
    pub rounds: usize,
    /// Requests that ended with their final event.
    pub requests_ok: usize,
    /// Requests that failed (status, error event, transport error or cut stream).
    pub errors: usize,
    /// The first failure's description.
    pub first_error: Option<String>,
    /// Requests that stopped before `max_new_tokens` (EOS or stop sequence).
    pub short_requests: usize,
    /// Prompt tokens per request (the median the router reported).
    pub prompt_tokens: u32,
    /// Tokens asked for per request.
    pub max_new_tokens: u32,
    /// Wall-clock seconds of the timed rounds.
    pub wall_s: f64,
    /// Completed requests per second.
    pub requests_per_s: f64,
    /// Token events received per second over all streams.
    pub tokens_per_s: f64,
    /// Time to first token.
    pub ttft_ms: Summary,
    /// Inter-token latency seen by the client.
    pub itl_ms: Summary,
    /// Largest `tgi_batch_current_size` sampled during the rounds.
    pub batch_max: Option<f64>,
    /// Share of the batch-size samples at `batch_max` (time-weighted: how much of the run the
    /// router spent at its largest batch).
    pub batch_at_max_share: Option<f64>,
    /// Tokens generated per forward step of the router (token events over prefill + decode
    /// steps): the mean batch over the rounds, ramp-up and drain included.
    pub batch_mean: Option<f64>,
    /// Token events received (all streams, timed rounds).
    pub tokens: usize,
    /// Mean router decode step (`tgi_batch_inference_duration{method="decode"}`).
    pub router_decode_step_ms: Option<f64>,
    /// Mean shard forward pass the router recorded (`tgi_batch_forward_duration`).
    pub shard_forward_ms: Option<f64>,
    /// Batch size of the direct shard measurement.
    pub shard_batch: Option<u32>,
    /// Median decode step measured directly over gRPC at `shard_batch`.
    pub shard_decode_step_ms: Option<f64>,
    /// `itl_ms.p50 - shard_decode_step_ms`: router + HTTP + SSE + client time per token.
    pub added_ms_per_token: Option<f64>,
}

/// Tallies a level's client records (the batch and shard fields are filled in by the caller).
pub fn summarize(
    streams: usize,
    max_new_tokens: u32,
    records: &[StreamRecord],
    rounds: usize,
    wall_s: f64,
) -> LevelResult {
    let ok: Vec<&StreamRecord> = records.iter().filter(|r| r.error.is_none()).collect();
    let ttft: Vec<f64> = ok.iter().filter_map(|r| r.ttft_ms()).collect();
    let itl: Vec<f64> = ok.iter().flat_map(|r| r.itl_ms()).collect();
    let tokens: usize = records.iter().map(|r| r.token_ms.len()).sum();
    let mut prompts: Vec<u32> = ok
        .iter()
        .filter_map(|r| r.finished.as_ref().map(|f| f.1))
        .collect();
    prompts.sort_unstable();
    let short = ok
        .iter()
        .filter(|r| r.finished.as_ref().is_some_and(|f| f.0 < max_new_tokens))
        .count();
    LevelResult {
        streams,
        rounds,
        requests_ok: ok.len(),
        errors: records.len() - ok.len(),
        first_error: records.iter().find_map(|r| r.error.clone()),
        short_requests: short,
        prompt_tokens: prompts.get(prompts.len() / 2).copied().unwrap_or(0),
        max_new_tokens,
        wall_s,
        requests_per_s: ok.len() as f64 / wall_s,
        tokens_per_s: tokens as f64 / wall_s,
        ttft_ms: Summary::of(&ttft),
        itl_ms: Summary::of(&itl),
        batch_max: None,
        batch_at_max_share: None,
        batch_mean: None,
        tokens,
        router_decode_step_ms: None,
        shard_forward_ms: None,
        shard_batch: None,
        shard_decode_step_ms: None,
        added_ms_per_token: None,
    }
}

/// The table header (two lines).
pub fn header() -> String {
    "| streams | batch max / mean per step | req/s | tok/s | TTFT p50 | TTFT p90 | ITL p50 | ITL p90 | ITL p99 \
     | router decode step (mean) | shard forward (mean) | shard decode step p50, direct gRPC (batch) \
     | added per token | errors |\n\
     |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        .to_string()
}

fn ms(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v:.2}"),
        _ => "—".into(),
    }
}

/// One table row (latencies in ms).
pub fn row(r: &LevelResult) -> String {
    let batch = format!(
        "{} / {}",
        r.batch_max.map_or("—".into(), |m| format!("{m:.0}")),
        r.batch_mean.map_or("—".into(), |a| format!("{a:.1}"))
    );
    let shard = match (r.shard_decode_step_ms, r.shard_batch) {
        (Some(s), Some(b)) => format!("{s:.2} ({b})"),
        _ => "—".into(),
    };
    format!(
        "| {} | {} | {:.2} | {:.1} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
        r.streams,
        batch,
        r.requests_per_s,
        r.tokens_per_s,
        ms(Some(r.ttft_ms.p50)),
        ms(Some(r.ttft_ms.p90)),
        ms(Some(r.itl_ms.p50)),
        ms(Some(r.itl_ms.p90)),
        ms(Some(r.itl_ms.p99)),
        ms(r.router_decode_step_ms),
        ms(r.shard_forward_ms),
        shard,
        ms(r.added_ms_per_token),
        r.errors,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(token_ms: &[f64], generated: u32) -> StreamRecord {
        StreamRecord {
            token_ms: token_ms.to_vec(),
            finished: Some((generated, 32, "length".into())),
            error: None,
        }
    }

    #[test]
    fn tallies_ttft_itl_errors_and_short_requests() {
        let failed = StreamRecord {
            error: Some("status 429".into()),
            ..Default::default()
        };
        let records = vec![
            record(&[100.0, 110.0, 130.0], 3),
            record(&[200.0, 210.0], 2),
            failed,
        ];
        let r = summarize(3, 3, &records, 1, 2.0);
        assert_eq!((r.requests_ok, r.errors, r.short_requests), (2, 1, 1));
        assert_eq!(r.first_error.as_deref(), Some("status 429"));
        assert_eq!(r.ttft_ms.count, 2);
        assert_eq!(r.ttft_ms.p50, 200.0);
        // Gaps: 10, 20, 10.
        assert_eq!(r.itl_ms.count, 3);
        assert_eq!(r.itl_ms.p50, 10.0);
        assert_eq!(r.itl_ms.max, 20.0);
        assert_eq!((r.requests_per_s, r.tokens_per_s), (1.0, 2.5));
        assert_eq!(r.prompt_tokens, 32);
        assert!(row(&r).starts_with("| 3 | — / — | 1.00 | 2.5 | 200.00 |"));
    }
}
