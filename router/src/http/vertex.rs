//! `POST /vertex`: Google Vertex AI prediction format (`instances` in, `predictions` out).

use super::generate::generate_internal;
use super::openai_chat::prepare_chat;
use super::server::AppState;
use crate::api::{default_parameters, ChatRequest, GenerateParameters, GenerateRequest};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A generate-style instance.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
pub struct GenerateVertexInstance {
    pub inputs: String,
    #[serde(default)]
    pub parameters: Option<GenerateParameters>,
}

/// One instance: generate-style first, then chat.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(untagged)]
pub enum VertexInstance {
    Generate(GenerateVertexInstance),
    Chat(ChatRequest),
}

/// Body of `/vertex`.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
pub struct VertexRequest {
    pub instances: Vec<VertexInstance>,
}

/// Answer of `/vertex`.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
pub struct VertexResponse {
    pub predictions: Vec<String>,
}

/// Vertex AI compatible route.
#[utoipa::path(post, path = "/vertex", tag = "Text Generation Inference",
    request_body = VertexRequest,
    responses((status = 200, body = VertexResponse), (status = 422, body = crate::api::ErrorResponse)))]
pub async fn vertex(State(state): State<AppState>, Json(req): Json<VertexRequest>) -> Response {
    let runs = req.instances.into_iter().map(|instance| {
        let state = state.clone();
        async move {
            let (request, add_special_tokens) = match instance {
                VertexInstance::Generate(g) => (
                    GenerateRequest {
                        inputs: g.inputs,
                        parameters: g.parameters.unwrap_or_else(default_parameters),
                    },
                    true,
                ),
                VertexInstance::Chat(chat) => (prepare_chat(&state, chat)?.request, false),
            };
            generate_internal(&state, request, add_special_tokens)
                .await
                .map(|(_, _, response)| response.generated_text)
        }
    });
    let mut predictions = Vec::new();
    for result in futures::future::join_all(runs).await {
        match result {
            Ok(text) => predictions.push(text),
            Err(err) => return err.into_response(),
        }
    }
    Json(VertexResponse { predictions }).into_response()
}
