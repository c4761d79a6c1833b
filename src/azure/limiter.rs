//! Client-side token buckets per (tenant, subscription, operation class), mirroring ARM's own
//! buckets and fed by its `x-ms-ratelimit-remaining-*` and `Retry-After` headers, so a burst is
//! paced at the limit instead of turning into a 429 storm.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpClass {
    Read,
    Write,
    Delete,
}

impl OpClass {
    pub fn of(method: &str) -> Self {
        match method {
            "GET" | "HEAD" => OpClass::Read,
            "DELETE" => OpClass::Delete,
            _ => OpClass::Write,
        }
    }

    /// The ARM header that reports what is left of this bucket.
    pub fn remaining_header(self) -> &'static str {
        match self {
            OpClass::Read => "x-ms-ratelimit-remaining-subscription-reads",
            OpClass::Write => "x-ms-ratelimit-remaining-subscription-writes",
            OpClass::Delete => "x-ms-ratelimit-remaining-subscription-deletes",
        }
    }
}

/// Bucket size and refill rate (per second).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BucketSpec {
    pub capacity: f64,
    pub per_second: f64,
}

impl std::str::FromStr for BucketSpec {
    type Err = String;
    /// `CAPACITY:PER_SECOND`, e.g. `200:10`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (c, r) = s
            .split_once(':')
            .ok_or_else(|| format!("{s:?}: expected CAPACITY:PER_SECOND, e.g. 200:10"))?;
        let capacity: f64 = c.parse().map_err(|_| format!("{s:?}: bad capacity"))?;
        let per_second: f64 = r.parse().map_err(|_| format!("{s:?}: bad rate"))?;
        if capacity < 1.0 || per_second <= 0.0 {
            return Err(format!("{s:?}: capacity must be >= 1 and rate > 0"));
        }
        Ok(BucketSpec {
            capacity,
            per_second,
        })
    }
}

#[derive(Debug, Clone, Copy)]
pub struct LimiterConfig {
    pub read: BucketSpec,
    pub write: BucketSpec,
    pub delete: BucketSpec,
}

impl Default for LimiterConfig {
    /// ARM's documented per-principal subscription buckets.
    fn default() -> Self {
        Self {
            read: BucketSpec {
                capacity: 250.0,
                per_second: 25.0,
            },
            write: BucketSpec {
                capacity: 200.0,
                per_second: 10.0,
            },
            delete: BucketSpec {
                capacity: 200.0,
                per_second: 10.0,
            },
        }
    }
}

/// One bucket. Reservations may drive `tokens` negative: a caller that takes the last token's
/// successor simply waits its turn, which keeps callers in order and the pace exact.
#[derive(Debug, Clone)]
pub struct Bucket {
    spec: BucketSpec,
    tokens: f64,
    last: Instant,
    blocked_until: Option<Instant>,
}

impl Bucket {
    pub fn new(spec: BucketSpec, now: Instant) -> Self {
        Self {
            spec,
            tokens: spec.capacity,
            last: now,
            blocked_until: None,
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * self.spec.per_second).min(self.spec.capacity);
        self.last = now;
    }

    /// Reserve one token; returns how long the caller must wait before sending.
    pub fn reserve(&mut self, now: Instant) -> Duration {
        self.refill(now);
        self.tokens -= 1.0;
        let pace = if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.spec.per_second)
        };
        let blocked = self
            .blocked_until
            .map(|t| t.saturating_duration_since(now))
            .unwrap_or_default();
        pace.max(blocked)
    }

    /// Azure told us how much is left: never believe we have more than that.
    pub fn observe_remaining(&mut self, remaining: f64, now: Instant) {
        self.refill(now);
        if remaining < self.tokens {
            self.tokens = remaining;
        }
    }

    /// A 429: nobody sends on this bucket before `retry_after` has passed.
    pub fn block_for(&mut self, retry_after: Duration, now: Instant) {
        let until = now + retry_after;
        if self.blocked_until.is_none_or(|t| t < until) {
            self.blocked_until = Some(until);
        }
        self.refill(now);
        self.tokens = self.tokens.min(0.0);
    }

    pub fn tokens(&self) -> f64 {
        self.tokens
    }
}

/// All buckets of the process.
#[derive(Debug)]
pub struct Limiter {
    cfg: LimiterConfig,
    buckets: Mutex<HashMap<(String, OpClass), Bucket>>,
}

impl Limiter {
    pub fn new(cfg: LimiterConfig) -> Self {
        Self {
            cfg,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn with<T>(&self, scope: &str, op: OpClass, f: impl FnOnce(&mut Bucket, Instant) -> T) -> T {
        let now = Instant::now();
        let spec = match op {
            OpClass::Read => self.cfg.read,
            OpClass::Write => self.cfg.write,
            OpClass::Delete => self.cfg.delete,
        };
        let mut map = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let b = map
            .entry((scope.to_string(), op))
            .or_insert_with(|| Bucket::new(spec, now));
        f(b, now)
    }

    /// Wait for a token on this scope's bucket.
    pub async fn acquire(&self, scope: &str, op: OpClass) {
        let wait = self.with(scope, op, |b, now| b.reserve(now));
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    pub fn observe_remaining(&self, scope: &str, op: OpClass, remaining: f64) {
        self.with(scope, op, |b, now| b.observe_remaining(remaining, now));
    }

    pub fn block_for(&self, scope: &str, op: OpClass, retry_after: Duration) {
        self.with(scope, op, |b, now| b.block_for(retry_after, now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: BucketSpec = BucketSpec {
        capacity: 3.0,
        per_second: 10.0,
    };

    #[test]
    fn burst_then_paced() {
        let t0 = Instant::now();
        let mut b = Bucket::new(W, t0);
        for _ in 0..3 {
            assert_eq!(b.reserve(t0), Duration::ZERO);
        }
        // The 4th and 5th wait 100 ms and 200 ms: the refill pace, in order.
        assert_eq!(b.reserve(t0).as_millis(), 100);
        assert_eq!(b.reserve(t0).as_millis(), 200);
        // After a second the bucket is back to (capacity-bounded) tokens.
        let t1 = t0 + Duration::from_secs(2);
        assert_eq!(b.reserve(t1), Duration::ZERO);
        assert!(b.tokens() <= 2.0);
    }

    #[test]
    fn remaining_header_lowers_tokens_and_retry_after_blocks() {
        let t0 = Instant::now();
        let mut b = Bucket::new(W, t0);
        b.observe_remaining(0.0, t0);
        assert_eq!(b.reserve(t0).as_millis(), 100);
        b.block_for(Duration::from_secs(5), t0);
        assert_eq!(b.reserve(t0).as_secs(), 5);
        // A higher remaining never raises our own count.
        let mut c = Bucket::new(W, t0);
        c.reserve(t0);
        c.observe_remaining(100.0, t0);
        assert_eq!(c.tokens(), 2.0);
    }

    #[test]
    fn parses_bucket_specs() {
        assert_eq!(
            "200:10".parse::<BucketSpec>().unwrap(),
            BucketSpec {
                capacity: 200.0,
                per_second: 10.0
            }
        );
        assert!(
            "200"
                .parse::<BucketSpec>()
                .unwrap_err()
                .contains("CAPACITY")
        );
        assert!("0:1".parse::<BucketSpec>().is_err());
    }
}
