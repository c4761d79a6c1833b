//! Starting, attaching to and stopping etcd + kube-apiserver.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::process::Managed;
use crate::{Assets, Error, Result, io_err};

/// How to start a control plane.
#[derive(Debug, Clone)]
pub struct StartOptions {
    /// Keep every file (certificates, kubeconfig, etcd data, logs) here instead of a temporary
    /// directory that is removed at teardown.
    pub dir: Option<PathBuf>,
    /// Binaries to run; located with [`Assets::locate`] when `None`.
    pub assets: Option<Assets>,
    /// How long to wait for `/readyz`.
    pub ready_timeout: Duration,
    /// More kube-apiserver flags, e.g. `--feature-gates=WatchList=false` to stand in for an
    /// older API server.
    pub extra_apiserver_args: Vec<String>,
}

impl Default for StartOptions {
    fn default() -> Self {
        Self {
            dir: None,
            assets: None,
            ready_timeout: Duration::from_secs(120),
            extra_apiserver_args: Vec::new(),
        }
    }
}

enum Workdir {
    Temp(tempfile::TempDir),
    Kept(PathBuf),
}

impl Workdir {
    fn path(&self) -> &Path {
        match self {
            Workdir::Temp(t) => t.path(),
            Workdir::Kept(p) => p,
        }
    }
}

/// A running (or attached) kube-apiserver + etcd.
pub struct ControlPlane {
    kubeconfig_path: PathBuf,
    kubeconfig: Kubeconfig,
    server: String,
    // Stopped in reverse start order: the API server before etcd.
    processes: Mutex<Vec<Managed>>,
    workdir: Option<Workdir>,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("server", &self.server)
            .field("kubeconfig", &self.kubeconfig_path)
            .finish_non_exhaustive()
    }
}

const KUBECONFIG_FILE: &str = "kubeconfig";

impl ControlPlane {
    /// Starts etcd and kube-apiserver on free loopback ports and waits until the API server is
    /// ready. Retries with fresh ports if a port was taken between choosing and binding it.
    pub async fn start(opts: StartOptions) -> Result<Self> {
        let assets = match &opts.assets {
            Some(a) => a.clone(),
            None => Assets::locate()?,
        };
        let mut last = None;
        for _ in 0..3 {
            match Self::start_once(&opts, &assets).await {
                Ok(cp) => return Ok(cp),
                Err(e @ Error::EarlyExit { .. })
                    if e.to_string().contains("address already in use") =>
                {
                    last = Some(e)
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.expect("at least one attempt"))
    }

    async fn start_once(opts: &StartOptions, assets: &Assets) -> Result<Self> {
        let workdir = match &opts.dir {
            Some(d) => {
                // A kept directory is reused across `testenv up` runs: start from clean etcd data.
                let _ = fs::remove_dir_all(d.join("etcd-data"));
                fs::create_dir_all(d).map_err(io_err(format!("create {}", d.display())))?;
                Workdir::Kept(d.clone())
            }
            None => Workdir::Temp(
                tempfile::Builder::new()
                    .prefix("testenv-")
                    .tempdir()
                    .map_err(io_err("create temporary directory"))?,
            ),
        };
        let dir = workdir.path().to_path_buf();
        let [etcd_client, etcd_peer, api_port] = free_ports()?;

        let ca = devpki::Ca::new("testenv-ca")?;
        let serving = ca.server(&["localhost", "127.0.0.1"])?;
        let admin = ca.client("testenv-admin", &["system:masters"])?;
        let (sa_key, sa_pub) = devpki::signing_key()?;
        let write = |name: &str, body: &str| -> Result<PathBuf> {
            let p = dir.join(name);
            write_private(&p, body)?;
            Ok(p)
        };
        let ca_file = write("ca.crt", ca.cert_pem())?;
        let tls_cert = write("apiserver.crt", &serving.cert)?;
        let tls_key = write("apiserver.key", &serving.key)?;
        let sa_key_file = write("sa.key", &sa_key)?;
        let sa_pub_file = write("sa.pub", &sa_pub)?;

        let mut processes = Vec::new();
        let etcd_url = format!("http://127.0.0.1:{etcd_client}");
        let mut etcd = Command::new(&assets.etcd);
        etcd.arg(format!("--data-dir={}", dir.join("etcd-data").display()))
            .arg(format!("--listen-client-urls={etcd_url}"))
            .arg(format!("--advertise-client-urls={etcd_url}"))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{etcd_peer}"))
            .arg(format!(
                "--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}"
            ))
            .arg(format!(
                "--initial-cluster=default=http://127.0.0.1:{etcd_peer}"
            ))
            .arg("--unsafe-no-fsync=true")
            .arg("--log-level=warn");
        processes.push(spawn_logged("etcd", etcd, &dir)?);
        wait_etcd(&mut processes[0], etcd_client, &dir, opts.ready_timeout)?;

        let server = format!("https://127.0.0.1:{api_port}");
        // The same flags controller-runtime's envtest uses, so behaviour matches what operator
        // authors expect from their own envtest suites.
        let mut api = Command::new(&assets.kube_apiserver);
        api.arg(format!("--etcd-servers={etcd_url}"))
            .arg("--advertise-address=127.0.0.1")
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--secure-port={api_port}"))
            .arg(format!("--cert-dir={}", dir.join("certs").display()))
            .arg(format!("--tls-cert-file={}", tls_cert.display()))
            .arg(format!("--tls-private-key-file={}", tls_key.display()))
            .arg(format!("--client-ca-file={}", ca_file.display()))
            .arg("--authorization-mode=RBAC")
            .arg("--service-cluster-ip-range=10.0.0.0/24")
            .arg("--allow-privileged=true")
            .arg("--disable-admission-plugins=ServiceAccount")
            .arg(format!("--service-account-issuer={server}"))
            .arg(format!(
                "--service-account-key-file={}",
                sa_pub_file.display()
            ))
            .arg(format!(
                "--service-account-signing-key-file={}",
                sa_key_file.display()
            ))
            // 1.37 refuses a loopback advertise address in the endpoint reconciler; a single
            // API server with no Service traffic needs no `kubernetes` Endpoints anyway.
            .arg("--endpoint-reconciler-type=none")
            .arg("--profiling=false")
            .arg("--v=1")
            .args(&opts.extra_apiserver_args);
        processes.push(spawn_logged("kube-apiserver", api, &dir)?);

        let kubeconfig_path = dir.join(KUBECONFIG_FILE);
        let yaml = kubeconfig_yaml(&server, ca.cert_pem(), &admin);
        write_private(&kubeconfig_path, &yaml)?;
        let kubeconfig =
            Kubeconfig::from_yaml(&yaml).map_err(|e| Error::Kubeconfig(e.to_string()))?;
        let cp = Self {
            kubeconfig_path,
            kubeconfig,
            server,
            processes: Mutex::new(processes),
            workdir: Some(workdir),
        };
        cp.wait_ready(opts.ready_timeout).await?;
        Ok(cp)
    }

    /// Uses a control plane that someone else runs, described by a kubeconfig file.
    pub fn attach(kubeconfig_path: PathBuf) -> Result<Self> {
        let kubeconfig = Kubeconfig::read_from(&kubeconfig_path)
            .map_err(|e| Error::Kubeconfig(format!("{}: {e}", kubeconfig_path.display())))?;
        let server = kubeconfig
            .clusters
            .first()
            .and_then(|c| c.cluster.as_ref())
            .and_then(|c| c.server.clone())
            .ok_or_else(|| Error::Kubeconfig("no cluster server in kubeconfig".into()))?;
        Ok(Self {
            kubeconfig_path,
            kubeconfig,
            server,
            processes: Mutex::new(Vec::new()),
            workdir: None,
        })
    }

    /// The API server URL, e.g. `https://127.0.0.1:41234`.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// A kubeconfig file with the admin identity, usable by kubectl, helm and the operator.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig_path
    }

    /// Process ids of etcd and kube-apiserver (empty when attached).
    pub fn pids(&self) -> Vec<(&'static str, u32)> {
        self.processes
            .lock()
            .map(|p| {
                p.iter()
                    .filter_map(|m| m.id().map(|id| (m.name, id)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The kube-rs configuration of the admin identity (member of `system:masters`).
    pub async fn config(&self) -> Result<kube::Config> {
        kube::Config::from_custom_kubeconfig(self.kubeconfig.clone(), &KubeConfigOptions::default())
            .await
            .map_err(|e| Error::Kubeconfig(e.to_string()))
    }

    /// A client with the admin identity. Create one per test: a client is bound to the tokio
    /// runtime it was first used on.
    pub async fn client(&self) -> Result<kube::Client> {
        Ok(kube::Client::try_from(self.config().await?)?)
    }

    /// A client that impersonates `user` (with `groups`), e.g. a service account, so RBAC can be
    /// tested without minting credentials.
    pub async fn client_as(&self, user: &str, groups: &[&str]) -> Result<kube::Client> {
        let mut config = self.config().await?;
        config.auth_info.impersonate = Some(user.to_string());
        config.auth_info.impersonate_groups = Some(groups.iter().map(|g| g.to_string()).collect());
        Ok(kube::Client::try_from(config)?)
    }

    /// A client that acts as service account `namespace/name`, as the API server would see a pod
    /// running under it.
    pub async fn client_as_service_account(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<kube::Client> {
        let user = format!("system:serviceaccount:{namespace}:{name}");
        let ns_group = format!("system:serviceaccounts:{namespace}");
        self.client_as(
            &user,
            &["system:serviceaccounts", &ns_group, "system:authenticated"],
        )
        .await
    }

    async fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let client = self.client().await?;
        let deadline = Instant::now() + timeout;
        loop {
            self.check_alive()?;
            let req = http::Request::get("/readyz")
                .body(Vec::new())
                .expect("static request");
            if let Ok(body) = client.request_text(req).await
                && body.trim() == "ok"
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::NotReady {
                    what: "kube-apiserver",
                    seconds: timeout.as_secs(),
                    log_tail: self.log_tail("kube-apiserver"),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn check_alive(&self) -> Result<()> {
        let mut procs = self.processes.lock().expect("process lock");
        for p in procs.iter_mut() {
            if let Some(status) = p.try_status() {
                return Err(Error::EarlyExit {
                    process: p.name,
                    status: status.to_string(),
                    log_tail: self.log_tail(p.name),
                });
            }
        }
        Ok(())
    }

    fn log_tail(&self, name: &str) -> String {
        self.workdir
            .as_ref()
            .map(|w| tail(&w.path().join(format!("{name}.log"))))
            .unwrap_or_default()
    }

    /// Stops kube-apiserver, then etcd, and removes a temporary work directory.
    pub fn stop(&mut self) {
        if let Ok(mut procs) = self.processes.lock() {
            while let Some(mut p) = procs.pop() {
                p.stop(Duration::from_secs(5));
            }
        }
        self.workdir.take();
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_ports<const N: usize>() -> Result<[u16; N]> {
    // Hold every listener until all ports are chosen so the same port is never handed out twice.
    let listeners = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").map_err(io_err("bind a loopback port")))
        .collect::<Result<Vec<_>>>()?;
    let mut ports = [0u16; N];
    for (i, l) in listeners.iter().enumerate() {
        ports[i] = l.local_addr().map_err(io_err("read local address"))?.port();
    }
    Ok(ports)
}

fn write_private(path: &Path, body: &str) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err(format!("write {}", path.display())))?;
    f.write_all(body.as_bytes())
        .map_err(io_err(format!("write {}", path.display())))
}

fn spawn_logged(name: &'static str, mut cmd: Command, dir: &Path) -> Result<Managed> {
    let log_path = dir.join(format!("{name}.log"));
    let log =
        fs::File::create(&log_path).map_err(io_err(format!("create {}", log_path.display())))?;
    let log2 = log.try_clone().map_err(io_err("clone log handle"))?;
    cmd.stdin(Stdio::null()).stdout(log).stderr(log2);
    Managed::spawn(name, cmd).map_err(io_err(format!("start {name}")))
}

fn wait_etcd(etcd: &mut Managed, port: u16, dir: &Path, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = etcd.try_status() {
            return Err(Error::EarlyExit {
                process: "etcd",
                status: status.to_string(),
                log_tail: tail(&dir.join("etcd.log")),
            });
        }
        if etcd_healthy(port) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::NotReady {
                what: "etcd",
                seconds: timeout.as_secs(),
                log_tail: tail(&dir.join("etcd.log")),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn etcd_healthy(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.starts_with("HTTP/1.0 200") || buf.starts_with("HTTP/1.1 200")
}

fn tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

fn kubeconfig_yaml(server: &str, ca_pem: &str, admin: &devpki::Pem) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: testenv
  cluster:
    server: {server}
    certificate-authority-data: {ca}
users:
- name: testenv-admin
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
contexts:
- name: testenv
  context:
    cluster: testenv
    user: testenv-admin
    namespace: default
current-context: testenv
",
        ca = b64(ca_pem),
        cert = b64(&admin.cert),
        key = b64(&admin.key),
    )
}
