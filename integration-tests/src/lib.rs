//! Harness for end-to-end tests that run the real `text-generation-launcher` (which starts the
//! real shard and router) on loopback ports and private socket paths.
//!
//! The binaries are not built here: run `cargo build -p text-generation-launcher -p
//! text-generation-shard -p text-generation-router` with the same profile first (the tests look
//! for them next to the test executable, in `target/<profile>/`, or in `$TGI_BIN_DIR`). Building
//! from inside a test would contend for the cargo lock of the very build running the tests, and
//! would hide which binaries were tested.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod http;
pub mod procs;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Names of the three binaries under test.
pub const LAUNCHER: &str = "text-generation-launcher";
pub const SHARD: &str = "text-generation-shard";
pub const ROUTER: &str = "text-generation-router";

/// Directory holding the three binaries.
pub fn bin_dir() -> PathBuf {
    let dir = match std::env::var_os("TGI_BIN_DIR") {
        Some(d) => PathBuf::from(d),
        None => {
            let exe = std::env::current_exe().expect("test executable path");
            // target/<profile>/deps/<test> -> target/<profile>
            exe.parent()
                .and_then(Path::parent)
                .expect("target directory")
                .to_path_buf()
        }
    };
    for name in [LAUNCHER, SHARD, ROUTER] {
        assert!(
            dir.join(name).is_file(),
            "{} is missing: run `cargo build -p text-generation-launcher -p text-generation-shard -p text-generation-router` \
             with the same profile as the tests before `cargo test -p integration-tests` (or set TGI_BIN_DIR)",
            dir.join(name).display()
        );
    }
    dir
}

/// A free loopback TCP port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Writes the tiny random Llama (byte-level tokenizer, ChatML template) into `dir/llama`.
pub fn tiny_model(dir: &Path) -> PathBuf {
    let model = dir.join("llama");
    test_models::write_model(
        &model,
        &test_models::TinyModel::new(test_models::Arch::Llama),
    )
    .expect("write tiny model");
    model
}

/// The embedded default model, if fetched. Under `CI` a missing model fails the test;
/// elsewhere the test is skipped with a note.
pub fn default_model() -> Option<PathBuf> {
    let path = std::env::var_os("TGI_DEFAULT_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/SmolLM2-135M-Instruct.Q4_1.gguf")
        });
    if path.is_file() {
        return Some(path);
    }
    let msg = format!(
        "default model missing at {}: run scripts/fetch-default-model.sh",
        path.display()
    );
    if std::env::var_os("CI").is_some() {
        panic!("{msg}");
    }
    eprintln!("SKIPPED: {msg}");
    None
}

fn flag_value(args: &[&str], flag: &str) -> Option<u16> {
    let i = args.iter().position(|a| *a == flag)?;
    args.get(i + 1)?.parse().ok()
}

/// A running launcher, SIGKILLed on drop (its children follow through their death signal).
pub struct Launcher {
    child: Child,
    pub port: u16,
    pub prometheus_port: u16,
    /// Base of the shard sockets (`<base>-<rank>`).
    pub uds_base: PathBuf,
    /// Private directory whose path appears on every child's command line.
    pub dir: tempfile::TempDir,
    output: Arc<Mutex<String>>,
    status: Option<ExitStatus>,
}

impl Launcher {
    /// Starts the launcher with `args` plus private ports and socket paths.
    pub fn start(args: &[&str]) -> Launcher {
        Self::start_with(args, |_, _| {})
    }

    /// As `start`, with a hook to adjust the command (env, …) that also gets the socket base.
    /// `--hostname`, `--port`, `--prometheus-port`, `--master-port` and `--shard-uds-path` are
    /// added unless `args` has them.
    pub fn start_with(args: &[&str], adjust: impl FnOnce(&mut Command, &Path)) -> Launcher {
        let dir = tempfile::Builder::new()
            .prefix("tgi-it-")
            .tempdir()
            .expect("temp dir");
        let port = free_port();
        let prometheus_port = free_port();
        let master_port = free_port();
        let uds_base = dir.path().join("tgi");
        let mut cmd = Command::new(bin_dir().join(LAUNCHER));
        let uds = uds_base.to_string_lossy().into_owned();
        for (flag, value) in [
            ("--hostname", "127.0.0.1".to_string()),
            ("--port", port.to_string()),
            ("--prometheus-port", prometheus_port.to_string()),
            ("--master-port", master_port.to_string()),
            ("--shard-uds-path", uds),
        ] {
            if !args.contains(&flag) {
                cmd.args([flag, &value]);
            }
        }
        let port = flag_value(args, "--port").unwrap_or(port);
        cmd.args(args)
            .env("LOG_LEVEL", "info")
            .env_remove("HOSTNAME")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        adjust(&mut cmd, &uds_base);
        let mut child = cmd.spawn().expect("spawn the launcher");
        let output = Arc::new(Mutex::new(String::new()));
        let verbose = std::env::var_os("TGI_TEST_VERBOSE").is_some();
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let output = output.clone();
            std::thread::spawn(move || {
                use std::io::BufRead;
                let reader = std::io::BufReader::new(stream);
                for line in reader.lines().map_while(Result::ok) {
                    if verbose {
                        eprintln!("[launcher] {line}");
                    }
                    let mut o = output.lock().unwrap();
                    o.push_str(&line);
                    o.push('\n');
                }
            });
        }
        Launcher {
            child,
            port,
            prometheus_port,
            uds_base,
            dir,
            output,
            status: None,
        }
    }

    /// The launcher's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Everything the launcher wrote so far (stdout and stderr).
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// The exit status once the launcher has exited.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("try_wait");
        }
        self.status
    }

    /// Waits until `/health` answers 200 (the router binds only after warmup). Panics with
    /// the launcher's output if it exits first or `timeout` passes.
    pub fn wait_ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status() {
                panic!(
                    "launcher exited during startup ({status}):\n{}",
                    self.output()
                );
            }
            if http::get_status_blocking(self.port, "/health") == Some(200) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "launcher not ready within {timeout:?}:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for the launcher to exit; None if it is still running after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status() {
                // Let the output readers drain.
                std::thread::sleep(Duration::from_millis(100));
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends `signal` to the launcher.
    pub fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.pid() as i32), signal).expect("signal the launcher");
    }

    /// Shard sockets `<base>-<rank>` that exist now.
    pub fn sockets(&self) -> Vec<PathBuf> {
        let prefix = format!(
            "{}-",
            self.uds_base
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        );
        std::fs::read_dir(self.dir.path())
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.path())
                    .filter(|p| {
                        p.file_name()
                            .and_then(|n| n.to_str()?.strip_prefix(&prefix).map(str::to_string))
                            .is_some_and(|rank| {
                                !rank.is_empty() && rank.chars().all(|c| c.is_ascii_digit())
                            })
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every Unix socket anywhere under the private directory (shard sockets and the shards'
    /// rendezvous sockets).
    pub fn all_sockets(&self) -> Vec<PathBuf> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            use std::os::unix::fs::FileTypeExt;
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                match e.file_type() {
                    Ok(t) if t.is_dir() => walk(&e.path(), out),
                    Ok(t) if t.is_socket() => out.push(e.path()),
                    _ => {}
                }
            }
        }
        let mut out = Vec::new();
        walk(self.dir.path(), &mut out);
        out
    }

    /// After the launcher exited: no process it started is alive.
    pub fn assert_no_process_left(&self, children: &[procs::ProcInfo]) {
        let deadline = Instant::now() + Duration::from_secs(5);
        let marker = self.dir.path().to_string_lossy().into_owned();
        loop {
            let alive: Vec<_> = children.iter().filter(|c| c.is_alive()).collect();
            let by_marker = procs::with_cmdline_containing(&marker);
            if alive.is_empty() && by_marker.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "processes left behind: {alive:?} {by_marker:?}\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// After the launcher exited: no process it started is alive (by pid and start time, and
    /// by the private path on every child's command line) and no socket is left.
    pub fn assert_nothing_left(&self, children: &[procs::ProcInfo]) {
        let deadline = Instant::now() + Duration::from_secs(2);
        let marker = self.dir.path().to_string_lossy().into_owned();
        loop {
            let alive: Vec<_> = children.iter().filter(|c| c.is_alive()).collect();
            let by_marker = procs::with_cmdline_containing(&marker);
            if alive.is_empty() && by_marker.is_empty() && self.all_sockets().is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "processes left behind: {alive:?} {by_marker:?}, sockets: {:?}\n{}",
                self.all_sockets(),
                self.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            self.all_sockets().is_empty() && self.sockets().is_empty(),
            "sockets left behind: {:?} {:?}",
            self.all_sockets(),
            self.sockets()
        );
    }
}

impl Drop for Launcher {
    fn drop(&mut self) {
        if self.try_status().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
