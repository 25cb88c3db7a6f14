//! The real serving stack for a run: `text-generation-launcher` (which starts the shard and the
//! router) on loopback ports and a private socket directory, stopped when dropped.

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use text_generation_benchmark::error::BenchError;

/// Executable name of the launcher.
const LAUNCHER: &str = "text-generation-launcher";

/// A running launcher and where to reach what it started.
pub struct Stack {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub base_url: String,
    /// Socket base passed as `--shard-uds-path` (rank `r` listens on `<base>-<r>`).
    uds_base: PathBuf,
    log: PathBuf,
    // Holds the sockets and the log; removed after the launcher is stopped.
    _dir: tempfile::TempDir,
}

/// The launcher next to this executable (a cargo target dir or an install prefix), else on PATH.
fn launcher_binary() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join(LAUNCHER)))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(LAUNCHER))
}

/// A free loopback TCP port (released before the launcher binds it; a race is unlikely).
fn free_port() -> Result<u16, BenchError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| BenchError::Launch(format!("no free port: {e}")))
}

/// True when `args` sets `flag` (as `--flag value` or `--flag=value`).
fn has_flag(args: &[String], flag: &str) -> bool {
    args.iter()
        .any(|a| a == flag || a.starts_with(&format!("{flag}=")))
}

impl Stack {
    /// Starts the launcher on `model` with `extra` arguments; ports, hostname and socket path
    /// are private unless `extra` sets them, and `defaults` (flag, value) apply unless `extra`
    /// sets the flag (the launcher rejects a flag given twice).
    /// The launcher's output goes to `log`, or to a file in the private directory.
    pub fn start(
        model: &str,
        extra: &[String],
        defaults: &[(&str, String)],
        log: Option<&Path>,
    ) -> Result<Stack, BenchError> {
        let dir = tempfile::Builder::new()
            .prefix("tgi-router-bench-")
            .tempdir()
            .map_err(|e| BenchError::Launch(e.to_string()))?;
        let uds_base = dir.path().join("tgi");
        let log = log
            .map(Path::to_path_buf)
            .unwrap_or_else(|| dir.path().join("launcher.log"));
        let port = free_port()?;
        let mut args: Vec<String> = vec!["--model-id".into(), model.into()];
        let mut own: Vec<(&str, String)> = vec![
            ("--hostname", "127.0.0.1".into()),
            ("--port", port.to_string()),
            ("--prometheus-port", free_port()?.to_string()),
            ("--master-port", free_port()?.to_string()),
            ("--shard-uds-path", uds_base.to_string_lossy().into_owned()),
        ];
        own.extend(defaults.iter().cloned());
        for (flag, value) in own {
            if !has_flag(extra, flag) {
                args.extend([flag.to_string(), value]);
            }
        }
        args.extend(extra.iter().cloned());
        let port = flag_value(extra, "--port").unwrap_or(port);
        let out = std::fs::File::create(&log).map_err(|e| BenchError::Launch(e.to_string()))?;
        let err = out
            .try_clone()
            .map_err(|e| BenchError::Launch(e.to_string()))?;
        eprintln!(
            "starting {} {}",
            launcher_binary().display(),
            args.join(" ")
        );
        let child = Command::new(launcher_binary())
            .args(&args)
            // The launcher reads its flags from the environment too; HOSTNAME is set by shells.
            .env_remove("HOSTNAME")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| BenchError::Launch(format!("{}: {e}", launcher_binary().display())))?;
        Ok(Stack {
            child,
            base_url: format!("http://127.0.0.1:{port}"),
            uds_base,
            log,
            _dir: dir,
        })
    }

    /// Waits until `/health` answers 200 (the router binds only after the shard's warmup).
    pub async fn wait_ready(
        &mut self,
        client: &reqwest::Client,
        timeout: Duration,
    ) -> Result<(), BenchError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(BenchError::Launch(format!(
                    "launcher exited ({status}) before the router was ready; log tail:\n{}",
                    self.log_tail(40)
                )));
            }
            let health = client
                .get(format!("{}/health", self.base_url))
                .timeout(Duration::from_secs(5))
                .send()
                .await;
            if health.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(BenchError::Launch(format!(
                    "router not ready after {timeout:?}; log tail:\n{}",
                    self.log_tail(40)
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Sockets of the shard ranks, in rank order (`<base>-0`, `<base>-1`, … while they exist).
    pub fn shard_sockets(&self) -> Vec<PathBuf> {
        (0..)
            .map(|r| PathBuf::from(format!("{}-{r}", self.uds_base.display())))
            .take_while(|p| p.exists())
            .collect()
    }

    /// The last `n` lines of the launcher's output.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

fn flag_value(args: &[String], flag: &str) -> Option<u16> {
    let eq = format!("{flag}=");
    args.iter()
        .enumerate()
        .find_map(|(i, a)| match a.strip_prefix(&eq) {
            Some(v) => v.parse().ok(),
            None if a == flag => args.get(i + 1)?.parse().ok(),
            None => None,
        })
}

impl Drop for Stack {
    /// SIGTERM first: the launcher then stops the router and the shards and removes their
    /// sockets; SIGKILL if it has not exited after 30 s.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(30);
            while let Ok(None) = self.child.try_wait() {
                if Instant::now() > deadline {
                    let _ = self.child.kill();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_in_both_spellings() {
        let a: Vec<String> = ["--port", "8080", "--max-batch-size=4"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert!(has_flag(&a, "--port") && has_flag(&a, "--max-batch-size"));
        assert!(!has_flag(&a, "--max-batch"));
        assert_eq!(flag_value(&a, "--port"), Some(8080));
        assert_eq!(flag_value(&a, "--max-batch-size"), Some(4));
        assert_eq!(flag_value(&a, "--hostname"), None);
    }
}
