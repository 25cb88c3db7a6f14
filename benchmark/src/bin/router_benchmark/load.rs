//! The load generator: rounds of `n` simultaneous `/generate_stream` requests, each timed at
//! the client from the moment it is sent to every token event it receives.

use crate::sse::{SseParser, StreamEvent};
use futures::StreamExt;
use std::time::{Duration, Instant};
use text_generation_benchmark::error::BenchError;

/// What every request of a run asks for.
#[derive(Debug, Clone)]
pub struct RequestSpec {
    /// `…/generate_stream`.
    pub url: String,
    /// The fixed prompt.
    pub inputs: String,
    /// Keep only the last `truncate` prompt tokens (fixes the prompt length in tokens).
    pub truncate: u32,
    /// Tokens to generate.
    pub max_new_tokens: u32,
}

impl RequestSpec {
    /// The JSON body: greedy, with the final details (for the prompt length and finish reason).
    fn body(&self) -> serde_json::Value {
        serde_json::json!({
            "inputs": self.inputs,
            "parameters": {
                "do_sample": false,
                "max_new_tokens": self.max_new_tokens,
                "truncate": self.truncate,
                "details": true,
            }
        })
    }
}

/// One request as the client saw it.
#[derive(Debug, Clone, Default)]
pub struct StreamRecord {
    /// Milliseconds from sending the request to each token event, in order.
    pub token_ms: Vec<f64>,
    /// Generated tokens, prompt tokens and finish reason from the final event.
    pub finished: Option<(u32, u32, String)>,
    /// Why the request failed (status, error event, transport error, cut stream), if it did.
    pub error: Option<String>,
}

impl StreamRecord {
    /// Time to first token, if any token arrived.
    pub fn ttft_ms(&self) -> Option<f64> {
        self.token_ms.first().copied()
    }

    /// Gaps between consecutive tokens (the inter-token latencies).
    pub fn itl_ms(&self) -> impl Iterator<Item = f64> + '_ {
        self.token_ms.windows(2).map(|w| w[1] - w[0])
    }
}

/// An HTTP client sized for `max_streams` concurrent streams; `keep_alive` false opens a new
/// connection for every request.
pub fn client(
    max_streams: usize,
    timeout: Duration,
    keep_alive: bool,
) -> Result<reqwest::Client, BenchError> {
    reqwest::Client::builder()
        // One kept-alive connection per stream, so later rounds do not pay TCP setup.
        .pool_max_idle_per_host(if keep_alive { max_streams } else { 0 })
        .timeout(timeout)
        .tcp_nodelay(true)
        .build()
        .map_err(|e| BenchError::Http(e.to_string()))
}

/// Sends one streaming request and records its token arrival times.
async fn one(client: reqwest::Client, spec: std::sync::Arc<RequestSpec>) -> StreamRecord {
    let mut rec = StreamRecord::default();
    let start = Instant::now();
    let response = match client.post(&spec.url).json(&spec.body()).send().await {
        Ok(r) => r,
        Err(e) => {
            rec.error = Some(format!("send: {e}"));
            return rec;
        }
    };
    let status = response.status();
    if !status.is_success() {
        let text = response.text().await.unwrap_or_default();
        rec.error = Some(format!("status {status}: {}", text.trim()));
        return rec;
    }
    let mut parser = SseParser::default();
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                rec.error = Some(format!("stream: {e}"));
                return rec;
            }
        };
        // Events that arrive in one chunk share its arrival time: that is what a client sees.
        let at = start.elapsed().as_secs_f64() * 1e3;
        for payload in parser.feed(&chunk) {
            match StreamEvent::parse(&payload) {
                Ok(StreamEvent {
                    error: Some(err), ..
                }) => rec.error = Some(format!("error event: {err}")),
                Ok(event) => {
                    if event.token.is_some() {
                        rec.token_ms.push(at);
                    }
                    if let Some(d) = event.details {
                        rec.finished = Some((d.generated_tokens, d.input_length, d.finish_reason));
                    }
                }
                Err(e) => rec.error = Some(format!("bad event {payload:?}: {e}")),
            }
        }
    }
    if rec.error.is_none() && rec.finished.is_none() {
        rec.error = Some(format!(
            "stream ended without a final event ({} tokens, {} bytes pending)",
            rec.token_ms.len(),
            parser.pending()
        ));
    }
    rec
}

/// One round: `n` requests sent at once; returns when all have ended, with the round's
/// wall-clock time.
pub async fn round(
    client: &reqwest::Client,
    spec: &std::sync::Arc<RequestSpec>,
    n: usize,
) -> Result<(Vec<StreamRecord>, Duration), BenchError> {
    let start = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|_| tokio::spawn(one(client.clone(), spec.clone())))
        .collect();
    let mut out = Vec::with_capacity(n);
    for t in tasks {
        out.push(
            t.await
                .map_err(|e| BenchError::Http(format!("stream task: {e}")))?,
        );
    }
    Ok((out, start.elapsed()))
}
