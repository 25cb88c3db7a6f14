//! The deployment's life: shards up (ready when their sockets exist), then the router, then a
//! 50 ms supervision loop. Any child exiting tears everything down and the launcher fails
//! naming it; SIGINT/SIGTERM/SIGHUP drain the router, then stop the shards. Every exit path
//! (including early errors, through `Drop`) leaves no child process and no socket behind.

use crate::args::Args;
use crate::binaries;
use crate::derive::Derived;
use crate::error::LauncherError;
use crate::process::{describe, Supervised};
use crate::router;
use crate::shard::{self, Readiness};
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

/// The last termination signal received (0: none).
static SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: std::ffi::c_int) {
    SIGNAL.store(sig, Ordering::SeqCst);
}

/// Routes SIGINT, SIGTERM and SIGHUP to a flag the loops poll (TGI's `ctrlc` with `termination`).
pub fn install_signal_handlers() -> Result<(), LauncherError> {
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { sigaction(signal, &action) }.map_err(|source| LauncherError::Signal {
            context: format!("installing the {signal} handler"),
            source,
        })?;
    }
    Ok(())
}

fn stop_requested() -> bool {
    SIGNAL.load(Ordering::SeqCst) != 0
}

/// Every child of one deployment; tearing it down is idempotent.
struct Deployment {
    shards: Vec<Supervised>,
    router: Option<Supervised>,
    base: String,
    num_shard: usize,
    grace: Duration,
}

impl Deployment {
    /// Router first (it drains in-flight requests), then every shard, then the sockets.
    fn shutdown(&mut self) {
        if let Some(router) = self.router.as_mut() {
            router.terminate(self.grace);
            tracing::info!("Webserver terminated");
        }
        if !self.shards.is_empty() {
            tracing::info!("Shutting down shards");
        }
        // Signal every shard first so they stop in parallel, then wait for each.
        for shard in &mut self.shards {
            shard.request_stop();
        }
        for shard in &mut self.shards {
            shard.terminate(self.grace);
        }
        self.remove_sockets();
    }

    fn remove_sockets(&self) {
        if let Err(e) = shard::remove_all_sockets(&self.base, self.num_shard) {
            tracing::warn!("{e}");
        }
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        // The children are killed by their own Drop; only the sockets are left to clean.
        self.router = None;
        self.shards.clear();
        self.remove_sockets();
    }
}

/// Runs the deployment until a signal (Ok) or a child's exit (Err naming it).
pub fn run(args: &Args, derived: &Derived) -> Result<(), LauncherError> {
    let shard_bin = binaries::find(binaries::SHARD)?;
    let router_bin = binaries::find(binaries::ROUTER)?;
    install_signal_handlers()?;
    let mut deployment = Deployment {
        shards: Vec::with_capacity(derived.num_shard),
        router: None,
        base: args.shard_uds_path.clone(),
        num_shard: derived.num_shard,
        grace: Duration::from_secs(args.graceful_termination_timeout),
    };
    let env = |k: &str| std::env::var(k).ok();
    for rank in 0..derived.num_shard {
        let spec = shard::spec(args, derived, rank, env);
        deployment
            .shards
            .push(shard::spawn(&shard_bin, &spec, &args.shard_uds_path)?);
    }
    match shard::wait_ready(&mut deployment.shards, &args.shard_uds_path, stop_requested) {
        Ok(Readiness::Ready) => {}
        Ok(Readiness::Interrupted) => {
            tracing::info!("Received signal, shutting down");
            deployment.shutdown();
            return Ok(());
        }
        Err(e) => {
            deployment.shutdown();
            return Err(e);
        }
    }
    deployment.router = Some(router::spawn(&router_bin, args, derived)?);
    tracing::info!("Webserver Started");
    let outcome = supervise(&mut deployment);
    deployment.shutdown();
    outcome
}

fn supervise(deployment: &mut Deployment) -> Result<(), LauncherError> {
    loop {
        if stop_requested() {
            tracing::info!("Received signal, shutting down");
            return Ok(());
        }
        for (rank, shard) in deployment.shards.iter_mut().enumerate() {
            if let Some(status) = shard.try_exit() {
                tracing::error!(rank, "Shard {rank} crashed");
                return Err(LauncherError::ShardFailed {
                    rank,
                    status: describe(status),
                    stderr: shard.last_lines(),
                });
            }
        }
        if let Some(router) = deployment.router.as_mut() {
            if let Some(status) = router.try_exit() {
                tracing::error!("Webserver Crashed");
                return Err(LauncherError::WebserverFailed {
                    status: describe(status),
                    output: router.last_lines(),
                });
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
