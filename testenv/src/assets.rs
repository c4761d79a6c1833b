//! Where the control-plane binaries come from.
//!
//! Order of precedence, per binary: `TEST_ASSET_<NAME>` (a file), `KUBEBUILDER_ASSETS` (a
//! directory of envtest binaries), `CONTAINMENT_CONTROLPLANE_BIN` (a directory), then the build
//! cache that `make controlplane` fills. etcd falls back to the static binary vendored by the
//! `etcd-bin-vendored` crate, which works offline.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The Kubernetes release the control plane is built from (kept in `testenv/go/K8S_VERSION`).
pub const K8S_VERSION: &str = include_str!("../go/K8S_VERSION").trim_ascii();

/// The oldest Kubernetes release the chart supports (`kubeVersion` in Chart.yaml; kept in
/// `testenv/go/floor/K8S_VERSION`): a test runs the operator on its kube-apiserver.
pub const FLOOR_K8S_VERSION: &str = include_str!("../go/floor/K8S_VERSION").trim_ascii();

/// Paths of the three binaries the control plane needs.
#[derive(Debug, Clone)]
pub struct Assets {
    pub kube_apiserver: PathBuf,
    pub etcd: PathBuf,
    pub kubectl: PathBuf,
}

/// `${CONTAINMENT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/containment-operator}/controlplane/<version>`.
pub fn default_cache_dir() -> PathBuf {
    cache_dir_with(&|name| std::env::var_os(name))
}

fn cache_dir_with(lookup: &dyn Fn(&str) -> Option<OsString>) -> PathBuf {
    cache_base(lookup).join(K8S_VERSION)
}

fn cache_base(lookup: &dyn Fn(&str) -> Option<OsString>) -> PathBuf {
    let base = lookup("CONTAINMENT_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let cache = lookup("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(lookup("HOME").unwrap_or_else(|| "/tmp".into())).join(".cache")
                });
            cache.join("containment-operator")
        });
    base.join("controlplane")
}

impl Assets {
    /// Finds the binaries, or explains how to get them.
    pub fn locate() -> Result<Self> {
        Self::locate_with(&|name| std::env::var_os(name))
    }

    /// [`Assets::locate`] with an explicit environment, so the precedence rules can be tested.
    pub fn locate_with(env: &dyn Fn(&str) -> Option<OsString>) -> Result<Self> {
        Ok(Self {
            kube_apiserver: find(env, "kube-apiserver", "TEST_ASSET_KUBE_APISERVER", None)?,
            etcd: find(
                env,
                "etcd",
                "TEST_ASSET_ETCD",
                etcd_bin_vendored::etcd_bin_path().ok(),
            )?,
            kubectl: find(env, "kubectl", "TEST_ASSET_KUBECTL", None)?,
        })
    }

    /// [`Assets::locate`] with the kube-apiserver of the chart's oldest supported release
    /// (`TEST_ASSET_FLOOR_KUBE_APISERVER`, else the cache `make controlplane` fills).
    pub fn floor() -> Result<Self> {
        Self::floor_with(&|name| std::env::var_os(name))
    }

    /// [`Assets::floor`] with an explicit environment.
    pub fn floor_with(env: &dyn Fn(&str) -> Option<OsString>) -> Result<Self> {
        let dir = cache_base(env).join(FLOOR_K8S_VERSION);
        let kube_apiserver = match env("TEST_ASSET_FLOOR_KUBE_APISERVER") {
            Some(p) => PathBuf::from(p),
            None => dir.join("kube-apiserver"),
        };
        if !is_file(&kube_apiserver) {
            return Err(Error::BinaryNotFound {
                binary: "kube-apiserver",
                hint: format!(
                    "the {FLOOR_K8S_VERSION} (chart floor) build is not at {}; run `make controlplane` \
                     to build it, or set TEST_ASSET_FLOOR_KUBE_APISERVER",
                    kube_apiserver.display()
                ),
            });
        }
        Ok(Self {
            kube_apiserver,
            ..Self::locate_with(env)?
        })
    }
}

fn find(
    lookup: &dyn Fn(&str) -> Option<OsString>,
    binary: &'static str,
    env: &str,
    fallback: Option<&Path>,
) -> Result<PathBuf> {
    if let Some(p) = lookup(env) {
        let p = PathBuf::from(p);
        return if is_file(&p) {
            Ok(p)
        } else {
            Err(Error::BinaryNotFound {
                binary,
                hint: format!("{env}={} is not a file", p.display()),
            })
        };
    }
    let mut dirs = Vec::new();
    for var in ["KUBEBUILDER_ASSETS", "CONTAINMENT_CONTROLPLANE_BIN"] {
        if let Some(d) = lookup(var) {
            dirs.push(PathBuf::from(d));
        }
    }
    dirs.push(cache_dir_with(lookup));
    for d in &dirs {
        let p = d.join(binary);
        if is_file(&p) {
            return Ok(p);
        }
    }
    if let Some(p) = fallback.filter(|p| is_file(p)) {
        return Ok(p.to_path_buf());
    }
    Err(Error::BinaryNotFound {
        binary,
        hint: format!(
            "looked in {}; run `make controlplane` to build it, or set {env} or KUBEBUILDER_ASSETS",
            dirs.iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    })
}

fn is_file(p: &Path) -> bool {
    p.metadata().map(|m| m.is_file()).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &Path)]) -> impl Fn(&str) -> Option<OsString> + use<> {
        let map: HashMap<String, OsString> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_os_str().to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn touch(dir: &Path, name: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, b"").unwrap();
        p
    }

    #[test]
    fn explicit_asset_beats_kubebuilder_dir_which_beats_cache() {
        let kb = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        let explicit = tempfile::tempdir().unwrap();
        for d in [
            kb.path(),
            cache
                .path()
                .join("controlplane")
                .join(K8S_VERSION)
                .as_path(),
        ] {
            std::fs::create_dir_all(d).unwrap();
            for b in ["kube-apiserver", "kubectl", "etcd"] {
                touch(d, b);
            }
        }
        let own_apiserver = touch(explicit.path(), "my-apiserver");
        let e = env(&[
            ("TEST_ASSET_KUBE_APISERVER", &own_apiserver),
            ("KUBEBUILDER_ASSETS", kb.path()),
            ("CONTAINMENT_CACHE_DIR", cache.path()),
        ]);
        let a = Assets::locate_with(&e).unwrap();
        assert_eq!(a.kube_apiserver, own_apiserver);
        assert_eq!(a.kubectl, kb.path().join("kubectl"));
        assert_eq!(a.etcd, kb.path().join("etcd"));

        let e = env(&[("CONTAINMENT_CACHE_DIR", cache.path())]);
        let a = Assets::locate_with(&e).unwrap();
        let cached = cache.path().join("controlplane").join(K8S_VERSION);
        assert_eq!(a.kube_apiserver, cached.join("kube-apiserver"));
    }

    #[test]
    fn the_floor_release_swaps_in_its_own_kube_apiserver_or_says_how_to_build_it() {
        let cache = tempfile::tempdir().unwrap();
        let cached = cache.path().join("controlplane").join(K8S_VERSION);
        std::fs::create_dir_all(&cached).unwrap();
        touch(&cached, "kube-apiserver");
        touch(&cached, "kubectl");
        let e = env(&[("CONTAINMENT_CACHE_DIR", cache.path())]);
        let err = Assets::floor_with(&e).unwrap_err().to_string();
        assert!(err.contains(FLOOR_K8S_VERSION), "{err}");
        assert!(err.contains("make controlplane"), "{err}");
        let floor = cache.path().join("controlplane").join(FLOOR_K8S_VERSION);
        std::fs::create_dir_all(&floor).unwrap();
        touch(&floor, "kube-apiserver");
        let a = Assets::floor_with(&e).unwrap();
        assert_eq!(a.kube_apiserver, floor.join("kube-apiserver"));
        assert_eq!(a.kubectl, cached.join("kubectl"));
    }

    #[test]
    fn etcd_falls_back_to_the_vendored_binary() {
        let cache = tempfile::tempdir().unwrap();
        let cached = cache.path().join("controlplane").join(K8S_VERSION);
        std::fs::create_dir_all(&cached).unwrap();
        touch(&cached, "kube-apiserver");
        touch(&cached, "kubectl");
        let a = Assets::locate_with(&env(&[("CONTAINMENT_CACHE_DIR", cache.path())])).unwrap();
        assert_eq!(a.etcd, etcd_bin_vendored::etcd_bin_path().unwrap());
    }

    #[test]
    fn missing_binary_names_the_variable_and_the_make_target() {
        let cache = tempfile::tempdir().unwrap();
        let bogus = cache.path().join("nope");
        let err = Assets::locate_with(&env(&[
            ("CONTAINMENT_CACHE_DIR", cache.path()),
            ("TEST_ASSET_KUBECTL", &bogus),
        ]))
        .unwrap_err()
        .to_string();
        assert!(err.contains("kube-apiserver not found"), "{err}");
        assert!(err.contains("make controlplane"), "{err}");
        let cached = cache.path().join("controlplane").join(K8S_VERSION);
        std::fs::create_dir_all(&cached).unwrap();
        touch(&cached, "kube-apiserver");
        let err = Assets::locate_with(&env(&[
            ("CONTAINMENT_CACHE_DIR", cache.path()),
            ("TEST_ASSET_KUBECTL", &bogus),
        ]))
        .unwrap_err()
        .to_string();
        assert!(err.contains("TEST_ASSET_KUBECTL="), "{err}");
        assert!(err.contains("is not a file"), "{err}");
    }
}
