//! The generated CRDs: committed `crds/` is current, and the real API server accepts the CRDs and
//! enforces their CEL rules at admission with messages that name the field.

use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use kube::core::GroupVersionKind;
use serde_json::{Value, json};

const CRDS_FILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/crds/containment.defenderc2.io.yaml"
);
const SUB: &str = "00000000-0000-4000-8000-0000000000aa";

#[test]
fn committed_crds_are_up_to_date() {
    let generated = containment_operator::crds_yaml().unwrap();
    let committed = std::fs::read_to_string(CRDS_FILE).unwrap_or_default();
    assert!(
        generated == committed,
        "crds/ is stale: run `make crds` and commit the result"
    );
}

#[test]
fn committed_api_reference_is_up_to_date() {
    let root = env!("CARGO_MANIFEST_DIR");
    let generated = containment_operator::api_reference();
    let committed = std::fs::read_to_string(format!("{root}/docs/api.md")).unwrap_or_default();
    assert!(
        generated == committed,
        "docs/api.md is stale: run `make crds` and commit the result"
    );
    // Every field of every kind, and each example it links to exists.
    for crd in containment_operator::api::crds() {
        let kind = &crd.spec.names.kind;
        assert!(generated.contains(&format!("## {kind}\n")), "{kind}");
        if let Some(file) = containment_operator::api::reference::example(kind) {
            assert!(
                std::path::Path::new(&format!("{root}/examples/{file}")).exists(),
                "{kind}: examples/{file}"
            );
        }
    }
    for needle in [
        "| `spec.ipAddresses` | array of string | yes |",
        "| `spec.mode` | string |",
        "One of `Enforce`, `DryRun`, `Observe`.",
        "| `status.targetName` | string |",
        "`Target` = `.status.targetName`",
        "`Resource` (wide) = `.status.target`",
    ] {
        assert!(generated.contains(needle), "missing {needle:?}");
    }
    assert!(generated.contains("Rules:\n"), "CEL rules are listed");
}

/// Short names are part of the API (`kubectl get stdp`): each is the one the API contract
/// gives its kind (§7, and the first wave's table).
#[test]
fn short_names_are_the_contracts() {
    const CONTRACT: &[(&str, &str)] = &[
        ("SqlIpBlock", "sqlipb"),
        ("SqlPublicAccessLockdown", "sqlpal"),
        ("SqlEntraOnlyAuthentication", "sqleo"),
        ("SqlTransparentDataEncryption", "sqltde"),
        ("SqlAuditing", "sqlaud"),
        ("SqlAdminPasswordRotation", "sqlpr"),
        ("StorageKeyRotation", "stkr"),
        ("StoragePublicAccessLockdown", "stpal"),
        ("StorageSasRevocation", "stsr"),
        ("StorageSoftDeleteProtection", "stsd"),
        ("StorageDefenderProtection", "stdp"),
        ("CosmosKeyRotation", "cskr"),
        ("CosmosPublicAccessLockdown", "cspal"),
        ("DefenderAlertState", "dalert"),
        ("WafIpBlock", "wafipb"),
        ("NsgDenyRule", "nsgdr"),
        ("ArcIsolation", "arciso"),
        ("ArcRunCommand", "arcrc"),
        ("DeviceIsolation", "deviso"),
        ("DeviceCodeRestriction", "devcr"),
        ("ThreatSubmission", "tsub"),
        ("ThreatIndicator", "tind"),
        ("ConsentLockdown", "cnsl"),
        ("UserContainment", "usrc"),
        ("ServicePrincipalContainment", "spc"),
        ("PrivilegedAccessPolicy", "papol"),
        ("AppServiceRestart", "apprs"),
        ("AppServiceSecretRotation", "appsr"),
        ("EmailRemediation", "emrem"),
        ("ContainmentPolicy", "cpol"),
        ("ContainmentApproval", "capr"),
    ];
    for crd in containment_operator::api::crds() {
        let n = &crd.spec.names;
        let want = CONTRACT
            .iter()
            .find(|(k, _)| *k == n.kind)
            .unwrap_or_else(|| panic!("{} is not in the contract's table here", n.kind))
            .1;
        assert_eq!(
            n.short_names.as_deref(),
            Some(&[want.to_string()][..]),
            "{}",
            n.kind
        );
    }
}

/// The chart names the containment kinds in its RBAC and admission policies (never a wildcard,
/// which would also give the operator ContainmentPolicies and ContainmentApprovals to write):
/// that list is every containment kind's plural, and nothing else.
#[test]
fn the_charts_kind_list_is_every_containment_kind() {
    let helpers = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/charts/containment-operator/templates/_helpers.tpl"
    ))
    .unwrap();
    let start = helpers.find("define \"co.kindResources\"").unwrap();
    let body = &helpers[start..];
    let line = body.lines().nth(1).unwrap();
    let mut listed: Vec<&str> = line.split_whitespace().collect();
    listed.sort();
    let mut kinds: Vec<String> = containment_operator::api::crds()
        .into_iter()
        .map(|c| c.spec.names.plural)
        .filter(|p| p != "containmentpolicies" && p != "containmentapprovals")
        .collect();
    kinds.sort();
    assert_eq!(listed, kinds);
}

/// The chart's values schema accepts exactly the kinds this build serves in `kinds` and
/// `driftIntervalFor`.
#[test]
fn the_values_schema_names_every_kind() {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/charts/containment-operator/values.schema.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let mut kinds: Vec<&str> = containment_operator::kinds::KINDS
        .iter()
        .map(|k| k.kind)
        .collect();
    kinds.sort();
    for enum_at in [
        "/properties/kinds/items/enum",
        "/properties/driftIntervalFor/propertyNames/enum",
    ] {
        let mut listed: Vec<&str> = schema
            .pointer(enum_at)
            .unwrap_or_else(|| panic!("{enum_at}"))
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        listed.sort();
        assert_eq!(listed, kinds, "{enum_at}");
    }
}

async fn api_of(kind: &str) -> (Api<DynamicObject>, ApiResource) {
    let cp = testenv::shared().await.unwrap();
    let client = cp.client().await.unwrap();
    let dir = std::path::Path::new(CRDS_FILE).parent().unwrap();
    testenv::install_crds_from_dir(&client, dir).await.unwrap();
    let ns = cp.namespace(&client, "crd-admission").await.unwrap();
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "containment.defenderc2.io",
        "v1alpha1",
        kind,
    ));
    (Api::namespaced_with(client, &ns, &ar), ar)
}

async fn create(
    api: &Api<DynamicObject>,
    ar: &ApiResource,
    name: &str,
    spec: Value,
) -> Result<DynamicObject, String> {
    let obj = DynamicObject::new(name, ar).data(json!({"spec": spec}));
    api.create(&PostParams::default(), &obj)
        .await
        .map_err(|e| match e {
            kube::Error::Api(s) => format!("{} {}", s.code, s.message),
            other => other.to_string(),
        })
}

fn sql_target() -> Value {
    json!({"subscriptionId": SUB, "resourceGroup": "rg-prod", "name": "sql-prod-01"})
}

#[tokio::test]
async fn valid_resources_are_admitted_with_defaults() {
    let (api, ar) = api_of("SqlIpBlock").await;
    let got = create(
        &api,
        &ar,
        "ok",
        json!({"target": sql_target(), "ipAddresses": ["203.0.113.5", "198.51.100.0/24"]}),
    )
    .await
    .unwrap();
    assert_eq!(got.data["spec"]["mode"], "Enforce");
    assert_eq!(got.data["spec"]["removeAllowAzureServicesRule"], false);
    let by_id = json!({"resourceId": format!("/subscriptions/{SUB}/resourceGroups/rg-prod/providers/Microsoft.Sql/servers/sql-prod-01")});
    create(
        &api,
        &ar,
        "by-id",
        json!({"target": by_id, "ipAddresses": ["203.0.113.5"], "mode": "DryRun"}),
    )
    .await
    .unwrap();

    let (api, ar) = api_of("StorageKeyRotation").await;
    let got = create(
        &api,
        &ar,
        "rot",
        json!({"target": sql_target(), "trigger": "INC-1", "schedule": "720h"}),
    )
    .await
    .unwrap();
    assert_eq!(got.data["spec"]["keys"], json!(["key1", "key2"]));
}

#[tokio::test]
async fn invalid_targets_are_rejected_naming_the_field() {
    let (api, ar) = api_of("SqlPublicAccessLockdown").await;
    let both = json!({"resourceId": format!("/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Sql/servers/s"), "subscriptionId": SUB, "resourceGroup": "rg", "name": "s"});
    let cases = [
        (
            both,
            "set either resourceId or subscriptionId + resourceGroup + name, not both",
        ),
        (
            json!({"subscriptionId": SUB, "name": "s"}),
            "set resourceId, or all three of subscriptionId, resourceGroup and name",
        ),
        (
            json!({"subscriptionId": "not-a-guid", "resourceGroup": "rg", "name": "s"}),
            "spec.target.subscriptionId must be a GUID",
        ),
        (
            json!({"subscriptionId": SUB, "resourceGroup": "rg/evil", "name": "s"}),
            "spec.target.resourceGroup must be",
        ),
        (
            json!({"resourceId": "/subscriptions/x/whatever"}),
            "spec.target.resourceId must be an ARM resource id",
        ),
        // Segments reach request URLs: nothing that changes the path or query.
        (
            json!({"resourceId": format!("/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Sql/servers/s/../../../other")}),
            "spec.target.resourceId: no segment may be '.' or '..'",
        ),
        (
            json!({"resourceId": format!("/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Sql/servers/s?api-version=1")}),
            "spec.target.resourceId must be an ARM resource id",
        ),
        (
            json!({"resourceId": format!("/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Sql/servers/s#x")}),
            "spec.target.resourceId must be an ARM resource id",
        ),
        (
            json!({"subscriptionId": SUB, "resourceGroup": "rg", "name": "s/firewallRules/x"}),
            "spec.target.name must be one resource name",
        ),
        (
            json!({"subscriptionId": SUB, "resourceGroup": "rg", "name": ".."}),
            "spec.target.name must be one resource name",
        ),
        (
            json!({"subscriptionId": SUB, "resourceGroup": "rg", "name": "s?x=1"}),
            "spec.target.name must be one resource name",
        ),
        (
            json!({"subscriptionId": SUB, "resourceGroup": "rg", "name": "a b"}),
            "spec.target.name must be one resource name",
        ),
        (
            json!({"subscriptionId": SUB, "resourceGroup": "rg", "name": "a\\b"}),
            "spec.target.name must be one resource name",
        ),
    ];
    for (i, (target, msg)) in cases.into_iter().enumerate() {
        let err = create(&api, &ar, &format!("bad-{i}"), json!({"target": target}))
            .await
            .expect_err("must be rejected");
        assert!(
            err.starts_with("422") && err.contains(msg),
            "case {i}: {err}"
        );
    }
    let err = create(
        &api,
        &ar,
        "bad-mode",
        json!({"target": sql_target(), "mode": "Sometimes"}),
    )
    .await
    .unwrap_err();
    assert!(
        err.contains("spec.mode") && err.contains("Unsupported value"),
        "{err}"
    );
}

#[tokio::test]
async fn ip_lists_and_cross_field_rules_are_enforced() {
    let (api, ar) = api_of("SqlIpBlock").await;
    for (i, (ips, msg)) in [
        (
            json!(["203.0.113.5", "999.1.1.1"]),
            "every entry must be an IPv4 address or IPv4 CIDR",
        ),
        (
            json!(["2001:db8::1"]),
            "every entry must be an IPv4 address or IPv4 CIDR",
        ),
        (json!([]), "spec.ipAddresses"),
    ]
    .into_iter()
    .enumerate()
    {
        let err = create(
            &api,
            &ar,
            &format!("ips-{i}"),
            json!({"target": sql_target(), "ipAddresses": ips}),
        )
        .await
        .unwrap_err();
        assert!(err.contains(msg), "case {i}: {err}");
    }
    let err = create(&api, &ar, "no-ips", json!({"target": sql_target()}))
        .await
        .unwrap_err();
    assert!(
        err.contains("spec.ipAddresses") && err.contains("Required"),
        "{err}"
    );

    let (api, ar) = api_of("StoragePublicAccessLockdown").await;
    let err = create(
        &api,
        &ar,
        "x",
        json!({"target": sql_target(), "allowedIpRanges": ["203.0.113.0/24"]}),
    )
    .await
    .unwrap_err();
    assert!(
        err.contains("allowedIpRanges is only valid with publicNetworkAccess: Restricted"),
        "{err}"
    );
    create(&api, &ar, "y", json!({"target": sql_target(), "publicNetworkAccess": "Restricted", "allowedIpRanges": ["203.0.113.0/24"]})).await.unwrap();

    let (api, ar) = api_of("SqlAuditing").await;
    for (spec, msg) in [
        (
            json!({}),
            "spec: set storageEndpoint, or azureMonitor: true",
        ),
        (
            json!({"storageEndpoint": "https://evil.example/"}),
            "spec.storageEndpoint must be a storage account blob endpoint",
        ),
        (
            json!({"azureMonitor": true, "retentionDays": -1}),
            "spec.retentionDays",
        ),
    ] {
        let mut spec = spec;
        spec["target"] = sql_target();
        let err = create(&api, &ar, "aud", spec.clone()).await.unwrap_err();
        assert!(err.contains(msg), "{spec}: {err}");
    }
    let got = create(
        &api,
        &ar,
        "aud",
        json!({"target": sql_target(), "storageEndpoint": "https://staudit01.blob.core.windows.net/"}),
    )
    .await
    .unwrap();
    assert_eq!(got.data["spec"]["retentionDays"], 90);
    assert_eq!(
        got.data["spec"]["auditActionsAndGroups"]
            .as_array()
            .unwrap()
            .len(),
        3
    );

    let (api, ar) = api_of("EmailRemediation").await;
    let mail = json!([{"networkMessageId": "6f1c0d9e-0000-4000-8000-000000000001", "recipientEmailAddress": "alice@contoso.example"}]);
    for (spec, msg) in [
        (json!({}), "spec.emails: Required value"),
        (
            json!({"emails": mail, "action": "HardDelete"}),
            "set spec.allowHardDelete: true",
        ),
        (
            json!({"emails": mail, "action": "HardDelete", "allowHardDelete": true, "releasePolicy": "Restore"}),
            "spec.releasePolicy: Restore cannot bring back hard-deleted mail",
        ),
        (
            json!({"emails": [mail[0], mail[0]]}),
            "spec.emails must not list a message and recipient twice",
        ),
        (
            json!({"emails": [{"networkMessageId": "abc", "recipientEmailAddress": "alice@contoso.example"}]}),
            "networkMessageId must be a GUID",
        ),
        (
            json!({"emails": mail, "action": "MoveToQuarantine"}),
            "spec.action",
        ),
    ] {
        let err = create(&api, &ar, "em", spec.clone()).await.unwrap_err();
        assert!(err.contains(msg), "{spec}: {err}");
    }
    create(
        &api,
        &ar,
        "em",
        json!({"emails": mail, "action": "HardDelete", "allowHardDelete": true}),
    )
    .await
    .unwrap();

    let (api, ar) = api_of("NsgDenyRule").await;
    let ip = json!(["203.0.113.7"]);
    for (i, (spec, msg)) in [
        (
            json!({"ipAddresses": ["203.0.113.0/33"]}),
            "spec.ipAddresses",
        ),
        (json!({"ipAddresses": ip, "ports": ["70000"]}), "spec.ports"),
        (
            json!({"ipAddresses": ip, "ports": ["443-80"]}),
            "spec.ports",
        ),
        (json!({"ipAddresses": ip, "ports": ["ssh"]}), "spec.ports"),
        (
            json!({"ipAddresses": ip, "direction": "Both"}),
            "spec.direction",
        ),
        (
            json!({"ipAddresses": ip, "protocol": "Esp"}),
            "spec.protocol",
        ),
        (
            json!({"ipAddresses": ip, "priorityBand": {"from": 99}}),
            "spec.priorityBand.from",
        ),
        (
            json!({"ipAddresses": ip, "priorityBand": {"from": 300, "to": 200}}),
            "spec.priorityBand: from must not be greater than to",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let mut spec = spec;
        spec["target"] = sql_target();
        let err = create(&api, &ar, &format!("nsg-{i}"), spec.clone())
            .await
            .unwrap_err();
        assert!(err.contains(msg), "{spec}: {err}");
    }
    // A valid one: ports and ranges, defaults filled in.
    let mut spec = json!({"ipAddresses": ip, "ports": ["22", "8000-8100", "65535"]});
    spec["target"] = sql_target();
    let o = create(&api, &ar, "nsg-ok", spec).await.unwrap();
    assert_eq!(o.data["spec"]["direction"], "Inbound");
    assert_eq!(o.data["spec"]["protocol"], "*");

    let (api, ar) = api_of("ArcRunCommand").await;
    for (spec, msg) in [
        (json!({}), "spec.script: Required value"),
        (json!({"script": ""}), "spec.script"),
        (
            json!({"script": "x", "timeoutSeconds": 10}),
            "spec.timeoutSeconds",
        ),
        (
            json!({"script": "x", "parameters": [{"name": "", "value": "v"}]}),
            "spec.parameters[0].name",
        ),
    ] {
        let mut spec = spec;
        spec["target"] = sql_target();
        let err = create(&api, &ar, "run", spec.clone()).await.unwrap_err();
        assert!(err.contains(msg), "{spec}: {err}");
    }

    let (api, ar) = api_of("AppServiceSecretRotation").await;
    let from = json!({"secretName": "app-secrets"});
    for (spec, msg) in [
        (json!({}), "spec.settingsFrom: Required value"),
        (
            json!({"settingsFrom": from, "slots": ["bad_slot"]}),
            "spec.slots: a slot name is letters, digits and hyphens",
        ),
        (
            json!({"settingsFrom": from, "slots": ["a", "a"]}),
            "spec.slots[1]: Duplicate value",
        ),
    ] {
        let mut spec = spec;
        spec["target"] = sql_target();
        let err = create(&api, &ar, "assr", spec.clone()).await.unwrap_err();
        assert!(err.contains(msg), "{spec}: {err}");
    }

    let (api, ar) = api_of("SqlAdminPasswordRotation").await;
    let publish = json!({"secretName": "sql-admin"});
    for (spec, msg) in [
        (json!({}), "spec.publishTo: Required value"),
        (json!({"publishTo": publish, "length": 8}), "spec.length"),
        (json!({"publishTo": publish, "length": 129}), "spec.length"),
        (
            json!({"publishTo": publish, "schedule": "30m"}),
            "spec.schedule must be a duration of at least 1h",
        ),
        (
            json!({"publishTo": {"secretName": ""}}),
            "spec.publishTo.secretName",
        ),
    ] {
        let mut spec = spec;
        spec["target"] = sql_target();
        let err = create(&api, &ar, "pw", spec.clone()).await.unwrap_err();
        assert!(err.contains(msg), "{spec}: {err}");
    }
    let got = create(
        &api,
        &ar,
        "pw",
        json!({"target": sql_target(), "publishTo": publish}),
    )
    .await
    .unwrap();
    assert_eq!(got.data["spec"]["length"], 32);

    let (api, ar) = api_of("SqlTransparentDataEncryption").await;
    for (dbs, msg) in [
        (json!([]), "spec.databases"),
        (
            json!(["orders", "orders"]),
            "spec.databases[1]: Duplicate value",
        ),
        (json!(["master"]), "spec.databases: master cannot be listed"),
    ] {
        let err = create(
            &api,
            &ar,
            "tde",
            json!({"target": sql_target(), "databases": dbs}),
        )
        .await
        .unwrap_err();
        assert!(err.contains(msg), "{dbs}: {err}");
    }
    create(
        &api,
        &ar,
        "tde",
        json!({"target": sql_target(), "databases": ["orders"]}),
    )
    .await
    .unwrap();

    let (api, ar) = api_of("StorageDefenderProtection").await;
    let got = create(
        &api,
        &ar,
        "scan",
        json!({"target": sql_target(), "malwareScanning": {}}),
    )
    .await
    .unwrap();
    assert_eq!(got.data["spec"]["malwareScanning"]["capGBPerMonth"], 5000);
    assert_eq!(got.data["spec"]["sensitiveDataDiscovery"], false);
    for (scan, msg) in [
        (
            json!({"capGBPerMonth": 0}),
            "spec.malwareScanning.capGBPerMonth must be -1 (no cap) or at least 1",
        ),
        (
            json!({"scanResultsEventGridTopicResourceId": "/subscriptions/s/topics/t"}),
            "spec.malwareScanning.scanResultsEventGridTopicResourceId must be an Event Grid topic id",
        ),
    ] {
        let err = create(
            &api,
            &ar,
            "bad",
            json!({"target": sql_target(), "malwareScanning": scan}),
        )
        .await
        .unwrap_err();
        assert!(err.contains(msg), "{err}");
    }

    let (api, ar) = api_of("StorageSoftDeleteProtection").await;
    let got = create(&api, &ar, "defaults", json!({"target": sql_target()}))
        .await
        .unwrap();
    assert_eq!(
        (
            &got.data["spec"]["blobRetentionDays"],
            &got.data["spec"]["containerRetentionDays"]
        ),
        (&json!(14), &json!(14))
    );
    for (field, days) in [("blobRetentionDays", 0), ("containerRetentionDays", 366)] {
        let err = create(
            &api,
            &ar,
            "days",
            json!({"target": sql_target(), field: days}),
        )
        .await
        .unwrap_err();
        assert!(err.contains(&format!("spec.{field}")), "{field}: {err}");
    }

    let (api, ar) = api_of("StorageKeyRotation").await;
    let err = create(
        &api,
        &ar,
        "dup",
        json!({"target": sql_target(), "keys": ["key1", "key1"]}),
    )
    .await
    .unwrap_err();
    assert!(err.contains("spec.keys must not list a key twice"), "{err}");
    let err = create(
        &api,
        &ar,
        "sched",
        json!({"target": sql_target(), "schedule": "5m"}),
    )
    .await
    .unwrap_err();
    assert!(
        err.contains("spec.schedule must be a duration of at least 1h"),
        "{err}"
    );
}
