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
use axum::serve::{ListenerExt, TapIo};
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
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

/// A TCP listener whose accepted connections get [`configure_accepted`] applied.
pub type TunedListener = TapIo<TcpListener, fn(&mut TcpStream)>;

/// Socket options for every accepted connection.
///
/// TCP_NODELAY: SSE sends many small writes; with Nagle on, the first token's write
/// waits for the client's delayed ACK (~40 ms) on a kept-alive connection.
pub fn configure_accepted(stream: &mut TcpStream) {
    if let Err(err) = stream.set_nodelay(true) {
        tracing::debug!("cannot set TCP_NODELAY on an accepted connection: {err}");
    }
}

/// Wraps `listener` so that each accepted connection goes through [`configure_accepted`].
/// Used for both the API port and the Prometheus port.
pub fn tuned_listener(listener: TcpListener) -> TunedListener {
    listener.tap_io(configure_accepted as fn(&mut TcpStream))
}

/// Serves `app` on `listener` until a shutdown signal, draining in-flight requests.
/// Accepted connections get [`configure_accepted`] (TCP_NODELAY).
pub async fn serve(listener: TcpListener, app: Router) -> Result<(), RouterError> {
    axum::serve(tuned_listener(listener), app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| RouterError::Webserver(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::serve::Listener;

    /// The listener wrapper that `serve` (and the Prometheus port) uses hands out
    /// connections with TCP_NODELAY set.
    #[tokio::test]
    async fn accepted_connections_have_nodelay() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut tuned = tuned_listener(listener);
        let client = tokio::spawn(TcpStream::connect(addr));
        let (stream, _) = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            Listener::accept(&mut tuned),
        )
        .await
        .unwrap();
        assert!(
            stream.nodelay().unwrap(),
            "accepted stream lacks TCP_NODELAY"
        );
        client.await.unwrap().unwrap();
    }

    /// Control: a plain accepted socket does not have TCP_NODELAY on Linux, so the test
    /// above checks the wrapper and not a kernel default.
    #[tokio::test]
    async fn plain_accept_has_no_nodelay() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(TcpStream::connect(addr));
        let (mut stream, _) = listener.accept().await.unwrap();
        assert!(!stream.nodelay().unwrap());
        configure_accepted(&mut stream);
        assert!(stream.nodelay().unwrap());
        client.await.unwrap().unwrap();
    }
}
