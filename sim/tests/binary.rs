//! The `azure-sim` program as users start it: `--listen`, `--world`, `--ca-out`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[tokio::test]
async fn binary_writes_its_ca_and_serves_https_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_azure-sim"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--world",
            concat!(env!("CARGO_MANIFEST_DIR"), "/worlds/demo.yaml"),
            "--ca-out",
        ])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("https://"))
        .expect("listening line")
        .to_string();
    let ca = std::fs::read(dir.path().join("ca.pem")).unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .build()
        .unwrap();
    let r = http
        .post(format!(
            "{url}/72f988bf-0000-4000-8000-000000000001/oauth2/v2.0/token"
        ))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "11111111-0000-4000-8000-000000000001"),
            ("client_secret", "demo-operator-secret"),
            ("scope", "https://management.azure.com/.default"),
        ])
        .send()
        .await;
    child.kill().unwrap();
    let _ = child.wait();
    assert_eq!(r.unwrap().status(), 200);
}

#[test]
fn a_bad_world_file_is_rejected_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let world = dir.path().join("w.yaml");
    std::fs::write(&world, "resources:\n- id: /not/an/arm/id\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_azure-sim"))
        .args(["--listen", "127.0.0.1:0", "--ca-out"])
        .arg(dir.path())
        .arg("--world")
        .arg(&world)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("must start with /subscriptions/") && err.contains("w.yaml"),
        "{err}"
    );
}
