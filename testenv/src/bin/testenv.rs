//! `testenv`: run the local control plane by hand, for the demo and for scripts.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use testenv::{Assets, ControlPlane, StartOptions};

/// A real kube-apiserver + etcd on loopback (see README, "Local control plane").
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start the control plane, print the kubeconfig path and stay up until SIGTERM/SIGINT.
    Up {
        /// Directory for the kubeconfig, certificates, etcd data, logs and the pid file.
        #[arg(long, default_value = ".local/controlplane")]
        dir: PathBuf,
        /// Install every CRD found in these directories once the API server is ready.
        #[arg(long)]
        crds: Vec<PathBuf>,
        /// Return once the control plane is ready, leaving it running in the background.
        #[arg(long)]
        detach: bool,
    },
    /// Stop a control plane started with `up`.
    Down {
        #[arg(long, default_value = ".local/controlplane")]
        dir: PathBuf,
    },
    /// Start a temporary control plane, run a command with KUBECONFIG and TESTENV_KUBECONFIG
    /// pointing at it, tear it down, and exit with the command's status.
    Exec {
        #[arg(long)]
        crds: Vec<PathBuf>,
        #[arg(required = true, trailing_var_arg = true)]
        command: Vec<String>,
    },
    /// Print where each binary is found.
    Assets,
}

const PID_FILE: &str = "testenv.pid";
const READY_FILE: &str = "testenv.ready";

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("testenv: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new()?;
    match cli.command {
        Cmd::Up { dir, crds, detach } if detach => detach_up(&dir, &crds),
        Cmd::Up { dir, crds, .. } => rt.block_on(up(dir, crds)),
        Cmd::Down { dir } => down(&dir),
        Cmd::Exec { crds, command } => rt.block_on(exec(crds, command)),
        Cmd::Assets => {
            let a = Assets::locate()?;
            println!("kube-apiserver: {}", a.kube_apiserver.display());
            println!("etcd:           {}", a.etcd.display());
            println!("kubectl:        {}", a.kubectl.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn start(dir: Option<PathBuf>, crds: &[PathBuf]) -> anyhow::Result<ControlPlane> {
    let started = Instant::now();
    let cp = ControlPlane::start(StartOptions {
        dir,
        ..Default::default()
    })
    .await
    .context("start control plane")?;
    eprintln!(
        "testenv: control plane ready at {} in {:.1}s",
        cp.server(),
        started.elapsed().as_secs_f64()
    );
    if !crds.is_empty() {
        let client = cp.client().await?;
        for d in crds {
            let names = testenv::install_crds_from_dir(&client, d)
                .await
                .with_context(|| format!("install CRDs from {}", d.display()))?;
            eprintln!(
                "testenv: installed {} CRDs from {}",
                names.len(),
                d.display()
            );
        }
    }
    Ok(cp)
}

async fn up(dir: PathBuf, crds: Vec<PathBuf>) -> anyhow::Result<ExitCode> {
    let dir = absolute(&dir)?;
    std::fs::create_dir_all(&dir)?;
    let _ = std::fs::remove_file(dir.join(READY_FILE));
    std::fs::write(dir.join(PID_FILE), std::process::id().to_string())?;
    let mut cp = start(Some(dir.clone()), &crds).await?;
    println!("{}", cp.kubeconfig_path().display());
    std::fs::write(dir.join(READY_FILE), cp.server())?;
    wait_for_signal().await?;
    eprintln!("testenv: stopping");
    cp.stop();
    let _ = std::fs::remove_file(dir.join(READY_FILE));
    let _ = std::fs::remove_file(dir.join(PID_FILE));
    Ok(ExitCode::SUCCESS)
}

fn detach_up(dir: &Path, crds: &[PathBuf]) -> anyhow::Result<ExitCode> {
    use std::os::unix::process::CommandExt;
    let dir = absolute(dir)?;
    if let Some(pid) = running_pid(&dir) {
        bail!(
            "a control plane is already running from {} (pid {pid}); run `testenv down` first",
            dir.display()
        );
    }
    std::fs::create_dir_all(&dir)?;
    let _ = std::fs::remove_file(dir.join(READY_FILE));
    let log = std::fs::File::create(dir.join("testenv.log"))?;
    let mut cmd = std::process::Command::new(std::env::current_exe()?);
    cmd.arg("up").arg("--dir").arg(&dir);
    for c in crds {
        cmd.arg("--crds").arg(absolute(c)?);
    }
    cmd.stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // SAFETY: setsid is async-signal-safe; a new session detaches it from our terminal.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if dir.join(READY_FILE).exists() {
            println!("{}", dir.join("kubeconfig").display());
            return Ok(ExitCode::SUCCESS);
        }
        if let Some(status) = child.try_wait()? {
            let log = std::fs::read_to_string(dir.join("testenv.log")).unwrap_or_default();
            bail!("control plane exited ({status}):\n{log}");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!(
                "control plane not ready after 180s; see {}",
                dir.join("testenv.log").display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn down(dir: &Path) -> anyhow::Result<ExitCode> {
    let Some(pid) = running_pid(dir) else {
        eprintln!("testenv: no control plane running from {}", dir.display());
        return Ok(ExitCode::SUCCESS);
    };
    // SAFETY: signalling a pid we recorded ourselves.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(30);
    while alive(pid) {
        if Instant::now() > deadline {
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = std::fs::remove_file(dir.join(PID_FILE));
    eprintln!("testenv: stopped (pid {pid})");
    Ok(ExitCode::SUCCESS)
}

async fn exec(crds: Vec<PathBuf>, command: Vec<String>) -> anyhow::Result<ExitCode> {
    let mut cp = start(None, &crds).await?;
    let status = tokio::process::Command::new(&command[0])
        .args(&command[1..])
        .env("KUBECONFIG", cp.kubeconfig_path())
        .env("TESTENV_KUBECONFIG", cp.kubeconfig_path())
        .status()
        .await
        .with_context(|| format!("run {}", command[0]))?;
    cp.stop();
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(c) => ExitCode::from(c.clamp(1, 255) as u8),
        None => ExitCode::FAILURE,
    })
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
    Ok(())
}

fn running_pid(dir: &Path) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(dir.join(PID_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    alive(pid).then_some(pid)
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

fn absolute(p: &Path) -> anyhow::Result<PathBuf> {
    Ok(if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()?.join(p)
    })
}
