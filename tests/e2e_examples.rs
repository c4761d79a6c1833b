//! Every manifest under examples/ is admitted by the real API server and converges against the
//! demo world.

mod support;

use kube::api::{DynamicObject, Patch, PatchParams};
use support::*;

#[tokio::test]
async fn every_example_converges() {
    let env = Env::new("e2e-examples").await;
    let _op = env.operator();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
    let mut applied = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for path in files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
    {
        let text = std::fs::read_to_string(path).unwrap();
        let obj: DynamicObject =
            serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let kind = obj.types.as_ref().unwrap().kind.clone();
        let name = obj.metadata.name.clone().unwrap();
        env.api(&kind)
            .patch(
                &name,
                &PatchParams::apply("kubectl").force(),
                &Patch::Apply(&obj),
            )
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        applied.push((kind, name));
    }
    let mut kinds: Vec<&str> = applied.iter().map(|(k, _)| k.as_str()).collect();
    kinds.sort();
    let mut all: Vec<&str> = containment_operator::kinds::KINDS
        .iter()
        .map(|k| k.kind)
        .collect();
    all.sort();
    assert_eq!(kinds, all, "exactly one example per kind");
    for (kind, name) in &applied {
        if kind == "PrivilegedAccessPolicy" {
            // Its example soaks for 24h: converged means created and report-only.
            let o = env
                .wait_condition(kind, name, "Reconciling", "True", Some("ReportOnly"))
                .await;
            assert_eq!(
                o["status"]["policyState"], "enabledForReportingButNotEnforced",
                "{o}"
            );
            continue;
        }
        env.wait_ready(kind, name).await;
    }
    kubectl_tables(&env, &kinds).await;
    // The demo's ContainmentPolicy (make up / make demo apply it) is admitted as written.
    let text = std::fs::read_to_string(format!("{dir}/policy/containment-demo.yaml")).unwrap();
    let policy: DynamicObject = serde_yaml::from_str(&text).unwrap();
    env.policies()
        .patch(
            "containment-demo",
            &PatchParams::apply("kubectl").force(),
            &Patch::Apply(&policy),
        )
        .await
        .expect("the demo policy is admitted");
}

/// What `kubectl get containment -A` prints, as the API server renders it (the Table kubectl
/// asks for): the documented columns, a short TARGET, the full id only in `-o wide`.
async fn kubectl_tables(env: &Env, kinds: &[&str]) {
    let mut widest = (0, String::new());
    for kind in kinds {
        let req = http::Request::get(env.api(kind).resource_url())
            .header("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
            .body(Vec::new())
            .unwrap();
        let table: serde_json::Value = env.client.request(req).await.unwrap();
        let columns: Vec<(&str, i64)> = table["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["name"].as_str().unwrap(),
                    c["priority"].as_i64().unwrap_or(0),
                )
            })
            .collect();
        let shown: Vec<&str> = columns.iter().filter(|c| c.1 == 0).map(|c| c.0).collect();
        let wide: Vec<&str> = columns.iter().filter(|c| c.1 > 0).map(|c| c.0).collect();
        assert_eq!(
            shown,
            ["Name", "Target", "Mode", "Ready", "Reason", "Drifts", "Age"],
            "{kind}"
        );
        assert_eq!(wide, ["Resource", "Message"], "{kind}");
        // kubectl's columns: NAMESPACE, kind.group/name, then the kind's; 3 spaces between.
        let mut widths = vec!["NAMESPACE".len(), "NAME".len()];
        widths.extend(shown[1..].iter().map(|c| c.len()));
        for row in table["rows"].as_array().unwrap() {
            let cells = row["cells"].as_array().unwrap();
            let text = |i: usize| match &cells[i] {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Null => "<none>".into(),
                v => v.to_string(),
            };
            let target = text(1);
            assert!(
                !target.is_empty()
                    && target != "<none>"
                    && target.chars().count() <= 40
                    && !target.starts_with("/subscriptions/"),
                "{kind}: TARGET {target:?}"
            );
            let wide_id = text(shown.len());
            assert!(
                wide_id.len() >= target.len(),
                "{kind}: RESOURCE {wide_id:?}"
            );
            let name = format!(
                "{}.containment.defenderc2.io/{}",
                kind.to_lowercase(),
                text(0)
            );
            let row_widths = [env.ns.len(), name.chars().count()]
                .into_iter()
                .chain((1..shown.len()).map(|i| text(i).chars().count()));
            for (w, r) in widths.iter_mut().zip(row_widths) {
                *w = (*w).max(r);
            }
        }
        let width = widths.iter().sum::<usize>() + 3 * (widths.len() - 1);
        eprintln!("kubectl get containment -A: {kind} rows are {width} columns wide");
        if width > widest.0 {
            widest = (width, kind.to_string());
        }
    }
    eprintln!(
        "kubectl get containment -A: widest table {} columns ({})",
        widest.0, widest.1
    );
}
