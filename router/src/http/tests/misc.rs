//! Info, health, tokenize, docs, auth, body limits and overload.

use super::*;

#[tokio::test]
async fn info_health_models() {
    let h = harness();
    let (status, _, body) = send(&h.app, "GET", "/info", None, &[]).await;
    assert_eq!(status, StatusCode::OK);
    let v = json_of(&body);
    for key in [
        "model_id",
        "model_sha",
        "model_pipeline_tag",
        "max_concurrent_requests",
        "max_best_of",
        "max_stop_sequences",
        "max_input_tokens",
        "max_total_tokens",
        "validation_workers",
        "max_client_batch_size",
        "router",
        "version",
        "sha",
        "docker_label",
    ] {
        assert!(v.get(key).is_some(), "{key}");
    }
    assert_eq!(v["router"], "text-generation-router");
    for path in ["/health", "/ping", "/"] {
        let (status, _, body) = send(&h.app, "GET", path, None, &[]).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(body.is_empty());
    }
    let (_, _, body) = send(&h.app, "GET", "/v1/models", None, &[]).await;
    assert_eq!(
        json_of(&body),
        json!({"object": "list", "data": [{"id": "tiny", "object": "model", "created": 0, "owned_by": "tiny"}]})
    );
}

#[tokio::test]
async fn tokenize_routes() {
    let h = harness();
    let (status, _, body) = post(&h.app, "/tokenize", json!({"inputs": "hello world"})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        json_of(&body),
        json!([{"id": 3, "text": "hello", "start": 0, "stop": 5}, {"id": 4, "text": "world", "start": 6, "stop": 11}])
    );
    let (status, _, body) = post(
        &h.app,
        "/chat_tokenize",
        json!({"messages": [{"role": "user", "content": "hello"}]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let v = json_of(&body);
    assert_eq!(
        v["templated_text"],
        "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n"
    );
    assert!(!v["tokenize_response"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn openapi_and_docs() {
    let h = harness();
    let (status, _, body) = send(&h.app, "GET", "/api-doc/openapi.json", None, &[]).await;
    assert_eq!(status, StatusCode::OK);
    let v = json_of(&body);
    assert!(v["paths"].get("/generate").is_some());
    assert!(v["paths"].get("/v1/chat/completions").is_some());
    assert!(v["components"]["schemas"].get("GenerateRequest").is_some());
    let (status, _, body) = send(&h.app, "GET", "/docs", None, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(String::from_utf8_lossy(&body).contains("/api-doc/openapi.json"));
}

#[tokio::test]
async fn api_key_protects_generation_routes_only() {
    let h = harness_with(128, Some("secret"), 2_000_000);
    let req = json!({"inputs": "a", "parameters": {"max_new_tokens": 1}});
    let (status, _, body) = post(&h.app, "/generate", req.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.is_empty());
    let (status, _, _) = send(
        &h.app,
        "POST",
        "/generate",
        Some(req.clone()),
        &[("authorization", "Bearer wrong")],
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = send(
        &h.app,
        "POST",
        "/generate",
        Some(req.clone()),
        &[("authorization", "bearer SECRET")],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = send(&h.app, "GET", "/info", None, &[]).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = send(&h.app, "GET", "/health", None, &[]).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn malformed_bodies_are_rejected_cleanly() {
    let h = harness_with(128, None, 1000);
    let big = "a ".repeat(2000);
    let (status, _, _) = post(&h.app, "/generate", json!({"inputs": big})).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let req = Request::builder()
        .method("POST")
        .uri("/generate")
        .body(Body::from("{\"inputs\":\"a\"}"))
        .unwrap();
    let status = h.app.clone().oneshot(req).await.unwrap().status();
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let req = Request::builder()
        .method("POST")
        .uri("/generate")
        .header("content-type", "application/json")
        .body(Body::from("{\"inputs\":"))
        .unwrap();
    let status = h.app.clone().oneshot(req).await.unwrap().status();
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _, _) = post(&h.app, "/generate", json!({"inputs": 3})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _, _) = post(&h.app, "/generate_stream", json!({"parameters": {}})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn overload_gives_429_and_permit_returns_after_stream_drop() {
    let h = harness_with(1, None, 2_000_000);
    // Hold the only permit with a long stream that is not consumed yet.
    let req = Request::builder()
        .method("POST")
        .uri("/generate_stream")
        .header("content-type", "application/json")
        .body(Body::from(
            json!({"inputs": "a", "parameters": {"max_new_tokens": 1000}}).to_string(),
        ))
        .unwrap();
    let response = h.app.clone().oneshot(req).await.unwrap();
    let mut body = response.into_body();
    // Pull one frame so the stream has taken its permit.
    let frame = body.frame().await.unwrap().unwrap();
    assert!(frame.data_ref().is_some());
    let (status, _, bytes) = post(
        &h.app,
        "/generate",
        json!({"inputs": "a", "parameters": {"max_new_tokens": 1}}),
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        json_of(&bytes),
        json!({"error": "Model is overloaded", "error_type": "overloaded"})
    );
    drop(body);
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let (status, _, _) = post(
        &h.app,
        "/generate",
        json!({"inputs": "a", "parameters": {"max_new_tokens": 1}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn odd_inputs_never_panic_or_hang() {
    let h = harness();
    let bodies = vec![
        json!({"inputs": "a", "parameters": {"max_new_tokens": 4294967295u32}}),
        json!({"inputs": "a", "parameters": {"truncate": 18446744073709551615u64}}),
        json!({"inputs": "a", "parameters": {"top_k": -2147483648i64}}),
        json!({"inputs": "a", "parameters": {"temperature": 1e30, "top_p": 0.5, "typical_p": 0.99}}),
        json!({"inputs": "a", "parameters": {"stop": ["", "\u{0}"], "max_new_tokens": 2}}),
        json!({"inputs": "héllo wörld ✓ 🚀", "parameters": {"max_new_tokens": 2, "details": true, "top_n_tokens": 5}}),
        json!({"inputs": "a", "parameters": {"grammar": {"type": "json", "value": "not json"}}}),
        json!({"inputs": "a", "parameters": {"seed": 0, "best_of": 1, "repetition_penalty": 0.0}}),
        json!({"inputs": "a", "parameters": null}),
        json!({"inputs": "a".repeat(5000), "parameters": {"max_new_tokens": 1}}),
        json!({"messages": [], "max_tokens": 1}),
        json!({"messages": [{"role": "user"}], "max_tokens": 1}),
        json!({"messages": [{"role": "assistant", "content": ""}], "tool_choice": "required", "tools": []}),
        json!({"prompt": [""], "max_tokens": 1}),
        json!({"instances": []}),
        json!([1, 2, 3]),
        json!("just a string"),
        json!(null),
    ];
    let paths = [
        "/",
        "/generate",
        "/generate_stream",
        "/v1/chat/completions",
        "/v1/completions",
        "/invocations",
        "/tokenize",
        "/chat_tokenize",
        "/vertex",
    ];
    for body in &bodies {
        for path in paths {
            let call = post(&h.app, path, body.clone());
            let (status, _, bytes) = tokio::time::timeout(std::time::Duration::from_secs(10), call)
                .await
                .unwrap_or_else(|_| panic!("{path} hung on {body}"));
            assert!(
                [200, 400, 404, 413, 415, 422, 424, 429].contains(&status.as_u16()),
                "{path} answered {status} to {body}: {}",
                String::from_utf8_lossy(&bytes)
            );
            if status == StatusCode::OK && path == "/generate_stream" {
                assert!(bytes.ends_with(b"\n\n"));
            }
        }
    }
}
