//! HTTPS transport: a CA and server certificate made at start, one listener for every API.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;

use crate::Sim;
use crate::http_util::Req;

const MAX_BODY: usize = 16 * 1024 * 1024;

/// TLS material: the CA clients must trust, and the server's rustls config.
pub struct Tls {
    pub ca_pem: String,
    pub config: Arc<rustls::ServerConfig>,
}

impl Tls {
    /// A fresh CA and a server certificate for localhost / 127.0.0.1 / ::1.
    pub fn generate() -> anyhow::Result<Self> {
        let ca = devpki::Ca::new("azure-sim CA")?;
        let leaf = ca.server(&["localhost", "127.0.0.1", "::1"])?;
        let certs = vec![
            CertificateDer::from_pem_slice(leaf.cert.as_bytes())?,
            CertificateDer::from_pem_slice(ca.cert_pem().as_bytes())?,
        ];
        let key = PrivateKeyDer::from_pem_slice(leaf.key.as_bytes())?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certs, key)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Self {
            ca_pem: ca.cert_pem().to_string(),
            config: Arc::new(config),
        })
    }

    pub fn write_ca(&self, dir: &Path) -> std::io::Result<std::path::PathBuf> {
        std::fs::create_dir_all(dir)?;
        let p = dir.join("ca.pem");
        std::fs::write(&p, &self.ca_pem)?;
        Ok(p)
    }
}

/// Serves until the listener fails; each connection on its own task.
pub async fn serve(listener: TcpListener, tls: &Tls, sim: Arc<Sim>) -> anyhow::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.config.clone());
    loop {
        let (tcp, peer) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let sim = sim.clone();
        tokio::spawn(async move {
            let Ok(stream) = acceptor.accept(tcp).await else {
                return;
            };
            let svc = hyper::service::service_fn(move |r| {
                let sim = sim.clone();
                async move {
                    let resp = respond(&sim, r, peer).await;
                    // The loseAnswer fault: fail the exchange, so the connection (or the HTTP/2
                    // stream) is closed without a response.
                    if resp.headers().contains_key(crate::LOSE_ANSWER) {
                        return Err(std::io::Error::other("azure-sim: answer lost on purpose"));
                    }
                    Ok(resp)
                }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

async fn respond(
    sim: &Sim,
    r: hyper::Request<Incoming>,
    _peer: SocketAddr,
) -> hyper::Response<Full<Bytes>> {
    let (parts, body) = r.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return hyper::Response::builder()
                .status(413)
                .body(Full::new(Bytes::from_static(b"request body too large")))
                .expect("static response");
        }
    };
    let query = parts
        .uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let req = Req {
        method: parts.method,
        path: parts.uri.path().to_string(),
        query,
        headers: parts.headers,
        body,
    };
    let resp = sim.handle(req).await;
    let mut b = hyper::Response::builder().status(resp.status);
    if resp.body.is_some() {
        b = b.header("content-type", resp.content_type);
    }
    for (k, v) in &resp.headers {
        b = b.header(k.as_str(), v.as_str());
    }
    b.body(Full::new(resp.body.unwrap_or_default()))
        .unwrap_or_else(|_| hyper::Response::new(Full::new(Bytes::new())))
}
