//! Tamper-proof records. Release and one-shot actions act on what `status` says (the prior
//! state in `restore`, the `action` ledger) and the guard on `policy` (admitted or not); whoever
//! may write a containment's status could otherwise make the operator PUT an allow-all rule on
//! release, re-run an action, or skip the blast radius. The operator seals those fields with an
//! HMAC-SHA256 keyed by a secret only it reads (`--restore-key-file`), bound to the object's
//! uid; a record whose seal does not verify is never acted on (`RestoreRecordTampered`).

use aws_lc_rs::hmac;
use base64::Engine as _;
use serde_json::Value;

use crate::api::common::CommonStatus;

pub const TAMPERED: &str = "RestoreRecordTampered";

#[derive(Default)]
pub struct Seal {
    key: Option<hmac::Key>,
}

impl Seal {
    /// A seal keyed by `secret` (at least 32 bytes); `None`: records are not sealed.
    pub fn new(secret: Option<&[u8]>) -> Self {
        Self {
            key: secret.map(|s| hmac::Key::new(hmac::HMAC_SHA256, s)),
        }
    }

    pub fn enabled(&self) -> bool {
        self.key.is_some()
    }

    /// The seal of `status`'s records for the object `uid` (`None`: nothing to seal, or no key).
    pub fn sign(&self, uid: &str, status: &CommonStatus) -> Option<String> {
        let key = self.key.as_ref()?;
        let msg = message(uid, status)?;
        Some(base64::engine::general_purpose::STANDARD.encode(hmac::sign(key, msg.as_bytes())))
    }

    /// Ok when the records are the operator's own (or there are none, or sealing is off).
    pub fn verify(&self, uid: &str, status: &CommonStatus) -> Result<(), String> {
        let Some(key) = &self.key else { return Ok(()) };
        let Some(msg) = message(uid, status) else {
            return Ok(());
        };
        let given = status
            .record_seal
            .as_deref()
            .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
            .unwrap_or_default();
        hmac::verify(key, msg.as_bytes(), &given).map_err(|_| {
            "status.restore, status.action or status.policy was not written by the operator (its seal does not verify): nothing is released or run from it. Put the status back as the operator wrote it, or, having checked Azure by hand, remove the finalizer".to_string()
        })
    }
}

/// What is sealed, canonical (object keys sorted at every depth, null members dropped: a
/// merge patch of the status deletes them, so the stored record never has them), or `None`
/// when there is nothing to seal.
fn message(uid: &str, s: &CommonStatus) -> Option<String> {
    if s.restore.is_none() && s.action.is_none() && s.policy.is_none() {
        return None;
    }
    let action = s
        .action
        .as_ref()
        .map(|a| serde_json::to_value(a).unwrap_or(Value::Null));
    let doc = serde_json::json!({
        "uid": uid,
        "restore": s.restore.as_ref().map(canonical),
        "action": action.as_ref().map(canonical),
        "policy": s.policy,
    });
    Some(canonical(&doc).to_string())
}

fn canonical(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let mut out = serde_json::Map::new();
            for k in keys.into_iter().filter(|k| !m[*k].is_null()) {
                out.insert(k.clone(), canonical(&m[k]));
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A record with a null member is stored without it (merge patch): the seal still holds.
    #[test]
    fn a_null_member_the_status_patch_drops_keeps_the_seal() {
        let seal = Seal::new(Some(&[7u8; 32]));
        let mut sent =
            status(json!({"accountEnabled": true, "roles": [{"endDateTime": null, "id": "r"}]}));
        sent.record_seal = seal.sign("uid-1", &sent);
        let mut stored = sent.clone();
        stored.restore = Some(json!({"accountEnabled": true, "roles": [{"id": "r"}]}));
        assert!(seal.verify("uid-1", &stored).is_ok());
        stored.restore = Some(json!({"accountEnabled": false, "roles": [{"id": "r"}]}));
        assert!(seal.verify("uid-1", &stored).is_err());
    }

    fn status(restore: Value) -> CommonStatus {
        CommonStatus {
            restore: Some(restore),
            policy: Some("soc".into()),
            ..Default::default()
        }
    }

    #[test]
    fn a_sealed_record_verifies_and_any_edit_does_not() {
        let seal = Seal::new(Some(b"0123456789abcdef0123456789abcdef"));
        let mut s = status(json!({"rules": [{"name": "AllowAll", "start": "0.0.0.0"}]}));
        s.record_seal = seal.sign("uid-1", &s);
        assert!(seal.verify("uid-1", &s).is_ok());
        // Another object's record (copied across) does not verify.
        assert!(seal.verify("uid-2", &s).is_err());
        let mut forged = s.clone();
        forged.restore = Some(
            json!({"rules": [{"name": "AllowAll", "start": "0.0.0.0", "end": "255.255.255.255"}]}),
        );
        assert!(
            seal.verify("uid-1", &forged)
                .unwrap_err()
                .contains("not written by the operator")
        );
        let mut unsealed = s.clone();
        unsealed.record_seal = None;
        assert!(seal.verify("uid-1", &unsealed).is_err());
        let mut other_policy = s.clone();
        other_policy.policy = Some("wide-open".into());
        assert!(seal.verify("uid-1", &other_policy).is_err());
        // Nothing recorded: nothing to verify.
        assert!(seal.verify("uid-1", &CommonStatus::default()).is_ok());
    }

    #[test]
    fn key_order_does_not_matter_and_no_key_means_no_seal() {
        let seal = Seal::new(Some(b"0123456789abcdef0123456789abcdef"));
        let a = status(json!({"a": 1, "b": {"y": 2, "x": 1}}));
        let b = status(serde_json::from_str(r#"{"b": {"x": 1, "y": 2}, "a": 1}"#).unwrap());
        assert_eq!(seal.sign("u", &a), seal.sign("u", &b));
        let off = Seal::new(None);
        assert_eq!(off.sign("u", &a), None);
        assert!(off.verify("u", &a).is_ok());
    }
}
