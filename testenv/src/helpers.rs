//! Test conveniences on top of a running control plane: CRDs and per-test namespaces.

use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use serde::Deserialize;

use crate::{ControlPlane, Error, Result, io_err};

const FIELD_MANAGER: &str = "testenv";

/// `prefix-` followed by 8 random lowercase alphanumerics: a valid, unique DNS-1123 label.
pub fn unique_name(prefix: &str) -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let suffix: String = (0..8)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect();
    format!("{prefix}-{suffix}")
}

/// Installs (server-side applies) the CRDs and waits until each is Established, so custom
/// resources can be created right after this returns.
pub async fn install_crds(client: &kube::Client, crds: &[CustomResourceDefinition]) -> Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    for crd in crds {
        let name = crd.metadata.name.clone().unwrap_or_default();
        api.patch(&name, &pp, &Patch::Apply(crd)).await?;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for crd in crds {
        let name = crd.metadata.name.clone().unwrap_or_default();
        loop {
            let current = api.get(&name).await?;
            let established = current
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            if established {
                break;
            }
            if Instant::now() > deadline {
                return Err(Error::Crd {
                    path: name,
                    message: "not Established after 30s".into(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// Reads every `*.yaml` / `*.yml` file in `dir` (several documents per file allowed) and
/// installs the CRDs found. Returns their names.
pub async fn install_crds_from_dir(client: &kube::Client, dir: &Path) -> Result<Vec<String>> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(io_err(format!("read {}", dir.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    entries.sort();
    let mut crds = Vec::new();
    for path in entries {
        let text =
            std::fs::read_to_string(&path).map_err(io_err(format!("read {}", path.display())))?;
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value = serde_yaml::Value::deserialize(doc).map_err(|e| Error::Crd {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
            if value.is_null() {
                continue;
            }
            let crd: CustomResourceDefinition =
                serde_yaml::from_value(value).map_err(|e| Error::Crd {
                    path: path.display().to_string(),
                    message: e.to_string(),
                })?;
            crds.push(crd);
        }
    }
    install_crds(client, &crds).await?;
    Ok(crds.into_iter().filter_map(|c| c.metadata.name).collect())
}

impl ControlPlane {
    /// Creates a namespace `prefix-<random>` for one test and returns its name. Namespaces are
    /// left behind: there is no namespace controller to finalize their deletion, and the whole
    /// control plane is thrown away after the run.
    pub async fn namespace(&self, client: &kube::Client, prefix: &str) -> Result<String> {
        let name = unique_name(prefix);
        let api: Api<Namespace> = Api::all(client.clone());
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some([("testenv".to_string(), "true".to_string())].into()),
                ..Default::default()
            },
            ..Default::default()
        };
        api.create(&PostParams::default(), &ns).await?;
        Ok(name)
    }
}
