//! Least privilege: the actions `permissions` prints are enough, and each one is needed — without
//! it the resource goes Stalled with reason AuthorizationFailed.

mod support;

use serde_json::{Value, json};
use support::*;

/// A resource of each kind whose first apply needs every action the kind lists.
fn scenario(kind: &str) -> Value {
    match kind {
        "SqlIpBlock" => json!({"target": target(SQL_PROD), "ipAddresses": ["203.0.113.7"]}),
        "SqlPublicAccessLockdown" => json!({"target": target(SQL_PROD)}),
        "StorageKeyRotation" => {
            json!({"target": target(STORAGE), "keys": ["key1"], "publishTo": {"secretName": "keys"}})
        }
        "StoragePublicAccessLockdown" => json!({"target": target(STORAGE)}),
        other => panic!("no scenario for {other}"),
    }
}

const KINDS: [&str; 4] = [
    "SqlIpBlock",
    "SqlPublicAccessLockdown",
    "StorageKeyRotation",
    "StoragePublicAccessLockdown",
];

#[tokio::test]
async fn exactly_the_printed_actions_suffice() {
    for kind in KINDS {
        let env = Env::with_actions("e2e-perm-ok", printed_actions(&[kind])).await;
        let _op = env.operator();
        env.apply(kind, "x", scenario(kind)).await;
        env.wait_ready(kind, "x").await;
    }
}

#[tokio::test]
async fn removing_any_printed_action_stalls_with_authorization_failed() {
    for kind in KINDS {
        let all = printed_actions(&[kind]);
        for missing in &all {
            let actions: Vec<String> = all.iter().filter(|a| *a != missing).cloned().collect();
            let env = Env::with_actions("e2e-perm-missing", actions).await;
            let _op = env.operator();
            env.apply(kind, "x", scenario(kind)).await;
            let o = env
                .wait_condition(kind, "x", "Stalled", "True", Some("AuthorizationFailed"))
                .await;
            let msg = condition(&o, "Stalled").unwrap()["message"]
                .as_str()
                .unwrap()
                .to_string();
            eprintln!("{kind} without {missing}: {msg}");
        }
    }
}
