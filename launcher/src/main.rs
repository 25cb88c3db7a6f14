//! `text-generation-launcher`: TGI's launcher. Parses TGI's flags, derives unset values,
//! starts one shard per rank and the router, and supervises them until a signal or a crash.

mod args;
mod binaries;
mod derive;
mod env_info;
mod error;
mod logging;
mod model;
mod process;
mod router;
mod shard;
mod supervise;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = args::Args::parse();
    logging::init(args.json_output);
    if args.env {
        tracing::info!("{}", env_info::EnvInfo::collect());
    }
    let mut shown = args.clone();
    shown.api_key = shown.api_key.map(|_| "<redacted>".into());
    shown.ngrok_authtoken = shown.ngrok_authtoken.map(|_| "<redacted>".into());
    tracing::info!("{shown:?}");
    let result = model::resolve(
        args.model_id.as_deref(),
        args.revision.as_deref(),
        args.huggingface_hub_cache.as_deref(),
    )
    .and_then(|model| {
        derive::derive(&args, model, || {
            derive::visible_devices(|k| std::env::var(k).ok())
        })
    })
    .and_then(|derived| {
        tracing::info!(model = %derived.model.display(), num_shard = derived.num_shard, "Starting");
        supervise::run(&args, &derived)
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("Error: {e}");
            ExitCode::FAILURE
        }
    }
}
