//! Failure paths of the process model: a child dying tears the deployment down, the launcher
//! exits non-zero naming it, and nothing (process or socket) is left behind.

use integration_tests::{procs, tiny_model, Launcher};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::time::{Duration, Instant};

const STARTUP: Duration = Duration::from_secs(180);

fn start_tiny(dir: &std::path::Path) -> Launcher {
    let model = tiny_model(dir);
    let mut l = Launcher::start(&[
        "--model-id",
        model.to_str().unwrap(),
        "--max-batch-total-tokens",
        "4096",
    ]);
    l.wait_ready(STARTUP);
    l
}

fn child_named(children: &[procs::ProcInfo], name: &str) -> procs::ProcInfo {
    children
        .iter()
        .find(|p| {
            p.cmdline
                .split(' ')
                .next()
                .is_some_and(|exe| exe.ends_with(name))
        })
        .cloned()
        .unwrap_or_else(|| panic!("no {name} among {children:?}"))
}

#[test]
fn shard_killed_tears_everything_down_within_2s() {
    let dir = tempfile::tempdir().unwrap();
    let mut l = start_tiny(dir.path());
    let children = procs::descendants(l.pid());
    let shard = child_named(&children, "text-generation-shard");
    // Each child leads its own process group.
    assert_eq!(shard.pgid, shard.pid);
    assert_eq!(shard.ppid, l.pid());
    kill(Pid::from_raw(shard.pid as i32), Signal::SIGKILL).unwrap();
    let killed = Instant::now();
    let status = l.wait_exit(Duration::from_secs(2)).unwrap_or_else(|| {
        panic!(
            "launcher still running 2 s after the shard died:\n{}",
            l.output()
        )
    });
    assert!(killed.elapsed() < Duration::from_secs(2));
    assert!(!status.success(), "{status}");
    let out = l.output();
    assert!(
        out.contains("Shard 0 crashed (killed by signal 9 (SIGKILL))"),
        "{out}"
    );
    // The crash report carries the shard's last lines.
    assert!(out.contains("last output lines:"), "{out}");
    l.assert_nothing_left(&children);
}

#[test]
fn router_killed_tears_everything_down() {
    let dir = tempfile::tempdir().unwrap();
    let mut l = start_tiny(dir.path());
    let children = procs::descendants(l.pid());
    let router = child_named(&children, "text-generation-router");
    kill(Pid::from_raw(router.pid as i32), Signal::SIGKILL).unwrap();
    let status = l.wait_exit(Duration::from_secs(5)).unwrap_or_else(|| {
        panic!(
            "launcher still running after the router died:\n{}",
            l.output()
        )
    });
    assert!(!status.success());
    assert!(
        l.output()
            .contains("Webserver Crashed (killed by signal 9 (SIGKILL))"),
        "{}",
        l.output()
    );
    l.assert_nothing_left(&children);
}

#[test]
fn launcher_killed_leaves_no_orphans() {
    let dir = tempfile::tempdir().unwrap();
    let mut l = start_tiny(dir.path());
    let children = procs::descendants(l.pid());
    assert!(children.len() >= 2, "{children:?}");
    // SIGKILL cannot be handled: the children's death signal (SIGTERM) must stop them.
    l.signal(Signal::SIGKILL);
    assert!(l.wait_exit(Duration::from_secs(5)).is_some());
    l.assert_no_process_left(&children);
    // The socket is the shard's to remove on SIGTERM; it sometimes stays when the launcher
    // was SIGKILLed (shard-side). The next launcher on that path replaces it
    // (`stale_socket_is_replaced`).
}

#[test]
fn stale_socket_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let model = model.to_str().unwrap().to_string();
    // A leftover file where the socket goes (a previous run killed hard) must not be taken
    // for readiness: the launcher removes it before starting the shard.
    let mut l = Launcher::start_with(
        &["--model-id", &model, "--max-batch-total-tokens", "4096"],
        |_, base| {
            std::fs::write(format!("{}-0", base.display()), b"stale").unwrap();
        },
    );
    // Had the stale file been taken for readiness, the router would have found no socket and
    // the launcher would have failed here.
    l.wait_ready(STARTUP);
    let children = procs::descendants(l.pid());
    l.signal(Signal::SIGTERM);
    assert!(
        l.wait_exit(Duration::from_secs(30))
            .is_some_and(|s| s.success()),
        "{}",
        l.output()
    );
    l.assert_nothing_left(&children);
}
