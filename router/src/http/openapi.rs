//! OpenAPI document (utoipa) at `/api-doc/openapi.json` and a small `/docs` page.
//!
//! The page loads Swagger UI in the browser; nothing is downloaded when building.

use super::vertex::{GenerateVertexInstance, VertexInstance, VertexRequest, VertexResponse};
use super::{
    generate, info, metrics, openai_chat, openai_completions, sagemaker, tokenize, vertex,
};
use crate::api::*;
use axum::response::{Html, IntoResponse};
use axum::Json;
use utoipa::OpenApi;

/// The API description.
#[derive(OpenApi)]
#[openapi(
    paths(
        generate::compat_generate,
        generate::generate,
        generate::generate_stream,
        openai_chat::chat_completions,
        openai_completions::completions,
        sagemaker::invocations,
        tokenize::tokenize,
        tokenize::chat_tokenize,
        info::get_info,
        info::health,
        info::models,
        metrics::metrics,
        vertex::vertex,
    ),
    components(schemas(
        GenerateRequest, CompatGenerateRequest, GenerateParameters, GrammarType, JsonSchemaConfig,
        GenerateResponse, Details, BestOfSequence, StreamResponse, StreamDetails, Token,
        PrefillToken, FinishReason, ErrorResponse, SimpleToken, ChatTokenizeResponse, Info,
        ChatRequest, Message, MessageContent, MessageChunk, Url, Tool, FunctionDefinition,
        ToolCall, FunctionCall, StreamOptions, ChatCompletion, ChatCompletionComplete,
        ChatCompletionChunk, ChatCompletionChoice, ChatCompletionDelta, DeltaToolCall, DeltaFunction, ChatCompletionLogprobs,
        ChatCompletionLogprob, ChatCompletionTopLogprob, OutputMessage, Usage, CompletionRequest,
        Prompt, CompletionFinal, CompletionChunk, CompletionComplete, ModelsInfo, ModelInfo,
        VertexRequest, VertexInstance, GenerateVertexInstance, VertexResponse,
    )),
    tags((name = "Text Generation Inference", description = "Hugging Face Text Generation Inference API")),
    info(title = "Text Generation Inference", license(name = "Apache 2.0"))
)]
pub struct ApiDoc;

/// The OpenAPI JSON.
pub async fn openapi_json() -> impl IntoResponse {
    Json(ApiDoc::openapi())
}

const DOCS_PAGE: &str = r##"<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Text Generation Inference API</title>
<link rel="stylesheet" href="https://unpkg.com/swagger-ui-dist@5/swagger-ui.css"></head>
<body><div id="swagger-ui"><p>OpenAPI document: <a href="/api-doc/openapi.json">/api-doc/openapi.json</a></p></div>
<script src="https://unpkg.com/swagger-ui-dist@5/swagger-ui-bundle.js"></script>
<script>if (window.SwaggerUIBundle) { SwaggerUIBundle({url: "/api-doc/openapi.json", dom_id: "#swagger-ui"}); }</script>
</body></html>"##;

/// Swagger UI page (the spec link works without JavaScript).
pub async fn docs() -> Html<&'static str> {
    Html(DOCS_PAGE)
}
