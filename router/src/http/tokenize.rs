//! `POST /tokenize` and `POST /chat_tokenize`.

use super::openai_chat::prepare_chat;
use super::server::AppState;
use crate::api::{ChatRequest, ChatTokenizeResponse, GenerateRequest, SimpleToken};
use crate::error::RouterError;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;

/// Tokenize inputs (byte offsets).
#[utoipa::path(post, path = "/tokenize", tag = "Text Generation Inference",
    request_body = GenerateRequest,
    responses((status = 200, body = Vec<SimpleToken>), (status = 404, body = crate::api::ErrorResponse)))]
pub async fn tokenize(State(state): State<AppState>, Json(req): Json<GenerateRequest>) -> Response {
    match state.infer.validation().tokenize(req.inputs, true).await {
        Ok(Some(tokens)) => Json(tokens).into_response(),
        Ok(None) => RouterError::NoTokenizer.into_response(),
        Err(err) => RouterError::from(err).into_response(),
    }
}

/// Template and tokenize a chat request.
#[utoipa::path(post, path = "/chat_tokenize", tag = "Text Generation Inference",
    request_body = ChatRequest,
    responses((status = 200, body = ChatTokenizeResponse), (status = 404, body = crate::api::ErrorResponse)))]
pub async fn chat_tokenize(
    State(state): State<AppState>,
    Json(req): Json<ChatRequest>,
) -> Response {
    metrics::counter!("tgi_request_count").increment(1);
    let prepared = match prepare_chat(&state, req) {
        Ok(p) => p,
        Err(err) => return err.into_response(),
    };
    let templated_text = prepared.request.inputs.clone();
    match state
        .infer
        .validation()
        .tokenize(templated_text.clone(), false)
        .await
    {
        Ok(Some(tokenize_response)) => Json(ChatTokenizeResponse {
            tokenize_response,
            templated_text,
        })
        .into_response(),
        Ok(None) => RouterError::NoTokenizer.into_response(),
        Err(err) => RouterError::from(err).into_response(),
    }
}
