//! The Helm chart, rendered by helm and installed into the real API server; the operator runs
//! with exactly the chart's Deployment args and env, as the chart's service account (a real
//! TokenRequest token). Shows the chart's RBAC is sufficient (the whole flow works, no
//! "forbidden" anywhere) and no wider (what the account must not do is refused). Then the
//! statuses it produced are fed to kstatus and to the Argo CD health Lua (packaging/health).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret, ServiceAccount};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::*;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn helm() -> PathBuf {
    let base = std::env::var_os("CONTAINMENT_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            // default_cache_dir() is <cache>/controlplane/<version>.
            let cp = testenv::default_cache_dir();
            cp.parent().and_then(Path::parent).unwrap().to_path_buf()
        });
    let helm = base.join("tools/bin/helm");
    assert!(
        helm.exists(),
        "{} missing: run `make tools` (make test does)",
        helm.display()
    );
    helm
}

fn render(release_ns: &str, values: &[String]) -> Vec<Value> {
    let mut cmd = Command::new(helm());
    cmd.args([
        "template",
        "co",
        "charts/containment-operator",
        "--namespace",
    ])
    .arg(release_ns)
    .args(["--kube-version", "1.37.2"])
    .current_dir(ROOT);
    for v in values {
        cmd.arg("--set").arg(v);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "helm template: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    text.split("\n---")
        .filter_map(|doc| serde_yaml::from_str::<Value>(doc).ok())
        .filter(|v| v.is_object())
        .collect()
}

fn kubectl(env: &Env, args: &[&str], stdin: Option<&str>) -> String {
    let assets = testenv::Assets::locate().unwrap();
    let mut child = Command::new(assets.kubectl)
        .args(args)
        .env("KUBECONFIG", &env.kubeconfig)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(s) = stdin {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Installs the rendered objects as an administrator would (`helm install` does the same
/// server-side).
fn install(env: &Env, objs: &[Value]) {
    let docs: Vec<String> = objs
        .iter()
        .map(|o| serde_json::to_string(o).unwrap())
        .collect();
    kubectl(
        env,
        &["apply", "--server-side", "--field-manager=helm", "-f", "-"],
        Some(&docs.join("\n")),
    );
}

async fn ensure_namespace(env: &Env, name: &str) {
    let nss: Api<Namespace> = Api::all(env.client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    let _ = nss.create(&PostParams::default(), &ns).await;
}

/// A kubeconfig that authenticates with a real token of the chart's service account.
async fn service_account_kubeconfig(env: &Env, ns: &str, sa: &str) -> PathBuf {
    let sas: Api<ServiceAccount> = Api::namespaced(env.client.clone(), ns);
    let req = TokenRequest {
        spec: Some(TokenRequestSpec {
            expiration_seconds: Some(3600),
            ..Default::default()
        }),
        ..Default::default()
    };
    let tok = sas
        .create_token_request(sa, &PostParams::default(), &req)
        .await
        .unwrap();
    let token = tok.status.unwrap().token.unwrap();
    let mut cfg = kube::config::Kubeconfig::read_from(&env.kubeconfig).unwrap();
    for a in cfg.auth_infos.iter_mut() {
        a.auth_info = Some(kube::config::AuthInfo {
            token: Some(token.clone().into()),
            ..Default::default()
        });
    }
    let path = env.dir.path().join(format!("kubeconfig-{sa}"));
    std::fs::write(&path, serde_yaml::to_string(&cfg).unwrap()).unwrap();
    path
}

async fn client_from(path: &Path) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(path).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    kube::Client::try_from(cfg).unwrap()
}

fn find<'a>(objs: &'a [Value], kind: &str) -> &'a Value {
    objs.iter()
        .find(|o| o["kind"] == kind)
        .unwrap_or_else(|| panic!("the chart renders no {kind}"))
}

/// The operator process exactly as the chart's Deployment would start it, but pointed at the
/// simulator (endpoints and CA are chart values in production too) and with the metrics on a
/// free loopback port.
fn start_as_chart(env: &Env, objs: &[Value], kubeconfig: &Path, release_ns: &str) -> Operator {
    let dep = find(objs, "Deployment");
    let c = &dep["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<String> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    let mut cmd = Command::new(BIN);
    cmd.args(&args).env_clear().env("PATH", "/usr/bin:/bin");
    for e in c["env"].as_array().unwrap() {
        let name = e["name"].as_str().unwrap();
        let value = if name == "RESTORE_KEY_FILE" {
            // The kubelet would mount the chart's generated Secret there.
            use base64::Engine as _;
            let key = find(objs, "Secret")["data"]["key"].as_str().unwrap();
            let path = env.dir.path().join("chart-restore-key");
            std::fs::write(
                &path,
                base64::engine::general_purpose::STANDARD
                    .decode(key)
                    .unwrap(),
            )
            .unwrap();
            path.display().to_string()
        } else if let Some(v) = e["value"].as_str() {
            v.to_string()
        } else if e["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace" {
            release_ns.to_string()
        } else if e["valueFrom"]["secretKeyRef"].is_object() {
            // The test created this Secret; the kubelet would resolve it.
            CLIENT_SECRET.to_string()
        } else {
            panic!("unexpected env source {e}");
        };
        cmd.env(name, value);
    }
    cmd.env("KUBECONFIG", kubeconfig)
        .env("METRICS_ADDR", "127.0.0.1:0");
    Operator::spawn(env, cmd)
}

/// Chart values for a release watching only this test's namespace (so it never touches the
/// other tests'), with a client secret from the Secret `azure-credentials`.
fn scoped_values(env: &Env, fullname: &str) -> Vec<String> {
    vec![
        format!("fullnameOverride={fullname}"),
        format!("watchNamespace={}", env.ns),
        "azure.credential=client-secret".into(),
        "azure.clientSecret.existingSecret=azure-credentials".into(),
        format!("azure.tenantId={TENANT}"),
        format!("azure.clientId={CLIENT_ID}"),
    ]
}

fn forbidden<T: std::fmt::Debug>(r: Result<T, kube::Error>, what: &str) {
    match r {
        Err(kube::Error::Api(s)) if s.code == 403 => {}
        other => panic!("{what}: expected 403 Forbidden, got {other:?}"),
    }
}

/// The object as GitOps tools see it (managedFields are noise).
async fn sample(env: &Env, kind: &str, name: &str) -> Value {
    let mut o = env.get(kind, name).await.unwrap();
    o["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("managedFields");
    o
}

#[tokio::test]
async fn chart_rbac_is_sufficient_and_no_wider_and_gitops_health_reads_our_statuses() {
    let env = Env::new("e2e-chart").await;
    let release_ns = format!("{}-sys", env.ns);
    ensure_namespace(&env, &release_ns).await;
    let fullname = format!("co-{}", env.ns);
    let mut values = scoped_values(&env, &fullname);
    values.push(format!("secretNamespaces={{{}}}", env.ns));
    values.push("driftInterval=2s".into());
    // The release's own ContainmentPolicy (values `policies`) is what allows this namespace.
    env.remove_policy().await;
    let chart_policy = format!("{}-chart", env.ns);
    values.extend([
        format!("policies[0].name={chart_policy}"),
        format!("policies[0].namespaces.names[0]={}", env.ns),
        "policies[0].allow[0].kinds[0]=*".into(),
        format!("policies[0].allow[0].subscriptions[0]={SUB}"),
    ]);
    let objs = render(&release_ns, &values);
    assert_eq!(
        find(&objs, "ContainmentPolicy")["metadata"]["name"],
        json!(chart_policy)
    );
    install(&env, &objs);
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), &release_ns);
    let s: Secret = serde_json::from_value(json!({"metadata": {"name": "azure-credentials"},
        "stringData": {"client-secret": CLIENT_SECRET}}))
    .unwrap();
    secrets.create(&PostParams::default(), &s).await.unwrap();

    let kubeconfig = service_account_kubeconfig(&env, &release_ns, &fullname).await;
    let op = start_as_chart(&env, &objs, &kubeconfig, &release_ns);

    // Sufficient: contain, publish a rotated key to a Secret, release.
    env.apply(
        "SqlIpBlock",
        "ready",
        json!({"target": target(SQL_PROD), "ipAddresses": ["203.0.113.7"]}),
    )
    .await;
    let o = env.wait_ready("SqlIpBlock", "ready").await;
    assert_eq!(o["status"]["policy"], json!(chart_policy));
    assert!(
        o["status"]["recordSeal"].is_string(),
        "the chart's generated key seals the records: {o}"
    );
    env.apply(
        "StorageKeyRotation",
        "rotate",
        json!({"target": target(STORAGE), "trigger": "INC-1", "keys": ["key1"],
               "publishTo": {"secretName": "stprod01-keys"}}),
    )
    .await;
    env.wait_ready("StorageKeyRotation", "rotate").await;
    let published: Api<Secret> = Api::namespaced(env.client.clone(), &env.ns);
    assert!(published.get("stprod01-keys").await.is_ok());
    let leases: Api<Lease> = Api::namespaced(env.client.clone(), &release_ns);
    let lease = leases.get(&fullname).await.expect("the leader Lease");
    assert!(lease.spec.unwrap().holder_identity.is_some());
    assert!(
        !env.events("ready").await.is_empty(),
        "no events recorded under the chart's RBAC"
    );

    // Samples for kstatus / Argo CD: Stalled (a target of the wrong type), in progress (Azure
    // answering 503), not compliant (Observe).
    env.apply(
        "SqlIpBlock",
        "stalled",
        json!({"target": target(STORAGE), "ipAddresses": ["203.0.113.7"]}),
    )
    .await;
    env.wait_condition("SqlIpBlock", "stalled", "Stalled", "True", None)
        .await;
    env.sim
        .fault(json!({"match": {"pathRegex": "sql-legacy-02"}, "status": 503, "count": 100000}))
        .await;
    env.apply(
        "SqlIpBlock",
        "progressing",
        json!({"target": target(SQL_LEGACY), "ipAddresses": ["203.0.113.7"]}),
    )
    .await;
    env.wait_condition("SqlIpBlock", "progressing", "Reconciling", "True", None)
        .await;
    env.apply(
        "StoragePublicAccessLockdown",
        "observe",
        json!({"target": target(STORAGE), "mode": "Observe"}),
    )
    .await;
    env.wait_condition(
        "StoragePublicAccessLockdown",
        "observe",
        "Ready",
        "False",
        Some("NotCompliant"),
    )
    .await;

    env.delete("SqlIpBlock", "ready").await;
    env.wait_gone("SqlIpBlock", "ready").await;
    assert!(
        env.sim
            .firewall_rules("sql-prod-01")
            .await
            .iter()
            .all(|(n, _, _)| !n.contains("-cx")),
        "release did not restore the firewall"
    );
    let logs = op.logs();
    assert!(
        !logs.to_lowercase().contains("forbidden"),
        "the chart's RBAC refused something:\n{logs}"
    );
    assert!(logs.contains("became the leader"), "{logs}");

    // No wider: the same token, everything the operator has no business doing.
    let sa = client_from(&kubeconfig).await;
    forbidden(
        Api::<Secret>::all(sa.clone())
            .list(&ListParams::default())
            .await,
        "list Secrets cluster-wide",
    );
    forbidden(
        Api::<Secret>::namespaced(sa.clone(), &release_ns)
            .get("azure-credentials")
            .await,
        "read the Secrets of its own namespace",
    );
    forbidden(
        Api::<Pod>::all(sa.clone())
            .list(&ListParams::default())
            .await,
        "list Pods",
    );
    forbidden(
        Api::<ConfigMap>::namespaced(sa.clone(), &env.ns)
            .list(&ListParams::default())
            .await,
        "list ConfigMaps",
    );
    // The guard reads namespaces' labels and the policies; it can change neither.
    assert!(
        Api::<Namespace>::all(sa.clone())
            .list(&ListParams::default())
            .await
            .is_ok()
    );
    forbidden(
        Api::<Namespace>::all(sa.clone())
            .patch(
                &env.ns,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
            )
            .await,
        "label a namespace",
    );
    let policies = Api::<kube::api::DynamicObject>::all_with(sa.clone(), &gvk("ContainmentPolicy"));
    assert!(
        policies.get(&chart_policy).await.is_ok(),
        "reads its policy"
    );
    forbidden(
        policies
            .patch(
                &chart_policy,
                &PatchParams::default(),
                &Patch::Merge(
                    json!({"spec": {"allow": [{"kinds": ["*"], "subscriptions": ["*"]}]}}),
                ),
            )
            .await,
        "widen a policy",
    );
    forbidden(
        policies
            .patch_status(
                &chart_policy,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"coveredNamespaces": ["x"]}})),
            )
            .await,
        "write a policy's status (a namespace-scoped release)",
    );
    // The kill switch: its own ConfigMap only (absent here: NotFound, not Forbidden).
    let own_cms = Api::<ConfigMap>::namespaced(sa.clone(), &release_ns);
    match own_cms.get(&format!("{fullname}-freeze")).await {
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        other => panic!("reading the kill switch: expected 404, got {other:?}"),
    }
    forbidden(
        own_cms.list(&ListParams::default()).await,
        "list the ConfigMaps of its own namespace",
    );
    forbidden(
        own_cms.get("kube-root-ca.crt").await,
        "read another ConfigMap",
    );
    let other: Api<Lease> = Api::namespaced(sa.clone(), &release_ns);
    let lease: Lease =
        serde_json::from_value(json!({"metadata": {"name": "someone-else"}, "spec": {}})).unwrap();
    other.create(&PostParams::default(), &lease).await.ok();
    forbidden(
        other
            .patch(
                "someone-else",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"holderIdentity": "x"}})),
            )
            .await,
        "take another Lease",
    );
    let mine =
        Api::<kube::api::DynamicObject>::namespaced_with(sa.clone(), &env.ns, &gvk("SqlIpBlock"));
    forbidden(
        mine.delete("stalled", &DeleteParams::default()).await,
        "delete a containment (only users do)",
    );
    let approvals = Api::<kube::api::DynamicObject>::namespaced_with(
        sa.clone(),
        &env.ns,
        &gvk("ContainmentApproval"),
    );
    assert!(
        approvals.list(&ListParams::default()).await.is_ok(),
        "reads approvals"
    );
    let forged: kube::api::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "containment.defenderc2.io/v1alpha1", "kind": "ContainmentApproval",
        "metadata": {"name": "by-the-operator"},
        "spec": {"target": {"kind": "SqlIpBlock", "name": "ready", "generation": 1}, "approver": "x"}}))
    .unwrap();
    forbidden(
        approvals.create(&PostParams::default(), &forged).await,
        "approve a containment itself",
    );
    let elsewhere = Api::<kube::api::DynamicObject>::namespaced_with(
        sa.clone(),
        &release_ns,
        &gvk("SqlIpBlock"),
    );
    forbidden(
        elsewhere.list(&ListParams::default()).await,
        "list containments outside watchNamespace",
    );
    assert!(
        Api::<Secret>::namespaced(sa.clone(), &env.ns)
            .get("stprod01-keys")
            .await
            .is_ok(),
        "secretNamespaces grants Secrets in the watched namespace"
    );

    // Without secretNamespaces covering the namespace, publishing stalls with a precise
    // reason instead of retrying forever in the logs.
    kubectl(
        &env,
        &[
            "-n",
            &env.ns,
            "delete",
            "rolebinding",
            &format!("{fullname}-secrets"),
        ],
        None,
    );
    env.apply(
        "StorageKeyRotation",
        "denied",
        json!({"target": target(STORAGE), "trigger": "INC-2", "keys": ["key2"],
               "publishTo": {"secretName": "denied-keys"}}),
    )
    .await;
    let o = env
        .wait_condition(
            "StorageKeyRotation",
            "denied",
            "Stalled",
            "True",
            Some("AuthorizationFailed"),
        )
        .await;
    let msg = condition(&o, "Stalled").unwrap()["message"]
        .as_str()
        .unwrap();
    assert!(
        msg.contains(&format!("PATCH Secret {}/denied-keys", env.ns))
            && msg.contains("secretNamespaces"),
        "{msg}"
    );

    // Samples, then the stale one: the operator stops and a user edits a spec.
    let mut samples = vec![
        (
            "ready-storage-key-rotation",
            sample(&env, "StorageKeyRotation", "rotate").await,
        ),
        (
            "stalled-sql-ip-block",
            sample(&env, "SqlIpBlock", "stalled").await,
        ),
        (
            "progressing-sql-ip-block",
            sample(&env, "SqlIpBlock", "progressing").await,
        ),
        (
            "notcompliant-storage-lockdown",
            sample(&env, "StoragePublicAccessLockdown", "observe").await,
        ),
    ];
    drop(op);
    env.apply(
        "StoragePublicAccessLockdown",
        "observe",
        json!({"target": target(STORAGE), "mode": "DryRun"}),
    )
    .await;
    samples.push((
        "stale-storage-lockdown",
        sample(&env, "StoragePublicAccessLockdown", "observe").await,
    ));
    let dir = env.dir.path().join("samples");
    std::fs::create_dir_all(&dir).unwrap();
    // UPDATE_HEALTH_SAMPLES=1 refreshes the committed copies the packaging check uses.
    let update = std::env::var_os("UPDATE_HEALTH_SAMPLES").is_some();
    for (name, mut obj) in samples {
        if update {
            // Stable names in the committed copies.
            obj["metadata"]["namespace"] = json!("soc");
            obj["metadata"].as_object_mut().unwrap().remove("uid");
            let text = serde_json::to_string_pretty(&obj)
                .unwrap()
                .replace(&env.ns, "soc");
            std::fs::write(
                format!("{ROOT}/packaging/health/testdata/{name}.json"),
                text + "\n",
            )
            .unwrap();
        }
        std::fs::write(
            dir.join(format!("{name}.json")),
            serde_json::to_vec_pretty(&obj).unwrap(),
        )
        .unwrap();
    }
    let out = Command::new("go")
        .args(["test", "-count=1", "-v", "-run", "TestSamples", "./health/"])
        .current_dir(format!("{ROOT}/packaging"))
        .env("HEALTH_SAMPLES_DIR", &dir)
        .output()
        .expect("go is needed for the kstatus and Argo CD health check");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "kstatus / Argo CD health on live statuses:\n{text}"
    );
    assert_eq!(text.matches("--- PASS: TestSamples/").count(), 5, "{text}");
}

/// The cluster-wide install (no watchNamespace): containments everywhere, and still no
/// Secret outside secretNamespaces. Checked by impersonating the service account, since an
/// all-namespace operator would reconcile the other tests' resources.
#[tokio::test]
async fn cluster_wide_chart_rbac_reads_containments_everywhere_but_no_secrets() {
    let env = Env::new("e2e-chart-cw").await;
    let release_ns = format!("{}-sys", env.ns);
    ensure_namespace(&env, &release_ns).await;
    let fullname = format!("co-{}", env.ns);
    let objs = render(
        &release_ns,
        &[
            format!("fullnameOverride={fullname}"),
            "azure.clientId=x".into(),
        ],
    );
    assert_eq!(
        find(&objs, "ClusterRoleBinding")["subjects"][0]["name"],
        fullname.as_str()
    );
    install(&env, &objs);
    let cp = testenv::shared().await.unwrap();
    let sa = cp
        .client_as_service_account(&release_ns, &fullname)
        .await
        .unwrap();
    let all = Api::<kube::api::DynamicObject>::all_with(sa.clone(), &gvk("WafIpBlock"));
    all.list(&ListParams::default())
        .await
        .expect("list WafIpBlocks in all namespaces");
    forbidden(
        Api::<Secret>::all(sa.clone())
            .list(&ListParams::default())
            .await,
        "list Secrets cluster-wide",
    );
    forbidden(
        Api::<Secret>::namespaced(sa.clone(), &env.ns)
            .list(&ListParams::default())
            .await,
        "Secrets with no secretNamespaces",
    );
    // Cluster-scoped leftovers would outlive the namespaces.
    kubectl(
        &env,
        &["delete", "clusterrole,clusterrolebinding", &fullname],
        None,
    );
}

/// A kill switch the operator cannot read stops its start: here the chart's Role names the
/// chart's ConfigMap but the process is told to watch another one, so the API server refuses
/// and the operator exits at once saying why, rather than run with a switch that does nothing.
#[tokio::test]
async fn an_unreadable_kill_switch_stops_the_start() {
    let env = Env::new("e2e-chart-freeze").await;
    let release_ns = format!("{}-sys", env.ns);
    ensure_namespace(&env, &release_ns).await;
    let fullname = format!("co-{}", env.ns);
    let mut objs = render(&release_ns, &scoped_values(&env, &fullname));
    install(&env, &objs);
    for o in objs.iter_mut().filter(|o| o["kind"] == "Deployment") {
        for e in o["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array_mut()
            .unwrap()
        {
            if e["name"] == "FREEZE_CONFIGMAP" {
                e["value"] = json!("someone-elses");
            }
        }
    }
    let kubeconfig = service_account_kubeconfig(&env, &release_ns, &fullname).await;
    let mut op = start_as_chart(&env, &objs, &kubeconfig, &release_ns);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !op.exited() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(op.exited(), "the operator started without its kill switch");
    let logs = op.logs();
    assert!(
        logs.contains("cannot read the kill-switch ConfigMap someone-elses"),
        "{logs}"
    );
}

/// A client acting as `user` (impersonation by the test's administrator).
async fn as_user(env: &Env, user: &str) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(&env.kubeconfig).unwrap();
    let mut cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    cfg.auth_info.impersonate = Some(user.to_string());
    kube::Client::try_from(cfg).unwrap()
}

fn dynamic(client: &kube::Client, ns: &str, kind: &str) -> Api<kube::api::DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &gvk(kind))
}

async fn create_as(
    client: &kube::Client,
    ns: &str,
    kind: &str,
    obj: Value,
) -> Result<kube::api::DynamicObject, String> {
    let mut obj = obj;
    obj["apiVersion"] = json!("containment.defenderc2.io/v1alpha1");
    obj["kind"] = json!(kind);
    let o: kube::api::DynamicObject = serde_json::from_value(obj).unwrap();
    dynamic(client, ns, kind)
        .create(&PostParams::default(), &o)
        .await
        .map_err(|e| e.to_string())
}

/// Four eyes, enforced by the API server with the chart's ValidatingAdmissionPolicies and by
/// the operator: the requester annotation must be the writer; an approval's approver must be its
/// creator; the requester's own approval does not count; a second user's approval starts the
/// containment; a spec change needs a new approval; a GitOps service account applying and a
/// human approving works.
#[tokio::test]
async fn four_eyes_approval_is_enforced_by_the_api_server_and_the_operator() {
    let env = Env::new("e2e-approval").await;
    let fullname = format!("co-{}", env.ns);
    let objs = render(&format!("{}-sys", env.ns), &scoped_values(&env, &fullname));
    let admission: Vec<Value> = objs
        .iter()
        .filter(|o| {
            o["kind"]
                .as_str()
                .unwrap()
                .starts_with("ValidatingAdmissionPolicy")
        })
        .cloned()
        .collect();
    assert_eq!(admission.len(), 4, "two policies and their bindings");
    install(&env, &admission);
    env.policy(
        json!({"namespaces": {"names": [env.ns]}, "allow": [{"kinds": ["*"]}],
        "approval": {"kinds": ["SqlPublicAccessLockdown", "SqlIpBlock"]}}),
    )
    .await;
    let (alice, bob) = (format!("alice-{}", env.ns), format!("bob-{}", env.ns));
    let flux = format!("system:serviceaccount:{}:flux", env.ns);
    // Everyone here may write containments; approving is its own ClusterRole from the chart.
    let approver_role = objs
        .iter()
        .find(|o| {
            o["kind"] == "ClusterRole"
                && o["metadata"]["name"] == json!(format!("{fullname}-approver"))
        })
        .unwrap()
        .clone();
    let mut rbac = vec![approver_role];
    rbac.push(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "soc", "namespace": env.ns},
        "rules": [{"apiGroups": ["containment.defenderc2.io"], "resources": ["*"], "verbs": ["*"]}]}));
    for (name, role_kind, role) in [
        ("soc", "Role", "soc".to_string()),
        ("approvers", "ClusterRole", format!("{fullname}-approver")),
    ] {
        rbac.push(
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": name, "namespace": env.ns},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role},
            "subjects": [{"kind": "User", "name": alice}, {"kind": "User", "name": bob},
                         {"kind": "User", "name": flux}]}),
        );
    }
    install(&env, &rbac);
    let _op = env.operator();
    let (a, b, f) = (
        as_user(&env, &alice).await,
        as_user(&env, &bob).await,
        as_user(&env, &flux).await,
    );
    let lockdown = |requester: &str| {
        json!({"metadata": {"name": "lock", "annotations": {"containment.defenderc2.io/requested-by": requester}},
               "spec": {"target": target(SQL_PROD)}})
    };
    // The API server: the annotation must be the writer.
    let e = create_as(&a, &env.ns, "SqlPublicAccessLockdown", lockdown(&bob))
        .await
        .unwrap_err();
    assert!(e.contains("requested-by") && e.contains(&alice), "{e}");
    create_as(&a, &env.ns, "SqlPublicAccessLockdown", lockdown(&alice))
        .await
        .unwrap();
    let o = env
        .wait_condition(
            "SqlPublicAccessLockdown",
            "lock",
            "Reconciling",
            "True",
            Some("AwaitingApproval"),
        )
        .await;
    assert!(
        o["status"]["conditions"]
            .to_string()
            .contains("no ContainmentApproval"),
        "{o}"
    );
    let approval = |name: &str, approver: &str, generation: i64| {
        json!({"metadata": {"name": name}, "spec": {"target": {"kind": "SqlPublicAccessLockdown",
            "name": "lock", "generation": generation}, "approver": approver}})
    };
    // The API server: an approval names its creator.
    let e = create_as(
        &a,
        &env.ns,
        "ContainmentApproval",
        approval("forged", &bob, 1),
    )
    .await
    .unwrap_err();
    assert!(e.contains("spec.approver must be the user creating"), "{e}");
    // The operator: the requester's own approval does not count.
    create_as(
        &a,
        &env.ns,
        "ContainmentApproval",
        approval("self", &alice, 1),
    )
    .await
    .unwrap();
    env.wait(
        "SqlPublicAccessLockdown",
        "lock",
        "the self-approval seen and refused",
        std::time::Duration::from_secs(30),
        |o| {
            o.is_some_and(|o| {
                o["status"]["conditions"]
                    .to_string()
                    .contains("by the requester")
            })
        },
    )
    .await;
    let sql_calls = |log: &[Value]| {
        log.iter()
            .filter(|r| {
                r["path"]
                    .as_str()
                    .is_some_and(|p| p.contains("/Microsoft.Sql/"))
            })
            .count()
    };
    assert_eq!(
        sql_calls(&env.sim.requests().await),
        0,
        "nothing sent before approval"
    );
    // Approvals are immutable.
    let e = dynamic(&a, &env.ns, "ContainmentApproval")
        .patch(
            "self",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"approver": bob}})),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("immutable"), "{e}");
    // A second person approves: contained.
    create_as(
        &b,
        &env.ns,
        "ContainmentApproval",
        approval("bob-1", &bob, 1),
    )
    .await
    .unwrap();
    env.wait_condition(
        "SqlPublicAccessLockdown",
        "lock",
        "Ready",
        "True",
        Some("Contained"),
    )
    .await;

    // Bob may not change Alice's spec under her name; a spec change by her needs a new approval.
    let e = dynamic(&b, &env.ns, "SqlPublicAccessLockdown")
        .patch(
            "lock",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"reason": "bob"}})),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("requested-by"), "{e}");
    dynamic(&a, &env.ns, "SqlPublicAccessLockdown")
        .patch(
            "lock",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"reason": "INC-2"}})),
        )
        .await
        .unwrap();
    env.wait_condition(
        "SqlPublicAccessLockdown",
        "lock",
        "Reconciling",
        "True",
        Some("AwaitingApproval"),
    )
    .await;
    create_as(
        &b,
        &env.ns,
        "ContainmentApproval",
        approval("bob-2", &bob, 2),
    )
    .await
    .unwrap();
    env.wait_condition(
        "SqlPublicAccessLockdown",
        "lock",
        "Ready",
        "True",
        Some("Contained"),
    )
    .await;

    // GitOps: the service account applies (its name in the annotation), a human approves.
    create_as(
        &f,
        &env.ns,
        "SqlIpBlock",
        json!({"metadata": {"name": "git",
        "annotations": {"containment.defenderc2.io/requested-by": flux}},
        "spec": {"target": target(SQL_PROD), "ipAddresses": ["203.0.113.7"]}}),
    )
    .await
    .unwrap();
    env.wait_condition(
        "SqlIpBlock",
        "git",
        "Reconciling",
        "True",
        Some("AwaitingApproval"),
    )
    .await;
    create_as(
        &b,
        &env.ns,
        "ContainmentApproval",
        json!({"metadata": {"name": "git-1"},
        "spec": {"target": {"kind": "SqlIpBlock", "name": "git", "generation": 1}, "approver": bob,
                 "comment": "INC-4711 reviewed"}}),
    )
    .await
    .unwrap();
    env.wait_ready("SqlIpBlock", "git").await;
}
