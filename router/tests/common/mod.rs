//! Shared helpers of the integration tests: start the router binary, talk HTTP and SSE.

#![allow(dead_code)]

pub mod fake_shard;

use futures::StreamExt;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Writes the tiny Llama test model (tokenizer, ChatML template, weights) into `dir`.
pub fn write_tiny_model(dir: &Path) -> PathBuf {
    let model = dir.join("llama");
    test_models::write_model(
        &model,
        &test_models::TinyModel::new(test_models::Arch::Llama),
    )
    .expect("write tiny model");
    model
}

/// A router process, killed when dropped.
pub struct RouterProcess {
    child: Child,
    pub port: u16,
    pub prometheus_port: u16,
    pub base: String,
}

impl Drop for RouterProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl RouterProcess {
    /// Starts the router against `master_socket` on ports the OS picks (no races between
    /// parallel tests); returns once it logs that it listens, i.e. once warmup is done.
    pub async fn start(master_socket: &Path, tokenizer: &Path, extra: &[&str]) -> RouterProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_text-generation-router"))
            .arg("--master-shard-uds-path")
            .arg(master_socket)
            .arg("--tokenizer-name")
            .arg(tokenizer)
            .args([
                "--hostname",
                "127.0.0.1",
                "--port",
                "0",
                "--prometheus-port",
                "0",
                "--json-output",
            ])
            .args(extra)
            .env("LOG_LEVEL", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn router");
        let stdout = child.stdout.take().expect("router stdout");
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, u16)>();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let Ok(v) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                let message = v["message"].as_str().unwrap_or_default();
                if v["level"] == "ERROR" || v["level"] == "WARN" {
                    eprintln!("router: {message}");
                }
                for prefix in ["Listening on ", "Prometheus metrics on "] {
                    if let Some(addr) = message.strip_prefix(prefix) {
                        if let Some(port) = addr.rsplit(':').next().and_then(|p| p.parse().ok()) {
                            let _ = tx.send((prefix.to_string(), port));
                        }
                    }
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(180);
        let (mut port, mut prometheus_port) = (None, None);
        while port.is_none() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("router exited during startup: {status}");
            }
            assert!(Instant::now() < deadline, "router did not start listening");
            match tokio::time::timeout(Duration::from_millis(100), rx.recv()).await {
                Ok(Some((kind, p))) if kind.starts_with("Listening") => port = Some(p),
                Ok(Some((_, p))) => prometheus_port = Some(p),
                _ => {}
            }
        }
        let port = port.unwrap_or_default();
        RouterProcess {
            child,
            port,
            prometheus_port: prometheus_port.unwrap_or_default(),
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    /// Sends SIGTERM to the router.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// Waits for the process to exit (up to `timeout`), returning its success.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<bool> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status.success());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    /// Full URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }
}

/// An HTTP client without connection-pool surprises.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client")
}

/// POSTs JSON and returns status and parsed JSON body.
pub async fn post_json(c: &reqwest::Client, url: &str, body: &Value) -> (u16, Value) {
    let r = c.post(url).json(body).send().await.expect("send");
    let status = r.status().as_u16();
    let text = r.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// POSTs and collects every SSE `data:` payload until the stream ends.
pub async fn post_sse(c: &reqwest::Client, url: &str, body: &Value) -> (u16, Vec<String>) {
    let r = c.post(url).json(body).send().await.expect("send");
    let status = r.status().as_u16();
    let mut events = Vec::new();
    let mut buffer = String::new();
    let mut stream = r.bytes_stream();
    while let Some(chunk) = stream.next().await {
        buffer.push_str(&String::from_utf8_lossy(&chunk.expect("chunk")));
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            let event = event.trim_end_matches('\n');
            if let Some(data) = event.strip_prefix("data:") {
                events.push(data.to_string());
            } else {
                assert!(event.starts_with(':'), "bad SSE framing: {event:?}");
            }
        }
    }
    assert!(buffer.is_empty(), "trailing bytes: {buffer:?}");
    (status, events)
}

/// Parses `name{labels} value` lines of the Prometheus text format.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.split(['{', ' ']).next() == Some(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Value of the series whose name and labels are exactly `series` (e.g. `a{b="c"}`).
pub fn series(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// GET `/metrics` text.
pub async fn metrics_text(c: &reqwest::Client, router: &RouterProcess) -> String {
    c.get(router.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}
