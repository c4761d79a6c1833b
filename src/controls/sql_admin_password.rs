//! SqlAdminPasswordRotation: the server admin's password replaced once per run (azure-api-facts
//! §4: `PATCH {srv}` `properties.administratorLoginPassword`, an LRO; the seed's path sets the
//! Entra admin and rotates nothing). Azure never returns the password, so the only evidence is
//! its acknowledgement. Exactly one password per run: it is generated and staged in the Secret
//! (`pendingPassword`, with the run's id) before the PATCH leaves; after a crash the staged one
//! is sent again (the PATCH is idempotent), never a new one. Once Azure has it, it becomes the
//! Secret's `password`. The value never reaches status, events, logs or `status.plan`.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use rand::Rng;
use serde_json::{Value, json};

use super::sql_ip_block::SQL_API;
use crate::api::common::{ActionLedger, CommonStatus, ReleasePolicy};
use crate::api::sql::SqlAdminPasswordRotation;
use crate::azure::{AzureError, Clients, ResourceId};
use crate::engine::{Assessment, Control, Ctx, RunError, Stall, Step};

crate::impl_kind!(SqlAdminPasswordRotation, action, schedule = schedule);

/// The run whose password the Secret's `password` holds.
pub const RUN_ANNOTATION: &str = "containment.defenderc2.io/run";
/// The run whose password `pendingPassword` holds (generated, not yet acknowledged by Azure).
pub const PENDING_ANNOTATION: &str = "containment.defenderc2.io/pending-run";
const PENDING_KEY: &str = "pendingPassword";
const WHAT: &str = "set the administrator password";

/// Symbols that need no quoting in connection strings, T-SQL or shells.
const SYMBOLS: &[u8] = b"!#%*+-=?_~";

#[derive(Clone, Default)]
pub struct Observed {
    pub tags: serde_json::Map<String, Value>,
    /// `properties.administratorLogin`; `None` for a server without SQL authentication.
    pub login: Option<String>,
    /// The Secret's staged password and the run it was generated for.
    pub pending: Option<(String, String)>,
}

/// A password Azure SQL accepts: every character class present, and no three consecutive
/// alphanumeric characters of the login (Azure's complexity rules).
pub fn generate(length: usize, login: &str, rng: &mut impl Rng) -> String {
    let classes: [&[u8]; 4] = [
        b"ABCDEFGHJKLMNPQRSTUVWXYZ",
        b"abcdefghijkmnopqrstuvwxyz",
        b"23456789",
        SYMBOLS,
    ];
    let all: Vec<u8> = classes.concat();
    loop {
        let mut p: Vec<u8> = classes
            .iter()
            .map(|c| c[rng.random_range(0..c.len())])
            .collect();
        while p.len() < length {
            p.push(all[rng.random_range(0..all.len())]);
        }
        // The class representatives must not always lead.
        for i in (1..p.len()).rev() {
            p.swap(i, rng.random_range(0..=i));
        }
        let p = String::from_utf8(p).expect("ASCII");
        if complex_enough(&p, login) {
            return p;
        }
    }
}

/// Azure SQL's rules for an admin password: 8–128 characters from three of four classes, not
/// containing three or more consecutive alphanumeric characters of the login.
pub fn complex_enough(p: &str, login: &str) -> bool {
    let classes = [
        p.chars().any(|c| c.is_ascii_uppercase()),
        p.chars().any(|c| c.is_ascii_lowercase()),
        p.chars().any(|c| c.is_ascii_digit()),
        p.chars().any(|c| !c.is_ascii_alphanumeric()),
    ];
    let lower = p.to_ascii_lowercase();
    let login: Vec<char> = login.to_ascii_lowercase().chars().collect();
    let shares_login = login.windows(3).any(|w| {
        w.iter().all(char::is_ascii_alphanumeric) && lower.contains(&w.iter().collect::<String>())
    });
    (8..=128).contains(&p.len()) && classes.iter().filter(|c| **c).count() >= 3 && !shares_login
}

fn secret_name(obj: &SqlAdminPasswordRotation) -> (String, String) {
    let p = &obj.spec.publish_to;
    (
        p.namespace
            .clone()
            .unwrap_or_else(|| obj.namespace().unwrap_or_default()),
        p.secret_name.clone(),
    )
}

fn secrets(kube: &kube::Client, ns: &str) -> Api<Secret> {
    Api::namespaced(kube.clone(), ns)
}

async fn read_secret(
    kube: &kube::Client,
    obj: &SqlAdminPasswordRotation,
) -> Result<Option<Secret>, AzureError> {
    let (ns, name) = secret_name(obj);
    secrets(kube, &ns)
        .get_opt(&name)
        .await
        .map_err(|e| AzureError::from_secret_access(e, format!("GET Secret {ns}/{name}")))
}

fn annotation(s: &Secret, key: &str) -> Option<String> {
    s.metadata.annotations.as_ref()?.get(key).cloned()
}

/// Merge `data` (a `null` removes a key) and `annotations` into the published Secret, creating
/// it if it does not exist.
async fn write_secret(
    kube: &kube::Client,
    obj: &SqlAdminPasswordRotation,
    data: BTreeMap<&str, Option<&str>>,
    annotations: BTreeMap<&str, Option<&str>>,
) -> Result<(), AzureError> {
    let (ns, name) = secret_name(obj);
    let api = secrets(kube, &ns);
    let b64 = |v: &str| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(v)
    };
    let source = format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any());
    let mut notes = json!({ "containment.defenderc2.io/source": source });
    for (k, v) in &annotations {
        notes[*k] = json!(v);
    }
    let patch = json!({
        "metadata": {
            "labels": {"app.kubernetes.io/managed-by": "containment-operator"},
            "annotations": notes,
        },
        "data": data.iter().map(|(k, v)| (k.to_string(), json!(v.map(b64)))).collect::<serde_json::Map<_, _>>(),
    });
    let access =
        |e, verb: &str| AzureError::from_secret_access(e, format!("{verb} Secret {ns}/{name}"));
    match api
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => {
            let mut secret: Secret = serde_json::from_value(strip_nulls(patch))
                .map_err(|e| AzureError::Config(format!("Secret {ns}/{name}: {e}")))?;
            secret.metadata.name = Some(name.clone());
            secret.type_ = Some("Opaque".into());
            api.create(&PostParams::default(), &secret)
                .await
                .map(|_| ())
                .map_err(|e| access(e, "POST"))
        }
        Err(e) => Err(access(e, "PATCH")),
    }
}

fn strip_nulls(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.retain(|_, x| !x.is_null());
        for x in o.values_mut() {
            *x = strip_nulls(x.take());
        }
    }
    v
}

fn decode(s: &Secret, key: &str) -> Option<String> {
    let b: &ByteString = s.data.as_ref()?.get(key)?;
    String::from_utf8(b.0.clone()).ok()
}

/// What is left of this run: the PATCH, unless Azure acknowledged it.
pub fn plan(
    obj: &SqlAdminPasswordRotation,
    t: &ResourceId,
    o: &Observed,
    status: &CommonStatus,
) -> Result<Assessment, Stall> {
    let Some(login) = &o.login else {
        return Err(Stall::new(
            "NoSqlAdministrator",
            format!(
                "{} has no SQL administrator login (properties.administratorLogin): there is no password to rotate",
                t.id
            ),
        ));
    };
    let (ns, name) = secret_name(obj);
    if super::rotation::acknowledged(status, WHAT) {
        return Ok(Assessment {
            message: format!("the password of {login} was replaced; it is in Secret {ns}/{name}"),
            ..Default::default()
        });
    }
    let enforce = obj.spec.common.mode == crate::api::common::Mode::Enforce;
    let password = match (&status.action, &o.pending) {
        // DryRun and Observe plan without generating anything, and show no value.
        (None, _) => "<generated>".to_string(),
        _ if !enforce => "<generated>".to_string(),
        (Some(run), Some((pending_run, p))) if *pending_run == run.run_id => p.clone(),
        (Some(run), _) => {
            return Err(Stall::new(
                "PasswordNotStaged",
                format!(
                    "Secret {ns}/{name} does not hold the password generated for run {} ({PENDING_KEY}): it was changed while the run was in progress; change spec.trigger to start a new run",
                    run.run_id
                ),
            ));
        }
    };
    Ok(Assessment {
        message: format!("to replace the password of {login}, publishing it to Secret {ns}/{name}"),
        steps: vec![
            Step::patch(
                t.id.clone(),
                SQL_API,
                json!({"properties": {"administratorLoginPassword": password}}),
            )
            .lro()
            .once()
            .secret(&["administratorLoginPassword"])
            .what(WHAT),
        ],
        ..Default::default()
    })
}

#[derive(Default)]
pub struct SqlAdminPasswordRotationControl;

#[async_trait::async_trait]
impl Control for SqlAdminPasswordRotationControl {
    type K = SqlAdminPasswordRotation;
    type Observed = Observed;
    const RESOURCE_TYPE: &'static str = "Microsoft.Sql/servers";
    const DEFAULT_RELEASE: Option<ReleasePolicy> = None;
    const ACTIONS: &'static [&'static str] = &[
        "Microsoft.Sql/servers/read",
        "Microsoft.Sql/servers/write",
        // The PATCH's operation status (`…/locations/{l}/serverAzureAsyncOperation/…`).
        "Microsoft.Sql/locations/*/read",
    ];

    async fn observe(
        &self,
        az: &Clients,
        obj: &Self::K,
        t: &ResourceId,
    ) -> Result<Observed, AzureError> {
        let server = az.arm.get(&t.id, SQL_API).await?;
        let secret = read_secret(&az.kube, obj).await?;
        Ok(Observed {
            tags: super::tags_of(&server),
            login: server["properties"]["administratorLogin"]
                .as_str()
                .map(String::from),
            pending: secret
                .as_ref()
                .and_then(|s| Some((annotation(s, PENDING_ANNOTATION)?, decode(s, PENDING_KEY)?))),
        })
    }

    fn tags(&self, o: &Observed) -> Option<serde_json::Map<String, Value>> {
        Some(o.tags.clone())
    }

    fn secret_namespaces(&self, obj: &Self::K) -> Vec<String> {
        vec![secret_name(obj).0]
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

    /// Stage this run's password in the Secret before the PATCH can leave (once per run).
    async fn prepare(
        &self,
        az: &Clients,
        obj: &Self::K,
        run: &ActionLedger,
        mut o: Observed,
    ) -> Result<Observed, RunError> {
        let staged = o.pending.as_ref().is_some_and(|(r, _)| *r == run.run_id);
        let Some(login) = o.login.clone() else {
            return Ok(o);
        };
        if staged || run.done.iter().any(|d| d == WHAT) {
            return Ok(o);
        }
        let length = usize::try_from(obj.spec.length).unwrap_or(32);
        let password = generate(length, &login, &mut rand::rng());
        write_secret(
            &az.kube,
            obj,
            BTreeMap::from([(PENDING_KEY, Some(password.as_str()))]),
            BTreeMap::from([(PENDING_ANNOTATION, Some(run.run_id.as_str()))]),
        )
        .await?;
        o.pending = Some((run.run_id.clone(), password));
        Ok(o)
    }

    /// Azure has the staged password: it becomes the Secret's `password` (idempotent).
    async fn after_run(
        &self,
        cx: &Ctx,
        az: &Clients,
        obj: &Self::K,
        t: &ResourceId,
        run: &ActionLedger,
    ) -> Result<(), RunError> {
        let secret = read_secret(&cx.client, obj).await?;
        let (ns, name) = secret_name(obj);
        let pending = secret
            .as_ref()
            .and_then(|s| Some((annotation(s, PENDING_ANNOTATION)?, decode(s, PENDING_KEY)?)));
        let published = secret.as_ref().and_then(|s| annotation(s, RUN_ANNOTATION));
        match pending {
            Some((r, password)) if r == run.run_id => {
                let server = az.arm.get(&t.id, SQL_API).await?;
                let login = server["properties"]["administratorLogin"]
                    .as_str()
                    .unwrap_or_default();
                write_secret(
                    &cx.client,
                    obj,
                    BTreeMap::from([
                        ("username", Some(login)),
                        ("password", Some(password.as_str())),
                        (PENDING_KEY, None),
                    ]),
                    BTreeMap::from([
                        (RUN_ANNOTATION, Some(run.run_id.as_str())),
                        (PENDING_ANNOTATION, None),
                    ]),
                )
                .await?;
                Ok(())
            }
            _ if published.as_deref() == Some(run.run_id.as_str()) => Ok(()),
            _ => Err(AzureError::Config(format!(
                "Secret {ns}/{name} lost the password of run {} before it was published: Azure has it, nobody else does; change spec.trigger to rotate again",
                run.run_id
            ))
            .into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::common::{ActionLedger, ActionPhase};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use rand::SeedableRng;

    fn obj() -> SqlAdminPasswordRotation {
        let mut o: SqlAdminPasswordRotation = serde_json::from_value(json!({
            "apiVersion": "containment.defenderc2.io/v1alpha1", "kind": "SqlAdminPasswordRotation",
            "metadata": {"name": "r", "namespace": "soc"},
            "spec": {"target": {"resourceId": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Sql/servers/srv"},
                     "publishTo": {"secretName": "sql-admin"}}
        }))
        .unwrap();
        o.status = None;
        o
    }

    fn target() -> ResourceId {
        crate::azure::resource_id::resolve(&obj().spec.common.target, "Microsoft.Sql/servers")
            .unwrap()
    }

    fn run(id: &str, done: &[&str]) -> CommonStatus {
        CommonStatus {
            action: Some(ActionLedger {
                run_id: id.into(),
                phase: ActionPhase::InProgress,
                started_time: Time(jiff::Timestamp::UNIX_EPOCH),
                completed_time: None,
                evidence: None,
                done: done.iter().map(|s| s.to_string()).collect(),
                sent: Vec::new(),
            }),
            ..Default::default()
        }
    }

    fn observed(pending: Option<(&str, &str)>) -> Observed {
        Observed {
            login: Some("sqladmin".into()),
            pending: pending.map(|(r, p)| (r.into(), p.into())),
            ..Default::default()
        }
    }

    #[test]
    fn generated_passwords_meet_azures_rules_and_differ() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let a = generate(16, "sqladmin", &mut rng);
        let b = generate(16, "sqladmin", &mut rng);
        assert_eq!(a.len(), 16);
        assert_ne!(a, b);
        for _ in 0..500 {
            let p = generate(16, "abc", &mut rng);
            assert!(complex_enough(&p, "abc"), "{p}");
            assert!(p.chars().any(|c| SYMBOLS.contains(&(c as u8))), "{p}");
            assert!(!p.contains(';') && !p.contains('\'') && !p.contains('"'));
        }
    }

    #[test]
    fn azures_complexity_rules() {
        assert!(complex_enough("Abcdefg1", "x"));
        assert!(!complex_enough("Abc1", "x"), "shorter than 8");
        assert!(!complex_enough("abcdefgh1", "x"), "two classes");
        assert!(
            !complex_enough("Xsqlq!9Zzz", "sql-admin"),
            "three consecutive characters of the login"
        );
        assert!(!complex_enough(&"Aa1!".repeat(33), "x"), "over 128");
    }

    #[test]
    fn plans_the_staged_password_hidden_and_stops_once_acknowledged() {
        let t = target();
        let a = plan(
            &obj(),
            &t,
            &observed(Some(("created", "S3cret!pw"))),
            &run("created", &[]),
        )
        .unwrap();
        assert_eq!(a.steps.len(), 1);
        let s = &a.steps[0];
        assert_eq!(
            s.body.as_ref().unwrap()["properties"]["administratorLoginPassword"],
            "S3cret!pw"
        );
        assert!(s.lro && s.once && s.idempotent && s.tracked());
        assert!(!s.render().contains("S3cret"), "{}", s.render());
        assert!(s.render().contains("<secret>"), "{}", s.render());
        let done = plan(
            &obj(),
            &t,
            &observed(Some(("created", "x"))),
            &run("created", &[WHAT]),
        )
        .unwrap();
        assert!(done.steps.is_empty());
        assert!(done.message.contains("soc/sql-admin"), "{}", done.message);
    }

    #[test]
    fn never_sends_a_password_of_another_run_or_none() {
        let t = target();
        let stale = plan(
            &obj(),
            &t,
            &observed(Some(("trigger:a", "old"))),
            &run("trigger:b", &[]),
        );
        assert_eq!(stale.unwrap_err().reason, "PasswordNotStaged");
        let none = plan(&obj(), &t, &observed(None), &run("created", &[]));
        assert_eq!(none.unwrap_err().reason, "PasswordNotStaged");
        // DryRun/Observe: no run, a placeholder, nothing real.
        let dry = plan(&obj(), &t, &observed(None), &CommonStatus::default()).unwrap();
        assert!(dry.steps[0].render().contains("<secret>"));
    }

    #[test]
    fn a_server_without_sql_authentication_is_stalled() {
        let o = Observed::default();
        let e = plan(&obj(), &target(), &o, &CommonStatus::default()).unwrap_err();
        assert_eq!(e.reason, "NoSqlAdministrator");
        assert!(e.message.contains("administratorLogin"), "{}", e.message);
    }
}
