//! `text-generation-router`: parse flags, set up logging, run the startup sequence.

use clap::Parser;
use text_generation_router::cli::{Args, Command};
use text_generation_router::http::openapi::ApiDoc;
use tracing_subscriber::EnvFilter;
use utoipa::OpenApi;

fn init_logging(json: bool) {
    let filter = std::env::var("LOG_LEVEL")
        .ok()
        .map(|level| match level.as_str() {
            "warn" | "info" | "debug" | "trace" | "error" => {
                format!("text_generation_router={level},text_generation_launcher={level}")
            }
            other => other.to_string(),
        })
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| "info".to_string());
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if json {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    if let Some(Command::PrintSchema) = args.command {
        match ApiDoc::openapi().to_pretty_json() {
            Ok(json) => {
                println!("{json}");
                return std::process::ExitCode::SUCCESS;
            }
            Err(err) => {
                eprintln!("{err}");
                return std::process::ExitCode::FAILURE;
            }
        }
    }
    init_logging(args.json_output);
    match text_generation_router::startup::run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err}");
            std::process::ExitCode::FAILURE
        }
    }
}
