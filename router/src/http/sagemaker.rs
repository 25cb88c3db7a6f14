//! `POST /invocations`: SageMaker's single route taking a generate, chat or completion body.

use super::server::AppState;
use super::{generate, openai_chat, openai_completions};
use crate::api::{ChatRequest, CompatGenerateRequest, CompletionRequest};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

/// The body forms, tried in TGI's order.
#[derive(Debug)]
pub enum SagemakerRequest {
    Generate(CompatGenerateRequest),
    Chat(ChatRequest),
    Completion(CompletionRequest),
}

impl SagemakerRequest {
    /// Picks the first form the JSON value fits.
    pub fn parse(value: serde_json::Value) -> Option<Self> {
        if let Ok(r) = serde_json::from_value::<CompatGenerateRequest>(value.clone()) {
            return Some(SagemakerRequest::Generate(r));
        }
        if let Ok(r) = serde_json::from_value::<ChatRequest>(value.clone()) {
            return Some(SagemakerRequest::Chat(r));
        }
        serde_json::from_value::<CompletionRequest>(value)
            .ok()
            .map(SagemakerRequest::Completion)
    }
}

/// SageMaker inference route.
#[utoipa::path(post, path = "/invocations", tag = "Text Generation Inference",
    responses((status = 200, body = Vec<crate::api::GenerateResponse>)))]
pub async fn invocations(
    State(state): State<AppState>,
    Json(value): Json<serde_json::Value>,
) -> Response {
    match SagemakerRequest::parse(value) {
        Some(SagemakerRequest::Generate(r)) => generate::compat_response(state, r).await,
        Some(SagemakerRequest::Chat(r)) => {
            openai_chat::chat_completions(State(state), Json(r)).await
        }
        Some(SagemakerRequest::Completion(r)) => {
            openai_completions::completions(State(state), Json(r)).await
        }
        None => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "Failed to deserialize the JSON body into the target type: data did not match any variant of untagged enum SagemakerRequest",
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_forms_are_tried_in_order() {
        let g = SagemakerRequest::parse(serde_json::json!({"inputs": "a", "parameters": {}}));
        assert!(matches!(g, Some(SagemakerRequest::Generate(_))));
        let c = SagemakerRequest::parse(
            serde_json::json!({"messages": [{"role": "user", "content": "x"}]}),
        );
        assert!(matches!(c, Some(SagemakerRequest::Chat(_))));
        let p = SagemakerRequest::parse(serde_json::json!({"prompt": "x"}));
        assert!(matches!(p, Some(SagemakerRequest::Completion(_))));
        assert!(SagemakerRequest::parse(serde_json::json!({"nothing": 1})).is_none());
    }
}
