//! `text-generation-shard serve`: load the model, then serve TGI's v3 gRPC protocol on
//! `<uds-path>-<rank>`. The socket appears only once the model is loaded (the launcher's
//! readiness signal) and is removed on exit; SIGINT/SIGTERM stop the server cleanly.

mod cli;

use candle_core::Device;
use clap::Parser;
use cli::{Cli, Command, DtypeArg, ServeArgs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use text_generation_proto::v3::text_generation_service_server::TextGenerationServiceServer;
use text_generation_shard::engine::{Engine, EngineConfig, KvBudget};
use text_generation_shard::models::{load_model, LoadOptions};
use text_generation_shard::parallel::{Backend, Comm, CpuCommunicator, SingleProcess};
use text_generation_shard::server::ShardService;
use text_generation_shard::weights::quantize::LoadQuantization;
use text_generation_shard::ShardError;

fn init_logging(args: &ServeArgs) {
    let level = args.logger_level.to_lowercase();
    let filter =
        tracing_subscriber::EnvFilter::try_new(format!("text_generation_shard={level},warn"))
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if args.json_output {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}

/// Ask the kernel to SIGTERM this shard when its parent (the launcher) dies, so a launcher
/// killed with SIGKILL leaves no orphan shard holding a GPU or a socket.
fn die_with_parent() {
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes plain integers and touches no memory of ours.
    unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGTERM as libc::c_ulong,
            0,
            0,
            0,
        );
    }
}

fn main() {
    die_with_parent();
    let cli = Cli::parse();
    let Command::Serve(args) = cli.command;
    init_logging(&args);
    // Fix the worker-thread count once: candle otherwise re-reads /proc/cpuinfo on every op
    // when sysfs lacks cpu_capacity (common on VMs).
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let n = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
    if let Err(e) = run(args) {
        tracing::error!("{e}");
        eprintln!("Error: {e}");
        std::process::exit(1);
    }
}

/// The communicator between the ranks of one model ([`Backend::select`]); the ranks meet
/// next to their sockets (`<uds-path>-comm/`).
fn communicator(args: &ServeArgs, world_size: usize, device: &Device) -> Result<Comm, ShardError> {
    let backend = Backend::select(
        device.is_cuda(),
        args.sharded,
        world_size,
        cfg!(feature = "nccl"),
    )?;
    let dir = CpuCommunicator::rendezvous_dir(std::path::Path::new(&args.uds_path));
    let timeout = Duration::from_secs(args.rendezvous_timeout);
    tracing::info!(
        backend = backend.name(),
        rank = args.rank,
        world_size,
        "tensor-parallel communicator"
    );
    match backend {
        Backend::Single => Ok(Arc::new(SingleProcess)),
        Backend::Cpu => {
            tracing::info!(rank = args.rank, world_size, dir = %dir.display(), "joining the other shards");
            let comm = CpuCommunicator::connect(args.rank, world_size, &dir, timeout)?;
            Ok(Arc::new(comm))
        }
        Backend::Nccl => nccl(args.rank, world_size, device, &dir, timeout),
    }
}

#[cfg(feature = "nccl")]
fn nccl(
    rank: usize,
    world_size: usize,
    device: &Device,
    dir: &std::path::Path,
    timeout: Duration,
) -> Result<Comm, ShardError> {
    use text_generation_shard::parallel::NcclCommunicator;
    let comm = NcclCommunicator::connect(rank, world_size, device, dir, timeout)?;
    Ok(Arc::new(comm))
}

/// Never chosen without the feature ([`Backend::select`] only picks NCCL when it is built).
#[cfg(not(feature = "nccl"))]
fn nccl(
    _rank: usize,
    _world_size: usize,
    _device: &Device,
    _dir: &std::path::Path,
    _timeout: Duration,
) -> Result<Comm, ShardError> {
    Err(ShardError::InvalidArgument(
        "this binary was built without the NCCL communicator: build with `--features nccl`".into(),
    ))
}

fn run(args: ServeArgs) -> Result<(), ShardError> {
    let quantize = args
        .quantize
        .as_deref()
        .map(LoadQuantization::parse)
        .transpose()?;
    if args.speculate.unwrap_or(0) > 0 {
        return Err(ShardError::InvalidConfig(
            "--speculate is not supported yet".into(),
        ));
    }
    let world_size = if args.sharded {
        args.world_size.max(1)
    } else {
        if args.world_size > 1 {
            tracing::warn!(
                world_size = args.world_size,
                "WORLD_SIZE is ignored without --sharded: serving the whole model on this rank"
            );
        }
        1
    };
    if args.rank >= world_size {
        return Err(ShardError::InvalidConfig(format!(
            "RANK {} is not below WORLD_SIZE {world_size}",
            args.rank
        )));
    }
    let dtype = args.dtype.map(|d| match d {
        DtypeArg::Float16 => candle_core::DType::F16,
        DtypeArg::Bfloat16 => candle_core::DType::BF16,
        DtypeArg::Float32 => candle_core::DType::F32,
    });
    let started = std::time::Instant::now();
    let device = text_generation_shard::device::select_device(args.rank)?;
    // A CPU forward runs while it is launched, so running ahead would only delay answers.
    let run_ahead = args.run_ahead && device.is_cuda() && world_size == 1;
    let comm = communicator(&args, world_size, &device)?;
    let opts = LoadOptions {
        dtype,
        device,
        comm,
        quantize,
    };
    let loaded = load_model(&args.model_id, &opts)?;
    tracing::info!(model = %args.model_id.display(), elapsed_ms = started.elapsed().as_millis() as u64, "model loaded");
    let kv_budget = match args.max_batch_total_tokens {
        Some(n) => KvBudget::Tokens(n),
        None if cfg!(feature = "cuda") => KvBudget::MemoryFraction(args.cuda_memory_fraction),
        None => KvBudget::MemoryFraction(args.kv_cache_memory_fraction),
    };
    let engine = Engine::new(
        loaded,
        EngineConfig {
            kv_budget,
            max_input_tokens: args.max_input_tokens,
            rank: args.rank,
            world_size,
            // TGI: `0` anywhere in the list turns graphs off.
            cuda_graphs: if args.cuda_graphs.contains(&0) {
                Vec::new()
            } else {
                args.cuda_graphs.clone()
            },
            run_ahead,
        },
    );
    let urls = (0..world_size)
        .map(|r| format!("unix://{}-{r}", args.uds_path))
        .collect();
    let socket = PathBuf::from(format!("{}-{}", args.uds_path, args.rank));
    // One async thread: the engine runs on a blocking thread, and the server only moves small
    // messages to and from it; without worker hand-offs a gRPC round trip over the socket
    // took 136 us instead of 159 us (median, 2-core machine).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| ShardError::Io {
            context: "starting the async runtime".into(),
            source,
        })?;
    let result = runtime.block_on(serve(ShardService::new(engine, urls), &socket));
    let _ = std::fs::remove_file(&socket);
    result
}

async fn serve(service: ShardService, socket: &std::path::Path) -> Result<(), ShardError> {
    let listener = bind_listening(socket)?;
    tracing::info!(socket = %socket.display(), "server started");
    let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
    let fatal = service.fatal_signal();
    let failed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let failed_flag = failed.clone();
    let stop = async move {
        tokio::select! {
            _ = shutdown_signal() => {}
            _ = fatal.notified() => {
                tracing::error!("lost contact with another shard; stopping");
                failed_flag.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
    };
    tonic::transport::Server::builder()
        .add_service(
            TextGenerationServiceServer::new(service)
                .max_decoding_message_size(i32::MAX as usize)
                .max_encoding_message_size(i32::MAX as usize),
        )
        .serve_with_incoming_shutdown(incoming, stop)
        .await
        .map_err(|e| ShardError::Io {
            context: "serving gRPC".into(),
            source: std::io::Error::other(e),
        })?;
    tracing::info!("server stopped");
    if failed.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(ShardError::Communication(
            "another shard of this model stopped answering".into(),
        ));
    }
    Ok(())
}

/// Binds `socket` so that the path appears only once the socket accepts connections: the
/// launcher, the benchmark and the tests take the path's existence as "ready" (as TGI's
/// launcher does), and a connect between `bind` and `listen` is refused. Binding a sibling
/// name and renaming it into place closes that window.
fn bind_listening(socket: &std::path::Path) -> Result<tokio::net::UnixListener, ShardError> {
    let io = |context: String| move |source| ShardError::Io { context, source };
    let mut staging = socket.as_os_str().to_owned();
    staging.push(".binding");
    let staging = PathBuf::from(staging);
    for stale in [socket, staging.as_path()] {
        if let Err(e) = std::fs::remove_file(stale) {
            if e.kind() != std::io::ErrorKind::NotFound {
                return Err(io(format!("removing the stale {}", stale.display()))(e));
            }
        }
    }
    let listener = tokio::net::UnixListener::bind(&staging)
        .map_err(io(format!("binding {}", staging.display())))?;
    std::fs::rename(&staging, socket).map_err(io(format!(
        "moving {} to {}",
        staging.display(),
        socket.display()
    )))?;
    Ok(listener)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received, stopping"),
        _ = term.recv() => tracing::info!("SIGTERM received, stopping"),
    }
}

#[cfg(test)]
mod tests {
    use super::bind_listening;

    #[tokio::test]
    async fn the_socket_path_appears_listening_and_replaces_a_stale_file() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("s-0");
        std::fs::write(&socket, b"left over by a crashed shard").unwrap();
        let listener = bind_listening(&socket).unwrap();
        // Connecting by the final path reaches the listener, and no staging name is left.
        let client = tokio::net::UnixStream::connect(&socket).await.unwrap();
        let (_server_side, _) = listener.accept().await.unwrap();
        drop(client);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("s-0")]);
    }
}
