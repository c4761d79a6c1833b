//! A real kube-apiserver + etcd on loopback, for the operator's tests, the demo and benchmarks.
//!
//! Structural schemas, CEL validation, the status subresource, server-side apply, finalizers,
//! watches and RBAC behave in ways no mock reproduces, so every integration test here talks to the
//! real API server. One control plane serves a whole test run: [`shared`] either attaches to the
//! one named by `TESTENV_KUBECONFIG` (what `make test` starts once) or starts one for this process.

mod assets;
mod controlplane;
mod helpers;
mod process;

pub use assets::{Assets, FLOOR_K8S_VERSION, K8S_VERSION, default_cache_dir};
pub use controlplane::{ControlPlane, StartOptions};
pub use helpers::{install_crds, install_crds_from_dir, unique_name};
pub use process::Managed;

use tokio::sync::OnceCell;

/// Errors from starting or using the local control plane.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{binary} not found: {hint}")]
    BinaryNotFound { binary: &'static str, hint: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("certificate generation failed: {0}")]
    Certs(#[from] devpki::Error),
    #[error("{process} exited before becoming ready ({status}); last log lines:\n{log_tail}")]
    EarlyExit {
        process: &'static str,
        status: String,
        log_tail: String,
    },
    #[error("{what} not ready after {seconds}s; last log lines:\n{log_tail}")]
    NotReady {
        what: &'static str,
        seconds: u64,
        log_tail: String,
    },
    #[error("kubeconfig: {0}")]
    Kubeconfig(String),
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("CRD file {path}: {message}")]
    Crd { path: String, message: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

static SHARED: OnceCell<ControlPlane> = OnceCell::const_new();

/// The control plane shared by every test in this process.
///
/// With `TESTENV_KUBECONFIG` set (as `make test` does) it attaches to that running control plane;
/// otherwise it starts one on first use, which is torn down when the process exits — also when a
/// test panics, and even on SIGKILL (the children carry a parent-death signal).
pub async fn shared() -> Result<&'static ControlPlane> {
    SHARED
        .get_or_try_init(|| async {
            match std::env::var_os("TESTENV_KUBECONFIG") {
                Some(path) => ControlPlane::attach(path.into()),
                None => ControlPlane::start(StartOptions::default()).await,
            }
        })
        .await
}
