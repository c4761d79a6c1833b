//! No orphan etcd or kube-apiserver survives the test process, however it ends.
//!
//! The parent test re-runs this binary as a child that starts its own control plane, writes the
//! pids, and then either panics or waits to be SIGKILLed; the parent then checks that the pids are
//! gone.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "TESTENV_TEARDOWN_CHILD";

/// Runs only inside the child process (a no-op in a normal run).
#[tokio::test]
async fn child_starts_control_plane_then_ends() {
    let Ok(mode) = std::env::var(CHILD_ENV) else {
        return;
    };
    let pid_file = std::env::var("TESTENV_TEARDOWN_PIDS").unwrap();
    // A control plane held in a static, as `shared()` does: never dropped at exit.
    let cp = testenv::ControlPlane::start(Default::default())
        .await
        .unwrap();
    let cp: &'static testenv::ControlPlane = Box::leak(Box::new(cp));
    let pids: Vec<String> = cp.pids().iter().map(|(_, p)| p.to_string()).collect();
    assert_eq!(pids.len(), 2);
    std::fs::write(&pid_file, pids.join(" ")).unwrap();
    // Wait until the parent has seen both processes alive.
    let go = format!("{pid_file}.go");
    while !std::path::Path::new(&go).exists() {
        std::thread::sleep(Duration::from_millis(20));
    }
    match mode.as_str() {
        "panic" => panic!("deliberate panic with a live control plane"),
        _ => loop {
            std::thread::sleep(Duration::from_secs(1));
        },
    }
}

fn dead(pid: u32) -> bool {
    // Gone, or a zombie waiting for init to reap it: either way it no longer runs.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

fn run_child(mode: &str, dir: &Path) -> Vec<u32> {
    let pid_file = dir.join("pids");
    // The child's own test report must not mix with ours: it ends in a deliberate failure.
    let log = std::fs::File::create(dir.join("child.log")).unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_starts_control_plane_then_ends",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, mode)
        .env("TESTENV_TEARDOWN_PIDS", &pid_file)
        .env_remove("TESTENV_KUBECONFIG")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !pid_file.exists() {
        assert!(
            Instant::now() < deadline,
            "child never started its control plane"
        );
        if let Some(status) = child.try_wait().unwrap() {
            let log = std::fs::read_to_string(dir.join("child.log")).unwrap_or_default();
            panic!("child exited early: {status}\n{log}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(100));
    let pids: Vec<u32> = std::fs::read_to_string(&pid_file)
        .unwrap()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert!(
        pids.iter().all(|p| !dead(*p)),
        "control plane should be running"
    );
    std::fs::write(dir.join("pids.go"), b"").unwrap();
    if mode == "kill" {
        child.kill().unwrap(); // SIGKILL: no unwinding, no atexit
    }
    let status = child.wait().unwrap();
    assert!(!status.success(), "child should have failed ({mode})");
    pids
}

fn assert_all_gone(pids: &[u32]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !pids.iter().all(|p| dead(*p)) {
        assert!(Instant::now() < deadline, "orphans left running: {pids:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn no_orphans_after_a_panicking_test() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pids = run_child("panic", dir.path());
    assert_all_gone(&pids);
}

#[test]
fn no_orphans_after_sigkill() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pids = run_child("kill", dir.path());
    assert_all_gone(&pids);
}
