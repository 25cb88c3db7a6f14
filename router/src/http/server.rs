//! Router assembly: routes, API-key check, CORS, payload limit, listeners and graceful shutdown.

use super::{
    generate, info, metrics as metrics_routes, openai_chat, openai_completions, openapi, sagemaker,
    tokenize, vertex,
};
use crate::api::Info;
use crate::error::RouterError;
use crate::infer::Infer;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::Arc;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    pub infer: Infer,
    pub info: Arc<Info>,
    /// `x-compute-type` header value.
    pub compute_type: String,
    /// `return_full_text` default of `POST /`.
    pub default_return_full_text: bool,
    /// `system_fingerprint` of OpenAI answers.
    pub system_fingerprint: String,
    /// Prometheus renderer, when a recorder is installed.
    pub metrics: Option<PrometheusHandle>,
}

/// Settings of the HTTP layer.
#[derive(Clone, Debug, Default)]
pub struct ServerConfig {
    pub api_key: Option<String>,
    pub cors_allow_origin: Option<Vec<String>>,
    pub payload_limit: usize,
}

async fn check_api_key(
    State(key): State<Arc<Option<String>>>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(key) = key.as_ref() {
        let expected = format!("Bearer {key}");
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        match given {
            Some(given) if given.eq_ignore_ascii_case(&expected) => {}
            _ => return StatusCode::UNAUTHORIZED.into_response(),
        }
    }
    next.run(request).await
}

fn cors(origins: &Option<Vec<String>>) -> CorsLayer {
    let allow_origin = match origins {
        Some(list) if !list.is_empty() => AllowOrigin::list(
            list.iter()
                .filter_map(|o| HeaderValue::from_str(o).ok())
                .collect::<Vec<_>>(),
        ),
        _ => AllowOrigin::any(),
    };
    CorsLayer::new()
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::CONTENT_TYPE])
        .allow_origin(allow_origin)
}

/// Builds the full axum router.
pub fn router(state: AppState, config: &ServerConfig) -> Router {
    let protected = Router::new()
        .route("/", post(generate::compat_generate))
        .route("/generate", post(generate::generate))
        .route("/generate_stream", post(generate::generate_stream))
        .route("/v1/chat/completions", post(openai_chat::chat_completions))
        .route("/v1/completions", post(openai_completions::completions))
        .route("/invocations", post(sagemaker::invocations))
        .route("/tokenize", post(tokenize::tokenize))
        .route("/vertex", post(vertex::vertex))
        .layer(middleware::from_fn_with_state(
            Arc::new(config.api_key.clone()),
            check_api_key,
        ));
    let public = Router::new()
        .route("/", get(info::health))
        .route("/health", get(info::health))
        .route("/ping", get(info::health))
        .route("/info", get(info::get_info))
        .route("/metrics", get(metrics_routes::metrics))
        .route("/v1/models", get(info::models))
        .route("/chat_tokenize", post(tokenize::chat_tokenize))
        .route("/docs", get(openapi::docs))
        .route("/api-doc/openapi.json", get(openapi::openapi_json));
    protected
        .merge(public)
        .with_state(state)
        .layer(DefaultBodyLimit::max(config.payload_limit))
        .layer(cors(&config.cors_allow_origin))
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!("cannot listen for ctrl-c: {err}");
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!("cannot listen for SIGTERM: {err}");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("signal received, starting graceful shutdown");
}

/// Serves `app` on `listener` until a shutdown signal, draining in-flight requests.
pub async fn serve(listener: tokio::net::TcpListener, app: Router) -> Result<(), RouterError> {
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| RouterError::Webserver(e.to_string()))
}
