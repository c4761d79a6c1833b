//! Credentials through azure_identity (tokens only), over our own reqwest client so the extra CA
//! (sovereign clouds, the simulator) and the User-Agent apply to token requests too.

use std::sync::Arc;

use azure_core::credentials::{Secret, TokenCredential};
use azure_core::http::headers::{HeaderName, HeaderValue, Headers};
use azure_core::http::{AsyncRawResponse, Body, ClientOptions, HttpClient, Request, Transport};
use azure_identity::{
    ClientSecretCredential, ClientSecretCredentialOptions, ManagedIdentityCredential,
    ManagedIdentityCredentialOptions, UserAssignedId, WorkloadIdentityCredential,
    WorkloadIdentityCredentialOptions,
};

/// How the operator authenticates to Entra ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CredentialKind {
    /// Workload identity if AZURE_FEDERATED_TOKEN_FILE is set, else client secret if
    /// AZURE_CLIENT_SECRET is set, else managed identity.
    Auto,
    WorkloadIdentity,
    ClientSecret,
    ManagedIdentity,
}

#[derive(Debug, Clone)]
pub struct CredentialConfig {
    pub kind: CredentialKind,
    pub tenant_id: Option<String>,
    pub client_id: Option<String>,
    pub authority_host: String,
}

/// Adapts our reqwest client to azure_core's transport.
#[derive(Debug)]
struct ReqwestTransport(reqwest::Client);

#[async_trait::async_trait]
impl HttpClient for ReqwestTransport {
    async fn execute_request(&self, request: &Request) -> azure_core::Result<AsyncRawResponse> {
        use azure_core::error::{Error, ErrorKind};
        let method = reqwest::Method::from_bytes(request.method().as_str().as_bytes())
            .map_err(|e| Error::with_message(ErrorKind::Other, e.to_string()))?;
        let mut req = self.0.request(method, request.url().as_str());
        for (name, value) in request.headers().iter() {
            req = req.header(name.as_str(), value.as_str());
        }
        let req = match request.body() {
            Body::Bytes(b) => req.body(b.to_vec()),
            _ => {
                return Err(Error::with_message(
                    ErrorKind::Other,
                    "streaming bodies are not used for token requests",
                ));
            }
        };
        let rsp = req
            .send()
            .await
            .map_err(|e| Error::with_message(ErrorKind::Io, e.to_string()))?;
        let status = rsp.status().as_u16();
        let mut headers = Headers::new();
        for (k, v) in rsp.headers() {
            if let Ok(v) = v.to_str() {
                headers.insert(
                    HeaderName::from(k.as_str().to_owned()),
                    HeaderValue::from(v.to_owned()),
                );
            }
        }
        let bytes = rsp
            .bytes()
            .await
            .map_err(|e| Error::with_message(ErrorKind::Io, e.to_string()))?;
        Ok(AsyncRawResponse::from_bytes(status.into(), headers, bytes))
    }
}

fn client_options(http: &reqwest::Client, authority_host: &str) -> ClientOptions {
    let mut cloud = azure_core::cloud::CustomConfiguration::default();
    cloud.authority_host = authority_host.to_string();
    ClientOptions {
        transport: Some(Transport::new(Arc::new(ReqwestTransport(http.clone())))),
        cloud: Some(Arc::new(cloud.into())),
        ..Default::default()
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Build the credential for one tenant. Secrets come from the environment only (never flags,
/// which show in `ps`), and are never logged.
pub fn credential(
    cfg: &CredentialConfig,
    tenant: &str,
    http: &reqwest::Client,
) -> Result<Arc<dyn TokenCredential>, String> {
    let kind = match cfg.kind {
        CredentialKind::Auto if env("AZURE_FEDERATED_TOKEN_FILE").is_some() => {
            CredentialKind::WorkloadIdentity
        }
        CredentialKind::Auto if env("AZURE_CLIENT_SECRET").is_some() => {
            CredentialKind::ClientSecret
        }
        CredentialKind::Auto => CredentialKind::ManagedIdentity,
        k => k,
    };
    let options = client_options(http, &cfg.authority_host);
    let cred: Arc<dyn TokenCredential> = match kind {
        CredentialKind::WorkloadIdentity => {
            let mut o = WorkloadIdentityCredentialOptions::default();
            o.credential_options.client_options = options;
            o.client_id = cfg.client_id.clone();
            o.tenant_id = Some(tenant.to_string());
            WorkloadIdentityCredential::new(Some(o))
                .map_err(|e| format!("workload identity: {e}"))?
        }
        CredentialKind::ClientSecret => {
            let client_id = cfg
                .client_id
                .clone()
                .ok_or("client secret credential: AZURE_CLIENT_ID (--client-id) is not set")?;
            let secret = env("AZURE_CLIENT_SECRET")
                .ok_or("client secret credential: AZURE_CLIENT_SECRET is not set")?;
            let o = ClientSecretCredentialOptions {
                client_options: options,
            };
            ClientSecretCredential::new(tenant, client_id, Secret::new(secret), Some(o))
                .map_err(|e| format!("client secret credential: {e}"))?
        }
        CredentialKind::ManagedIdentity | CredentialKind::Auto => {
            let o = ManagedIdentityCredentialOptions {
                client_options: options,
                user_assigned_id: cfg.client_id.clone().map(UserAssignedId::ClientId),
            };
            ManagedIdentityCredential::new(Some(o)).map_err(|e| format!("managed identity: {e}"))?
        }
    };
    Ok(cred)
}
