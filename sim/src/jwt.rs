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

/// Whether `token` (a JWS in compact form) is signed by one of the keys of `jwks`
/// (`{"keys": [...]}`): ES256 with an EC P-256 key, RS256 with an RSA key; `kid` narrows the
/// keys when both sides give one.
pub fn signed_by(token: &str, jwks: &Value) -> bool {
    use aws_lc_rs::signature::{
        ECDSA_P256_SHA256_FIXED, RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents,
        UnparsedPublicKey,
    };
    let Some((input, sig)) = token.rsplit_once('.') else {
        return false;
    };
    let Some(header) = input
        .split('.')
        .next()
        .and_then(|h| B64.decode(h).ok())
        .and_then(|h| serde_json::from_slice::<Value>(&h).ok())
    else {
        return false;
    };
    let Ok(sig) = B64.decode(sig) else {
        return false;
    };
    let b = |k: &Value, f: &str| k[f].as_str().and_then(|s| B64.decode(s).ok());
    jwks["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|k| header["kid"].is_null() || k["kid"].is_null() || k["kid"] == header["kid"])
        .any(|k| match (header["alg"].as_str(), k["kty"].as_str()) {
            (Some("ES256"), Some("EC")) if k["crv"] == "P-256" => {
                let (Some(x), Some(y)) = (b(k, "x"), b(k, "y")) else {
                    return false;
                };
                let point: Vec<u8> = [&[4u8][..], &x, &y].concat();
                UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
                    .verify(input.as_bytes(), &sig)
                    .is_ok()
            }
            (Some("RS256"), Some("RSA")) => {
                let (Some(n), Some(e)) = (b(k, "n"), b(k, "e")) else {
                    return false;
                };
                RsaPublicKeyComponents { n, e }
                    .verify(&RSA_PKCS1_2048_8192_SHA256, input.as_bytes(), &sig)
                    .is_ok()
            }
            _ => false,
        })
}

/// The payload of any JWT, without checking its signature (see `signed_by` for that).
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

    /// `SEQUENCE { INTEGER n, INTEGER e }` (RFC 8017 RSAPublicKey) into its two integers.
    fn rsa_n_e(der: &[u8]) -> (Vec<u8>, Vec<u8>) {
        fn tlv(d: &[u8]) -> (&[u8], &[u8]) {
            let (len, at) = match d[1] {
                l if l < 0x80 => (l as usize, 2),
                l => {
                    let n = (l & 0x7f) as usize;
                    (
                        d[2..2 + n].iter().fold(0, |a, b| a * 256 + *b as usize),
                        2 + n,
                    )
                }
            };
            (&d[at..at + len], &d[at + len..])
        }
        let (seq, _) = tlv(der);
        let (n, rest) = tlv(seq);
        let (e, _) = tlv(rest);
        let strip = |v: &[u8]| v.iter().skip_while(|b| **b == 0).copied().collect();
        (strip(n), strip(e))
    }

    #[test]
    fn rs256_signatures_are_checked_against_the_jwks() {
        use aws_lc_rs::rsa::{KeyPair, KeySize};
        use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};
        let key = KeyPair::generate(KeySize::Rsa2048).unwrap();
        let (n, e) = rsa_n_e(key.public_key().as_ref());
        let jwks = json!({"keys": [{"kty": "RSA", "kid": "r1", "n": B64.encode(&n), "e": B64.encode(&e)}]});
        let input = format!(
            "{}.{}",
            B64.encode(r#"{"alg":"RS256","kid":"r1"}"#),
            B64.encode(r#"{"sub":"a"}"#)
        );
        let mut sig = vec![0; key.public_modulus_len()];
        key.sign(
            &RSA_PKCS1_SHA256,
            &aws_lc_rs::rand::SystemRandom::new(),
            input.as_bytes(),
            &mut sig,
        )
        .unwrap();
        let token = format!("{input}.{}", B64.encode(&sig));
        assert!(signed_by(&token, &jwks));
        let tampered = format!(
            "{}.{}.{}",
            B64.encode(r#"{"alg":"RS256","kid":"r1"}"#),
            B64.encode(r#"{"sub":"b"}"#),
            B64.encode(&sig)
        );
        assert!(!signed_by(&tampered, &jwks));
        // A key with another kid, or an alg the key does not match, does not count.
        let other = json!({"keys": [{"kty": "RSA", "kid": "r2", "n": B64.encode(&n), "e": B64.encode(&e)}]});
        assert!(!signed_by(&token, &other));
        let none = format!(
            "{}.{}.",
            B64.encode(r#"{"alg":"none"}"#),
            B64.encode(r#"{"sub":"a"}"#)
        );
        assert!(!signed_by(&none, &jwks));
    }
}
