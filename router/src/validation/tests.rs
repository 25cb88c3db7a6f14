//! Unit tests for validation: every rule, its message and its place in the order.

use super::*;
use crate::api::{GenerateParameters, JsonSchemaConfig};
use crate::test_util::word_tokenizer;

fn validation(max_input: usize, max_total: usize) -> Validation {
    Validation::new(
        ValidationConfig {
            max_best_of: 2,
            max_stop_sequences: 4,
            max_top_n_tokens: 5,
            max_input_length: max_input,
            max_total_tokens: max_total,
            disable_grammar_support: false,
        },
        Some(TokenizerPool::new(word_tokenizer(), 2)),
    )
}

fn req(inputs: &str, parameters: GenerateParameters) -> GenerateRequest {
    GenerateRequest {
        inputs: inputs.to_string(),
        parameters,
    }
}

async fn err(v: &Validation, inputs: &str, p: GenerateParameters) -> String {
    match v.validate(req(inputs, p), true).await {
        Ok(_) => panic!("expected a validation error"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn every_rule_has_tgis_message() {
    let v = validation(10, 20);
    let d = GenerateParameters::default;
    let cases: Vec<(GenerateParameters, &str)> = vec![
        (
            GenerateParameters { best_of: Some(2), ..d() },
            "you must use sampling when `best_of` is > 1",
        ),
        (
            GenerateParameters { temperature: Some(0.0), ..d() },
            "`temperature` must be strictly positive",
        ),
        (
            GenerateParameters { repetition_penalty: Some(-1.0), ..d() },
            "`repetition_penalty` must be strictly positive",
        ),
        (
            GenerateParameters { frequency_penalty: Some(2.5), ..d() },
            "`frequency_penalty` must be >= -2.0 and <= 2.0",
        ),
        (
            GenerateParameters { top_p: Some(1.0), ..d() },
            "`top_p` must be > 0.0 and < 1.0",
        ),
        (
            GenerateParameters { typical_p: Some(0.0), ..d() },
            "`typical_p` must be > 0.0 and < 1.0",
        ),
        (
            GenerateParameters { top_k: Some(0), ..d() },
            "`top_k` must be strictly positive",
        ),
        (
            GenerateParameters { max_new_tokens: Some(0), ..d() },
            "`max_new_tokens` must be strictly positive",
        ),
        (
            GenerateParameters { stop: vec!["x".into(); 5], ..d() },
            "`stop` supports up to 4 stop sequences. Given: 5",
        ),
        (
            GenerateParameters { best_of: Some(2), do_sample: true, seed: Some(1), ..d() },
            "`seed` must not be set when `best_of` > 1",
        ),
        (
            GenerateParameters { top_n_tokens: Some(6), ..d() },
            "`top_n_tokens` must be >= 0 and <= 5. Given: 6",
        ),
        (
            GenerateParameters { truncate: Some(0), ..d() },
            "`truncate` must be strictly positive and less than 10. Given: 0",
        ),
        (
            GenerateParameters { truncate: Some(11), ..d() },
            "`truncate` must be strictly positive and less than 10. Given: 11",
        ),
        (
            GenerateParameters { max_new_tokens: Some(18), ..d() },
            "`inputs` tokens + `max_new_tokens` must be <= 20. Given: 3 `inputs` tokens and 18 `max_new_tokens`",
        ),
        (
            GenerateParameters {
                grammar: Some(GrammarType::Json(serde_json::json!(3))),
                ..d()
            },
            "grammar is not supported",
        ),
        (
            GenerateParameters {
                grammar: Some(GrammarType::JsonSchema(JsonSchemaConfig {
                    name: None,
                    schema: serde_json::json!({"type": "object"}),
                })),
                ..d()
            },
            "grammar is not valid: Grammar must have a 'properties' field",
        ),
    ];
    for (params, message) in cases {
        assert_eq!(err(&v, "a b c", params).await, message);
    }
}

#[tokio::test]
async fn empty_input_and_input_length() {
    let v = validation(3, 20);
    let e = err(&v, "", GenerateParameters::default()).await;
    assert_eq!(e, "`inputs` cannot be empty");
    let e = err(
        &v,
        "a b c a",
        GenerateParameters {
            max_new_tokens: Some(2),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(e, "`inputs` must have less than 3 tokens. Given: 4");
}

#[tokio::test]
async fn order_follows_tgi() {
    let v = validation(10, 20);
    // temperature is checked before top_p, and both before the input check.
    let e = err(
        &v,
        "",
        GenerateParameters {
            temperature: Some(-1.0),
            top_p: Some(2.0),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(e, "`temperature` must be strictly positive");
    // total-tokens check comes before the input-length check.
    let v = validation(3, 6);
    let e = err(
        &v,
        "a b c a b",
        GenerateParameters {
            max_new_tokens: Some(2),
            ..Default::default()
        },
    )
    .await;
    assert!(
        e.starts_with("`inputs` tokens + `max_new_tokens` must be <= 6"),
        "{e}"
    );
}

#[tokio::test]
async fn defaults_and_left_truncation() {
    let v = validation(10, 20);
    let r = v
        .validate(
            req(
                "hello world a b",
                GenerateParameters {
                    truncate: Some(2),
                    ..Default::default()
                },
            ),
            true,
        )
        .await
        .unwrap();
    assert_eq!(r.input_length, 2);
    // "a" = 5, "b" = 6: the last two tokens survive.
    assert_eq!(r.input_ids.as_deref(), Some(&vec![5, 6]));
    assert_eq!(r.truncate, 2);
    assert_eq!(r.parameters.temperature, 1.0);
    assert_eq!(r.parameters.top_p, 1.0);
    assert_eq!(r.parameters.typical_p, 1.0);
    assert_eq!(r.parameters.top_k, 0);
    // max_new_tokens absent: the rest of max_total_tokens.
    assert_eq!(r.stopping_parameters.max_new_tokens, 18);
    assert_eq!(r.stopping_parameters.max_total_new_tokens, 18);
}

#[tokio::test]
async fn max_new_tokens_is_chunked_at_1024() {
    let v = validation(10, 5000);
    let r = v
        .validate(
            req(
                "a",
                GenerateParameters {
                    max_new_tokens: Some(3000),
                    ..Default::default()
                },
            ),
            true,
        )
        .await
        .unwrap();
    assert_eq!(r.stopping_parameters.max_new_tokens, 1024);
    assert_eq!(r.stopping_parameters.max_total_new_tokens, 3000);
    let r = v
        .validate(req("a", GenerateParameters::default()), true)
        .await
        .unwrap();
    assert_eq!(r.stopping_parameters.max_new_tokens, 1024);
    assert_eq!(r.stopping_parameters.max_total_new_tokens, 4999);
}

#[tokio::test]
async fn best_of_bounds_and_grammar_switch() {
    let v = validation(10, 20);
    assert_eq!(
        v.validate_best_of(3).unwrap_err().to_string(),
        "`best_of` must be > 0 and <= 2. Given: 3"
    );
    assert_eq!(v.validate_best_of(2), Ok(2));
    let mut cfg = v.config().clone();
    cfg.max_best_of = 1;
    cfg.disable_grammar_support = true;
    let v1 = Validation::new(cfg, None);
    assert_eq!(
        v1.validate_best_of(2).unwrap_err().to_string(),
        "`best_of` != 1 is not allowed for this endpoint"
    );
    let e = v1
        .validate(
            req(
                "a",
                GenerateParameters {
                    max_new_tokens: Some(1),
                    grammar: Some(GrammarType::Regex("a".into())),
                    ..Default::default()
                },
            ),
            true,
        )
        .await
        .unwrap_err();
    assert_eq!(e.to_string(), "grammar is not supported");
}

#[tokio::test]
async fn json_grammar_from_string_is_accepted() {
    let v = validation(10, 20);
    let r = v
        .validate(
            req(
                "a",
                GenerateParameters {
                    grammar: Some(GrammarType::Json(serde_json::json!(
                        "{\"properties\":{\"x\":{\"type\":\"integer\"}}}"
                    ))),
                    ..Default::default()
                },
            ),
            true,
        )
        .await
        .unwrap();
    assert!(
        matches!(r.parameters.grammar, Some(ValidGrammar::Json(ref s)) if s.contains("properties"))
    );
}

#[tokio::test]
async fn tokenize_offsets() {
    let v = validation(10, 20);
    let toks = v
        .tokenize("hello world".into(), true)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(toks.len(), 2);
    assert_eq!(toks[1].text, "world");
    assert_eq!((toks[1].start, toks[1].stop), (6, 11));
}

#[tokio::test]
async fn without_tokenizer_lengths_are_estimated() {
    let v = Validation::new(
        ValidationConfig {
            max_best_of: 2,
            max_stop_sequences: 4,
            max_top_n_tokens: 5,
            max_input_length: 10,
            max_total_tokens: 20,
            disable_grammar_support: false,
        },
        None,
    );
    let e = v
        .validate(req("a", GenerateParameters::default()), true)
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "one of `max_new_tokens` or `truncate` must be set if a fast tokenizer is not in use"
    );
    let r = v
        .validate(
            req(
                "a b c",
                GenerateParameters {
                    max_new_tokens: Some(15),
                    ..Default::default()
                },
            ),
            true,
        )
        .await
        .unwrap();
    // max_input_length (10) is shrunk so that 15 new tokens fit in 20.
    assert_eq!(r.input_length, 5);
    assert!(r.input_ids.is_none());
    assert!(v.tokenize("a".into(), true).await.unwrap().is_none());
}
