//! The control plane behaves like a real cluster: CRDs, CEL, server-side apply on status, RBAC.
//! All tests share one control plane (`testenv::shared`).

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kube::api::{Api, ApiResource, DynamicObject, ObjectMeta, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use serde_json::json;

const WIDGET_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.testenv.example.io
spec:
  group: testenv.example.io
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [size]
            properties:
              size: {type: integer}
              maxSize: {type: integer}
            x-kubernetes-validations:
            - rule: "!has(self.maxSize) || self.size <= self.maxSize"
              message: "spec.size must not exceed spec.maxSize"
          status:
            type: object
            properties:
              phase: {type: string}
              observedGeneration: {type: integer}
"#;

fn widget_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk("testenv.example.io", "v1", "Widget"))
}

async fn setup() -> (kube::Client, &'static testenv::ControlPlane) {
    let cp = testenv::shared().await.expect("control plane");
    let client = cp.client().await.expect("client");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("widgets.yaml"), WIDGET_CRD).unwrap();
    let names = testenv::install_crds_from_dir(&client, dir.path())
        .await
        .expect("install CRD");
    assert_eq!(names, vec!["widgets.testenv.example.io".to_string()]);
    (client, cp)
}

fn widget(name: &str, size: i64, max: Option<i64>) -> DynamicObject {
    let mut spec = json!({"size": size});
    if let Some(m) = max {
        spec["maxSize"] = json!(m);
    }
    DynamicObject::new(name, &widget_resource()).data(json!({"spec": spec}))
}

#[tokio::test]
async fn namespaces_are_created_unique_per_test() {
    let (client, cp) = setup().await;
    let a = cp.namespace(&client, "ns-test").await.unwrap();
    let b = cp.namespace(&client, "ns-test").await.unwrap();
    assert_ne!(a, b);
    let got = Api::<Namespace>::all(client).get(&a).await.unwrap();
    assert_eq!(got.metadata.name.as_deref(), Some(a.as_str()));
}

#[tokio::test]
async fn custom_resource_round_trips_through_the_api_server() {
    let (client, cp) = setup().await;
    let ns = cp.namespace(&client, "crd").await.unwrap();
    let api: Api<DynamicObject> = Api::namespaced_with(client, &ns, &widget_resource());
    api.create(&PostParams::default(), &widget("w1", 3, Some(5)))
        .await
        .expect("valid widget accepted");
    let got = api.get("w1").await.unwrap();
    assert_eq!(got.data["spec"]["size"], json!(3));
    assert_eq!(got.metadata.generation, Some(1));
}

#[tokio::test]
async fn cel_rule_rejects_invalid_resource_with_its_message() {
    let (client, cp) = setup().await;
    let ns = cp.namespace(&client, "cel").await.unwrap();
    let api: Api<DynamicObject> = Api::namespaced_with(client, &ns, &widget_resource());
    let err = api
        .create(&PostParams::default(), &widget("too-big", 9, Some(5)))
        .await
        .expect_err("CEL rule must reject size > maxSize");
    match err {
        kube::Error::Api(status) => {
            assert_eq!(status.code, 422, "{status:?}");
            assert!(
                status
                    .message
                    .contains("spec.size must not exceed spec.maxSize"),
                "message was: {}",
                status.message
            );
        }
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn status_is_patched_with_server_side_apply_on_the_subresource() {
    let (client, cp) = setup().await;
    let ns = cp.namespace(&client, "ssa").await.unwrap();
    let api: Api<DynamicObject> = Api::namespaced_with(client, &ns, &widget_resource());
    api.create(&PostParams::default(), &widget("w", 1, None))
        .await
        .unwrap();

    let status = json!({
        "apiVersion": "testenv.example.io/v1",
        "kind": "Widget",
        "status": {"phase": "Ready", "observedGeneration": 1}
    });
    api.patch_status(
        "w",
        &PatchParams::apply("test-controller"),
        &Patch::Apply(&status),
    )
    .await
    .expect("SSA on status");
    let got = api.get("w").await.unwrap();
    assert_eq!(got.data["status"]["phase"], json!("Ready"));
    // The status subresource must not touch spec, and the main resource ignores status writes.
    assert_eq!(got.data["spec"]["size"], json!(1));
    let managers: Vec<_> = got
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m.subresource.as_deref() == Some("status"))
        .filter_map(|m| m.manager)
        .collect();
    assert_eq!(managers, vec!["test-controller".to_string()]);

    let spec_write = json!({
        "apiVersion": "testenv.example.io/v1", "kind": "Widget",
        "spec": {"size": 2}, "status": {"phase": "Hacked"}
    });
    api.patch(
        "w",
        &PatchParams::apply("user").force(),
        &Patch::Apply(&spec_write),
    )
    .await
    .unwrap();
    let got = api.get("w").await.unwrap();
    assert_eq!(got.data["status"]["phase"], json!("Ready"));
    assert_eq!(got.metadata.generation, Some(2));
}

#[tokio::test]
async fn rbac_denies_a_service_account_until_a_role_grants_it() {
    let (admin, cp) = setup().await;
    let ns = cp.namespace(&admin, "rbac").await.unwrap();
    Api::<ServiceAccount>::namespaced(admin.clone(), &ns)
        .create(
            &PostParams::default(),
            &ServiceAccount {
                metadata: ObjectMeta {
                    name: Some("reader".into()),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let as_sa = cp.client_as_service_account(&ns, "reader").await.unwrap();
    let sa_api: Api<DynamicObject> = Api::namespaced_with(as_sa, &ns, &widget_resource());

    match sa_api.list(&Default::default()).await {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 403, "{s:?}");
            assert!(
                s.message
                    .contains(&format!("system:serviceaccount:{ns}:reader")),
                "{}",
                s.message
            );
        }
        other => panic!("expected 403, got {other:?}"),
    }

    Api::<Role>::namespaced(admin.clone(), &ns)
        .create(
            &PostParams::default(),
            &Role {
                metadata: ObjectMeta {
                    name: Some("widget-reader".into()),
                    ..Default::default()
                },
                rules: Some(vec![PolicyRule {
                    api_groups: Some(vec!["testenv.example.io".into()]),
                    resources: Some(vec!["widgets".into()]),
                    verbs: vec!["list".into(), "get".into()],
                    ..Default::default()
                }]),
            },
        )
        .await
        .unwrap();
    Api::<RoleBinding>::namespaced(admin.clone(), &ns)
        .create(
            &PostParams::default(),
            &RoleBinding {
                metadata: ObjectMeta {
                    name: Some("widget-reader".into()),
                    ..Default::default()
                },
                role_ref: RoleRef {
                    api_group: Some("rbac.authorization.k8s.io".into()),
                    kind: "Role".into(),
                    name: "widget-reader".into(),
                },
                subjects: Some(vec![Subject {
                    kind: "ServiceAccount".into(),
                    name: "reader".into(),
                    namespace: Some(ns.clone()),
                    ..Default::default()
                }]),
            },
        )
        .await
        .unwrap();

    // The RBAC authorizer reads from an informer cache: allow a moment for the binding to land.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match sa_api.list(&Default::default()).await {
            Ok(list) => {
                assert!(list.items.is_empty());
                break;
            }
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("still denied after the RoleBinding: {e}"),
        }
    }
    // The grant is exactly list/get: create stays forbidden.
    match sa_api
        .create(&PostParams::default(), &widget("nope", 1, None))
        .await
    {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 403),
        other => panic!("expected 403 on create, got {other:?}"),
    }
}

#[tokio::test]
async fn kubeconfig_file_works_for_kubectl() {
    let (_client, cp) = setup().await;
    let kubectl = testenv::Assets::locate().unwrap().kubectl;
    let out = std::process::Command::new(kubectl)
        .arg("--kubeconfig")
        .arg(cp.kubeconfig_path())
        .args(["get", "crd", "widgets.testenv.example.io", "-o", "name"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "customresourcedefinition.apiextensions.k8s.io/widgets.testenv.example.io"
    );
}
