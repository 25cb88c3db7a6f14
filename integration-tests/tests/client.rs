//! The `text-generation-client` crate against the real server: every method, the bearer token,
//! and typed errors (HTTP and mid-stream).

use futures::StreamExt;
use integration_tests::{tiny_model, Launcher};
use std::time::Duration;
use text_generation_client::{
    ChatRequest, Client, ClientError, GenerateParameters, GenerateRequest, InvocationsRequest,
    InvocationsResponse, Message,
};

const STARTUP: Duration = Duration::from_secs(180);
const API_KEY: &str = "it-secret";

fn client(l: &Launcher) -> Client {
    Client::builder(l.url(""))
        .bearer_token(API_KEY)
        .header("x-request-source", "integration-tests")
        .timeout(Duration::from_secs(300))
        .build()
        .unwrap()
}

async fn check_generate(c: &Client) -> String {
    let req = GenerateRequest::new("Hello there")
        .max_new_tokens(6)
        .details(true);
    let g = c.generate(&req).await.unwrap();
    let details = g.details.clone().unwrap();
    assert!((1..=6).contains(&details.generated_tokens), "{g:?}");
    assert_eq!(details.tokens.len() as u32, details.generated_tokens);

    let mut stream = c.generate_stream(&req).await.unwrap();
    let mut events = Vec::new();
    while let Some(event) = stream.next().await {
        events.push(event.unwrap());
    }
    assert_eq!(events.len() as u32, details.generated_tokens, "{events:?}");
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.index as usize, i + 1);
        assert_eq!(e.token.id, details.tokens[i].id);
    }
    let last = events.last().unwrap();
    assert_eq!(
        last.generated_text.as_deref(),
        Some(g.generated_text.as_str())
    );
    assert_eq!(
        last.details.as_ref().map(|d| d.finish_reason),
        Some(details.finish_reason)
    );
    g.generated_text
}

async fn check_chat(c: &Client) {
    let req = ChatRequest::new(vec![Message::user("Say hi")])
        .max_tokens(5)
        .temperature(0.0);
    let answer = c.chat(&req).await.unwrap();
    assert_eq!(answer.object, "chat.completion");
    let n = answer.usage.completion_tokens;
    assert!((1..=5).contains(&n), "{answer:?}");

    let mut stream = c.chat_stream(&req).await.unwrap();
    let mut chunks = Vec::new();
    while let Some(chunk) = stream.next().await {
        chunks.push(chunk.unwrap());
    }
    // `[DONE]` ends the stream and is not an item.
    assert_eq!(chunks.len() as u32, n, "{chunks:?}");
    assert!(chunks.iter().all(|c| c.object == "chat.completion.chunk"));
    let streamed: String = chunks
        .iter()
        .filter_map(|c| c.choices.first()?.delta.content.clone())
        .collect();
    let last = chunks.last().and_then(|c| c.choices.first()).unwrap();
    assert!(last.finish_reason.is_some(), "{chunks:?}");
    if answer.choices[0].finish_reason == "length" {
        assert_eq!(
            Some(streamed.as_str()),
            answer.choices[0].message.content.as_deref()
        );
    }
}

async fn check_invocations(c: &Client, expected: &str) {
    let generate = InvocationsRequest::Generate {
        inputs: "Hello there".into(),
        parameters: GenerateParameters {
            max_new_tokens: Some(6),
            details: true,
            return_full_text: Some(false),
            ..Default::default()
        },
    };
    let answer = c.invocations(&generate).await.unwrap();
    assert!(
        matches!(
            answer,
            InvocationsResponse::Generate(_) | InvocationsResponse::GenerateOne(_)
        ),
        "{answer:?}"
    );
    assert_eq!(answer.text(), Some(expected), "{answer:?}");

    let chat = InvocationsRequest::Chat(
        ChatRequest::new(vec![Message::user("Say hi")])
            .max_tokens(3)
            .temperature(0.0),
    );
    let answer = c.invocations(&chat).await.unwrap();
    assert!(matches!(answer, InvocationsResponse::Chat(_)), "{answer:?}");
}

async fn check_errors(c: &Client, max_total_tokens: usize, l: &Launcher) {
    // Over the token budget: 422 with TGI's validation message.
    let too_many = GenerateRequest::new("Hello").max_new_tokens(max_total_tokens as u32 + 10);
    match c.generate(&too_many).await {
        Err(ClientError::Validation {
            message,
            error_type,
        }) => {
            assert_eq!(error_type, "validation");
            assert!(
                message.starts_with(&format!(
                    "Input validation error: `inputs` tokens + `max_new_tokens` must be <= {max_total_tokens}. Given: "
                )) || message.starts_with("Input validation error: `max_new_tokens` must be <= "),
                "{message}"
            );
        }
        other => panic!("expected a validation error, got {other:?}"),
    }

    // The same on the stream route arrives as an error event with status 200: an Err item.
    let mut stream = c.generate_stream(&too_many).await.unwrap();
    let first = stream.next().await.unwrap();
    assert!(
        matches!(&first, Err(ClientError::Validation { message, .. }) if message.starts_with("Input validation error: ")),
        "{first:?}"
    );
    assert!(stream.next().await.is_none());

    // Stream-only rule.
    let mut best_of = GenerateRequest::new("Hello").max_new_tokens(2);
    best_of.parameters.best_of = Some(2);
    best_of.parameters.do_sample = true;
    let mut stream = c.generate_stream(&best_of).await.unwrap();
    let first = stream.next().await.unwrap();
    assert!(
        matches!(&first, Err(ClientError::Validation { message, .. }) if message.contains("best_of")),
        "{first:?}"
    );

    // No token: 401.
    let anonymous = Client::new(l.url("")).unwrap();
    let err = anonymous
        .generate(&GenerateRequest::new("Hello").max_new_tokens(1))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Unauthorized), "{err:?}");
    // Health and info need no token.
    anonymous.health().await.unwrap();

    // Nothing listening: a transport error.
    let port = integration_tests::free_port();
    let nobody = Client::builder(format!("http://127.0.0.1:{port}"))
        .connect_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let err = nobody.health().await.unwrap_err();
    assert!(matches!(err, ClientError::Transport(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_against_the_real_server() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let model_str = model.to_str().unwrap().to_string();
    let mut l = Launcher::start(&[
        "--model-id",
        &model_str,
        "--max-batch-total-tokens",
        "4096",
        "--api-key",
        API_KEY,
    ]);
    let l = tokio::task::spawn_blocking(move || {
        l.wait_ready(STARTUP);
        l
    })
    .await
    .unwrap();

    let c = client(&l);
    c.health().await.unwrap();
    let info = c.info().await.unwrap();
    assert_eq!(info.model_id, model_str);
    assert_eq!(info.router, "text-generation-router");
    assert!(info.max_input_tokens < info.max_total_tokens, "{info:?}");

    let text = check_generate(&c).await;
    check_chat(&c).await;
    check_invocations(&c, &text).await;
    check_errors(&c, info.max_total_tokens, &l).await;
    drop(l);
}
