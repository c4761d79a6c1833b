//! The kinds this build serves: the one list, with each kind's permissions and how to start
//! its controller (`permissions`, `run` and the tests all read it).

use std::sync::Arc;

use crate::engine::{self, Control, Ctx};

#[derive(Debug)]
pub struct KindInfo {
    pub kind: &'static str,
    pub actions: &'static [&'static str],
    pub variants: &'static [(&'static str, &'static [&'static str])],
    pub graph: &'static [&'static str],
    pub mde: &'static [&'static str],
}

/// The one list of kinds: their permissions and how to start their controller.
macro_rules! kinds {
    ($($kind:literal => $control:ty { graph: $graph:expr, mde: $mde:expr }),* $(,)?) => {
        /// Every kind this build serves.
        pub const KINDS: &[KindInfo] = &[
            $(KindInfo { kind: $kind, actions: <$control as Control>::ACTIONS, variants: <$control as Control>::ACTION_VARIANTS, graph: $graph, mde: $mde }),*
        ];

        /// The CRD of every kind, in this list's order (`api::crds` adds the guard's kinds).
        pub fn crds() -> Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> {
            vec![$(<<$control as Control>::K as kube::CustomResourceExt>::crd()),*]
        }

        /// Start the controller of `kind` on `tasks`.
        pub fn spawn(
            kind: &str,
            tasks: &mut tokio::task::JoinSet<()>,
            cx: Arc<Ctx>,
            namespace: Option<String>,
            concurrency: u16,
        ) -> Result<(), String> {
            match kind {
                $($kind => { tasks.spawn(engine::run(<$control>::default(), cx, namespace, concurrency)); })*
                other => return Err(format!("kind {other} has no controller in this build")),
            }
            Ok(())
        }
    };
}

use crate::controls::{
    app_service_restart, app_service_secret_rotation, arc_isolation, arc_run_command, consent,
    cosmos, defender_alert, device, email_remediation, indicator, nsg, privileged_access,
    service_principal, sql_admin_password, sql_auditing, sql_entra_only, sql_ip_block,
    sql_public_access, sql_tde, storage_defender, storage_key_rotation, storage_public_access,
    storage_sas_revocation, storage_soft_delete, threat_submission, user, waf,
};

kinds! {
    "SqlIpBlock" => sql_ip_block::SqlIpBlockControl { graph: &[], mde: &[] },
    "SqlPublicAccessLockdown" => sql_public_access::SqlPublicAccessLockdownControl { graph: &[], mde: &[] },
    "SqlEntraOnlyAuthentication" => sql_entra_only::SqlEntraOnlyAuthenticationControl { graph: &[], mde: &[] },
    "SqlTransparentDataEncryption" => sql_tde::SqlTransparentDataEncryptionControl { graph: &[], mde: &[] },
    "SqlAuditing" => sql_auditing::SqlAuditingControl { graph: &[], mde: &[] },
    "SqlAdminPasswordRotation" => sql_admin_password::SqlAdminPasswordRotationControl { graph: &[], mde: &[] },
    "StorageKeyRotation" => storage_key_rotation::StorageKeyRotationControl { graph: &[], mde: &[] },
    "StoragePublicAccessLockdown" => storage_public_access::StoragePublicAccessLockdownControl { graph: &[], mde: &[] },
    "StorageSasRevocation" => storage_sas_revocation::StorageSasRevocationControl { graph: &[], mde: &[] },
    "StorageDefenderProtection" => storage_defender::StorageDefenderProtectionControl { graph: &[], mde: &[] },
    "StorageSoftDeleteProtection" => storage_soft_delete::StorageSoftDeleteProtectionControl { graph: &[], mde: &[] },
    "CosmosKeyRotation" => cosmos::CosmosKeyRotationControl { graph: &[], mde: &[] },
    "CosmosPublicAccessLockdown" => cosmos::CosmosPublicAccessLockdownControl { graph: &[], mde: &[] },
    "DefenderAlertState" => defender_alert::DefenderAlertStateControl { graph: &[], mde: &[] },
    "WafIpBlock" => waf::WafIpBlockControl { graph: &[], mde: &[] },
    "NsgDenyRule" => nsg::NsgDenyRuleControl { graph: &[], mde: &[] },
    "ArcIsolation" => arc_isolation::ArcIsolationControl { graph: &[], mde: &["Machine.Read.All", "Machine.Isolate"] },
    "ArcRunCommand" => arc_run_command::ArcRunCommandControl { graph: &[], mde: &[] },
    "DeviceIsolation" => device::DeviceIsolationControl { graph: &[], mde: &["Machine.Read.All", "Machine.Isolate"] },
    "DeviceCodeRestriction" => device::DeviceCodeRestrictionControl { graph: &[], mde: &["Machine.Read.All", "Machine.RestrictExecution"] },
    "ThreatIndicator" => indicator::ThreatIndicatorControl { graph: &[], mde: &["Ti.ReadWrite"] },
    "ThreatSubmission" => threat_submission::ThreatSubmissionControl { graph: &["ThreatSubmission.ReadWrite.All"], mde: &[] },
    "EmailRemediation" => email_remediation::EmailRemediationControl { graph: &["SecurityAnalyzedMessage.ReadWrite.All"], mde: &[] },
    "ConsentLockdown" => consent::ConsentLockdownControl { graph: &["Policy.ReadWrite.Authorization"], mde: &[] },
    "UserContainment" => user::UserContainmentControl { graph: &["User.Read.All", "User.EnableDisableAccount.All", "User.RevokeSessions.All", "RoleManagement.ReadWrite.Directory"], mde: &[] },
    "ServicePrincipalContainment" => service_principal::ServicePrincipalContainmentControl { graph: &["Application.ReadWrite.All", "DelegatedPermissionGrant.ReadWrite.All", "AppRoleAssignment.ReadWrite.All"], mde: &[] },
    "AppServiceRestart" => app_service_restart::AppServiceRestartControl { graph: &[], mde: &[] },
    "AppServiceSecretRotation" => app_service_secret_rotation::AppServiceSecretRotationControl { graph: &[], mde: &[] },
    "PrivilegedAccessPolicy" => privileged_access::PrivilegedAccessPolicyControl { graph: &["Policy.Read.All", "Policy.ReadWrite.ConditionalAccess"], mde: &[] },
}

/// Resolve `--kinds` (names, case-insensitive; empty = all) or say which name is unknown.
pub fn select(names: &[String]) -> Result<Vec<&'static KindInfo>, String> {
    if names.is_empty() {
        return Ok(KINDS.iter().collect());
    }
    names
        .iter()
        .map(|n| {
            KINDS
                .iter()
                .find(|k| k.kind.eq_ignore_ascii_case(n.trim()))
                .ok_or_else(|| {
                    format!(
                        "--kinds: unknown kind {n:?}; known: {}",
                        KINDS.iter().map(|k| k.kind).collect::<Vec<_>>().join(", ")
                    )
                })
        })
        .collect()
}
