//! Streams a completion from a running server and prints it token by token.
//!
//! `cargo run -p text-generation-client --example generate -- http://127.0.0.1:3000 "Hello"`
//! (set `TGI_API_KEY` when the server runs with `--api-key`).

use futures::StreamExt;
use text_generation_client::{ChatRequest, Client, GenerateRequest, Message};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:3000".into());
    let prompt = args
        .next()
        .unwrap_or_else(|| "What is deep learning?".into());

    let mut builder = Client::builder(url);
    if let Ok(token) = std::env::var("TGI_API_KEY") {
        builder = builder.bearer_token(token);
    }
    let client = builder.build()?;
    let info = client.info().await?;
    eprintln!("model: {}", info.model_id);

    let mut stream = client
        .generate_stream(&GenerateRequest::new(prompt.clone()).max_new_tokens(32))
        .await?;
    while let Some(event) = stream.next().await {
        print!("{}", event?.token.text);
    }
    println!();

    let answer = client
        .chat(&ChatRequest::new(vec![Message::user(prompt)]).max_tokens(32))
        .await?;
    if let Some(content) = answer
        .choices
        .first()
        .and_then(|c| c.message.content.as_ref())
    {
        println!("{content}");
    }
    Ok(())
}
