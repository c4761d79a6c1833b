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
