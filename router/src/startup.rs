//! Startup as TGI: shards (discover, clear, info, warmup), derived limits and cross-checks,
//! tokenizer and chat template, then the HTTP listener (port open == ready).

use crate::api::Info;
use crate::cli::Args;
use crate::client::{ShardedClient, WarmupParams};
use crate::error::RouterError;
use crate::http::{self, AppState, ServerConfig};
use crate::infer::Infer;
use crate::model_files;
use crate::scheduler::batching::BatchingConfig;
use crate::scheduler::queue::QueueConfig;
use crate::scheduler::SchedulerBackend;
use crate::validation::{TokenizerPool, Validation, ValidationConfig};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

/// Limits after warmup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_input_tokens: usize,
    pub max_total_tokens: usize,
    pub max_batch_total_tokens: u32,
}

/// TGI's derivation of limits from the warmup answer, with its error texts.
pub fn derive_limits(
    args: &Args,
    warmup: (Option<u32>, u32, u32),
    support_chunking: bool,
) -> Result<Limits, RouterError> {
    let (supported, input, total) = warmup;
    if let Some(given) = args.max_input_tokens {
        if given != input as usize {
            return Err(RouterError::Warmup(format!(
                "the shard reported max_input_tokens={input} but {given} was requested"
            )));
        }
    }
    if let Some(given) = args.max_total_tokens {
        if given != total as usize {
            return Err(RouterError::Warmup(format!(
                "the shard reported max_total_tokens={total} but {given} was requested"
            )));
        }
    }
    let (max_input_tokens, max_total_tokens) = (input as usize, total as usize);
    let max_batch_total_tokens = match supported {
        Some(supported) => {
            if args.max_batch_total_tokens.is_some() {
                tracing::warn!(
                    "`--max-batch-total-tokens` is deprecated for Flash Attention models."
                );
                tracing::warn!("Inferred max batch total tokens: {supported}");
            }
            if max_total_tokens as u32 > supported {
                return Err(RouterError::ArgumentValidation(format!(
                    "Not enough memory to handle max_total_tokens={max_total_tokens}"
                )));
            }
            supported
        }
        None => args.max_batch_total_tokens.unwrap_or_else(|| {
            16000u32
                .max(max_total_tokens as u32)
                .max(args.max_batch_prefill_tokens)
        }),
    };
    if max_input_tokens >= max_total_tokens {
        return Err(RouterError::ArgumentValidation(
            "`max_input_tokens` must be < `max_total_tokens`".to_string(),
        ));
    }
    if !support_chunking && max_input_tokens as u32 > args.max_batch_prefill_tokens {
        return Err(RouterError::ArgumentValidation(format!(
            "`max_batch_prefill_tokens` must be >= `max_input_tokens`. Given: {} and {}",
            args.max_batch_prefill_tokens, max_input_tokens
        )));
    }
    if args.max_batch_prefill_tokens > max_batch_total_tokens {
        return Err(RouterError::ArgumentValidation(format!(
            "`max_batch_prefill_tokens` must be <= `max_batch_total_tokens`. Given: {} and {}",
            args.max_batch_prefill_tokens, max_batch_total_tokens
        )));
    }
    if max_total_tokens as u32 > max_batch_total_tokens {
        return Err(RouterError::ArgumentValidation(format!(
            "`max_total_tokens` must be <= `max_batch_total_tokens`. Given: {max_total_tokens} and {max_batch_total_tokens}"
        )));
    }
    Ok(Limits {
        max_input_tokens,
        max_total_tokens,
        max_batch_total_tokens,
    })
}

/// Checks TGI runs before contacting the shards.
pub fn check_args(args: &Args) -> Result<(), RouterError> {
    if args.validation_workers == 0 {
        return Err(RouterError::ArgumentValidation(
            "`validation_workers` must be > 0".to_string(),
        ));
    }
    if let (Some(input), Some(total)) = (args.max_input_tokens, args.max_total_tokens) {
        if input >= total {
            return Err(RouterError::ArgumentValidation(
                "`max_input_tokens` must be < `max_total_tokens`".to_string(),
            ));
        }
    }
    Ok(())
}

/// The listen address; an unparsable `--hostname` falls back to 0.0.0.0 as in TGI.
pub fn listen_addr(hostname: &str, port: u16) -> SocketAddr {
    let ip = hostname.parse::<IpAddr>().unwrap_or_else(|_| {
        tracing::warn!("Invalid hostname, defaulting to 0.0.0.0");
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    });
    SocketAddr::new(ip, port)
}

/// Listen backlog of the HTTP listeners (the kernel caps it at `net.core.somaxconn`).
///
/// Tokio's `TcpListener::bind` uses 128: a burst of 256 new connections overflowed the
/// accept queue, dropped SYNs were retransmitted after 1 s and showed up as TTFT outliers.
pub const LISTEN_BACKLOG: u32 = 2048;

/// Binds a TCP listener on `addr` with SO_REUSEADDR (as tokio's `bind` does) and a
/// [`LISTEN_BACKLOG`] accept queue. A busy port is still an error (AddrInUse).
pub fn bind_listener(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // Quick restarts: don't wait for TIME_WAIT sockets of the previous process.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Runs the router until SIGINT/SIGTERM.
pub async fn run(args: Args) -> Result<(), RouterError> {
    check_args(&args)?;
    if args.ngrok {
        tracing::warn!("ngrok is not supported by this router; ignoring --ngrok");
    }
    let (tokenizer, chat_template) = model_files::load_tokenizer_and_template(&args)?;
    if tokenizer.is_none() {
        tracing::warn!(
            "Could not find a fast tokenizer implementation for {}",
            args.tokenizer_name
        );
        tracing::warn!("Rust input length validation and truncation is disabled");
    }

    tracing::info!("Connecting to the shards at {}", args.master_shard_uds_path);
    let client = ShardedClient::connect_uds(&args.master_shard_uds_path)
        .await
        .map_err(|e| RouterError::Connection(e.to_string()))?;
    client
        .clear_cache(None)
        .await
        .map_err(|e| RouterError::Connection(e.to_string()))?;
    let shard_info = client
        .info()
        .await
        .map_err(|e| RouterError::Connection(e.to_string()))?;
    tracing::info!(?shard_info, world_size = client.world_size(), "shard info");
    if shard_info.support_chunking {
        tracing::warn!(
            "Chunked prefill is on: `waiting_served_ratio` and `max_waiting_tokens` are ignored"
        );
    } else if let Some(input) = args.max_input_tokens {
        if input as u32 > args.max_batch_prefill_tokens {
            return Err(RouterError::ArgumentValidation(format!(
                "`max_batch_prefill_tokens` must be >= `max_input_tokens`. Given: {} and {}",
                args.max_batch_prefill_tokens, input
            )));
        }
    }
    tracing::info!("Warming up model");
    let warmup = client
        .warmup(&WarmupParams {
            max_input_tokens: args.max_input_tokens.map(|v| v as u32),
            max_prefill_tokens: args.max_batch_prefill_tokens,
            max_total_tokens: args.max_total_tokens.map(|v| v as u32),
            max_batch_size: args.max_batch_size,
            model_max_input: model_files::model_max_positions(&args.tokenizer_name)
                .map(|p| p.saturating_sub(1)),
        })
        .await
        .map_err(|e| RouterError::Warmup(e.to_string()))?;
    let limits = derive_limits(&args, warmup, shard_info.support_chunking)?;
    tracing::info!(?limits, "limits after warmup");

    let handle = http::metrics::install(limits.max_input_tokens, limits.max_total_tokens);
    metrics::gauge!("tgi_batch_max_total_tokens").set(limits.max_batch_total_tokens as f64);
    metrics::gauge!("tgi_queue_size").set(0.0);
    metrics::gauge!("tgi_batch_current_size").set(0.0);
    metrics::gauge!("tgi_batch_current_max_tokens").set(0.0);

    let backend = SchedulerBackend::new(
        client,
        QueueConfig {
            requires_padding: shard_info.requires_padding,
            block_size: shard_info.block_size.max(1),
            speculate: shard_info.speculate,
            max_batch_total_tokens: limits.max_batch_total_tokens,
            support_chunking: shard_info.support_chunking,
        },
        BatchingConfig {
            waiting_served_ratio: args.waiting_served_ratio,
            max_batch_prefill_tokens: args.max_batch_prefill_tokens,
            max_batch_total_tokens: limits.max_batch_total_tokens,
            max_waiting_tokens: args.max_waiting_tokens,
            max_batch_size: args.max_batch_size,
            support_chunking: shard_info.support_chunking,
        },
    );
    let validation = Validation::new(
        ValidationConfig {
            max_best_of: args.max_best_of,
            max_stop_sequences: args.max_stop_sequences,
            max_top_n_tokens: args.max_top_n_tokens,
            max_input_length: limits.max_input_tokens,
            max_total_tokens: limits.max_total_tokens,
            disable_grammar_support: args.disable_grammar_support,
        },
        tokenizer.map(|t| TokenizerPool::new(t, args.validation_workers)),
    );
    let infer = Infer::new(
        Arc::new(backend),
        validation,
        args.max_concurrent_requests,
        chat_template,
    );
    let info = Info {
        model_id: args.tokenizer_name.clone(),
        model_sha: None,
        model_pipeline_tag: None,
        max_concurrent_requests: args.max_concurrent_requests,
        max_best_of: args.max_best_of,
        max_stop_sequences: args.max_stop_sequences,
        max_input_tokens: limits.max_input_tokens,
        max_total_tokens: limits.max_total_tokens,
        validation_workers: args.validation_workers,
        max_client_batch_size: args.max_client_batch_size,
        router: "text-generation-router",
        version: crate::VERSION,
        sha: option_env!("VERGEN_GIT_SHA"),
        docker_label: option_env!("DOCKER_LABEL"),
    };
    let state = AppState {
        infer,
        info: Arc::new(info),
        compute_type: std::env::var("COMPUTE_TYPE").unwrap_or_else(|_| "gpu+optimized".into()),
        default_return_full_text: true,
        system_fingerprint: format!(
            "{}-{}",
            crate::VERSION,
            option_env!("DOCKER_LABEL").unwrap_or("native")
        ),
        metrics: handle.clone(),
    };
    let app = http::router(
        state,
        &ServerConfig {
            api_key: args.api_key.clone(),
            cors_allow_origin: args.cors_allow_origin.clone(),
            payload_limit: args.payload_limit,
        },
    );

    let prometheus_addr = listen_addr(&args.hostname, args.prometheus_port);
    match bind_listener(prometheus_addr) {
        Ok(listener) => {
            if let Ok(local) = listener.local_addr() {
                tracing::info!("Prometheus metrics on {local}");
            }
            let app = http::metrics::prometheus_app(handle);
            tokio::spawn(async move {
                let listener = http::server::tuned_listener(listener);
                if let Err(err) = axum::serve(listener, app).await {
                    tracing::error!("Prometheus listener stopped: {err}");
                }
            });
        }
        Err(err) => tracing::warn!("could not bind the Prometheus port {prometheus_addr}: {err}"),
    }
    let addr = listen_addr(&args.hostname, args.port);
    let listener = bind_listener(addr)
        .map_err(|e| RouterError::Webserver(format!("cannot bind {addr}: {e}")))?;
    tracing::info!("Connected");
    let local = listener.local_addr().unwrap_or(addr);
    tracing::info!("Listening on {local}");
    http::server::serve(listener, app).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(extra: &[&str]) -> Args {
        let mut v = vec!["text-generation-router"];
        v.extend_from_slice(extra);
        Args::try_parse_from(v).unwrap()
    }

    #[test]
    fn limits_from_paged_warmup() {
        let l = derive_limits(&args(&[]), (Some(8192), 1023, 1024), false).unwrap();
        assert_eq!(
            l,
            Limits {
                max_input_tokens: 1023,
                max_total_tokens: 1024,
                max_batch_total_tokens: 8192
            }
        );
    }

    #[test]
    fn limits_without_paged_kv() {
        let l = derive_limits(&args(&[]), (None, 1023, 1024), false).unwrap();
        assert_eq!(l.max_batch_total_tokens, 16000);
    }

    #[test]
    fn tgi_cross_check_texts() {
        let e = derive_limits(&args(&[]), (Some(512), 1023, 1024), true).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Argument validation error: Not enough memory to handle max_total_tokens=1024"
        );
        let e = derive_limits(
            &args(&["--max-batch-prefill-tokens", "100"]),
            (Some(8192), 1023, 1024),
            false,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "Argument validation error: `max_batch_prefill_tokens` must be >= `max_input_tokens`. Given: 100 and 1023"
        );
        // With chunking the prefill budget may be below the input limit.
        assert!(derive_limits(
            &args(&["--max-batch-prefill-tokens", "100"]),
            (Some(8192), 1023, 1024),
            true
        )
        .is_ok());
        let e = derive_limits(
            &args(&["--max-batch-prefill-tokens", "9000"]),
            (Some(8192), 1023, 1024),
            true,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "Argument validation error: `max_batch_prefill_tokens` must be <= `max_batch_total_tokens`. Given: 9000 and 8192"
        );
        let e = check_args(&args(&[
            "--max-input-tokens",
            "10",
            "--max-total-tokens",
            "10",
        ]))
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "Argument validation error: `max_input_tokens` must be < `max_total_tokens`"
        );
        let e = check_args(&args(&["--validation-workers", "0"])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Argument validation error: `validation_workers` must be > 0"
        );
    }

    #[test]
    fn hostname_fallback() {
        assert_eq!(listen_addr("not-an-ip", 80).to_string(), "0.0.0.0:80");
        assert_eq!(listen_addr("127.0.0.1", 81).to_string(), "127.0.0.1:81");
    }

    fn somaxconn() -> Option<u32> {
        std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// 300 simultaneous connections, none accepted yet, all complete their handshake:
    /// the accept queue is larger than tokio's default 128.
    #[tokio::test]
    async fn bind_listener_backlog_holds_300_pending_connections() {
        const N: usize = 300;
        match somaxconn() {
            Some(max) if (max as usize) < N => {
                eprintln!("skipping: net.core.somaxconn={max} < {N} caps the backlog");
                return;
            }
            None => {
                eprintln!("skipping: cannot read /proc/sys/net/core/somaxconn");
                return;
            }
            Some(_) => {}
        }
        let listener = bind_listener("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        // Blocking connects on a separate thread; the listener never accepts. A SYN
        // dropped by a full accept queue is retried after 1 s, so it would hit the
        // per-connection timeout.
        let clients = tokio::task::spawn_blocking(move || {
            let start = std::time::Instant::now();
            let mut streams = Vec::with_capacity(N);
            for i in 0..N {
                let s = std::net::TcpStream::connect_timeout(
                    &addr,
                    std::time::Duration::from_millis(500),
                )
                .unwrap_or_else(|e| panic!("connection {i} of {N} failed: {e}"));
                streams.push(s);
            }
            (streams, start.elapsed())
        })
        .await
        .unwrap();
        let (streams, elapsed) = clients;
        assert_eq!(streams.len(), N);
        assert!(
            elapsed < std::time::Duration::from_secs(1),
            "{N} connects took {elapsed:?}"
        );
        drop(listener);
    }

    /// A busy port is still an error with the same io error kind tokio's `bind` gives.
    #[tokio::test]
    async fn bind_listener_busy_port_fails() {
        let first = bind_listener("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = first.local_addr().unwrap();
        let err = bind_listener(addr).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
        let tokio_err = tokio::net::TcpListener::bind(addr).await.unwrap_err();
        assert_eq!(err.to_string(), tokio_err.to_string());
    }

    #[tokio::test]
    async fn bind_listener_ipv6() {
        // Hosts without IPv6 loopback can't bind [::1]; nothing to check there.
        if std::net::TcpListener::bind("[::1]:0").is_err() {
            eprintln!("skipping: no IPv6 loopback");
            return;
        }
        let l = bind_listener("[::1]:0".parse().unwrap()).unwrap();
        assert!(l.local_addr().unwrap().is_ipv6());
    }
}
