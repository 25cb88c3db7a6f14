//! The router's Prometheus metrics (`GET /metrics`): the batch size it actually ran (sampled
//! from the `tgi_batch_current_size` gauge while a level runs) and the mean duration of its
//! decode steps (deltas of histogram sums and counts around a level).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The value of the first sample of `name` whose label set contains every `labels` pair.
pub fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|line| {
            let (series, v) = line.trim().rsplit_once(' ')?;
            let (metric, label_text) = match series.split_once('{') {
                Some((m, rest)) => (m, rest.strip_suffix('}')?),
                None => (series, ""),
            };
            if metric != name {
                return None;
            }
            let all = labels.iter().all(|(k, want)| {
                label_text
                    .split(',')
                    .any(|kv| kv == format!("{k}=\"{want}\""))
            });
            all.then(|| v.parse().ok()).flatten()
        })
}

/// Fetches the metrics text; None if the router does not answer (metrics are optional).
pub async fn scrape(client: &reqwest::Client, base: &str) -> Option<String> {
    let r = client.get(format!("{base}/metrics")).send().await.ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.text().await.ok()
}

/// Histogram sum and count of the router's decode-step metrics at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct StepCounters {
    /// `tgi_batch_inference_duration{method="decode"}`: the router's whole decode step (RPC to
    /// every shard, filtering, sending tokens to the streams).
    inference: (f64, f64),
    /// `tgi_batch_forward_duration{method="decode"}`: the forward pass time the shard reports.
    forward: (f64, f64),
    /// `tgi_batch_inference_duration_count{method="prefill"}`: prefill steps (with chunked
    /// prefill these also decode the running batch).
    prefill_steps: f64,
}

impl StepCounters {
    /// Reads the counters from a scrape.
    pub fn read(text: &str) -> StepCounters {
        let pair = |name: &str| {
            let l = [("method", "decode")];
            (
                value(text, &format!("{name}_sum"), &l).unwrap_or(0.0),
                value(text, &format!("{name}_count"), &l).unwrap_or(0.0),
            )
        };
        StepCounters {
            inference: pair("tgi_batch_inference_duration"),
            forward: pair("tgi_batch_forward_duration"),
            prefill_steps: value(
                text,
                "tgi_batch_inference_duration_count",
                &[("method", "prefill")],
            )
            .unwrap_or(0.0),
        }
    }

    /// What happened between `self` and a later `after`.
    pub fn since(&self, after: &StepCounters) -> StepDeltas {
        let mean = |a: (f64, f64), b: (f64, f64)| {
            let n = b.1 - a.1;
            (n > 0.0).then(|| (b.0 - a.0) / n * 1e3)
        };
        StepDeltas {
            decode_steps: after.inference.1 - self.inference.1,
            prefill_steps: after.prefill_steps - self.prefill_steps,
            router_step_ms: mean(self.inference, after.inference),
            forward_ms: mean(self.forward, after.forward),
        }
    }
}

/// The router's decode steps between two scrapes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepDeltas {
    /// Number of decode steps.
    pub decode_steps: f64,
    /// Number of prefill steps.
    pub prefill_steps: f64,
    /// Mean duration of the router's decode step (ms).
    pub router_step_ms: Option<f64>,
    /// Mean forward pass the shard reported for them (ms).
    pub forward_ms: Option<f64>,
}

/// Samples `tgi_batch_current_size` every `every` until stopped; zero samples (no batch
/// running, e.g. between rounds) are dropped.
pub struct BatchSampler {
    stop: Arc<AtomicBool>,
    // Largest sample so far (as whole batch sizes; 0 before any).
    max: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<Vec<f64>>,
}

impl BatchSampler {
    /// Starts sampling `base`'s metrics.
    pub fn start(client: reqwest::Client, base: String, every: Duration) -> BatchSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let max = Arc::new(AtomicU64::new(0));
        let (flag, largest) = (stop.clone(), max.clone());
        let task = tokio::spawn(async move {
            let mut samples = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                if let Some(text) = scrape(&client, &base).await {
                    match value(&text, "tgi_batch_current_size", &[]) {
                        Some(v) if v > 0.0 => {
                            samples.push(v);
                            largest.fetch_max(v.round() as u64, Ordering::Relaxed);
                        }
                        _ => {}
                    }
                }
                tokio::time::sleep(every).await;
            }
            samples
        });
        BatchSampler { stop, max, task }
    }

    /// The largest batch size sampled so far.
    pub fn max_so_far(&self) -> Option<u64> {
        Some(self.max.load(Ordering::Relaxed)).filter(|&m| m > 0)
    }

    /// Stops and returns the non-zero samples.
    pub async fn finish(self) -> Vec<f64> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# TYPE tgi_batch_current_size gauge\n\
        tgi_batch_current_size 64\n\
        tgi_batch_inference_duration_bucket{method=\"decode\",le=\"0.1\"} 3\n\
        tgi_batch_inference_duration_sum{method=\"prefill\"} 9.5\n\
        tgi_batch_inference_duration_count{method=\"prefill\"} 4\n\
        tgi_batch_inference_duration_sum{method=\"decode\"} 1.5\n\
        tgi_batch_inference_duration_count{method=\"decode\"} 100\n\
        tgi_batch_forward_duration_sum{method=\"decode\"} 1\n\
        tgi_batch_forward_duration_count{method=\"decode\"} 100\n";

    #[test]
    fn reads_gauges_and_labelled_series() {
        assert_eq!(value(TEXT, "tgi_batch_current_size", &[]), Some(64.0));
        let d = [("method", "decode")];
        assert_eq!(
            value(TEXT, "tgi_batch_inference_duration_sum", &d),
            Some(1.5)
        );
        assert_eq!(
            value(TEXT, "tgi_batch_inference_duration_sum", &[("method", "x")]),
            None
        );
        assert_eq!(value(TEXT, "tgi_missing", &[]), None);
    }

    #[test]
    fn step_means_are_deltas() {
        let before = StepCounters::default();
        let after = StepCounters::read(TEXT);
        let d = before.since(&after);
        assert_eq!((d.decode_steps, d.prefill_steps), (100.0, 4.0));
        assert!((d.router_step_ms.unwrap_or(0.0) - 15.0).abs() < 1e-9);
        assert!((d.forward_ms.unwrap_or(0.0) - 10.0).abs() < 1e-9);
        let none = after.since(&after);
        assert_eq!((none.router_step_ms, none.forward_ms), (None, None));
    }
}
