//! `/v1/chat/completions`, `/v1/completions` and `/invocations`.

use super::*;

#[tokio::test]
async fn chat_non_stream() {
    let h = harness();
    let (status, _, body) = post(&h.app, "/v1/chat/completions", json!({"model": "tgi", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 2, "temperature": 0.0})).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let v = json_of(&body);
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["id"], "");
    assert_eq!(v["model"], "tiny");
    assert_eq!(v["system_fingerprint"], "0.1.0-native");
    assert_eq!(
        v["choices"][0]["message"],
        json!({"role": "assistant", "content": " t0 t1"})
    );
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["choices"][0]["logprobs"], Value::Null);
    let scheduled = h.backend.scheduled.lock().unwrap().last().cloned().unwrap();
    assert_eq!(
        scheduled.inputs,
        "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n"
    );
    assert!(!scheduled.add_special_tokens);
    assert!(!scheduled.parameters.do_sample);
    let prompt = scheduled.input_length;
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": prompt, "completion_tokens": 2, "total_tokens": prompt + 2})
    );
}

#[tokio::test]
async fn chat_eos_maps_to_stop_and_adapter_model() {
    let h = harness();
    let (_, _, body) = post(&h.app, "/v1/chat/completions", json!({"model": "my-lora", "messages": [{"role": "user", "content": "eos"}], "presence_penalty": 0.5, "logprobs": true})).await;
    let v = json_of(&body);
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["model"], "my-lora");
    assert_eq!(
        v["choices"][0]["logprobs"]["content"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let s = h.backend.scheduled.lock().unwrap().last().cloned().unwrap();
    assert_eq!(s.adapter_id.as_deref(), Some("my-lora"));
    assert_eq!(s.parameters.repetition_penalty, 2.5);
    assert!(s.parameters.do_sample);
}

#[tokio::test]
async fn chat_stream_with_usage_and_done() {
    let h = harness();
    let (status, _, body) = post(&h.app, "/v1/chat/completions", json!({"messages": [{"role": "user", "content": "eos"}], "stream": true, "stream_options": {"include_usage": true}})).await;
    assert_eq!(status, StatusCode::OK);
    let ev = events(&body);
    assert_eq!(ev.len(), 4, "{ev:?}");
    let first = json_of(&Bytes::from(ev[0].clone()));
    assert_eq!(first["object"], "chat.completion.chunk");
    assert_eq!(
        first["choices"][0]["delta"],
        json!({"role": "assistant", "content": " t0"})
    );
    assert_eq!(first["choices"][0]["finish_reason"], Value::Null);
    assert_eq!(first["usage"], Value::Null);
    let second = json_of(&Bytes::from(ev[1].clone()));
    // The special EOS token produces empty content and carries the finish reason.
    assert_eq!(second["choices"][0]["delta"]["content"], "");
    assert_eq!(second["choices"][0]["finish_reason"], "stop");
    let usage = json_of(&Bytes::from(ev[2].clone()));
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], 2);
    assert_eq!(ev[3], " [DONE]");
}

#[tokio::test]
async fn chat_stream_error_is_openai_shaped() {
    let h = harness();
    let (status, _, body) = post(
        &h.app,
        "/v1/chat/completions",
        json!({"messages": [{"role": "user", "content": "fail"}], "stream": true, "max_tokens": 3}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let ev = events(&body);
    assert_eq!(
        json_of(&Bytes::from(ev[0].clone())),
        json!({"error": {"message": "Request failed during generation: Server error: boom", "http_status_code": 422}})
    );
}

#[tokio::test]
async fn chat_template_and_tool_errors() {
    let h = harness();
    let (status, _, body) = post(&h.app, "/v1/chat/completions", json!({"messages": [{"role": "user", "content": "x"}],
        "tools": [{"type": "function", "function": {"name": "f", "arguments": {}}}], "response_format": {"type": "regex", "value": "a"}})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        json_of(&body),
        json!({"error": "Tool error: Grammar and tools are mutually exclusive", "error_type": "tool_error"})
    );
}

#[tokio::test]
async fn completions_non_stream_and_stream() {
    let h = harness();
    let (status, _, body) = post(
        &h.app,
        "/v1/completions",
        json!({"prompt": ["a", "eos"], "max_tokens": 2, "temperature": 0.0}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let v = json_of(&body);
    assert_eq!(v["object"], "text_completion");
    assert_eq!(
        v["choices"][0],
        json!({"index": 0, "text": " t0 t1", "logprobs": null, "finish_reason": "length"})
    );
    assert_eq!(v["choices"][1]["finish_reason"], "stop");
    assert_eq!(v["usage"]["completion_tokens"], 4);

    let (_, _, body) = post(
        &h.app,
        "/v1/completions",
        json!({"prompt": ["a", "b"], "max_tokens": 2, "stream": true}),
    )
    .await;
    let ev = events(&body);
    assert_eq!(ev.len(), 5);
    assert_eq!(ev[4], " [DONE]");
    let finals: Vec<Value> = ev[..4]
        .iter()
        .map(|e| json_of(&Bytes::from(e.clone())))
        .filter(|v| v.get("usage").is_some())
        .collect();
    assert_eq!(finals.len(), 2);
    assert!(finals
        .iter()
        .all(|f| f["choices"][0]["finish_reason"] == "length"));
    let mut idx: Vec<u64> = finals
        .iter()
        .map(|f| f["choices"][0]["index"].as_u64().unwrap())
        .collect();
    idx.sort();
    assert_eq!(idx, vec![0, 1]);
}

#[tokio::test]
async fn completions_limits() {
    let h = harness();
    let (status, _, body) = post(
        &h.app,
        "/v1/completions",
        json!({"prompt": ["a", "b", "c"]}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        json_of(&body),
        json!({"error": "Number of prompts exceeds the maximum allowed batch size of 2", "error_type": "batch size exceeded"})
    );
    let (status, _, body) = post(
        &h.app,
        "/v1/completions",
        json!({"prompt": "a", "suffix": "z"}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(json_of(&body)["error_type"], "suffix not supported");
}

#[tokio::test]
async fn invocations_accepts_all_forms() {
    let h = harness();
    let (status, _, body) = post(
        &h.app,
        "/invocations",
        json!({"inputs": "a", "parameters": {"max_new_tokens": 1, "return_full_text": false}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json_of(&body), json!([{"generated_text": " t0"}]));
    let (_, _, body) = post(
        &h.app,
        "/invocations",
        json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}),
    )
    .await;
    assert_eq!(json_of(&body)["object"], "chat.completion");
    let (_, _, body) = post(
        &h.app,
        "/invocations",
        json!({"prompt": "hi", "max_tokens": 1}),
    )
    .await;
    assert_eq!(json_of(&body)["object"], "text_completion");
    let (status, _, _) = post(&h.app, "/invocations", json!({"what": 1})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn vertex_instances_to_predictions() {
    let h = harness();
    let (status, _, body) = post(
        &h.app,
        "/vertex",
        json!({"instances": [
            {"inputs": "a", "parameters": {"max_new_tokens": 2}},
            {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
        ]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert_eq!(json_of(&body), json!({"predictions": [" t0 t1", " t0"]}));
    let (status, _, body) = post(
        &h.app,
        "/vertex",
        json!({"instances": [{"inputs": "a", "parameters": {"top_k": 0}}]}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        json_of(&body)["error"],
        "Input validation error: `top_k` must be strictly positive"
    );
}

const TOOLS: &str = r#"[{"type": "function", "function": {"name": "get_weather", "description": "w",
    "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}}]"#;

#[tokio::test]
async fn tool_call_non_stream() {
    let h = harness();
    let tools: Value = serde_json::from_str(TOOLS).unwrap();
    let (status, _, body) = post(
        &h.app,
        "/v1/chat/completions",
        json!({"messages": [{"role": "user", "content": "weather in Paris?"}], "tools": tools}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let v = json_of(&body);
    assert_eq!(
        v["choices"][0]["message"],
        json!({"role": "assistant", "tool_calls": [{"id": "0", "type": "function",
        "function": {"description": null, "name": "get_weather", "arguments": "{\"location\":\"Paris\"}"}}]})
    );
    let s = h.backend.scheduled.lock().unwrap().last().cloned().unwrap();
    assert!(
        s.inputs.contains("get_weather"),
        "tools are appended to the prompt"
    );
    assert!(
        matches!(s.parameters.grammar, Some(crate::infer::types::ValidGrammar::Json(ref g)) if g.contains("no_tool"))
    );
}

#[tokio::test]
async fn tool_call_stream() {
    let h = harness();
    let tools: Value = serde_json::from_str(TOOLS).unwrap();
    let (status, _, body) = post(&h.app, "/v1/chat/completions", json!({"messages": [{"role": "user", "content": "weather?"}], "tools": tools, "stream": true})).await;
    assert_eq!(status, StatusCode::OK);
    let ev = events(&body);
    assert_eq!(ev.last().unwrap(), " [DONE]");
    let chunks: Vec<Value> = ev[..ev.len() - 1]
        .iter()
        .map(|e| json_of(&Bytes::from(e.clone())))
        .collect();
    let first = &chunks[0]["choices"][0]["delta"]["tool_calls"][0];
    assert_eq!(first["function"]["name"], "get_weather");
    assert_eq!(first["function"]["arguments"], "{");
    assert_eq!(first["id"], "0");
    assert_eq!(first["type"], "function");
    let args: String = chunks
        .iter()
        .map(|c| {
            c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&args).unwrap(),
        json!({"location": "Paris"})
    );
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "stop"
    );
}
