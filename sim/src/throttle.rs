//! ARM token buckets per (subscription, principal, operation class), with the real defaults.

use std::collections::HashMap;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::routes::OpClass;

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BucketSpec {
    pub capacity: f64,
    pub refill_per_second: f64,
}

/// Body of `POST /_sim/throttle`; omitted fields keep their value.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ThrottleConfig {
    pub enabled: bool,
    pub reads: BucketSpec,
    pub writes: BucketSpec,
    pub deletes: BucketSpec,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            reads: BucketSpec {
                capacity: 250.0,
                refill_per_second: 25.0,
            },
            writes: BucketSpec {
                capacity: 200.0,
                refill_per_second: 10.0,
            },
            deletes: BucketSpec {
                capacity: 200.0,
                refill_per_second: 10.0,
            },
        }
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

#[derive(Debug, Default)]
pub struct Throttle {
    pub config: ThrottleConfig,
    buckets: HashMap<(String, String, OpClass), Bucket>,
}

/// The outcome of taking one token.
#[derive(Debug, PartialEq)]
pub enum Take {
    /// Allowed; tokens left (for `x-ms-ratelimit-remaining-*`).
    Ok(u64),
    /// Throttled; seconds until a token is available (`Retry-After`).
    Throttled(u64),
}

impl Throttle {
    pub fn new(config: ThrottleConfig) -> Self {
        Self {
            config,
            buckets: HashMap::new(),
        }
    }

    pub fn take(
        &mut self,
        subscription: &str,
        principal: &str,
        class: OpClass,
        now: Instant,
    ) -> Take {
        let spec = match class {
            OpClass::Read => self.config.reads,
            OpClass::Write => self.config.writes,
            OpClass::Delete => self.config.deletes,
        };
        if !self.config.enabled {
            return Take::Ok(spec.capacity as u64);
        }
        let b = self
            .buckets
            .entry((
                subscription.to_ascii_lowercase(),
                principal.to_string(),
                class,
            ))
            .or_insert(Bucket {
                tokens: spec.capacity,
                last: now,
            });
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * spec.refill_per_second).min(spec.capacity);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Take::Ok(b.tokens.floor() as u64)
        } else if spec.refill_per_second <= 0.0 {
            Take::Throttled(3600)
        } else {
            Take::Throttled(((1.0 - b.tokens) / spec.refill_per_second).ceil().max(1.0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_refill_at_the_configured_rate() {
        let mut t = Throttle::new(ThrottleConfig::default());
        let start = Instant::now();
        for i in 0..200 {
            assert_eq!(t.take("s", "p", OpClass::Write, start), Take::Ok(199 - i));
        }
        assert_eq!(t.take("s", "p", OpClass::Write, start), Take::Throttled(1));
        // Reads and other principals have their own buckets.
        assert_eq!(t.take("s", "p", OpClass::Read, start), Take::Ok(249));
        assert_eq!(t.take("s", "q", OpClass::Write, start), Take::Ok(199));
        // 10 writes per second refill.
        let later = start + Duration::from_millis(1000);
        for _ in 0..10 {
            assert!(matches!(
                t.take("s", "p", OpClass::Write, later),
                Take::Ok(_)
            ));
        }
        assert!(matches!(
            t.take("s", "p", OpClass::Write, later),
            Take::Throttled(_)
        ));
    }
}
