//! StorageDefenderProtection: Defender for Storage on for one account through the extension
//! resource `defenderForStorageSettings/current` (azure-api-facts §3.4). It is written whole by
//! PUT (sync; 201 means "partially succeeded"), so each write carries the features this resource
//! does not ask for as read, and its answer's `operationStatus` decides whether it worked. There
//! is no DELETE: release PUTs the recorded settings, or hands the account back to the
//! subscription's plan (`overrideSubscriptionLevelSettings: false`) when it had none.

use serde_json::{Map, Value, json};

use super::storage_public_access::STORAGE_API;
use crate::api::common::ReleasePolicy;
use crate::api::storage::{StorageDefenderProtection, StorageDefenderProtectionSpec};
use crate::azure::{AzureError, Clients, ResourceId};
use crate::engine::{Assessment, Control, Stall, Step};

crate::impl_kind!(StorageDefenderProtection, status: s => &s.common);

pub const DEFENDER_API: &str = "2025-01-01";

#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// The account's Azure tags (the guard's protected tag).
    pub tags: Map<String, Value>,
    /// The setting's `properties` without the read-only `operationStatus`; `None` when the
    /// account has none of its own (the subscription's plan applies).
    pub settings: Option<Value>,
    /// The `operationStatus` of each feature, as read (for the message).
    pub feature_status: Vec<(&'static str, Value)>,
}

const FEATURES: [&str; 2] = ["malwareScanning", "sensitiveDataDiscovery"];

fn setting(account: &str) -> String {
    format!("{account}/providers/Microsoft.Security/defenderForStorageSettings/current")
}

/// `properties` as Azure accepts them back: without the read-only `operationStatus`.
fn writable(props: &Value) -> Value {
    let mut p = props.clone();
    for f in FEATURES {
        if let Some(o) = p.get_mut(f).and_then(Value::as_object_mut) {
            o.remove("operationStatus");
        }
    }
    p
}

/// The settings that satisfy `spec`, built on `current` (what it does not ask for stays as is).
pub fn desired(spec: &StorageDefenderProtectionSpec, current: Option<&Value>) -> Value {
    let mut p = current.cloned().unwrap_or_else(|| json!({}));
    p["isEnabled"] = json!(true);
    p["overrideSubscriptionLevelSettings"] = json!(true);
    if let Some(m) = &spec.malware_scanning {
        p["malwareScanning"]["onUpload"] =
            json!({"isEnabled": true, "capGBPerMonth": m.cap_gb_per_month});
        if let Some(topic) = &m.scan_results_event_grid_topic_resource_id {
            p["malwareScanning"]["scanResultsEventGridTopicResourceId"] = json!(topic);
        }
    }
    if spec.sensitive_data_discovery {
        p["sensitiveDataDiscovery"] = json!({"isEnabled": true});
    }
    p
}

fn put_step(account: &str, props: Value, what: &str) -> Step {
    Step::put(setting(account), DEFENDER_API, json!({"properties": props})).what(what)
}

fn summary(spec: &StorageDefenderProtectionSpec, o: &Observed) -> String {
    let mut parts = vec!["Defender for Storage on".to_string()];
    if let Some(m) = &spec.malware_scanning {
        let cap = match m.cap_gb_per_month {
            -1 => "no cap".to_string(),
            n => format!("cap {n} GB/month"),
        };
        parts.push(format!("malware scanning on upload ({cap})"));
    }
    if spec.sensitive_data_discovery {
        parts.push("sensitive data discovery".into());
    }
    let statuses: Vec<String> = o
        .feature_status
        .iter()
        .filter_map(|(f, s)| s["code"].as_str().map(|c| format!("{f} {c}")))
        .collect();
    let mut msg = parts.join(", ");
    if !statuses.is_empty() {
        msg.push_str(&format!(" ({})", statuses.join(", ")));
    }
    msg
}

/// A feature the write enabled that Azure reports as not Succeeded.
fn failed_feature(reply: &Value) -> Option<(&'static str, String, String)> {
    FEATURES.into_iter().find_map(|f| {
        let s = &reply["properties"][f]["operationStatus"];
        let code = s["code"].as_str()?;
        (code != "Succeeded").then(|| {
            (
                f,
                code.to_string(),
                s["message"].as_str().unwrap_or_default().to_string(),
            )
        })
    })
}

#[derive(Default)]
pub struct StorageDefenderProtectionControl;

#[async_trait::async_trait]
impl Control for StorageDefenderProtectionControl {
    type K = StorageDefenderProtection;
    type Observed = Observed;
    const RESOURCE_TYPE: &'static str = "Microsoft.Storage/storageAccounts";
    const DEFAULT_RELEASE: Option<ReleasePolicy> = Some(ReleasePolicy::Restore);
    const SHARED_OBSERVATION: bool = true;
    /// One setting per account: resources on it want the union of features.
    const COMPOSES: bool = true;
    /// Enabling malware scanning or sensitive data discovery also makes Defender create Event
    /// Grid subscriptions and role assignments on the account in the caller's name (facts §3.4).
    const ACTIONS: &'static [&'static str] = &[
        "Microsoft.Storage/storageAccounts/read",
        "Microsoft.Security/defenderForStorageSettings/read",
        "Microsoft.Security/defenderForStorageSettings/write",
        "Microsoft.Storage/storageAccounts/write",
        "Microsoft.EventGrid/eventSubscriptions/read",
        "Microsoft.EventGrid/eventSubscriptions/write",
        "Microsoft.EventGrid/eventSubscriptions/delete",
        "Microsoft.Authorization/roleAssignments/read",
        "Microsoft.Authorization/roleAssignments/write",
        "Microsoft.Authorization/roleAssignments/delete",
    ];
    const ACTION_VARIANTS: &'static [(&'static str, &'static [&'static str])] = &[(
        "ActivityMonitoringOnly",
        &[
            "Microsoft.Storage/storageAccounts/read",
            "Microsoft.Security/defenderForStorageSettings/read",
            "Microsoft.Security/defenderForStorageSettings/write",
        ],
    )];

    fn compose(&self, acc: &mut Self::K, other: &Self::K) -> Result<(), String> {
        let (a, b) = (&mut acc.spec, &other.spec);
        match (&mut a.malware_scanning, &b.malware_scanning) {
            (Some(x), Some(y)) => {
                if x.scan_results_event_grid_topic_resource_id
                    != y.scan_results_event_grid_topic_resource_id
                {
                    return Err("both enable malware scanning with different scanResultsEventGridTopicResourceId".into());
                }
                // The higher cap (-1, no cap, is the highest).
                if x.cap_gb_per_month != -1
                    && (y.cap_gb_per_month == -1 || y.cap_gb_per_month > x.cap_gb_per_month)
                {
                    x.cap_gb_per_month = y.cap_gb_per_month;
                }
            }
            (None, Some(y)) => a.malware_scanning = Some(y.clone()),
            _ => {}
        }
        a.sensitive_data_discovery |= b.sensitive_data_discovery;
        Ok(())
    }

    fn tags(&self, observed: &Observed) -> Option<Map<String, Value>> {
        Some(observed.tags.clone())
    }

    async fn observe(
        &self,
        az: &Clients,
        _obj: &Self::K,
        t: &ResourceId,
    ) -> Result<Observed, AzureError> {
        let account = az.arm.get(&t.id, STORAGE_API).await?;
        let tags = super::tags_of(&account);
        let props = az
            .arm
            .find(&setting(&t.id), DEFENDER_API)
            .await?
            .map(|mut s| s["properties"].take());
        let feature_status = FEATURES
            .into_iter()
            .filter_map(|f| {
                let s = props.as_ref()?[f]["operationStatus"].clone();
                (!s.is_null()).then_some((f, s))
            })
            .collect();
        Ok(Observed {
            tags,
            settings: props.as_ref().map(writable),
            feature_status,
        })
    }

    fn assess(
        &self,
        obj: &Self::K,
        t: &ResourceId,
        o: &Observed,
        status: &crate::api::common::CommonStatus,
    ) -> Result<Assessment, Stall> {
        let want = desired(&obj.spec, o.settings.as_ref());
        if o.settings.as_ref() == Some(&want) {
            return Ok(Assessment {
                message: summary(&obj.spec, o),
                ..Default::default()
            });
        }
        Ok(Assessment {
            steps: vec![put_step(&t.id, want, "enable Defender for Storage")],
            message: match &o.settings {
                None => "the subscription's Defender plan applies".into(),
                Some(s) if s["isEnabled"] != true => "Defender for Storage is off".into(),
                Some(_) => "Defender for Storage settings differ".into(),
            },
            // The first-seen settings (or none) are what release puts back. Explicit flag: a
            // null would vanish in the status merge patch.
            record: Some(status.restore.clone().unwrap_or_else(|| match &o.settings {
                Some(s) => json!({"hadSetting": true, "settings": s}),
                None => json!({"hadSetting": false}),
            })),
            ..Default::default()
        })
    }

    fn reply_error(&self, _obj: &Self::K, step: &Step, reply: &Value) -> Option<AzureError> {
        let (feature, code, message) = failed_feature(reply)?;
        // 201 is "partially succeeded" [spec]; the reason names the feature that failed.
        let mut reason = feature.to_string();
        reason[..1].make_ascii_uppercase();
        Some(AzureError::Operation {
            status: "PartiallySucceeded".into(),
            code: format!("{reason}{code}"),
            message: format!(
                "{} answered {feature}.operationStatus {code}: {message}",
                step.path
            ),
        })
    }

    fn on_reply(&self, _step: &Step, r: &crate::azure::Reply) -> Map<String, Value> {
        let reply = &r.body;
        let mut m = Map::new();
        for f in FEATURES {
            let s = &reply["properties"][f]["operationStatus"];
            if !s.is_null() {
                m.insert(f.into(), s.clone());
            }
        }
        m
    }

    fn release(&self, _obj: &Self::K, t: &ResourceId, o: &Observed, restore: &Value) -> Vec<Step> {
        let back = match &restore["settings"] {
            _ if restore["hadSetting"] == false => {
                // It had no setting of its own: the subscription's plan applies again.
                if o.settings
                    .as_ref()
                    .is_none_or(|s| s["overrideSubscriptionLevelSettings"] == false)
                {
                    return Vec::new();
                }
                json!({"isEnabled": false, "overrideSubscriptionLevelSettings": false})
            }
            Value::Null => return Vec::new(),
            prior => {
                if o.settings.as_ref() == Some(prior) {
                    return Vec::new();
                }
                prior.clone()
            }
        };
        vec![put_step(
            &t.id,
            back,
            "restore Defender for Storage settings",
        )]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(v: Value) -> StorageDefenderProtectionSpec {
        let mut base = json!({"target": {"resourceId": "/subscriptions/s/resourceGroups/r/providers/Microsoft.Storage/storageAccounts/a"}});
        for (k, x) in v.as_object().unwrap() {
            base[k] = x.clone();
        }
        serde_json::from_value(base).unwrap()
    }

    #[test]
    fn enables_and_keeps_what_it_does_not_ask_for() {
        let s = spec(json!({"malwareScanning": {}}));
        let none = desired(&s, None);
        assert_eq!(
            none,
            json!({"isEnabled": true, "overrideSubscriptionLevelSettings": true,
                "malwareScanning": {"onUpload": {"isEnabled": true, "capGBPerMonth": 5000}}})
        );
        // Sensitive data discovery someone else turned on stays on; the topic stays.
        let current = json!({"isEnabled": false, "overrideSubscriptionLevelSettings": true,
            "malwareScanning": {"onUpload": {"isEnabled": false, "capGBPerMonth": 10},
                "scanResultsEventGridTopicResourceId": "/t"},
            "sensitiveDataDiscovery": {"isEnabled": true}});
        let want = desired(&s, Some(&current));
        assert_eq!(want["sensitiveDataDiscovery"]["isEnabled"], true);
        assert_eq!(
            want["malwareScanning"]["scanResultsEventGridTopicResourceId"],
            "/t"
        );
        assert_eq!(want["malwareScanning"]["onUpload"]["capGBPerMonth"], 5000);
        // Compliant: nothing to send.
        assert_eq!(desired(&s, Some(&want)), want);
    }

    #[test]
    fn operation_status_is_read_only_and_a_failed_feature_is_an_error() {
        let read = json!({"isEnabled": true, "malwareScanning": {"onUpload": {"isEnabled": true},
            "operationStatus": {"code": "Succeeded"}}});
        assert!(
            writable(&read)["malwareScanning"]
                .get("operationStatus")
                .is_none()
        );
        let partial = json!({"properties": {"malwareScanning": {"operationStatus": {"code": "Succeeded"}},
            "sensitiveDataDiscovery": {"operationStatus": {"code": "Failed", "message": "quota"}}}});
        assert_eq!(
            failed_feature(&partial),
            Some(("sensitiveDataDiscovery", "Failed".into(), "quota".into()))
        );
        assert_eq!(
            failed_feature(&json!({"properties": {"isEnabled": true}})),
            None
        );
    }

    #[test]
    fn composition_takes_the_union_and_the_higher_cap() {
        let c = StorageDefenderProtectionControl;
        let obj = |v: Value| -> StorageDefenderProtection {
            StorageDefenderProtection::new("x", spec(v))
        };
        let mut a = obj(json!({"malwareScanning": {"capGBPerMonth": 100}}));
        c.compose(
            &mut a,
            &obj(
                json!({"malwareScanning": {"capGBPerMonth": 500}, "sensitiveDataDiscovery": true}),
            ),
        )
        .unwrap();
        assert_eq!(
            a.spec.malware_scanning.as_ref().unwrap().cap_gb_per_month,
            500
        );
        assert!(a.spec.sensitive_data_discovery);
        c.compose(
            &mut a,
            &obj(json!({"malwareScanning": {"capGBPerMonth": -1}})),
        )
        .unwrap();
        assert_eq!(
            a.spec.malware_scanning.as_ref().unwrap().cap_gb_per_month,
            -1
        );
        let topic = obj(
            json!({"malwareScanning": {"scanResultsEventGridTopicResourceId": "/subscriptions/s/providers/Microsoft.EventGrid/topics/t"}}),
        );
        assert!(c.compose(&mut a, &topic).is_err());
    }

    #[test]
    fn release_hands_back_to_the_subscription_or_the_recorded_settings() {
        let c = StorageDefenderProtectionControl;
        let obj = StorageDefenderProtection::new("x", spec(json!({})));
        let t = crate::azure::resource_id::resolve(
            &obj.spec.common.target,
            "Microsoft.Storage/storageAccounts",
        )
        .unwrap();
        let on = Observed {
            settings: Some(json!({"isEnabled": true, "overrideSubscriptionLevelSettings": true})),
            ..Default::default()
        };
        let steps = c.release(&obj, &t, &on, &json!({"hadSetting": false}));
        assert_eq!(
            steps[0].body.as_ref().unwrap()["properties"],
            json!({"isEnabled": false, "overrideSubscriptionLevelSettings": false})
        );
        let prior = json!({"isEnabled": false, "overrideSubscriptionLevelSettings": true});
        let steps = c.release(
            &obj,
            &t,
            &on,
            &json!({"hadSetting": true, "settings": prior}),
        );
        assert_eq!(steps[0].body.as_ref().unwrap()["properties"], prior);
        let back = Observed {
            settings: Some(prior.clone()),
            ..Default::default()
        };
        assert!(
            c.release(&obj, &t, &back, &json!({"settings": prior}))
                .is_empty()
        );
    }
}
