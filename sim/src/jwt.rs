//! JWT-shaped access tokens (HS256 with a per-process key) and unverified parsing of incoming
//! assertions.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

pub fn sign(key: &[u8], claims: &Value) -> String {
    let header = B64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = B64.encode(claims.to_string());
    let input = format!("{header}.{payload}");
    let mut mac = HmacSha256::new_from_slice(key).expect("any key length");
    mac.update(input.as_bytes());
    let sig = B64.encode(mac.finalize().into_bytes());
    format!("{input}.{sig}")
}

/// Verifies a token this simulator issued and returns its claims.
pub fn verify(key: &[u8], token: &str) -> Option<Value> {
    let (input, sig) = token.rsplit_once('.')?;
    let mut mac = HmacSha256::new_from_slice(key).ok()?;
    mac.update(input.as_bytes());
    mac.verify_slice(&B64.decode(sig).ok()?).ok()?;
    claims_unverified(token)
}

/// The payload of any JWT, without checking its signature (for federated assertions, whose
/// issuer keys the simulator cannot fetch).
pub fn claims_unverified(token: &str) -> Option<Value> {
    let mut parts = token.split('.');
    let _header = parts.next()?;
    let payload = parts.next()?;
    parts.next()?;
    serde_json::from_slice(&B64.decode(payload.trim_end_matches('=')).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trip_and_tamper_detection() {
        let t = sign(b"k", &json!({"aud": "x", "roles": ["a"]}));
        assert_eq!(verify(b"k", &t).unwrap()["aud"], "x");
        assert!(verify(b"other", &t).is_none());
        let forged = format!(
            "{}.{}.{}",
            t.split('.').next().unwrap(),
            B64.encode(r#"{"aud":"y"}"#),
            t.rsplit('.').next().unwrap()
        );
        assert!(verify(b"k", &forged).is_none());
        assert_eq!(claims_unverified(&forged).unwrap()["aud"], "y");
    }
}
