//! End-to-end harness: the shared real API server (testenv), an in-process azure-sim per test
//! (its own world, so tests run in parallel), and the operator binary as a separate process
//! watching the test's namespace.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use serde_json::{Value, json};

pub const TENANT: &str = "72f988bf-0000-4000-8000-000000000001";
pub const SUB: &str = "00000000-0000-4000-8000-0000000000aa";
pub const CLIENT_ID: &str = "11111111-0000-4000-8000-000000000001";
pub const CLIENT_SECRET: &str = "demo-operator-secret";
pub const SQL_PROD: &str = "/subscriptions/00000000-0000-4000-8000-0000000000aa/resourceGroups/rg-prod/providers/Microsoft.Sql/servers/sql-prod-01";
pub const SQL_LEGACY: &str = "/subscriptions/00000000-0000-4000-8000-0000000000aa/resourceGroups/rg-prod/providers/Microsoft.Sql/servers/sql-legacy-02";
pub const APP: &str = "/subscriptions/00000000-0000-4000-8000-0000000000aa/resourceGroups/rg-web/providers/Microsoft.Web/sites/app-portal";
pub const STORAGE: &str = "/subscriptions/00000000-0000-4000-8000-0000000000aa/resourceGroups/rg-prod/providers/Microsoft.Storage/storageAccounts/stprod01";
pub const COSMOS: &str = "/subscriptions/00000000-0000-4000-8000-0000000000aa/resourceGroups/rg-prod/providers/Microsoft.DocumentDB/databaseAccounts/cosmos-prod-01";
pub const ALERT: &str = "/subscriptions/00000000-0000-4000-8000-0000000000aa/providers/Microsoft.Security/locations/centralus/alerts/2518770965529163669_F144EE95-A3E5-42DA-A279-967D115809AA";
pub const NSG: &str = "/subscriptions/00000000-0000-4000-8000-0000000000aa/resourceGroups/rg-app/providers/Microsoft.Network/networkSecurityGroups/nsg-web";
pub const WAF: &str = "/subscriptions/00000000-0000-4000-8000-0000000000aa/resourceGroups/rg-edge/providers/Microsoft.Network/ApplicationGatewayWebApplicationFirewallPolicies/waf-prod";
pub const FD_WAF: &str = "/subscriptions/00000000-0000-4000-8000-0000000000aa/resourceGroups/rg-edge/providers/Microsoft.Network/FrontDoorWebApplicationFirewallPolicies/fdwafprod";
pub const ARC: &str = "/subscriptions/00000000-0000-4000-8000-0000000000aa/resourceGroups/rg-onprem/providers/Microsoft.HybridCompute/machines/arc-web-01";
pub const DEVICE: &str = "1e5bc9d7e413ddd7902c2932e418702b84d0cc07";
/// A Windows workstation in the demo world's Defender for Endpoint.
pub const WS_DEVICE: &str = "7a2cfa31e4b4d6a1f0b3c2d1e0f9a8b7c6d5e4f3";
pub const WS_NAME: &str = "ws-finance-07.corp.contoso.example";
pub const MDE_SCOPE: &str = "https://api.securitycenter.microsoft.com/.default";
pub const BIN: &str = env!("CARGO_BIN_EXE_containment-operator");
const CRDS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/crds");
const WORLD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/sim/worlds/demo.yaml");

/// The Azure actions `containment-operator permissions` prints (what least privilege means).
pub fn printed_actions(kinds: &[&str]) -> Vec<String> {
    let mut cmd = Command::new(BIN);
    cmd.arg("permissions");
    if !kinds.is_empty() {
        cmd.arg("--kinds").arg(kinds.join(","));
    }
    let out = cmd.output().expect("run permissions");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).expect("permissions prints JSON");
    doc["azureCustomRole"]["Actions"]
        .as_array()
        .expect("Actions")
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

pub struct Sim {
    pub url: String,
    pub http: reqwest::Client,
    pub ca: PathBuf,
    _dir: tempfile::TempDir,
}

impl Sim {
    /// The demo world, with the operator principal holding exactly `actions` on the subscription.
    pub async fn start(actions: Vec<String>) -> Sim {
        Sim::start_with(actions, |_| {}).await
    }

    pub async fn start_with(
        actions: Vec<String>,
        edit: impl FnOnce(&mut azure_sim::world::World),
    ) -> Sim {
        let text = std::fs::read_to_string(WORLD).unwrap();
        let mut world = azure_sim::world::World::from_yaml(&text).unwrap();
        let p = world
            .principals
            .iter_mut()
            .find(|p| p.client_id == CLIENT_ID)
            .unwrap();
        p.role_assignments = vec![azure_sim::world::RoleAssignment {
            scope: format!("/subscriptions/{SUB}"),
            actions,
            not_actions: vec![],
        }];
        world.settings.lro_delay_ms = 300;
        world.settings.lro_retry_after_seconds = 1;
        world.settings.mde_action_step_ms = 300;
        edit(&mut world);
        let tls = azure_sim::server::Tls::generate().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ca = tls.write_ca(dir.path()).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("https://{}", listener.local_addr().unwrap());
        let sim = Arc::new(azure_sim::Sim::new(world, url.clone(), None));
        tokio::spawn(async move { azure_sim::server::serve(listener, &tls, sim).await });
        let cert = reqwest::Certificate::from_pem(&std::fs::read(&ca).unwrap()).unwrap();
        let http = reqwest::Client::builder()
            .add_root_certificate(cert)
            .build()
            .unwrap();
        Sim {
            url,
            http,
            ca,
            _dir: dir,
        }
    }

    pub async fn admin(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.url));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        let text = res.text().await.unwrap();
        assert!(status.is_success(), "{method} {path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    pub async fn resource(&self, id: &str) -> Value {
        self.admin(reqwest::Method::GET, &format!("/_sim/resources{id}"), None)
            .await
    }

    pub async fn children(&self, prefix: &str) -> Vec<Value> {
        let v = self
            .admin(
                reqwest::Method::GET,
                &format!("/_sim/resources?prefix={prefix}/"),
                None,
            )
            .await;
        v["value"].as_array().cloned().unwrap_or_default()
    }

    /// Firewall rules of a server as (name, start, end), sorted.
    pub async fn firewall_rules(&self, server: &str) -> Vec<(String, String, String)> {
        let mut out: Vec<_> = self
            .children(&format!("{server}/firewallRules"))
            .await
            .iter()
            .map(|r| {
                (
                    r["name"].as_str().unwrap().to_string(),
                    r["properties"]["startIpAddress"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                    r["properties"]["endIpAddress"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                )
            })
            .collect();
        out.sort();
        out
    }

    pub async fn patch(&self, id: &str, body: Value) {
        self.admin(
            reqwest::Method::PATCH,
            &format!("/_sim/resources{id}"),
            Some(body),
        )
        .await;
    }

    pub async fn put(&self, id: &str, body: Value) {
        self.admin(
            reqwest::Method::PUT,
            &format!("/_sim/resources{id}"),
            Some(body),
        )
        .await;
    }

    pub async fn settings(&self, body: Value) {
        self.admin(reqwest::Method::POST, "/_sim/settings", Some(body))
            .await;
    }

    pub async fn fault(&self, body: Value) {
        self.admin(reqwest::Method::POST, "/_sim/faults", Some(body))
            .await;
    }

    /// The Azure request log (admin calls excluded).
    pub async fn requests(&self) -> Vec<Value> {
        let v = self
            .admin(reqwest::Method::GET, "/_sim/requests", None)
            .await;
        v["value"].as_array().cloned().unwrap_or_default()
    }

    /// Requests that change state (not GET, not listKeys), with their status.
    pub async fn writes(&self) -> Vec<(String, String, u16)> {
        self.requests()
            .await
            .iter()
            // ARM's list actions (keys, app settings) are POSTs that read.
            .filter(|r| {
                let p = r["path"].as_str().unwrap();
                r["method"] != "GET"
                    && !p.ends_with("/listKeys")
                    && !p.ends_with("/config/appsettings/list")
            })
            .filter(|r| !r["path"].as_str().unwrap().contains("/oauth2/"))
            .map(|r| {
                (
                    r["method"].as_str().unwrap().to_string(),
                    r["path"].as_str().unwrap().to_string(),
                    r["status"].as_u64().unwrap() as u16,
                )
            })
            .collect()
    }

    pub async fn successful_writes(&self) -> Vec<(String, String)> {
        self.writes()
            .await
            .into_iter()
            .filter(|w| (200..300).contains(&w.2))
            .map(|w| (w.0, w.1))
            .collect()
    }

    /// An ARM call as the operator principal (to read key values in a test).
    pub async fn arm(&self, method: reqwest::Method, path: &str) -> Value {
        self.as_operator(method, path, "https://management.azure.com/.default", None)
            .await
    }

    /// A call to any simulated API as the operator principal.
    pub async fn as_operator(
        &self,
        method: reqwest::Method,
        path: &str,
        scope: &str,
        body: Option<Value>,
    ) -> Value {
        let tok: Value = self
            .http
            .post(format!("{}/{TENANT}/oauth2/v2.0/token", self.url))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", CLIENT_ID),
                ("client_secret", CLIENT_SECRET),
                ("scope", scope),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(tok["access_token"].as_str().unwrap());
        req = match body {
            Some(b) => req.json(&b),
            None => req.header("content-length", "0"),
        };
        // Null for an answer without a body (e.g. a 202 that starts an operation).
        serde_json::from_str(&req.send().await.unwrap().text().await.unwrap())
            .unwrap_or(Value::Null)
    }
}

pub struct Operator {
    proc: testenv::Managed,
    pub log: PathBuf,
}

impl Operator {
    pub fn start(env: &Env, extra: &[&str]) -> Operator {
        Operator::start_with(env, extra, &[])
    }

    /// With extra environment (an empty value removes the variable).
    pub fn start_with(env: &Env, extra: &[&str], vars: &[(&str, &str)]) -> Operator {
        Operator::launch(env, Some(&env.ns), extra, vars)
    }

    /// Watching every namespace: only on a control plane of the test's own.
    pub fn cluster_wide(env: &Env) -> Operator {
        Operator::launch(env, None, &[], &[])
    }

    fn launch(env: &Env, ns: Option<&str>, extra: &[&str], vars: &[(&str, &str)]) -> Operator {
        let mut cmd = Command::new(BIN);
        cmd.arg("run");
        if let Some(ns) = ns {
            cmd.args(["--namespace", ns]);
        }
        cmd.args([
            "--metrics-addr",
            "127.0.0.1:0",
            "--leader-elect=false",
            "--drift-interval",
            "2s",
        ])
        .args(extra)
        .env("KUBECONFIG", &env.kubeconfig)
        .env("AZURE_TENANT_ID", TENANT)
        .env("AZURE_CLIENT_ID", CLIENT_ID)
        .env("AZURE_CLIENT_SECRET", CLIENT_SECRET)
        .env("AZURE_CREDENTIAL", "client-secret")
        .env("RUST_LOG", "info")
        .env("RESTORE_KEY_FILE", env.restore_key())
        .env_remove("AZURE_FEDERATED_TOKEN_FILE");
        for (k, v) in vars {
            if v.is_empty() {
                cmd.env_remove(k);
            } else {
                cmd.env(k, v);
            }
        }
        Operator::spawn(env, cmd)
    }

    /// Runs `cmd` (the operator binary with its arguments and environment) against this test's
    /// simulator, logging to a file of the test's directory.
    pub fn spawn(env: &Env, mut cmd: Command) -> Operator {
        let log = env.dir.path().join(format!(
            "operator-{}.log",
            env.starts.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        ));
        let file = std::fs::File::create(&log).unwrap();
        cmd.env("AZURE_AUTHORITY_HOST", &env.sim.url)
            .env("AZURE_ARM_ENDPOINT", &env.sim.url)
            .env("AZURE_MDE_ENDPOINT", &env.sim.url)
            .env("AZURE_GRAPH_ENDPOINT", &env.sim.url)
            .env("AZURE_CA_FILE", &env.sim.ca)
            .stdout(Stdio::null())
            .stderr(file);
        Operator {
            proc: testenv::Managed::spawn("containment-operator", cmd).unwrap(),
            log,
        }
    }

    /// The process has ended (by itself or killed).
    pub fn exited(&mut self) -> bool {
        self.proc.try_status().is_some()
    }

    /// SIGKILL: a crash, not a shutdown.
    pub fn kill(&mut self) {
        self.proc.kill();
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The operator's `/metrics` text.
    pub async fn metrics(&self) -> String {
        let url = format!("http://{}/metrics", self.metrics_addr().await);
        reqwest::get(url).await.unwrap().text().await.unwrap()
    }

    /// The metrics address the operator printed.
    pub async fn metrics_addr(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            for line in self.logs().lines() {
                if let Ok(v) = serde_json::from_str::<Value>(line)
                    && let Some(a) = v["addr"].as_str()
                {
                    return a.to_string();
                }
            }
            assert!(
                Instant::now() < deadline,
                "operator printed no metrics address:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

pub struct Env {
    pub sim: Sim,
    pub client: kube::Client,
    pub ns: String,
    pub kubeconfig: PathBuf,
    pub dir: tempfile::TempDir,
    starts: std::sync::atomic::AtomicUsize,
}

pub fn gvk(kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        "containment.defenderc2.io",
        "v1alpha1",
        kind,
    ))
}

impl Env {
    /// Sim with exactly the printed permissions, CRDs installed, a fresh namespace.
    pub async fn new(prefix: &str) -> Env {
        Env::with_actions(prefix, printed_actions(&[])).await
    }

    pub async fn with_actions(prefix: &str, actions: Vec<String>) -> Env {
        Env::with_world(prefix, actions, |_| {}).await
    }

    pub async fn with_world(
        prefix: &str,
        actions: Vec<String>,
        edit: impl FnOnce(&mut azure_sim::world::World),
    ) -> Env {
        let cp = testenv::shared().await.unwrap();
        Env::on(prefix, cp, Sim::start_with(actions, edit).await).await
    }

    /// Like [`Env::new`], on a control plane of the test's own (e.g. one started with other
    /// API-server flags) instead of the shared one.
    pub async fn on_control_plane(prefix: &str, cp: &testenv::ControlPlane) -> Env {
        Env::on(prefix, cp, Sim::start(printed_actions(&[])).await).await
    }

    /// CRDs installed on `cp`, a fresh namespace, and `sim`.
    async fn on(prefix: &str, cp: &testenv::ControlPlane, sim: Sim) -> Env {
        let client = cp.client().await.unwrap();
        testenv::install_crds_from_dir(&client, Path::new(CRDS))
            .await
            .unwrap();
        let ns = cp.namespace(&client, prefix).await.unwrap();
        let env = Env {
            sim,
            client,
            ns,
            kubeconfig: cp.kubeconfig_path().to_path_buf(),
            dir: tempfile::tempdir().unwrap(),
            starts: Default::default(),
        };
        // Deny by default: the test's namespace may use every kind in the operator's tenant.
        env.policy(json!({"namespaces": {"names": [env.ns]}, "allow": [{"kinds": ["*"]}]}))
            .await;
        env
    }

    /// The key file sealing status records, the same for every operator this test starts.
    pub fn restore_key(&self) -> PathBuf {
        let path = self.dir.path().join("restore-key");
        if !path.exists() {
            std::fs::write(
                &path,
                format!("test-key-{}-0123456789abcdef0123456789\n", self.ns),
            )
            .unwrap();
        }
        path
    }

    /// Writes `status` (a merge patch) as the operator would have written it: sealed with this
    /// test's restore key. For states the operator reaches that a test cannot otherwise set up.
    pub async fn patch_status_sealed(&self, kind: &str, name: &str, status: Value) {
        let o = self.get(kind, name).await.unwrap();
        let mut merged = o["status"].clone();
        json_merge(&mut merged, &status);
        let common: containment_operator::api::common::CommonStatus =
            serde_json::from_value(merged).unwrap();
        let key = std::fs::read(self.restore_key()).unwrap();
        let seal = containment_operator::engine::seal::Seal::new(Some(key.trim_ascii_end()));
        let mut patch = status;
        patch["recordSeal"] = json!(seal.sign(o["metadata"]["uid"].as_str().unwrap(), &common));
        self.api(kind)
            .patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": patch})),
            )
            .await
            .unwrap();
    }

    /// This test's ContainmentPolicy (named after its namespace), created or replaced.
    pub async fn policy(&self, spec: Value) {
        self.named_policy(&self.ns, spec).await;
    }

    /// A ContainmentPolicy of this name (cluster-scoped: name it after the test), created or
    /// replaced.
    pub async fn named_policy(&self, name: &str, spec: Value) {
        let obj = json!({
            "apiVersion": "containment.defenderc2.io/v1alpha1",
            "kind": "ContainmentPolicy",
            "metadata": {"name": name},
            "spec": spec,
        });
        self.policies()
            .patch(
                name,
                &kube::api::PatchParams::apply("e2e").force(),
                &kube::api::Patch::Apply(&obj),
            )
            .await
            .unwrap();
    }

    /// Removes this test's ContainmentPolicy (its namespace is then allowed nothing).
    pub async fn remove_policy(&self) {
        let _ = self
            .policies()
            .delete(&self.ns, &kube::api::DeleteParams::default())
            .await;
    }

    pub fn policies(&self) -> Api<DynamicObject> {
        Api::all_with(self.client.clone(), &gvk("ContainmentPolicy"))
    }

    pub fn operator(&self) -> Operator {
        Operator::start(self, &[])
    }

    pub fn api(&self, kind: &str) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), &self.ns, &gvk(kind))
    }

    /// A Secret in the test namespace with these string values (created or replaced).
    pub async fn secret(&self, name: &str, data: &[(&str, &str)]) {
        let obj = json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": self.ns},
            "stringData": data.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        });
        let api: Api<k8s_openapi::api::core::v1::Secret> =
            Api::namespaced(self.client.clone(), &self.ns);
        api.patch(
            name,
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(&obj),
        )
        .await
        .unwrap();
    }

    /// What a kind's shared test specs (`secretName: app-secrets`) expect to exist.
    pub async fn prerequisites(&self, kind: &str) {
        match kind {
            "AppServiceSecretRotation" => {
                self.secret("app-secrets", &[("DB_PASSWORD", "rotated-after-inc-4711")])
                    .await
            }
            "ArcRunCommand" => self.secret("arc-token", &[("TOKEN", "t0ken")]).await,
            _ => {}
        }
    }

    /// Server-side apply, as `kubectl apply --server-side` would.
    pub async fn apply(&self, kind: &str, name: &str, spec: Value) -> Instant {
        self.try_apply(kind, name, spec).await.unwrap()
    }

    /// [`Env::apply`] that hands back the API server's refusal (e.g. a CEL rule's message).
    pub async fn try_apply(&self, kind: &str, name: &str, spec: Value) -> Result<Instant, String> {
        let obj = json!({
            "apiVersion": "containment.defenderc2.io/v1alpha1", "kind": kind,
            "metadata": {"name": name}, "spec": spec
        });
        let t = Instant::now();
        self.api(kind)
            .patch(
                name,
                &PatchParams::apply("kubectl").force(),
                &Patch::Apply(&obj),
            )
            .await
            .map_err(|e| e.to_string())?;
        Ok(t)
    }

    /// Ask for a reconcile now (`kubectl annotate … reconcile-requested-at=<value> --overwrite`).
    pub async fn reconcile_now(&self, kind: &str, name: &str, value: &str) {
        self.api(kind)
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {
                    "containment.defenderc2.io/reconcile-requested-at": value}}})),
            )
            .await
            .unwrap();
    }

    /// Wait until `status.lastHandledReconcileAt` echoes a reconcile request (as a script would
    /// with `kubectl wait --for=jsonpath=…`).
    pub async fn wait_reconcile_handled(&self, kind: &str, name: &str, value: &str) -> Value {
        self.wait(
            kind,
            name,
            "the request echoed",
            Duration::from_secs(30),
            |o| o.is_some_and(|o| o["status"]["lastHandledReconcileAt"] == value),
        )
        .await
        .expect("exists")
    }

    pub async fn delete(&self, kind: &str, name: &str) {
        self.api(kind)
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
    }

    pub async fn get(&self, kind: &str, name: &str) -> Option<Value> {
        self.api(kind)
            .get_opt(name)
            .await
            .unwrap()
            .map(|o| serde_json::to_value(o).unwrap())
    }

    /// Wait until `pred` holds on the object (None = gone); returns it.
    pub async fn wait(
        &self,
        kind: &str,
        name: &str,
        what: &str,
        timeout: Duration,
        pred: impl Fn(Option<&Value>) -> bool,
    ) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let o = self.get(kind, name).await;
            if pred(o.as_ref()) {
                return o;
            }
            if Instant::now() > deadline {
                panic!(
                    "{kind}/{name}: timed out waiting for {what}; last seen: {}",
                    serde_json::to_string_pretty(&o).unwrap()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn wait_condition(
        &self,
        kind: &str,
        name: &str,
        type_: &str,
        status: &str,
        reason: Option<&str>,
    ) -> Value {
        self.wait(
            kind,
            name,
            &format!("{type_}={status} {reason:?}"),
            Duration::from_secs(30),
            |o| {
                o.is_some_and(|o| {
                    condition(o, type_).is_some_and(|c| {
                        c["status"] == status
                            && reason.is_none_or(|r| c["reason"] == r)
                            && c["observedGeneration"] == o["metadata"]["generation"]
                    })
                })
            },
        )
        .await
        .unwrap()
    }

    /// Wait for the next drift check of the object (a `lastVerifiedTime` later than now's).
    pub async fn wait_verified_again(&self, kind: &str, name: &str) -> Value {
        let seen =
            self.get(kind, name).await.expect("exists")["status"]["lastVerifiedTime"].clone();
        self.wait(
            kind,
            name,
            "a later verification",
            Duration::from_secs(20),
            |o| o.is_some_and(|o| o["status"]["lastVerifiedTime"] != seen),
        )
        .await
        .expect("exists")
    }

    /// Wait until `driftCount` reaches `drifts` and the object is Ready again (a correction).
    pub async fn wait_drift_corrected(&self, kind: &str, name: &str, drifts: u64) -> Value {
        self.wait(
            kind,
            name,
            "drift corrected",
            Duration::from_secs(20),
            |o| {
                o.is_some_and(|o| {
                    o["status"]["driftCount"] == drifts
                        && condition(o, "Ready").is_some_and(|c| c["status"] == "True")
                })
            },
        )
        .await
        .expect("exists")
    }

    pub async fn wait_ready(&self, kind: &str, name: &str) -> Value {
        self.wait_condition(kind, name, "Ready", "True", None).await
    }

    pub async fn wait_gone(&self, kind: &str, name: &str) {
        self.wait(kind, name, "deletion", Duration::from_secs(30), |o| {
            o.is_none()
        })
        .await;
    }

    /// Events recorded for an object, as (type, reason, note).
    pub async fn events(&self, name: &str) -> Vec<(String, String, String)> {
        let api: Api<k8s_openapi::api::events::v1::Event> =
            Api::namespaced(self.client.clone(), &self.ns);
        api.list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .map(|e| {
                (
                    e.type_.unwrap_or_default(),
                    e.reason.unwrap_or_default(),
                    e.note.unwrap_or_default(),
                )
            })
            .collect()
    }
}

/// The count of Azure requests of one operation label whose status starts with `status`
/// (`"2"`: every success).
pub fn requests_of(metrics: &str, operation: &str, status: &str) -> f64 {
    metric_sum(
        metrics,
        &format!("containment_azure_requests_total{{operation=\"{operation}\",status=\"{status}"),
    )
}

/// The sum of the samples whose series starts with `series` (a metric name and leading labels,
/// e.g. `containment_azure_requests_total{operation="POST mde machines/isolate",`).
pub fn metric_sum(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(series))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

pub fn condition<'a>(o: &'a Value, type_: &str) -> Option<&'a Value> {
    o["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

pub fn target(id: &str) -> Value {
    json!({"resourceId": id})
}

/// Whether a SQL server's firewall rules (`Sim::firewall_rules`) admit `ip`.
pub fn admits(rules: &[(String, String, String)], ip: &str) -> bool {
    let n = |s: &str| u32::from(s.parse::<std::net::Ipv4Addr>().unwrap());
    rules.iter().any(|(_, a, b)| n(a) <= n(ip) && n(ip) <= n(b))
}

/// RFC 7386 merge of `patch` into `doc`.
fn json_merge(doc: &mut Value, patch: &Value) {
    match (doc.as_object_mut(), patch.as_object()) {
        (Some(d), Some(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    d.remove(k);
                } else {
                    json_merge(d.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        _ => *doc = patch.clone(),
    }
}
