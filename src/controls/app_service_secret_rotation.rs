//! AppServiceSecretRotation: app settings of a web app and its listed slots hold a Secret's
//! values (azure-api-facts §3.15). `PUT config/appsettings` replaces the whole map (a key left
//! out is deleted), so each write is the map just listed (`POST config/appsettings/list`, the
//! only read that returns values) with the Secret's keys overlaid. Status keeps keyed hashes
//! of the desired values, never a value; `status.plan` shows `<secret>`. Basic-auth publishing
//! (`basicPublishingCredentialsPolicies/{ftp,scm}`) is a lockdown: prior policies recorded and
//! restored. The old setting values are neither kept nor ever put back.

use std::collections::BTreeMap;

use kube::ResourceExt;
use serde_json::{Map, Value, json};

use super::app_service_restart::{WEB_API, base, slots_exist, targets};
use super::lockdown;
use crate::api::common::{CommonStatus, ReleasePolicy};
use crate::api::web::AppServiceSecretRotation;
use crate::azure::{ArmRequest, AzureError, Clients, ResourceId};
use crate::engine::{Assessment, Control, Stall, Step};

crate::impl_kind!(AppServiceSecretRotation, status: s => &s.common);

const POLICIES: [&str; 2] = ["ftp", "scm"];

/// The site or one slot, as read.
#[derive(Clone, Default)]
pub struct Scope {
    /// `None`: the production site.
    pub slot: Option<String>,
    /// The app settings with their values; `None`: the slot does not exist.
    pub settings: Option<BTreeMap<String, String>>,
    /// `allow` of the ftp and scm publishing policies (read only with `disableBasicAuth`).
    pub allow: BTreeMap<&'static str, bool>,
}

#[derive(Clone, Default)]
pub struct Observed {
    pub tags: Map<String, Value>,
    /// The Secret's keys and values: what every scope's settings must hold.
    pub desired: BTreeMap<String, String>,
    pub scopes: Vec<Scope>,
}

fn scope_name(slot: Option<&str>) -> String {
    slot.map(|s| format!("slot {s}"))
        .unwrap_or_else(|| "site".into())
}

/// The lockdown field of one publishing policy: `site/ftp`, `staging/scm`.
fn field(slot: Option<&str>, policy: &str) -> String {
    format!("{}/{policy}", slot.unwrap_or("site"))
}

/// `hmac-sha256:` + 16 hex digits, keyed by the resource's uid: equal values compare equal
/// within one resource, and a hash says nothing without the uid.
pub fn fingerprint(uid: &str, value: &str) -> String {
    use aws_lc_rs::hmac;
    let key = hmac::Key::new(hmac::HMAC_SHA256, uid.as_bytes());
    let tag = hmac::sign(&key, value.as_bytes());
    let hex: String = tag.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("hmac-sha256:{hex}")
}

/// App setting names Azure accepts on every plan (Linux allows only letters, digits, `_`).
fn valid_name(k: &str) -> bool {
    !k.is_empty() && k.len() <= 256 && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

async fn desired(
    az: &Clients,
    obj: &AppServiceSecretRotation,
) -> Result<BTreeMap<String, String>, AzureError> {
    let ns = obj.namespace().unwrap_or_default();
    let name = &obj.spec.settings_from.secret_name;
    let field = "spec.settingsFrom.secretName";
    let out = super::secret_text(&az.kube, &ns, name, field).await?;
    if let Some(k) = out.keys().find(|k| !valid_name(k)) {
        return Err(AzureError::Config(format!(
            "{field}: Secret {ns}/{name} has key {k:?}, which is not an app setting name (letters, digits and _)"
        )));
    }
    if out.is_empty() {
        return Err(AzureError::Config(format!(
            "spec.settingsFrom.secretName: Secret {ns}/{name} has no keys"
        )));
    }
    Ok(out)
}

async fn list_settings(
    az: &Clients,
    path: &str,
) -> Result<Option<BTreeMap<String, String>>, AzureError> {
    let reply = az
        .arm
        .call(&ArmRequest {
            method: "POST",
            path: &format!("{path}/config/appsettings/list"),
            api_version: Some(WEB_API),
            body: None,
            idempotent: true,
        })
        .await;
    let body = match reply {
        Ok(r) => r.body,
        Err(e) if e.status() == Some(404) => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(Some(
        body["properties"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect(),
    ))
}

pub fn plan(
    obj: &AppServiceSecretRotation,
    t: &ResourceId,
    o: &Observed,
    status: &CommonStatus,
) -> Result<Assessment, Stall> {
    slots_exist(
        &t.id,
        o.scopes
            .iter()
            .filter(|s| s.settings.is_none())
            .filter_map(|s| s.slot.as_deref()),
    )?;
    let mut steps = Vec::new();
    let mut stale = Vec::new();
    for s in &o.scopes {
        let slot = s.slot.as_deref();
        let listed = s.settings.clone().unwrap_or_default();
        let changed: Vec<&str> = o
            .desired
            .iter()
            .filter(|(k, v)| listed.get(*k) != Some(*v))
            .map(|(k, _)| k.as_str())
            .collect();
        if changed.is_empty() {
            continue;
        }
        stale.push(format!("{} ({})", scope_name(slot), changed.join(", ")));
        let mut full = listed;
        full.extend(o.desired.clone());
        steps.push(
            Step::put(
                format!("{}/config/appsettings", base(&t.id, slot)),
                WEB_API,
                json!({ "properties": full }),
            )
            .secret(&["*"])
            .what(format!(
                "set app settings {} on {}",
                changed.join(", "),
                scope_name(slot)
            )),
        );
    }
    let (locks, current) = basic_auth(obj, o);
    let record = (!locks.is_empty())
        .then(|| lockdown::record(status.restore.as_ref(), &locks, &Value::Object(current)));
    for f in locks.keys() {
        let (scope, policy) = f.split_once('/').unwrap_or_default();
        let slot = (scope != "site").then_some(scope);
        steps.push(policy_step(&t.id, slot, policy, false));
    }
    let uid = obj.uid().unwrap_or_default();
    let hashes: Map<String, Value> = o
        .desired
        .iter()
        .map(|(k, v)| (k.clone(), json!(fingerprint(&uid, v))))
        .collect();
    let n = o.scopes.len();
    let keys: Vec<&str> = o.desired.keys().map(String::as_str).collect();
    Ok(Assessment {
        message: if steps.is_empty() {
            format!(
                "{} app setting(s) ({}) hold the Secret's values on {n} site/slot(s){}",
                keys.len(),
                keys.join(", "),
                if obj.spec.disable_basic_auth {
                    "; basic-auth publishing off"
                } else {
                    ""
                }
            )
        } else if stale.is_empty() {
            "basic-auth publishing to turn off".into()
        } else {
            format!("to update: {}", stale.join("; "))
        },
        steps,
        record,
        extra: Map::from_iter([("appSettings".to_string(), Value::Object(hashes))]),
        ..Default::default()
    })
}

/// With `disableBasicAuth`: the policies still allowing basic auth (to set `false`), and every
/// policy's current `allow` (for the record).
fn basic_auth(
    obj: &AppServiceSecretRotation,
    o: &Observed,
) -> (Map<String, Value>, Map<String, Value>) {
    let mut locks = Map::new();
    let mut current = Map::new();
    if !obj.spec.disable_basic_auth {
        return (locks, current);
    }
    for s in &o.scopes {
        for p in POLICIES {
            let f = field(s.slot.as_deref(), p);
            let allow = s.allow.get(p).copied().unwrap_or(true);
            current.insert(f.clone(), json!(allow));
            if allow {
                locks.insert(f, json!(false));
            }
        }
    }
    (locks, current)
}

fn policy_step(site: &str, slot: Option<&str>, policy: &str, allow: bool) -> Step {
    Step::put(
        format!(
            "{}/basicPublishingCredentialsPolicies/{policy}",
            base(site, slot)
        ),
        WEB_API,
        json!({"properties": {"allow": allow}}),
    )
    .what(format!(
        "{} basic-auth {policy} publishing on {}",
        if allow { "allow" } else { "disallow" },
        scope_name(slot)
    ))
}

#[derive(Default)]
pub struct AppServiceSecretRotationControl;

#[async_trait::async_trait]
impl Control for AppServiceSecretRotationControl {
    type K = AppServiceSecretRotation;
    type Observed = Observed;
    const RESOURCE_TYPE: &'static str = "Microsoft.Web/sites";
    const DEFAULT_RELEASE: Option<ReleasePolicy> = Some(ReleasePolicy::Restore);
    const ACTIONS: &'static [&'static str] = &[
        "Microsoft.Web/sites/read",
        "Microsoft.Web/sites/config/list/action",
        "Microsoft.Web/sites/config/write",
        "Microsoft.Web/sites/slots/config/list/action",
        "Microsoft.Web/sites/slots/config/write",
        "Microsoft.Web/sites/basicPublishingCredentialsPolicies/read",
        "Microsoft.Web/sites/basicPublishingCredentialsPolicies/write",
        "Microsoft.Web/sites/slots/basicPublishingCredentialsPolicies/read",
        "Microsoft.Web/sites/slots/basicPublishingCredentialsPolicies/write",
    ];
    // No slots and basic auth left alone: the site's settings only.
    const ACTION_VARIANTS: &'static [(&'static str, &'static [&'static str])] = &[(
        "SiteSettingsOnly",
        &[
            "Microsoft.Web/sites/read",
            "Microsoft.Web/sites/config/list/action",
            "Microsoft.Web/sites/config/write",
        ],
    )];

    async fn observe(
        &self,
        az: &Clients,
        obj: &Self::K,
        t: &ResourceId,
    ) -> Result<Observed, AzureError> {
        let site = az.arm.get(&t.id, WEB_API).await?;
        let desired = desired(az, obj).await?;
        let mut scopes = Vec::new();
        for slot in targets(&obj.spec.slots) {
            let path = base(&t.id, slot);
            let settings = list_settings(az, &path).await?;
            let mut allow = BTreeMap::new();
            if obj.spec.disable_basic_auth && settings.is_some() {
                for p in POLICIES {
                    let policy = az
                        .arm
                        .find(
                            &format!("{path}/basicPublishingCredentialsPolicies/{p}"),
                            WEB_API,
                        )
                        .await?;
                    let on = policy
                        .and_then(|v| v["properties"]["allow"].as_bool())
                        .unwrap_or(true);
                    allow.insert(p, on);
                }
            }
            scopes.push(Scope {
                slot: slot.map(String::from),
                settings,
                allow,
            });
        }
        Ok(Observed {
            tags: super::tags_of(&site),
            desired,
            scopes,
        })
    }

    fn tags(&self, o: &Observed) -> Option<Map<String, Value>> {
        Some(o.tags.clone())
    }

    fn assess(
        &self,
        obj: &Self::K,
        t: &ResourceId,
        o: &Observed,
        status: &CommonStatus,
    ) -> Result<Assessment, Stall> {
        plan(obj, t, o, status)
    }

    /// Basic-auth publishing back as recorded; the app settings keep their new values.
    fn release(&self, _obj: &Self::K, t: &ResourceId, o: &Observed, restore: &Value) -> Vec<Step> {
        let current: Map<String, Value> = o
            .scopes
            .iter()
            .flat_map(|s| {
                POLICIES.map(|p| {
                    (
                        field(s.slot.as_deref(), p),
                        json!(s.allow.get(p).copied().unwrap_or(true)),
                    )
                })
            })
            .collect();
        let back = lockdown::release_patch(
            &Value::Object(current),
            restore,
            |_| json!(true),
            |_, a, b| a == b,
        );
        back.iter()
            .filter_map(|(f, allow)| {
                let (scope, policy) = f.split_once('/')?;
                let slot = (scope != "site").then_some(scope);
                Some(policy_step(
                    &t.id,
                    slot,
                    policy,
                    allow.as_bool().unwrap_or(true),
                ))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(basic: bool) -> AppServiceSecretRotation {
        serde_json::from_value(json!({
            "apiVersion": "containment.defenderc2.io/v1alpha1", "kind": "AppServiceSecretRotation",
            "metadata": {"name": "r", "namespace": "soc", "uid": "u-1"},
            "spec": {"target": {"resourceId": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Web/sites/app"},
                     "settingsFrom": {"secretName": "app-secrets"}, "slots": ["staging"], "disableBasicAuth": basic}
        }))
        .unwrap()
    }

    fn target() -> ResourceId {
        crate::azure::resource_id::resolve(&obj(false).spec.common.target, "Microsoft.Web/sites")
            .unwrap()
    }

    fn map(v: &[(&str, &str)]) -> BTreeMap<String, String> {
        v.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn scope(slot: Option<&str>, settings: &[(&str, &str)], allow: bool) -> Scope {
        Scope {
            slot: slot.map(String::from),
            settings: Some(map(settings)),
            allow: BTreeMap::from([("ftp", allow), ("scm", allow)]),
        }
    }

    #[test]
    fn the_full_map_is_written_with_only_the_secret_keys_changed_and_values_hidden() {
        let o = Observed {
            desired: map(&[("DB_PASSWORD", "n3w")]),
            scopes: vec![
                scope(None, &[("DB_PASSWORD", "leaked"), ("OTHER", "keep")], true),
                scope(Some("staging"), &[("DB_PASSWORD", "n3w")], true),
            ],
            ..Default::default()
        };
        let a = plan(&obj(false), &target(), &o, &CommonStatus::default()).unwrap();
        assert_eq!(a.steps.len(), 1, "the slot already holds the value");
        let s = &a.steps[0];
        assert!(
            s.path.ends_with("/sites/app/config/appsettings"),
            "{}",
            s.path
        );
        assert_eq!(
            s.body.as_ref().unwrap()["properties"],
            json!({"DB_PASSWORD": "n3w", "OTHER": "keep"})
        );
        let shown = s.render();
        assert!(!shown.contains("n3w") && !shown.contains("keep"), "{shown}");
        assert!(shown.contains("\"DB_PASSWORD\":\"<secret>\""), "{shown}");
        assert_eq!(
            a.extra["appSettings"]["DB_PASSWORD"],
            json!(fingerprint("u-1", "n3w"))
        );
        assert!(!a.extra.values().any(|v| v.to_string().contains("n3w")));
    }

    #[test]
    fn fingerprints_are_keyed_by_the_resource() {
        let f = fingerprint("u-1", "v");
        assert!(f.starts_with("hmac-sha256:") && f.len() == 12 + 16, "{f}");
        assert_eq!(f, fingerprint("u-1", "v"));
        assert_ne!(f, fingerprint("u-2", "v"));
        assert_ne!(f, fingerprint("u-1", "w"));
    }

    #[test]
    fn basic_auth_is_locked_recorded_and_restored_where_it_was_allowed() {
        let o = Observed {
            desired: map(&[("K", "v")]),
            scopes: vec![
                scope(None, &[("K", "v")], true),
                Scope {
                    allow: BTreeMap::from([("ftp", false), ("scm", true)]),
                    ..scope(Some("staging"), &[("K", "v")], true)
                },
            ],
            ..Default::default()
        };
        let a = plan(&obj(true), &target(), &o, &CommonStatus::default()).unwrap();
        let paths: Vec<&str> = a.steps.iter().map(|s| s.path.as_str()).collect();
        assert_eq!(paths.len(), 3, "{paths:?}");
        assert!(
            paths
                .iter()
                .all(|p| !p.ends_with("staging/basicPublishingCredentialsPolicies/ftp"))
        );
        let record = a.record.unwrap();
        assert_eq!(record["prior"]["site/scm"], true);
        assert_eq!(record["prior"]["staging/scm"], true);
        // After the lock, release puts back only what was allowed before.
        let locked = Observed {
            scopes: vec![scope(None, &[], false), scope(Some("staging"), &[], false)],
            ..o
        };
        let back = AppServiceSecretRotationControl.release(&obj(true), &target(), &locked, &record);
        let mut back: Vec<String> = back
            .iter()
            .map(|s| s.path.rsplit_once("/sites/").unwrap().1.to_string())
            .collect();
        back.sort();
        assert_eq!(
            back,
            vec![
                "app/basicPublishingCredentialsPolicies/ftp",
                "app/basicPublishingCredentialsPolicies/scm",
                "app/slots/staging/basicPublishingCredentialsPolicies/scm"
            ]
        );
    }

    #[test]
    fn a_missing_slot_is_stalled() {
        let o = Observed {
            desired: map(&[("K", "v")]),
            scopes: vec![
                scope(None, &[], true),
                Scope {
                    slot: Some("staging".into()),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let e = plan(&obj(false), &target(), &o, &CommonStatus::default()).unwrap_err();
        assert_eq!(e.reason, "SlotNotFound");
        assert!(e.message.contains("staging"), "{}", e.message);
    }

    #[test]
    fn setting_names_azure_accepts() {
        assert!(valid_name("DB_PASSWORD") && valid_name("a1"));
        assert!(!valid_name("") && !valid_name("a.b") && !valid_name("a-b") && !valid_name("a b"));
    }
}
