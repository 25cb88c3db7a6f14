//! `GET /info`, `/health`, `/ping`, `/` and `/v1/models`.

use super::server::AppState;
use crate::api::{Info, ModelInfo, ModelsInfo};
use crate::error::RouterError;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

/// Text Generation Inference endpoint info.
#[utoipa::path(get, path = "/info", tag = "Text Generation Inference",
    responses((status = 200, body = Info)))]
pub async fn get_info(State(state): State<AppState>) -> Json<Info> {
    Json(state.info.as_ref().clone())
}

/// Health check: 200 with an empty body, or 503 with TGI's `healthcheck` error.
#[utoipa::path(get, path = "/health", tag = "Text Generation Inference",
    responses((status = 200), (status = 503, body = crate::api::ErrorResponse)))]
pub async fn health(State(state): State<AppState>) -> Response {
    if state.infer.health().await {
        StatusCode::OK.into_response()
    } else {
        RouterError::Unhealthy.into_response()
    }
}

/// OpenAI-style model list with the one served model.
#[utoipa::path(get, path = "/v1/models", tag = "Text Generation Inference",
    responses((status = 200, body = ModelsInfo)))]
pub async fn models(State(state): State<AppState>) -> Json<ModelsInfo> {
    let id = state.info.model_id.clone();
    Json(ModelsInfo {
        object: "list".to_string(),
        data: vec![ModelInfo {
            id: id.clone(),
            object: "model".to_string(),
            created: 0,
            owned_by: id,
        }],
    })
}
