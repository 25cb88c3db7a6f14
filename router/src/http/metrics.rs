//! Prometheus: TGI's bucket layout, `GET /metrics`, and the `--prometheus-port` listener.

use super::server::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Router;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// TGI's duration buckets: 35 geometric buckets starting at 1.5e-4, ratio 1.5.
pub fn duration_buckets() -> Vec<f64> {
    let mut value = 0.0001;
    (0..35)
        .map(|_| {
            value *= 1.5;
            value
        })
        .collect()
}

/// 100 linear buckets up to `max`.
pub fn linear_buckets(max: usize) -> Vec<f64> {
    (0..100)
        .map(|x| (max as f64 / 100.0) * (x + 1) as f64)
        .collect()
}

/// Installs the global recorder once (later calls return the first handle).
pub fn install(max_input_tokens: usize, max_total_tokens: usize) -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let batch_size: Vec<f64> = (0..1024).map(|x| (x + 1) as f64).collect();
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("duration".into()), &duration_buckets())
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("tgi_request_input_length".into()),
                        &linear_buckets(max_input_tokens),
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("tgi_request_generated_tokens".into()),
                        &linear_buckets(max_total_tokens),
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("tgi_request_max_new_tokens".into()),
                        &linear_buckets(max_total_tokens),
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("tgi_batch_next_size".into()),
                        &batch_size,
                    )
                });
            match builder.and_then(|b| b.install_recorder()) {
                Ok(handle) => Some(handle),
                Err(err) => {
                    tracing::error!("failed to install the Prometheus recorder: {err}");
                    None
                }
            }
        })
        .clone()
}

fn render(handle: &Option<PrometheusHandle>) -> impl IntoResponse {
    let body = handle.as_ref().map(|h| h.render()).unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}

/// Prometheus metrics scrape endpoint.
#[utoipa::path(get, path = "/metrics", tag = "Text Generation Inference",
    responses((status = 200, body = String)))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    render(&state.metrics)
}

/// The standalone listener app serving only the scrape endpoint.
pub fn prometheus_app(handle: Option<PrometheusHandle>) -> Router {
    Router::new().fallback(move || {
        let handle = handle.clone();
        async move { render(&handle) }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_layouts() {
        let d = duration_buckets();
        assert_eq!(d.len(), 35);
        assert!((d[0] - 1.5e-4).abs() < 1e-12);
        assert!((d[1] / d[0] - 1.5).abs() < 1e-9);
        let l = linear_buckets(200);
        assert_eq!(l.len(), 100);
        assert_eq!(l[0], 2.0);
        assert_eq!(l[99], 200.0);
    }
}
