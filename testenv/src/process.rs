//! Child processes that never outlive the process that started them.
//!
//! Three layers, because tests end in every possible way:
//! - `Drop` of [`Managed`] stops the child (normal teardown, and unwinding after a panic);
//! - an `atexit` hook stops every child still registered, since a control plane held in a
//!   `static` is never dropped when the test harness exits;
//! - `PR_SET_PDEATHSIG = SIGKILL` kills the children if the parent dies without running either
//!   (SIGKILL, abort). The kernel ties that signal to the *thread* that forked, so every child is
//!   forked from one dedicated thread that lives as long as the process.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

type SpawnRequest = (Command, mpsc::Sender<std::io::Result<Child>>);

static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
static LIVE: Mutex<Vec<u32>> = Mutex::new(Vec::new());

extern "C" fn kill_live_children() {
    let pids = LIVE.lock().map(|l| l.clone()).unwrap_or_default();
    for pid in pids {
        // SAFETY: plain syscall on a pid we spawned; ESRCH for an already-dead child is harmless.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
}

fn spawner() -> &'static Mutex<mpsc::Sender<SpawnRequest>> {
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("testenv-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
                // The sender lives in a static, so this loop only ends with the process; park
                // anyway so the parent-death signal can never fire early.
                loop {
                    std::thread::park();
                }
            })
            .expect("spawn testenv-spawner thread");
        // SAFETY: registering a plain extern "C" fn with atexit.
        unsafe { libc::atexit(kill_live_children) };
        Mutex::new(tx)
    })
}

/// A child process that is stopped when dropped.
#[derive(Debug)]
pub struct Managed {
    pub name: &'static str,
    child: Option<Child>,
}

impl Managed {
    /// Spawns `cmd` from the spawner thread with a parent-death signal.
    pub fn spawn(name: &'static str, mut cmd: Command) -> std::io::Result<Self> {
        let parent = std::process::id() as i32;
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent may have died between fork and prctl.
                if libc::getppid() != parent {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
        let (tx, rx) = mpsc::channel();
        spawner()
            .lock()
            .expect("spawner lock")
            .send((cmd, tx))
            .map_err(|_| std::io::Error::other("spawner thread is gone"))?;
        let child = rx
            .recv()
            .map_err(|_| std::io::Error::other("spawner thread is gone"))??;
        LIVE.lock().expect("live lock").push(child.id());
        Ok(Self {
            name,
            child: Some(child),
        })
    }

    pub fn id(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The exit status if the child has already exited.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// SIGKILL at once (a crash), and reap the child.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then SIGKILL after `grace`; waits for the child so no zombie is left.
    pub fn stop(&mut self, grace: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id();
        if child.try_wait().ok().flatten().is_none() {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(pid as i32, libc::SIGTERM) };
            let deadline = Instant::now() + grace;
            while Instant::now() < deadline {
                if child.try_wait().ok().flatten().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
        }
        let _ = child.wait();
        if let Ok(mut live) = LIVE.lock() {
            live.retain(|p| *p != pid);
        }
    }
}

impl Drop for Managed {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(2));
    }
}
