//! Starts an in-process azure-sim on a free loopback port with the demo world, and a reqwest
//! client that trusts its CA (over real TLS, as the operator will talk to it).
#![allow(dead_code)]

use std::sync::Arc;

use serde_json::{Value, json};

pub const TENANT: &str = "72f988bf-0000-4000-8000-000000000001";
pub const SUB: &str = "00000000-0000-4000-8000-0000000000aa";
pub const OPERATOR: (&str, &str) = (
    "11111111-0000-4000-8000-000000000001",
    "demo-operator-secret",
);
pub const AUDITOR: (&str, &str) = (
    "22222222-0000-4000-8000-000000000002",
    "demo-auditor-secret",
);
pub const ARM: &str = "https://management.azure.com/.default";
pub const GRAPH: &str = "https://graph.microsoft.com/.default";
pub const MDE: &str = "https://api.securitycenter.microsoft.com/.default";

pub struct TestSim {
    pub url: String,
    pub http: reqwest::Client,
    /// The CA certificate (PEM) clients must trust.
    pub ca_pem: String,
    _dir: tempfile::TempDir,
}

impl TestSim {
    /// One raw HTTP/1.1 request, exactly as written (no header added by a client library);
    /// returns the status code and the whole response text.
    pub async fn raw_http1(&self, head: &str) -> (u16, String) {
        use rustls::pki_types::pem::PemObject;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(rustls::pki_types::CertificateDer::from_pem_slice(self.ca_pem.as_bytes()).unwrap())
            .unwrap();
        let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let addr = self.url.trim_start_matches("https://");
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
            .connect(name, tcp)
            .await
            .unwrap();
        tls.write_all(head.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        let _ = tls.read_to_end(&mut out).await;
        let text = String::from_utf8_lossy(&out).to_string();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (status, text)
    }
}

pub fn rg(rg: &str) -> String {
    format!("/subscriptions/{SUB}/resourceGroups/{rg}/providers")
}

pub async fn start() -> TestSim {
    start_with(|w| w).await
}

pub async fn start_with(
    edit: impl FnOnce(azure_sim::world::World) -> azure_sim::world::World,
) -> TestSim {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/worlds/demo.yaml")).unwrap();
    let mut world = edit(azure_sim::world::World::from_yaml(&text).unwrap());
    world.settings.lro_delay_ms = 300;
    world.settings.mde_action_step_ms = 200;
    world.settings.submission_step_ms = 200;
    let tls = azure_sim::server::Tls::generate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = tls.write_ca(dir.path()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let sim = Arc::new(azure_sim::Sim::new(world, url.clone(), None));
    tokio::spawn(async move { azure_sim::server::serve(listener, &tls, sim).await });
    let ca_pem = std::fs::read_to_string(&ca).unwrap();
    let cert = reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(cert)
        .build()
        .unwrap();
    TestSim {
        url,
        http,
        ca_pem,
        _dir: dir,
    }
}

impl TestSim {
    pub async fn token_response(&self, client: (&str, &str), scope: &str) -> reqwest::Response {
        self.http
            .post(format!("{}/{TENANT}/oauth2/v2.0/token", self.url))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", client.0),
                ("client_secret", client.1),
                ("scope", scope),
            ])
            .send()
            .await
            .unwrap()
    }

    pub async fn token(&self, client: (&str, &str), scope: &str) -> String {
        let r = self.token_response(client, scope).await;
        assert_eq!(r.status(), 200);
        r.json::<Value>().await.unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// An API call with a token; returns status, headers and JSON body (Null when empty).
    pub async fn call(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let url = if path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{}{path}", self.url)
        };
        let mut rb = self
            .http
            .request(method.parse().unwrap(), url)
            .bearer_auth(token);
        match body {
            Some(b) => rb = rb.json(&b),
            // As every Azure client must (ARM answers 411 otherwise).
            None if method == "POST" => rb = rb.header("content-length", "0"),
            None => {}
        }
        let r = rb.send().await.unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap();
        (
            status,
            headers,
            if text.is_empty() {
                Value::Null
            } else {
                serde_json::from_str(&text).unwrap()
            },
        )
    }

    pub async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut rb = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.url));
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let r = rb.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (
            status,
            if text.is_empty() {
                Value::Null
            } else {
                serde_json::from_str(&text).unwrap()
            },
        )
    }

    /// Polls an Azure-AsyncOperation URL until it is terminal; returns the statuses seen.
    pub async fn poll(&self, token: &str, url: &str) -> Vec<String> {
        let mut seen = Vec::new();
        for _ in 0..100 {
            let (s, _, b) = self.call(token, "GET", url, None).await;
            assert_eq!(s, 200, "{b}");
            let st = b["status"].as_str().unwrap().to_string();
            let done = st != "InProgress";
            seen.push(st);
            if done {
                return seen;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("operation never finished: {seen:?}");
    }
}

/// An OpenID issuer's ES256 signing key (a cluster's service-account key), and its JWK set.
pub struct Issuer {
    key: aws_lc_rs::signature::EcdsaKeyPair,
    pub jwks: Value,
}

impl Issuer {
    pub fn new() -> Issuer {
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
        use base64::Engine;
        let b = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let point = key.public_key().as_ref().to_vec();
        let jwks = json!({"keys": [{"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": "k1",
                                    "x": b(&point[1..33]), "y": b(&point[33..65])}]});
        Issuer { key, jwks }
    }

    pub fn sign(&self, claims: Value) -> String {
        use base64::Engine;
        let e = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let input = format!(
            "{}.{}",
            e(json!({"alg": "ES256", "typ": "JWT", "kid": "k1"})
                .to_string()
                .as_bytes()),
            e(claims.to_string().as_bytes())
        );
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let sig = self.key.sign(&rng, input.as_bytes()).unwrap();
        format!("{input}.{}", e(sig.as_ref()))
    }
}

pub fn jwt_unsigned(claims: Value) -> String {
    use base64::Engine;
    let e = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.sig",
        e(&json!({"alg": "RS256", "typ": "JWT"})),
        e(&claims)
    )
}
