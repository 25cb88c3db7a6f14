//! The router process: the arguments TGI's launcher passes (`spawn_webserver`, §1.5).

use crate::args::Args;
use crate::derive::Derived;
use crate::error::LauncherError;
use crate::logging;
use crate::process::Supervised;
use crate::shard::socket_path;
use std::ffi::OsString;
use std::path::Path;
use std::process::Command;

/// The router's command line.
pub fn router_args(args: &Args, derived: &Derived) -> Vec<OsString> {
    let mut a: Vec<OsString> = Vec::new();
    let mut push = |flag: &str, value: Option<OsString>| {
        a.push(flag.into());
        if let Some(v) = value {
            a.push(v);
        }
    };
    let s = |v: &dyn ToString| Some(OsString::from(v.to_string()));
    push("--max-client-batch-size", s(&args.max_client_batch_size));
    push(
        "--max-concurrent-requests",
        s(&args.max_concurrent_requests),
    );
    push("--max-best-of", s(&args.max_best_of));
    push("--max-stop-sequences", s(&args.max_stop_sequences));
    push("--max-top-n-tokens", s(&args.max_top_n_tokens));
    push(
        "--max-batch-prefill-tokens",
        s(&derived.max_batch_prefill_tokens),
    );
    push("--waiting-served-ratio", s(&args.waiting_served_ratio));
    push("--max-waiting-tokens", s(&args.max_waiting_tokens));
    push("--validation-workers", s(&args.validation_workers));
    push("--hostname", s(&args.hostname));
    push("--port", s(&args.port));
    push("--prometheus-port", s(&args.prometheus_port));
    push(
        "--master-shard-uds-path",
        Some(socket_path(&args.shard_uds_path, 0).into_os_string()),
    );
    push(
        "--tokenizer-name",
        Some(derived.model.clone().into_os_string()),
    );
    push("--payload-limit", s(&args.payload_limit));
    let usage = match args.usage_stats {
        crate::args::UsageStats::On => "on",
        crate::args::UsageStats::Off => "off",
        crate::args::UsageStats::NoStack => "no-stack",
    };
    push("--usage-stats", s(&usage));
    if let Some(v) = derived.max_input_tokens {
        push("--max-input-tokens", s(&v));
    }
    if let Some(v) = args.max_total_tokens {
        push("--max-total-tokens", s(&v));
    }
    if args.disable_grammar_support {
        push("--disable-grammar-support", None);
    }
    if let Some(v) = &args.tokenizer_config_path {
        push("--tokenizer-config-path", s(v));
    }
    if let Some(v) = args.max_batch_total_tokens {
        push("--max-batch-total-tokens", s(&v));
    }
    if let Some(v) = args.max_batch_size {
        push("--max-batch-size", s(&v));
    }
    if let Some(v) = &args.revision {
        push("--revision", s(v));
    }
    if args.trust_remote_code {
        push("--trust-remote-code", None);
    }
    if args.json_output {
        push("--json-output", None);
    }
    if let Some(v) = &args.otlp_endpoint {
        push("--otlp-endpoint", s(v));
    }
    push("--otlp-service-name", s(&args.otlp_service_name));
    for origin in &args.cors_allow_origin {
        push("--cors-allow-origin", s(origin));
    }
    if let Some(v) = &args.api_key {
        push("--api-key", s(v));
    }
    a
}

/// Spawns the router with the launcher's env plus `HF_TOKEN` and `COMPUTE_TYPE`.
pub fn spawn(program: &Path, args: &Args, derived: &Derived) -> Result<Supervised, LauncherError> {
    let mut cmd = Command::new(program);
    cmd.args(router_args(args, derived));
    if let Ok(token) = std::env::var("HF_API_TOKEN") {
        cmd.env("HF_TOKEN", token);
    }
    if std::env::var_os("COMPUTE_TYPE").is_none() {
        cmd.env("COMPUTE_TYPE", compute_type(derived.num_shard, gpu_name()));
    }
    tracing::info!("Starting Webserver");
    Supervised::spawn("webserver", cmd, logging::router_handler())
}

/// TGI's `x-compute-type`: `{num_shard}-{gpu name}` (e.g. `1-nvidia-a10g`), `-cpu` without one.
pub fn compute_type(num_shard: usize, gpu: Option<String>) -> String {
    let device = gpu
        .map(|g| g.trim().to_lowercase().replace(' ', "-"))
        .filter(|g| !g.is_empty())
        .unwrap_or_else(|| "cpu".into());
    format!("{num_shard}-{device}")
}

fn gpu_name() -> Option<String> {
    let out = Command::new("nvidia-smi")
        .args(["--query-gpu=gpu_name", "--format=csv,noheader"])
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn compute_type_like_tgi() {
        assert_eq!(compute_type(1, Some("NVIDIA A10G".into())), "1-nvidia-a10g");
        assert_eq!(compute_type(2, None), "2-cpu");
    }

    #[test]
    fn tgi_router_arguments() {
        let args = Args::try_parse_from([
            "text-generation-launcher",
            "--shard-uds-path",
            "/tmp/s",
            "--port",
            "1234",
            "--max-total-tokens",
            "512",
            "--cors-allow-origin",
            "http://a",
            "--api-key",
            "k",
            "--json-output",
        ])
        .unwrap();
        let derived = Derived {
            model: "/m".into(),
            num_shard: 1,
            max_input_tokens: Some(100),
            max_batch_prefill_tokens: 512,
        };
        let a: Vec<String> = router_args(&args, &derived)
            .iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect();
        let joined = a.join(" ");
        for expected in [
            "--master-shard-uds-path /tmp/s-0",
            "--tokenizer-name /m",
            "--port 1234",
            "--max-batch-prefill-tokens 512",
            "--waiting-served-ratio 0.3",
            "--max-input-tokens 100",
            "--max-total-tokens 512",
            "--cors-allow-origin http://a",
            "--api-key k",
            "--json-output",
            "--usage-stats on",
            "--otlp-service-name text-generation-inference.router",
        ] {
            assert!(joined.contains(expected), "{expected} missing in {joined}");
        }
        // The router must parse what we pass: no flag it does not know.
        assert!(!joined.contains("--max-input-length"));
    }
}
