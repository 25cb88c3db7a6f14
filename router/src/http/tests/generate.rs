//! `/generate`, `/generate_stream` and `POST /`.

use super::*;

#[tokio::test]
async fn generate_with_details() {
    let h = harness();
    let (status, headers, body) = post(
        &h.app,
        "/generate",
        json!({"inputs": "hello world", "parameters": {"max_new_tokens": 3, "details": true}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let v = json_of(&body);
    assert_eq!(v["generated_text"], " t0 t1 t2");
    let d = &v["details"];
    assert_eq!(d["finish_reason"], "length");
    assert_eq!(d["generated_tokens"], 3);
    assert_eq!(d["seed"], Value::Null);
    assert_eq!(d["prefill"], json!([]));
    assert_eq!(d["tokens"].as_array().unwrap().len(), 3);
    assert_eq!(
        d["tokens"][0],
        json!({"id": 100, "text": " t0", "logprob": d["tokens"][0]["logprob"], "special": false})
    );
    assert!(d.get("top_tokens").is_none());
    assert!(d.get("best_of_sequences").is_none());
    assert_eq!(headers["x-compute-type"], "gpu+optimized");
    assert_eq!(headers["x-prompt-tokens"], "2");
    assert_eq!(headers["x-generated-tokens"], "3");
    assert_eq!(headers["x-compute-characters"], "11");
    for h in [
        "x-total-time",
        "x-validation-time",
        "x-queue-time",
        "x-inference-time",
        "x-time-per-token",
        "x-compute-time",
    ] {
        assert!(headers.contains_key(h), "{h}");
    }
}

#[tokio::test]
async fn generate_without_details_and_full_text() {
    let h = harness();
    let (_, _, body) = post(
        &h.app,
        "/generate",
        json!({"inputs": "a", "parameters": {"max_new_tokens": 1}}),
    )
    .await;
    assert_eq!(json_of(&body), json!({"generated_text": " t0"}));
    let (_, _, body) = post(
        &h.app,
        "/generate",
        json!({"inputs": "a", "parameters": {"max_new_tokens": 1, "return_full_text": true}}),
    )
    .await;
    assert_eq!(json_of(&body), json!({"generated_text": "a t0"}));
}

#[tokio::test]
async fn generate_top_tokens_and_eos() {
    let h = harness();
    let (_, _, body) = post(&h.app, "/generate", json!({"inputs": "eos", "parameters": {"details": true, "top_n_tokens": 2, "max_new_tokens": 5}})).await;
    let v = json_of(&body);
    assert_eq!(v["details"]["finish_reason"], "eos_token");
    assert_eq!(v["details"]["top_tokens"].as_array().unwrap().len(), 2);
    assert_eq!(v["details"]["top_tokens"][0].as_array().unwrap().len(), 2);
    assert_eq!(v["generated_text"], " t0");
}

#[tokio::test]
async fn generate_errors_have_tgi_shape() {
    let h = harness();
    let (status, _, body) = post(
        &h.app,
        "/generate",
        json!({"inputs": "a", "parameters": {"top_p": 1.5}}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        json_of(&body),
        json!({"error": "Input validation error: `top_p` must be > 0.0 and < 1.0", "error_type": "validation"})
    );
    let (status, _, body) = post(
        &h.app,
        "/generate",
        json!({"inputs": "fail", "parameters": {"max_new_tokens": 2}}),
    )
    .await;
    assert_eq!(status, StatusCode::FAILED_DEPENDENCY);
    assert_eq!(
        json_of(&body),
        json!({"error": "Request failed during generation: Server error: boom", "error_type": "generation"})
    );
    let (status, _, body) = post(
        &h.app,
        "/generate",
        json!({"inputs": "hang", "parameters": {"max_new_tokens": 2}}),
    )
    .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(json_of(&body)["error_type"], "incomplete_generation");
}

#[tokio::test]
async fn best_of_returns_other_sequences() {
    let h = harness();
    let (status, _, body) = post(&h.app, "/generate", json!({"inputs": "a", "parameters": {"best_of": 2, "do_sample": true, "details": true, "max_new_tokens": 2}})).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let v = json_of(&body);
    assert_eq!(
        v["details"]["best_of_sequences"].as_array().unwrap().len(),
        1
    );
    assert_eq!(h.backend.scheduled.lock().unwrap().len(), 2);
    let (status, _, body) = post(
        &h.app,
        "/generate",
        json!({"inputs": "a", "parameters": {"best_of": 3, "do_sample": true}}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        json_of(&body)["error"],
        "Input validation error: `best_of` must be > 0 and <= 2. Given: 3"
    );
}

#[tokio::test]
async fn generate_stream_events() {
    let h = harness();
    let (status, headers, body) = post(
        &h.app,
        "/generate_stream",
        json!({"inputs": "hello", "parameters": {"max_new_tokens": 3, "details": true}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "text/event-stream");
    assert_eq!(headers["x-accel-buffering"], "no");
    let ev = events(&body);
    assert_eq!(ev.len(), 3);
    assert_eq!(ev[0], r#"{"index":1,"token":{"id":100,"text":" t0","logprob":-0.5,"special":false},"generated_text":null,"details":null}"#.replace("-0.5", &json_of(&Bytes::from(ev[0].clone()))["token"]["logprob"].to_string()));
    let last = json_of(&Bytes::from(ev[2].clone()));
    assert_eq!(last["index"], 3);
    assert_eq!(last["generated_text"], " t0 t1 t2");
    assert_eq!(
        last["details"],
        json!({"finish_reason": "length", "generated_tokens": 3, "seed": null, "input_length": 1})
    );
    assert!(!String::from_utf8_lossy(&body).contains("[DONE]"));
}

#[tokio::test]
async fn generate_stream_errors_are_events_on_200() {
    let h = harness();
    let cases = [
        (json!({"inputs": "a", "parameters": {"best_of": 2, "do_sample": true}}), "Input validation error: `best_of` != 1 is not supported when streaming tokens", "validation"),
        (json!({"inputs": "a", "parameters": {"decoder_input_details": true}}), "Input validation error: `decoder_input_details` == true is not supported when streaming tokens", "validation"),
        (json!({"inputs": "", "parameters": {}}), "Input validation error: `inputs` cannot be empty", "validation"),
        (json!({"inputs": "fail", "parameters": {"max_new_tokens": 2}}), "Request failed during generation: Server error: boom", "generation"),
        (json!({"inputs": "hang", "parameters": {"max_new_tokens": 2}}), "Incomplete generation stream", "incomplete_generation_stream"),
    ];
    for (req, error, error_type) in cases {
        let (status, _, body) = post(&h.app, "/generate_stream", req).await;
        assert_eq!(status, StatusCode::OK);
        let ev = events(&body);
        let last = json_of(&Bytes::from(ev.last().unwrap().clone()));
        assert_eq!(last, json!({"error": error, "error_type": error_type}));
    }
}

#[tokio::test]
async fn long_generations_are_requeued_transparently() {
    let h = harness();
    let (_, _, body) = post(
        &h.app,
        "/generate_stream",
        json!({"inputs": "a", "parameters": {"max_new_tokens": 1500, "details": true}}),
    )
    .await;
    let ev = events(&body);
    assert_eq!(ev.len(), 1500);
    let indexes: Vec<u64> = ev
        .iter()
        .map(|e| json_of(&Bytes::from(e.clone()))["index"].as_u64().unwrap())
        .collect();
    assert_eq!(indexes, (1..=1500).collect::<Vec<_>>());
    let last = json_of(&Bytes::from(ev[1499].clone()));
    assert_eq!(last["details"]["generated_tokens"], 1500);
    assert_eq!(last["details"]["input_length"], 1);
    let scheduled = h.backend.scheduled.lock().unwrap();
    assert_eq!(scheduled.len(), 2);
    assert_eq!(scheduled[0].stopping_parameters.max_new_tokens, 1024);
    assert_eq!(scheduled[1].stopping_parameters.max_new_tokens, 476);
    // The second pass continues from the text generated so far.
    assert!(scheduled[1].inputs.starts_with("a t0 t1"));
    assert_eq!(scheduled[1].parameters.seed, scheduled[0].parameters.seed);
}

#[tokio::test]
async fn compat_route_returns_array_or_stream() {
    let h = harness();
    let (status, _, body) = post(
        &h.app,
        "/",
        json!({"inputs": "a", "parameters": {"max_new_tokens": 1}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // return_full_text defaults to true on the compat route when the pipeline tag is unknown.
    assert_eq!(json_of(&body), json!([{"generated_text": "a t0"}]));
    let (_, headers, body) = post(&h.app, "/", json!({"inputs": "a", "parameters": {"max_new_tokens": 2, "return_full_text": false}, "stream": true})).await;
    assert_eq!(headers["content-type"], "text/event-stream");
    assert_eq!(events(&body).len(), 2);
}
